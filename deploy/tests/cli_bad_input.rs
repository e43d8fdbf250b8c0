//! `tether-deploy` on bad input (issue 30): each mistake is an error that says what is
//! wrong and names the file or option at fault, with exit status 1; inputs holding NaN or
//! an infinity give the same output with every `--kernels` choice, a warning naming the
//! sample, and an error under `--reject-non-finite`.

#![cfg(feature = "std")]

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_deploy::{ModelBuilder, OpSpec};

/// Exit status, stdout and stderr of the CLI on `args`.
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-deploy"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the CLI fails with status 1 and an error holding every one of `want`.
fn fails_with(args: &[&str], want: &[&str]) -> String {
    let (code, _, err) = cli(args);
    assert_eq!(code, Some(1), "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: {w:?} not in {err:?}");
    }
    err
}

/// A fresh directory per test (tests run in parallel).
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tether-deploy-cli-bad-input-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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
