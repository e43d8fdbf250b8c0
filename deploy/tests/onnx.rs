//! ONNX import and export: round trips, bad input, and (when the data is fetched) the
//! ONNX backend node tests.

#![cfg(feature = "onnx")]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{conv_net, lcg, run};
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Tensor as TypeTensor};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto,
};
use tether_deploy::onnx::conformance::{Outcome, per_op, run_suite};
use tether_deploy::onnx::{
    ExportOptions, OnnxError, encode_f32, export_bytes, folded_only_ops, import, import_bytes,
    supported_ops,
};
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

#[test]
fn export_then_import_gives_the_same_outputs_dense_and_sparse() {
    let original = conv_net();
    let aligned = AlignedBytes::from_slice(&original);
    let model = Model::parse(&aligned).unwrap();
    let input = lcg(3 * 2 * 13 * 11, 9);
    let expected = run(&original, &input, 3);
    for sparse in [false, true] {
        let onnx = export_bytes(
            &model,
            &ExportOptions {
                sparse_initializers: sparse,
                ..Default::default()
            },
        )
        .unwrap();
        let back = import_bytes(&onnx).unwrap();
        let y = run(&back, &input, 3);
        // Same ops in the same order on the same f32 weights (the f16 weight widens
        // exactly): identical bits.
        assert_eq!(y, expected, "sparse initializers: {sparse}");
        let back_aligned = AlignedBytes::from_slice(&back);
        let m2 = Model::parse(&back_aligned).unwrap();
        assert_eq!(m2.shapes.last(), model.shapes.last());
        // Pruned weights come back sparse (CSR storage chosen by measured density).
        let csr = |m: &Model| {
            m.tensors
                .iter()
                .filter(|t| matches!(t.data, tether_deploy::TensorData::Csr(_)))
                .count()
        };
        assert!(csr(&m2) >= 2);
    }
}

fn dim(v: dimension::Value) -> Dimension {
    let mut d = Dimension::new();
    d.value = Some(v);
    d
}

fn tensor_info(name: &str, dims: &[i64], batch: bool) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    if batch {
        shape.dim.push(dim(dimension::Value::DimParam("N".into())));
    }
    for &d in dims {
        shape.dim.push(dim(dimension::Value::DimValue(d)));
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

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut n = NodeProto::new();
    n.name = format!("my_{}", op.to_lowercase());
    n.op_type = op.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n
}

/// x [N, 4] -> Gemm(W [3, 4], transB) -> Relu -> y [N, 3].
fn gemm_relu() -> ModelProto {
    let mut g = GraphProto::new();
    g.input.push(tensor_info("x", &[4], true));
    g.output.push(tensor_info("y", &[3], true));
    g.initializer.push(encode_f32("W", &[3, 4], &lcg(12, 1)));
    g.initializer.push(encode_f32("b", &[3], &lcg(3, 2)));
    let mut gemm = node("Gemm", &["x", "W", "b"], &["h"]);
    let mut a = AttributeProto::new();
    a.name = "transB".into();
    a.type_ = attribute_proto::AttributeType::INT.into();
    a.i = 1;
    gemm.attribute.push(a);
    g.node.push(gemm);
    g.node.push(node("Relu", &["h"], &["y"]));
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = 17;
    m.opset_import.push(o);
    m.graph = Some(g).into();
    m
}

fn err(m: &ModelProto) -> OnnxError {
    import(m, &HashMap::new()).unwrap_err()
}

#[test]
fn a_hand_written_model_imports_with_a_batch_axis_and_computes_gemm() {
    let bytes = import(&gemm_relu(), &HashMap::new()).unwrap();
    let x = lcg(8, 3);
    let y = run(&bytes, &x, 2);
    let (w, b) = (lcg(12, 1), lcg(3, 2));
    for s in 0..2 {
        for o in 0..3 {
            let h: f32 = b[o] + (0..4).map(|k| w[o * 4 + k] * x[s * 4 + k]).sum::<f32>();
            assert!((y[s * 3 + o] - h.max(0.0)).abs() < 1e-6);
        }
    }
}

#[test]
fn a_constant_node_feeds_an_op() {
    // y = Relu(x) * c, c from a Constant node (value_floats).
    let mut m = gemm_relu();
    let g = m.graph.as_mut().unwrap();
    g.node[1].output[0] = "r".into();
    let mut c = node("Constant", &[], &["c"]);
    let mut a = AttributeProto::new();
    a.name = "value_floats".into();
    a.type_ = attribute_proto::AttributeType::FLOATS.into();
    a.floats = vec![2.0, -1.0, 0.5];
    c.attribute.push(a);
    g.node.push(c);
    g.node.push(node("Mul", &["r", "c"], &["y"]));
    let with = import(&m, &HashMap::new()).unwrap();
    let without = import(&gemm_relu(), &HashMap::new()).unwrap();
    let x = lcg(8, 3);
    let (y, r) = (run(&with, &x, 2), run(&without, &x, 2));
    for (i, (&y, &r)) in y.iter().zip(&r).enumerate() {
        assert_eq!(y, r * [2.0, -1.0, 0.5][i % 3]);
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    // Not ONNX at all; a truncated model; a tether model given as ONNX.
    let e = import_bytes(b"\x89PNG\r\n\x1a\n not a model").unwrap_err();
    assert!(e.to_string().contains("not an ONNX model"), "{e}");
    let full = gemm_relu().write_to_bytes().unwrap();
    for cut in [full.len() / 2, full.len() - 3] {
        assert!(import_bytes(&full[..cut]).is_err(), "cut at {cut}");
    }
    assert!(import_bytes(&conv_net()).is_err());

    // A missing initializer.
    let mut m = gemm_relu();
    m.graph.as_mut().unwrap().initializer.remove(0);
    let e = err(&m);
    assert!(!e.unsupported && e.to_string().contains("\"W\""), "{e}");

    // A cycle: h = Gemm(x, W, b2), b2 = Relu(h).
    let mut m = gemm_relu();
    let g = m.graph.as_mut().unwrap();
    g.initializer.remove(1);
    g.node[0].input[2] = "b2".into();
    g.node.push(node("Relu", &["h"], &["b2"]));
    let e = err(&m);
    assert!(e.to_string().contains("cycle"), "{e}");

    // A dimension mismatch: W [3, 5] against x [N, 4].
    let mut m = gemm_relu();
    m.graph.as_mut().unwrap().initializer[0] = encode_f32("W", &[3, 5], &lcg(15, 1));
    let e = err(&m);
    assert!(e.to_string().contains("dimension mismatch"), "{e}");
    assert_eq!(e.node.as_deref(), Some("\"my_gemm\""));

    // A declared output shape that the graph does not compute.
    let mut m = gemm_relu();
    m.graph.as_mut().unwrap().output[0] = tensor_info("y", &[7], true);
    assert!(err(&m).to_string().contains("declared shape"));

    // An unsupported op names the node, the op and the opset.
    let mut m = gemm_relu();
    m.graph.as_mut().unwrap().node[1].op_type = "Mish".into();
    let e = err(&m);
    assert!(e.unsupported);
    let text = e.to_string();
    for part in ["my_relu", "Mish", "opset 17"] {
        assert!(text.contains(part), "{text}");
    }
    // An unsupported attribute likewise.
    let mut m = gemm_relu();
    let mut a = AttributeProto::new();
    a.name = "approximate".into();
    m.graph.as_mut().unwrap().node[1].attribute.push(a);
    assert!(err(&m).to_string().contains("attribute \"approximate\""));
}

#[test]
fn every_truncation_and_byte_flip_of_an_onnx_model_is_an_error_or_a_model_that_runs() {
    let full = gemm_relu().write_to_bytes().unwrap();
    let mut variants: Vec<Vec<u8>> = (0..full.len()).map(|n| full[..n].to_vec()).collect();
    for i in 0..full.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = full.clone();
            b[i] ^= bit;
            variants.push(b);
        }
    }
    for v in variants {
        if let Ok(model) = import_bytes(&v) {
            let aligned = AlignedBytes::from_slice(&model);
            let m = Model::parse(&aligned).expect("an import always loads");
            let n = m.input_shape().numel();
            let mut plan = Plan::new(m, &PlanOptions::default()).unwrap();
            plan.run(&vec![0.5; n]).unwrap();
        }
    }
}

/// The ONNX backend node tests (`scripts/fetch-data onnx-node-tests`): a case the
/// importer accepts must compute the reference outputs (no failure, no rejection of a
/// valid case), and every op it claims passes at least one case.
#[test]
fn onnx_backend_node_tests() {
    let root = std::env::var_os("TETHER_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-cache"))
        .join("onnx-node-tests");
    if !root.is_dir() {
        let required = std::env::var("TETHER_REQUIRE_DATA").unwrap_or_default();
        assert!(
            !required
                .split(',')
                .any(|d| matches!(d, "onnx-node-tests" | "1" | "all")),
            "onnx-node-tests is required but absent: scripts/fetch-data onnx-node-tests"
        );
        eprintln!(
            "skipped: {} absent (scripts/fetch-data onnx-node-tests)",
            root.display()
        );
        return;
    }
    let results = run_suite(&root).unwrap();
    let bad: Vec<_> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_) | Outcome::Rejected(_)))
        .map(|r| format!("{}: {:?}", r.name, r.outcome))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let table = per_op(&results);
    // Ops folded on constants only (Constant, shape arithmetic) have node tests with
    // runtime inputs, which the runtime cannot compute; they are checked by their own
    // tests (the shape-subgraph and folding tests below).
    // LayerNormalization's node tests all name its optional Mean and InvStdDev outputs,
    // which the importer refuses; PyTorch's LayerNorm exports are checked against
    // onnxruntime in tests/torch_exports.rs.
    // Equal's node tests compare integers and strings only, which the runtime does not
    // hold; its runtime form is checked by comparisons_not_and_where_run_on_runtime_values.
    for op in supported_ops().filter(|o| {
        !folded_only_ops().any(|f| f == *o) && !["LayerNormalization", "Equal"].contains(o)
    }) {
        let passed = table.get(op).map_or(0, |e| e[1]);
        assert!(passed > 0, "{op} is claimed but passes no node test");
    }
}

/// What the `onnx_import` fuzz target checks of one input: an `OnnxError`, or a model
/// that loads, plans (within 16 MiB, as a hostile model may ask for more) and runs on
/// inputs of its shapes. True when it ran.
fn imports_and_runs_or_errs(b: &[u8]) -> bool {
    let Ok(bytes) = import_bytes(b) else {
        return false;
    };
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::parse(&aligned).expect("an import always loads");
    let sizes: Vec<usize> = model
        .inputs
        .iter()
        .map(|&v| model.shapes[v].numel())
        .collect();
    let options = PlanOptions {
        max_bytes: 16 << 20,
        ..Default::default()
    };
    let Ok(mut plan) = Plan::new(model, &options) else {
        return false;
    };
    let feeds: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.5; n]).collect();
    let refs: Vec<&[f32]> = feeds.iter().map(|v| v.as_slice()).collect();
    plan.run_inputs(&refs)
        .expect("a planned model runs on inputs of its shapes");
    true
}

/// The `onnx_import` fuzz target's corpus (`deploy/fuzz/corpus/onnx_import/`) on stable:
/// every file (the minimised corpus the fuzzer left, the inputs that once crashed it, the
/// PyTorch exports it was seeded with) is an error or a model that runs; the `seed-*`
/// files import and run, and so is every single-byte flip of them an error or a model that
/// runs. (`torch-residual_cnn-dynamo.onnx` is replayed as it is, not flipped: its 10 KB
/// of flips take 7 s in a debug build.)
#[test]
fn the_onnx_fuzz_corpus_imports_or_errs_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/onnx_import");
    let (mut seeds, mut files) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files += 1;
        if !name.starts_with("seed-") {
            imports_and_runs_or_errs(&bytes);
            continue;
        }
        assert!(
            imports_and_runs_or_errs(&bytes),
            "{name} must import and run"
        );
        seeds += 1;
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            imports_and_runs_or_errs(&b);
        }
    }
    assert!(seeds >= 7 && files > seeds, "{seeds} seeds, {files} files");
}

/// x [N, 4] -> one `op` node reading `inputs` (x, or initializers `c0`, `c1`, ... of
/// shape [4]) and writing `outputs` -> y.
fn one_node(op: &str, inputs: &[&str], outputs: &[&str]) -> ModelProto {
    let mut m = gemm_relu();
    let g = m.graph.as_mut().unwrap();
    g.node.clear();
    g.initializer.clear();
    g.output[0] = tensor_info("y", &[4], true);
    for i in 0..8 {
        g.initializer
            .push(encode_f32(&format!("c{i}"), &[4], &lcg(4, i)));
    }
    g.node.push(node(op, inputs, outputs));
    m
}

#[test]
fn every_op_refuses_too_few_or_too_many_inputs_and_outputs_by_name() {
    for op in supported_ops() {
        // No input at all (Constant takes none: give it one too many instead).
        let none = one_node(op, &[], &["y"]);
        let few = if op == "Constant" {
            one_node(op, &["x"], &["y"])
        } else {
            none
        };
        let e = err(&few);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("my_{}", op.to_lowercase())) && msg.contains(op),
            "{op}: {msg}"
        );
        // Nine inputs: more than any fixed-arity op takes (variadic ops accept them, and
        // must then fail or succeed cleanly).
        let nine = ["x", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
        let _ = import(&one_node(op, &nine, &["y"]), &HashMap::new());
        // Four outputs: more than any op has.
        let e = err(&one_node(op, &["x"], &["y", "o1", "o2", "o3"]));
        assert!(e.to_string().contains("outputs"), "{op}: {e}");
        // An empty required input name is a missing input, not an index out of bounds.
        if op != "Constant" {
            let _ = import(&one_node(op, &[""], &["y"]), &HashMap::new());
        }
    }
    let e = err(&one_node("Relu", &["x", "c0"], &["y"]));
    assert!(
        e.to_string().contains("2 inputs; Relu takes at most 1"),
        "{e}"
    );
    let e = err(&one_node("Conv", &["x"], &["y"]));
    assert!(e.to_string().contains("input 1 is missing"), "{e}");
}

/// `y = x.view(x.size(0), -1)` on x [N, 2, 2], as PyTorch's TorchScript exporter writes
/// it: Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape.
#[test]
fn a_shape_subgraph_on_the_batch_axis_folds_to_a_reshape() {
    let mut g = GraphProto::new();
    g.input.push(tensor_info("x", &[2, 2], true));
    g.output.push(tensor_info("y", &[4], true));
    g.initializer
        .push(tether_deploy::onnx::encode_i64("zero", &[], &[0]));
    g.initializer
        .push(tether_deploy::onnx::encode_i64("axes", &[1], &[0]));
    g.initializer
        .push(tether_deploy::onnx::encode_i64("minus1", &[1], &[-1]));
    g.node.push(node("Shape", &["x"], &["s"]));
    let mut gather = node("Gather", &["s", "zero"], &["n"]);
    let mut a = AttributeProto::new();
    a.name = "axis".into();
    a.type_ = attribute_proto::AttributeType::INT.into();
    gather.attribute.push(a.clone());
    g.node.push(gather);
    g.node.push(node("Unsqueeze", &["n", "axes"], &["n1"]));
    let mut concat = node("Concat", &["n1", "minus1"], &["shape"]);
    concat.attribute.push(a);
    g.node.push(concat);
    g.node.push(node("Reshape", &["x", "shape"], &["y"]));
    let mut m = gemm_relu();
    m.graph = Some(g).into();
    let bytes = import(&m, &HashMap::new()).unwrap();
    let x = lcg(12, 7);
    assert_eq!(run(&bytes, &x, 3), x, "3 samples of [2, 2] flattened");
    // Arithmetic on the symbolic batch size is refused, not computed with a guess.
    let g = m.graph.as_mut().unwrap();
    g.node[2] = node("Add", &["n", "n"], &["n2"]);
    g.node
        .insert(3, node("Unsqueeze", &["n2", "axes"], &["n1"]));
    let e = err(&m);
    assert!(e.to_string().contains("symbolic batch size"), "{e}");
}

/// Comparisons and `Where` fold on constants, NaN comparing false (as numpy and ONNX):
/// `y = x + Where(a == b, 10, Where(a > b, 20, 30))` with `a = [1, 2, NaN, 5]`,
/// `b = [1, 3, NaN, 4]` adds `[10, 30, 30, 20]`.
#[test]
fn comparisons_and_where_fold_with_ieee_nan() {
    let mut m = one_node("Identity", &["x"], &["unused"]);
    let g = m.graph.as_mut().unwrap();
    g.node.clear();
    g.initializer.clear();
    g.initializer
        .push(encode_f32("a", &[4], &[1.0, 2.0, f32::NAN, 5.0]));
    g.initializer
        .push(encode_f32("b", &[4], &[1.0, 3.0, f32::NAN, 4.0]));
    for (name, v) in [("ten", 10.0), ("twenty", 20.0), ("thirty", 30.0)] {
        g.initializer.push(encode_f32(name, &[], &[v]));
    }
    g.node.push(node("Equal", &["a", "b"], &["eq"]));
    g.node.push(node("Greater", &["a", "b"], &["gt"]));
    g.node
        .push(node("Where", &["gt", "twenty", "thirty"], &["inner"]));
    g.node.push(node("Where", &["eq", "ten", "inner"], &["c"]));
    g.node.push(node("Add", &["x", "c"], &["y"]));
    let bytes = import(&m, &HashMap::new()).unwrap();
    let x = lcg(8, 11);
    let y = run(&bytes, &x, 2);
    let c = [10.0, 30.0, 30.0, 20.0];
    for (i, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
        assert_eq!(yv, xv + c[i % 4], "element {i}");
    }
}

/// Comparisons, `Not` and `Where` on runtime values (booleans as 0 and 1), batched:
/// `y = Where(Not(x <= c0), x, Where(x == c1, 100, -x))`, and a Cast to bool of `x`.
#[test]
fn comparisons_not_and_where_run_on_runtime_values() {
    let mut m = one_node("Identity", &["x"], &["unused"]);
    let g = m.graph.as_mut().unwrap();
    g.node.clear();
    g.initializer.push(encode_f32("hundred", &[], &[100.0]));
    g.node.push(node("LessOrEqual", &["x", "c0"], &["le"]));
    g.node.push(node("Not", &["le"], &["gt"]));
    g.node.push(node("Equal", &["x", "c1"], &["eq"]));
    g.node.push(node("Neg", &["x"], &["neg"]));
    g.node
        .push(node("Where", &["eq", "hundred", "neg"], &["inner"]));
    g.node.push(node("Where", &["gt", "x", "inner"], &["y"]));
    let bytes = import(&m, &HashMap::new()).unwrap();
    let (c0, c1) = (lcg(4, 0), lcg(4, 1));
    // Sample 0 equals c1 (the Equal branch), sample 1 is random, sample 2 holds a NaN.
    let mut x = c1.clone();
    x.extend(lcg(4, 9));
    x.extend([f32::NAN, 0.25, -0.25, 0.0]);
    let y = run(&bytes, &x, 3);
    for (i, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
        let (a, b) = (c0[i % 4], c1[i % 4]);
        // NaN <= a is false, so Not gives true and Where passes x (NaN) on.
        let le = xv.partial_cmp(&a).is_some_and(|o| o.is_le());
        let want = if !le {
            xv
        } else if xv == b {
            100.0
        } else {
            -xv
        };
        assert!(
            yv == want || (yv.is_nan() && want.is_nan()),
            "{i}: {yv} vs {want}"
        );
    }
    assert!(y[8].is_nan());
    // Cast to bool: x != 0, NaN true.
    let mut m = one_node("Cast", &["x"], &["y"]);
    let mut a = AttributeProto::new();
    a.name = "to".into();
    a.type_ = attribute_proto::AttributeType::INT.into();
    a.i = 9;
    m.graph.as_mut().unwrap().node[0].attribute.push(a);
    let bytes = import(&m, &HashMap::new()).unwrap();
    let y = run(&bytes, &[0.0, -0.0, f32::NAN, 2.0], 1);
    assert_eq!(y, [0.0, 0.0, 1.0, 1.0]);
}

/// A Resize whose mode or coordinate transformation the runtime lacks is an unsupported
/// error naming the node, the op and the attribute's value; Resize of the batch axis too.
#[test]
fn resize_with_an_unsupported_mode_is_a_clear_error_naming_the_node() {
    let string_attr = |name: &str, v: &str| {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = attribute_proto::AttributeType::STRING.into();
        a.s = v.as_bytes().to_vec();
        a
    };
    let resize = |attrs: Vec<AttributeProto>, scales: &[f32]| {
        let mut m = one_node("Resize", &["x", "", "scales"], &["y"]);
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(encode_f32("scales", &[2], scales));
        g.output[0] = tensor_info("y", &[8], true);
        g.node[0].attribute = attrs;
        m
    };
    // The model itself imports and doubles x's samples (nearest, asymmetric, floor).
    let nearest = vec![
        string_attr("coordinate_transformation_mode", "asymmetric"),
        string_attr("nearest_mode", "floor"),
    ];
    let bytes = import(&resize(nearest, &[1.0, 2.0]), &HashMap::new()).unwrap();
    let y = run(&bytes, &[1.0, 2.0, 3.0, 4.0], 1);
    assert_eq!(y, [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
    for (attrs, says) in [
        (vec![string_attr("mode", "cubic")], "\"cubic\""),
        (
            vec![string_attr(
                "coordinate_transformation_mode",
                "tf_crop_and_resize",
            )],
            "tf_crop_and_resize",
        ),
        (
            vec![string_attr("coordinate_transformation_mode", "sideways")],
            "sideways",
        ),
        (vec![string_attr("nearest_mode", "sometimes")], "sometimes"),
    ] {
        let e = err(&resize(attrs, &[1.0, 2.0]));
        let text = e.to_string();
        for part in ["my_resize", "Resize", says] {
            assert!(text.contains(part), "{text}");
        }
    }
    let e = err(&resize(vec![], &[2.0, 2.0]));
    assert!(e.unsupported && e.to_string().contains("batch axis"), "{e}");
    // Upsample's mode, likewise.
    let mut m = resize(vec![string_attr("mode", "cubic")], &[1.0, 2.0]);
    let g = m.graph.as_mut().unwrap();
    g.node[0] = node("Upsample", &["x", "scales"], &["y"]);
    g.node[0].attribute.push(string_attr("mode", "cubic"));
    let text = err(&m).to_string();
    assert!(
        text.contains("my_upsample") && text.contains("\"cubic\""),
        "{text}"
    );
}

/// ConvTranspose's bad attributes (an unknown auto_pad, output padding not below the
/// stride, a kernel_shape that is not the weight's) are errors naming the node.
#[test]
fn conv_transpose_with_bad_attributes_is_a_clear_error_naming_the_node() {
    let ints = |name: &str, v: &[i64]| {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = attribute_proto::AttributeType::INTS.into();
        a.ints = v.to_vec();
        a
    };
    let model = |attrs: Vec<AttributeProto>| {
        let mut m = one_node("ConvTranspose", &["x", "w"], &["y"]);
        let g = m.graph.as_mut().unwrap();
        g.input[0] = tensor_info("x", &[2, 3, 3], true);
        g.initializer
            .push(encode_f32("w", &[2, 1, 2, 2], &lcg(8, 3)));
        g.output[0] = tensor_info("y", &[1, 4, 4], true);
        g.node[0].attribute = attrs;
        m
    };
    // Valid: 3x3 -> 4x4 (stride 1, 2x2 kernel); the node then computes the definition.
    let bytes = import(&model(vec![]), &HashMap::new()).unwrap();
    let x = lcg(18, 4);
    let w = lcg(8, 3);
    let y = run(&bytes, &x, 1);
    for oy in 0..4 {
        for ox in 0..4 {
            let mut want = 0.0f32;
            for ic in 0..2 {
                for a in 0..2 {
                    for b in 0..2 {
                        let (iy, ix) = (oy as isize - a as isize, ox as isize - b as isize);
                        if (0..3).contains(&iy) && (0..3).contains(&ix) {
                            want +=
                                w[ic * 4 + a * 2 + b] * x[ic * 9 + iy as usize * 3 + ix as usize];
                        }
                    }
                }
            }
            assert!((y[oy * 4 + ox] - want).abs() < 1e-6, "({oy}, {ox})");
        }
    }
    let mut auto = AttributeProto::new();
    auto.name = "auto_pad".into();
    auto.type_ = attribute_proto::AttributeType::STRING.into();
    auto.s = b"SIDEWAYS".to_vec();
    for (attrs, says) in [
        (vec![auto], "SIDEWAYS"),
        (
            vec![ints("output_padding", &[1, 1])],
            "not below the stride",
        ),
        (
            vec![ints("kernel_shape", &[3, 3])],
            "differs from the weight",
        ),
    ] {
        let text = err(&model(attrs)).to_string();
        assert!(
            text.contains("my_convtranspose") && text.contains(says),
            "{text}"
        );
    }
}

/// A graph of two outputs (and two inputs) imports as one model whose outputs
/// `Plan::run_outputs` returns in the graph's order.
#[test]
fn several_graph_outputs_are_model_outputs_in_order() {
    let mut m = one_node("Add", &["x", "x2"], &["sum"]);
    let g = m.graph.as_mut().unwrap();
    g.input.push(tensor_info("x2", &[4], true));
    g.node.push(node("Mul", &["x", "x2"], &["prod"]));
    g.output.clear();
    g.output.push(tensor_info("prod", &[4], true));
    g.output.push(tensor_info("sum", &[4], true));
    let bytes = import(&m, &HashMap::new()).unwrap();
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::parse(&aligned).unwrap();
    assert_eq!(model.outputs.len(), 2);
    let mut plan = Plan::new(
        model,
        &PlanOptions {
            batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let (a, b) = (lcg(8, 1), lcg(8, 2));
    let ys = plan.run_outputs(&[&a, &b]).unwrap();
    assert_eq!(ys.len(), 2);
    for i in 0..8 {
        assert_eq!(ys[0][i], a[i] * b[i]);
        assert_eq!(ys[1][i], a[i] + b[i]);
    }
    // Output 0 is also what run_inputs returns.
    let first = plan.run_inputs(&[&a, &b]).unwrap().to_vec();
    let product: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    assert_eq!(first, product);
    // Exported, both outputs are graph outputs again, in order.
    let m = tether_deploy::onnx::export(plan.model(), &Default::default()).unwrap();
    let names: Vec<&str> = m.graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["output", "output1"]);
    let again = import(&m, &HashMap::new()).unwrap();
    let aligned = AlignedBytes::from_slice(&again);
    assert_eq!(Model::parse(&aligned).unwrap().outputs.len(), 2);
}
