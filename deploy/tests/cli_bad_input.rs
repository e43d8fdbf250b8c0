//! `tether-deploy` on bad input (issue 30), run as a user runs it: each mistake is an
//! error that says what is wrong and names the file or option at fault, with exit status 1
//! (2 for a flag clap refuses), never a panic, and leaves no output or `.partial` file
//! behind; inputs holding NaN or an infinity give the same output with every `--kernels`
//! choice, a warning naming the sample, and an error under `--reject-non-finite`.
//! `tether-compress`'s bad-input cases are `compress/tests/cli_bad_input.rs`.

#![cfg(feature = "std")]

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_deploy::{ModelBuilder, OpSpec};

/// `tether-deploy` with `args` (no backtraces in the messages): exit status, stdout and
/// stderr; fails the test on a panic.
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-deploy"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("the binary runs");
    let (code, stdout, stderr) = (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    (code, stdout, stderr)
}

/// Asserts `tether-deploy` with `args` exits with `code` and a message on stderr holding
/// every one of `want`; returns the message.
fn fails_with_code(args: &[&str], code: i32, want: &[&str]) -> String {
    let (got, _, err) = cli(args);
    assert_eq!(got, Some(code), "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: {w:?} not in {err:?}");
    }
    err
}

/// Asserts `tether-deploy` fails with status 1 and an error holding every one of `want`.
fn fails_with(args: &[&str], want: &[&str]) -> String {
    fails_with_code(args, 1, want)
}

/// A fresh, empty folder per test (tests run in parallel).
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tether-deploy-bad-input-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a `&str` (the temporary folders' are UTF-8).
fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The names in `dir`, sorted: what a failed command left there.
#[cfg(feature = "onnx")]
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// 8 inputs -> 6 (CSR, inputs 0 and 1 pruned in every row) -> relu -> 3 (dense): a pruned
/// classifier whose sparse kernels skip the weights of inputs 0 and 1 entirely.
fn model() -> Vec<u8> {
    let w1: Vec<f32> = (0..48)
        .map(|k| {
            let (r, c) = (k / 8, k % 8);
            if c >= 2 && (r + c) % 2 == 0 {
                ((k as f32) * 0.37).sin()
            } else {
                0.0
            }
        })
        .collect();
    let w2: Vec<f32> = (0..18).map(|k| ((k as f32) * 0.71).cos()).collect();
    let mut b = ModelBuilder::new(&[8]);
    let t1 = b.csr(&[6, 8], &w1);
    let bias = b.dense(&[6], &[0.1, -0.2, 0.3, 0.0, 0.05, -0.1]);
    let t2 = b.dense(&[3, 6], &w2);
    let h = b.op(
        OpSpec::Linear {
            weight: t1,
            bias: Some(bias),
        },
        &[b.input()],
    );
    let h = b.op(OpSpec::Relu, &[h]);
    let y = b.op(
        OpSpec::Linear {
            weight: t2,
            bias: None,
        },
        &[h],
    );
    b.finish(y).unwrap()
}

fn write_model(d: &Path) -> PathBuf {
    let m = d.join("m.tthr");
    std::fs::write(&m, model()).unwrap();
    m
}

/// Samples 0 and 4 finite; 1: NaN; 2: +inf at input 0 (pruned in every row: a sparse
/// kernel never reads it); 3: -inf.
const NON_FINITE_INPUT: &str = "0.5 0.1 0.2 0.3 -0.4 0.5 0.6 0.7\n\
                                0.5 0.1 NaN 0.3 -0.4 0.5 0.6 0.7\n\
                                inf 0.1 0.2 0.3 -0.4 0.5 0.6 0.7\n\
                                0.5 0.1 0.2 0.3 -inf 0.5 0.6 0.7\n\
                                0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2\n";

#[test]
fn every_kernel_choice_prints_the_same_on_nan_and_inf_inputs() {
    let d = dir("kernels");
    let m = write_model(&d);
    let input = d.join("x.txt");
    std::fs::write(&input, NON_FINITE_INPUT).unwrap();
    let mut outputs = Vec::new();
    for k in ["dense", "sparse", "auto"] {
        let (code, out, err) = cli(&["run", s(&m), s(&input), "--kernels", k, "--scores"]);
        assert_eq!(code, Some(0), "{k}: {err}");
        // Before: for sample 2, dense printed "predicted 2" (0 * inf made every hidden
        // unit NaN, relu turned each into 0: all-zero scores, the last class), sparse
        // "predicted 1" with sample 0's scores, as if input 0 were not there.
        for i in 1..4 {
            assert!(
                out.contains(&format!("sample {i}: no prediction (NaN in the scores)")),
                "{k}: {out}"
            );
            assert!(
                err.contains(&format!("warning: {}: sample {i} holds", s(&input))),
                "{k}: {err}"
            );
        }
        for i in [0, 4] {
            assert!(
                out.contains(&format!("sample {i}: predicted")),
                "{k}: {out}"
            );
            assert!(!err.contains(&format!("sample {i} holds")), "{k}: {err}");
        }
        assert!(err.contains("sample 2 holds inf at index 0 of its 8 values"));
        outputs.push(out);
    }
    // The finite samples' scores are printed to f32's shortest round-trip digits, so this
    // holds only while dense and sparse sums round alike on this tiny model; it is what
    // the issue asked for (identical output), and the non-finite samples are exact.
    assert_eq!(outputs[0], outputs[1], "dense vs sparse");
    assert_eq!(outputs[0], outputs[2], "dense vs auto");
}

#[test]
fn reject_non_finite_is_an_error_naming_the_first_such_sample() {
    let d = dir("reject");
    let m = write_model(&d);
    let input = d.join("x.txt");
    std::fs::write(&input, NON_FINITE_INPUT).unwrap();
    let (code, out, _) = cli(&["run", s(&m), s(&input), "--reject-non-finite"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "nothing run: {out}");
    fails_with(
        &["run", s(&m), s(&input), "--reject-non-finite"],
        &[
            s(&input),
            "sample 1 holds NaN at index 2 of its 8 values",
            "--reject-non-finite",
        ],
    );
    // Finite samples only (--limit 1): accepted.
    let (code, out, err) = cli(&[
        "run",
        s(&m),
        s(&input),
        "--reject-non-finite",
        "--limit",
        "1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("sample 0: predicted"), "{out}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn a_flipped_byte_in_the_length_field_is_a_corrupt_header_not_a_truncation() {
    let d = dir("flip");
    let bytes = model();
    for at in 8..12 {
        let mut b = bytes.clone();
        b[at] ^= 0xff;
        let f = d.join(format!("flip{at}.tthr"));
        std::fs::write(&f, &b).unwrap();
        let err = fails_with(
            &["inspect", s(&f)],
            &[
                s(&f),
                "corrupt model header",
                &format!("complete model of {} bytes", bytes.len()),
                "not truncated",
            ],
        );
        assert!(!err.contains("truncated model"), "{err}");
    }
    // A file really cut short is still "truncated".
    let f = d.join("cut.tthr");
    std::fs::write(&f, &bytes[..bytes.len() - 40]).unwrap();
    fails_with(&["inspect", s(&f)], &["truncated model"]);
}

#[test]
fn a_wrong_length_input_file_is_named() {
    let d = dir("length");
    let m = write_model(&d);
    let input = d.join("seven.txt");
    std::fs::write(&input, "1 2 3 4 5 6 7").unwrap();
    fails_with(
        &["run", s(&m), s(&input)],
        &[
            &format!("{}: 7 values", s(&input)),
            "not a multiple of the model's 8 per sample",
        ],
    );
    let empty = d.join("empty.f32");
    std::fs::write(&empty, []).unwrap();
    fails_with(
        &["run", s(&m), s(&empty)],
        &[&format!("{}: 0 values", s(&empty))],
    );
}

#[test]
fn limit_zero_names_the_option() {
    let d = dir("limit");
    let m = write_model(&d);
    let input = d.join("x.txt");
    std::fs::write(&input, "1 2 3 4 5 6 7 8").unwrap();
    let err = fails_with(
        &["run", s(&m), s(&input), "--limit", "0"],
        &["--limit must be at least 1"],
    );
    assert!(!err.contains("batch"), "{err}");
}

#[test]
fn an_empty_model_file_is_called_empty() {
    let d = dir("empty-model");
    let f = d.join("model");
    std::fs::write(&f, []).unwrap();
    let input = d.join("x.txt");
    std::fs::write(&input, "1").unwrap();
    fails_with(
        &["run", s(&f), s(&input)],
        &[&format!("{} is not a tether model (empty file)", s(&f))],
    );
}

/// A flipped bit or byte anywhere in the 64-byte header is reported as what it is (a bad
/// magic, an unknown version, a corrupt header, a checksum that does not match), never as
/// a truncated file: the file is whole.
#[test]
fn a_flipped_byte_anywhere_in_the_header_is_never_a_truncation() {
    let d = dir("flip-header");
    let bytes = model();
    let f = d.join("flipped.tthr");
    for at in 0..64 {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[at] ^= flip;
            std::fs::write(&f, &b).unwrap();
            let err = fails_with(&["inspect", s(&f)], &[s(&f), "is not a valid tether model"]);
            assert!(
                !err.contains("truncated model"),
                "byte {at} ^ {flip:#x}: {err}"
            );
            let want = match at {
                0..4 => "bad magic",
                4..6 => "unsupported model format version",
                // Outside the checksum: said to be a damaged header.
                6..8 => "corrupt model header: its header length field",
                8..12 => "corrupt model header: its file length field",
                _ => "model checksum mismatch",
            };
            assert!(err.contains(want), "byte {at} ^ {flip:#x}: {err}");
        }
    }
}

/// The same values as a `.f32` file: NaN and infinities read from binary input are caught
/// as from text.
#[test]
fn non_finite_values_in_a_binary_input_are_warned_about_and_refused_on_request() {
    let d = dir("f32");
    let m = write_model(&d);
    let input = d.join("x.f32");
    let mut values = [0.25f32; 16];
    values[8 + 5] = f32::NEG_INFINITY;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let (code, out, err) = cli(&["run", s(&m), s(&input)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sample 0: predicted"), "{out}");
    assert!(
        out.contains("sample 1: no prediction (NaN in the scores)"),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "warning: {}: sample 1 holds -inf at index 5 of its 8 values",
            s(&input)
        )),
        "{err}"
    );
    assert!(!err.contains("sample 0 holds"), "{err}");
    let (code, out, _) = cli(&["run", s(&m), s(&input), "--reject-non-finite"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out}");
}

/// `u8` IDX images of `n` images of 2 x 4 pixels (the test model's 8 inputs).
fn idx_images(n: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for dim in [n as u32, 2, 4] {
        b.extend_from_slice(&dim.to_be_bytes());
    }
    b.extend((0..n * 8).map(|i| (i * 37 % 256) as u8));
    b
}

/// `u8` IDX labels.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

#[test]
fn a_normalisation_that_makes_every_pixel_non_finite_is_refused() {
    let d = dir("normalize");
    let m = write_model(&d);
    let images = d.join("images.idx");
    std::fs::write(&images, idx_images(3)).unwrap();
    // Before: a std of infinity or a NaN mean ran, every sample warned about as if the
    // images held NaN.
    for [mean, std] in [["0.5", "0"], ["0.5", "inf"], ["NaN", "1"], ["0.5", "-1"]] {
        let err = fails_with(
            &["run", s(&m), "--idx", s(&images), "--normalize", mean, std],
            &["--normalize: the mean must be a finite number and std a positive one"],
        );
        assert!(!err.contains("warning"), "{err}");
    }
    // Two numbers, separated by a space: the comma form is one value, refused by clap (2)
    // (before, the parser split it, then counted one value anyway).
    fails_with_code(
        &["run", s(&m), "--idx", s(&images), "--normalize", "0.5,0.25"],
        2,
        &["2 values required for '--normalize <MEAN> <STD>' but 1 was provided"],
    );
    let (code, out, err) = cli(&[
        "run",
        s(&m),
        "--idx",
        s(&images),
        "--normalize",
        "0.5",
        "0.25",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sample 2: predicted"), "{out}");
}

/// Mistakes the CLI already reported well, kept that way.
#[test]
fn files_and_options_that_do_not_fit_are_named() {
    let d = dir("named");
    let m = write_model(&d);
    let input = d.join("x.txt");
    std::fs::write(&input, "1 2 3 4 5 6 7 8").unwrap();
    // A missing model, a missing input: the path and the OS's reason.
    let missing = d.join("missing.tthr");
    fails_with(
        &["run", s(&missing), s(&input)],
        &[&format!("reading {}", s(&missing))],
    );
    let missing = d.join("missing.txt");
    fails_with(
        &["run", s(&m), s(&missing)],
        &[&format!("reading {}", s(&missing))],
    );
    // A file that is not a model, shorter than a header: not a tether model (before:
    // "truncated model: needs 64 bytes"); a model's first bytes are truncated.
    let junk = d.join("junk.tthr");
    std::fs::write(&junk, b"this is not a tether model, it is text").unwrap();
    let err = fails_with(
        &["inspect", s(&junk)],
        &[
            &format!("{} is not a valid tether model", s(&junk)),
            "not a tether model (bad magic",
        ],
    );
    assert!(!err.contains("truncated"), "{err}");
    std::fs::write(&junk, &model()[..40]).unwrap();
    fails_with(
        &["inspect", s(&junk)],
        &["truncated model: needs 64 bytes, has 40"],
    );
    // A token that is not a number; a binary file that is not whole f32s.
    let text = d.join("words.txt");
    std::fs::write(&text, "1 2 three 4").unwrap();
    fails_with(
        &["run", s(&m), s(&text)],
        &[&format!("{}: \"three\" is not a number", s(&text))],
    );
    let odd = d.join("odd.f32");
    std::fs::write(&odd, [0u8; 7]).unwrap();
    fails_with(
        &["run", s(&m), s(&odd)],
        &[&format!(
            "{}: 7 bytes is not a whole number of f32",
            s(&odd)
        )],
    );
    // Labels that do not match the images; a label file given as images.
    let images = d.join("images.idx");
    std::fs::write(&images, idx_images(3)).unwrap();
    let labels = d.join("labels.idx");
    std::fs::write(&labels, idx_labels(&[1, 2])).unwrap();
    fails_with(
        &["run", s(&m), "--idx", s(&images), "--labels", s(&labels)],
        &["3 images but 2 labels"],
    );
    fails_with(
        &["run", s(&m), "--idx", s(&labels)],
        &[s(&labels), "IDX magic 0x801, expected 0x803"],
    );
    // Mesh options for a classifier; a zero trial count.
    fails_with(
        &["run", s(&m), s(&input), "--drop-isolated"],
        &["are for mesh models"],
    );
    fails_with(
        &["bench", s(&m), "--trials", "0"],
        &["--trials must be at least 1"],
    );
    // An unknown flag is clap's error (2), naming it.
    fails_with_code(
        &["run", s(&m), s(&input), "--kernel", "dense"],
        2,
        &["--kernel"],
    );
}

/// ONNX import and export (the `onnx` feature).
#[cfg(feature = "onnx")]
mod onnx {
    use super::*;

    use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
    use onnx_protobuf::type_proto::{self, Tensor as TypeTensor};
    use onnx_protobuf::{
        GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
        TypeProto, ValueInfoProto,
    };

    #[test]
    fn importing_an_empty_file_says_it_is_not_onnx() {
        let d = dir("import-empty");
        let out = d.join("out.tthr");
        // With the .onnx extension and without: import reads ONNX either way.
        for name in ["empty.onnx", "empty"] {
            let f = d.join(name);
            std::fs::write(&f, []).unwrap();
            let err = fails_with(
                &["import", s(&f), "-o", s(&out)],
                &[&format!("{} is not an ONNX model (empty file)", s(&f))],
            );
            assert!(!err.contains("tether model"), "{err}");
            assert!(!out.exists());
        }
        // A tether model given to import: said so.
        let m = write_model(&d);
        fails_with(
            &["import", s(&m), "-o", s(&out)],
            &["is not an ONNX model: it is a tether model (.tthr) already"],
        );
    }

    #[test]
    fn import_to_a_directory_fails_and_leaves_no_partial_file() {
        let d = dir("import-dir");
        let m = write_model(&d);
        let onnx = d.join("m.onnx");
        let (code, _, err) = cli(&["export", s(&m), "-o", s(&onnx)]);
        assert_eq!(code, Some(0), "{err}");
        let target = d.join("outdir");
        std::fs::create_dir_all(&target).unwrap();
        fails_with(
            &["import", s(&onnx), "-o", s(&target)],
            &[&format!("{} is a directory", s(&target))],
        );
        let partial = d.join("outdir.partial");
        assert!(!partial.exists(), "{} left behind", partial.display());
        // And the same import to a file works.
        let file = d.join("back.tthr");
        let (code, _, err) = cli(&["import", s(&onnx), "-o", s(&file)]);
        assert_eq!(code, Some(0), "{err}");
        assert!(file.exists() && !d.join("back.tthr.partial").exists());
        // Export to a directory likewise.
        fails_with(
            &["export", s(&m), "-o", s(&target)],
            &[&format!("{} is a directory", s(&target))],
        );
        assert_eq!(
            listing(&d),
            ["back.tthr", "m.onnx", "m.tthr", "outdir"],
            "nothing else left behind"
        );
        assert!(listing(&target).is_empty());
        // An output folder that does not exist: named, nothing written.
        let nowhere = d.join("no/such/dir/out.tthr");
        fails_with(&["import", s(&onnx), "-o", s(&nowhere)], &[s(&nowhere)]);
        assert!(!d.join("no").exists());
    }

    /// `x [N, d] -> Relu -> y`.
    fn relu_of_width(d: i64) -> Vec<u8> {
        let info = |name: &str| {
            let mut shape = TensorShapeProto::new();
            for v in [
                dimension::Value::DimParam("N".into()),
                dimension::Value::DimValue(d),
            ] {
                let mut dim = Dimension::new();
                dim.value = Some(v);
                shape.dim.push(dim);
            }
            let mut tt = TypeTensor::new();
            tt.elem_type = 1;
            tt.shape = Some(shape).into();
            let mut t = TypeProto::new();
            t.value = Some(type_proto::Value::TensorType(tt));
            let mut v = ValueInfoProto::new();
            v.name = name.into();
            v.type_ = Some(t).into();
            v
        };
        let mut g = GraphProto::new();
        g.input.push(info("x"));
        g.output.push(info("y"));
        let mut n = NodeProto::new();
        n.op_type = "Relu".into();
        n.input = vec!["x".into()];
        n.output = vec!["y".into()];
        g.node.push(n);
        let mut m = ModelProto::new();
        m.ir_version = 8;
        let mut o = OperatorSetIdProto::new();
        o.version = 17;
        m.opset_import.push(o);
        m.graph = Some(g).into();
        m.write_to_bytes().unwrap()
    }

    #[test]
    fn an_input_dimension_beyond_32_bits_is_too_large_not_a_shape_mismatch() {
        let d = dir("big-dim");
        let out = d.join("out.tthr");
        // 2^40 read back as 0 ("shapes do not chain"); 2^32 + 5 as 5, a model of the wrong
        // input size that imported without a word.
        for dim in [1i64 << 40, (1i64 << 32) + 5] {
            let f = d.join(format!("big{dim}.onnx"));
            std::fs::write(&f, relu_of_width(dim)).unwrap();
            for cmd in ["import", "inspect"] {
                let args: Vec<&str> = if cmd == "import" {
                    vec![cmd, s(&f), "-o", s(&out)]
                } else {
                    vec![cmd, s(&f)]
                };
                let err = fails_with(
                    &args,
                    &[
                        s(&f),
                        &format!("input \"x\" has a dimension of {dim}, too large"),
                    ],
                );
                assert!(!err.contains("shapes do not chain"), "{err}");
            }
            assert!(!out.exists());
        }
        // A wide input that fits imports.
        let f = d.join("ok.onnx");
        std::fs::write(&f, relu_of_width(1 << 20)).unwrap();
        let (code, out, err) = cli(&["inspect", s(&f)]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("input [1048576]"), "{out}");
    }
}
