//! `tether-deploy run` on models of several inputs and outputs (issue 24): inputs named
//! `--input NAME=FILE` (the ONNX graph's names, or `input0`, `input1`, ...), `.npy`, `.f32`
//! or text; every output printed, or written whole to `--outputs DIR` as `NAME.npy`; a
//! missing, unknown or mismatched input a clear error.

#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};
use std::process::Command;

use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Tensor as TypeTensor};
use onnx_protobuf::{
    GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-deploy"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs");
    let r = (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!r.2.contains("panicked"), "{args:?} panicked: {}", r.2);
    r
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-run-tensors-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn info(name: &str, n: i64) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for v in [
        dimension::Value::DimParam("N".into()),
        dimension::Value::DimValue(n),
    ] {
        let mut d = Dimension::new();
        d.value = Some(v);
        shape.dim.push(d);
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
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n
}

/// `a`, `b` `[N, 3]` -> `sum = a + b`, `big = Where(a > b, a, b)`.
fn two_by_two() -> Vec<u8> {
    let mut g = GraphProto::new();
    g.input.push(info("a", 3));
    g.input.push(info("b", 3));
    g.node.push(node("Add", &["a", "b"], "sum"));
    g.node.push(node("Greater", &["a", "b"], "gt"));
    g.node.push(node("Where", &["gt", "a", "b"], "big"));
    g.output.push(info("sum", 3));
    g.output.push(info("big", 3));
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = 17;
    m.opset_import.push(o);
    m.graph = Some(g).into();
    m.write_to_bytes().unwrap()
}

/// A `<f4` `.npy` of shape `[n, 3]`, written as numpy would (header padded to 64 bytes).
fn npy(values: &[f32]) -> Vec<u8> {
    let mut h = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 3), }}",
        values.len() / 3
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    for v in values {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// The f32 values of a `<f4` `.npy` file and its header's shape text.
fn read_npy(path: &Path) -> (String, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    let len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + len]).into_owned();
    let v = b[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (header, v)
}

#[test]
fn named_inputs_run_and_every_output_is_written_by_name() {
    let d = dir("named");
    let model = d.join("m.onnx");
    std::fs::write(&model, two_by_two()).unwrap();
    let a = [1.0f32, 5.0, -2.0, 0.5, 0.0, 9.0];
    let b = [2.0f32, 4.0, -2.0, 1.5, -1.0, 10.0];
    std::fs::write(d.join("a.npy"), npy(&a)).unwrap();
    let text: Vec<String> = b.iter().map(|v| v.to_string()).collect();
    std::fs::write(d.join("b.txt"), text.join(" ")).unwrap();
    let out = d.join("out");
    let (code, stdout, err) = cli(&[
        "run",
        s(&model),
        "--input",
        &format!("b={}", s(&d.join("b.txt"))),
        "--input",
        &format!("a={}", s(&d.join("a.npy"))),
        "--outputs",
        s(&out),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stdout.contains("\"sum\" [2, 3]") && stdout.contains("\"big\""),
        "{stdout}"
    );
    let (h, sum) = read_npy(&out.join("sum.npy"));
    assert!(h.contains("'shape': (2, 3)"), "{h}");
    let (_, big) = read_npy(&out.join("big.npy"));
    for i in 0..6 {
        assert_eq!(sum[i], a[i] + b[i]);
        assert_eq!(big[i], a[i].max(b[i]));
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Positional names work too, and without --outputs every output is printed.
    let (code, stdout, err) = cli(&[
        "run",
        s(&model),
        "--input",
        &format!("input0={}", s(&d.join("a.npy"))),
        "--input",
        &format!("input1={}", s(&d.join("b.txt"))),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("sample 1: [2.0, -1.0, 19.0]"), "{stdout}");
    assert!(stdout.contains("sample 1: [1.5, 0.0, 10.0]"), "{stdout}");
    assert!(stdout.contains("sample 0: [2.0, 5.0, -2.0]"), "{stdout}");
    // inspect and bench feed every input too.
    let (code, stdout, err) = cli(&["inspect", s(&model)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stdout.contains("inputs [3], [3]; outputs [3], [3]"),
        "{stdout}"
    );
    let (code, stdout, err) = cli(&["bench", s(&model), "--batch", "2", "--trials", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("dense / auto"), "{stdout}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_missing_unknown_or_mismatched_input_is_a_clear_error() {
    let d = dir("errors");
    let model = d.join("m.onnx");
    std::fs::write(&model, two_by_two()).unwrap();
    std::fs::write(d.join("a.npy"), npy(&[1.0; 6])).unwrap();
    std::fs::write(d.join("b3.npy"), npy(&[1.0; 9])).unwrap();
    let a_path = d.join("a.npy");
    let a = format!("a={}", s(&a_path));
    let cases: [(Vec<&str>, &[&str]); 4] = [
        (vec!["--input", &a], &["input b", "--input b=FILE"]),
        (
            vec!["--input", &a, "--input", "c=x.npy"],
            &["no input \"c\"", "a, b"],
        ),
        (vec![s(&a_path)], &["2 inputs", "--input NAME=FILE"]),
        (vec!["--input", "a"], &["not NAME=FILE"]),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run", s(&model)];
        args.extend(extra);
        let (code, _, err) = cli(&args);
        assert!(matches!(code, Some(1 | 2)), "{args:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
    }
    let b = format!("b={}", s(&d.join("b3.npy")));
    let (code, _, err) = cli(&["run", s(&model), "--input", &a, "--input", &b]);
    assert_eq!(code, Some(1));
    assert!(err.contains("3 samples") && err.contains("2"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
