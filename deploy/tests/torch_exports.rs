//! Real PyTorch exports (tests/fixtures/torch, made by its `make_fixtures.py`): each model
//! exported by the default dynamo exporter (weights in an external `.onnx.data` file,
//! static shapes) and by the TorchScript exporter at opset 13 with a symbolic batch axis
//! (shape arithmetic in the graph). Each imports and matches onnxruntime's output. The
//! encoder-decoder (`tiny_unet`: ConvTranspose2d, nearest Upsample, bilinear interpolate
//! by size and by scale) is exported by dynamo at opset 18, with static shapes and
//! (`tiny_unet_dynamo18dyn`) with a dynamic batch, whose Resize sizes come from the
//! input's Shape.

#![cfg(feature = "onnx")]

mod common;

use std::path::{Path, PathBuf};

use tether_deploy::onnx::{import_bytes, import_file};
use tether_deploy::{AlignedBytes, Model};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

fn f32s(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

struct Case {
    model: String,
    input: String,
    input_shape: Vec<usize>,
}

fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("manifest.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Case {
                model: f[0].into(),
                input: f[1].into(),
                input_shape: f[2].split('x').map(|d| d.parse().unwrap()).collect(),
            }
        })
        .collect()
}

#[test]
fn every_pytorch_export_imports_and_matches_onnxruntime() {
    let cases = manifest();
    assert_eq!(
        cases.len(),
        13,
        "six models, two exporters each, and tiny_unet's dynamic-batch dynamo export"
    );
    for c in &cases {
        let path = dir().join(format!("{}.onnx", c.model));
        let model = import_file(&path).unwrap_or_else(|e| panic!("{}: {e}", c.model));
        let x = f32s(&dir().join(format!("{}.in.f32", c.input)));
        let want = f32s(&dir().join(format!("{}.ort.f32", c.model)));
        let aligned = AlignedBytes::from_slice(&model);
        let parsed = Model::parse(&aligned).unwrap();
        // A symbolic batch axis makes each row a sample; static shapes make the whole
        // tensor one sample.
        let per_sample: usize = parsed.shapes[parsed.inputs[0]].numel();
        let batch = x.len() / per_sample;
        assert_eq!(batch * per_sample, x.len(), "{}", c.model);
        if c.model.ends_with("legacy13") || c.model.ends_with("dyn") {
            assert_eq!(batch, c.input_shape[0], "{}: batch axis", c.model);
        }
        let y = common::run(&model, &x, batch);
        assert_eq!(y.len(), want.len(), "{}", c.model);
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{} [{i}]: tether {a} vs onnxruntime {b}",
                c.model
            );
        }
    }
}

#[test]
fn an_external_data_model_from_bytes_says_how_to_import_it() {
    let bytes = std::fs::read(dir().join("mlp_norm_dynamo.onnx")).unwrap();
    let e = import_bytes(&bytes).unwrap_err().to_string();
    assert!(e.contains("external file") && e.contains("import"), "{e}");
}

#[test]
fn a_missing_external_data_file_is_named() {
    let tmp = std::env::temp_dir().join(format!("tether-torch-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let path = tmp.join("mlp_norm_dynamo.onnx");
    std::fs::copy(dir().join("mlp_norm_dynamo.onnx"), &path).unwrap();
    let e = import_file(&path).unwrap_err().to_string();
    assert!(e.contains("mlp_norm_dynamo.onnx.data"), "{e}");
    // A truncated data file: the tensors beyond its end are refused, not read short.
    let data = std::fs::read(dir().join("mlp_norm_dynamo.onnx.data")).unwrap();
    std::fs::write(
        tmp.join("mlp_norm_dynamo.onnx.data"),
        &data[..data.len() / 2],
    )
    .unwrap();
    let e = import_file(&path).unwrap_err().to_string();
    assert!(e.contains("lies outside"), "{e}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A static-shape export (the dynamo default, batch fixed at 2) keeps its shapes through
/// tether and back out: the re-exported graph's input is `[2, 16]`, not `[N, 2, 16]`,
/// while the symbolic-batch export keeps its `N`.
#[test]
fn export_keeps_static_shapes_and_the_symbolic_batch() {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as D;
    use tether_deploy::onnx::{ExportOptions, export};
    for (file, want) in [
        (
            "mlp_norm_dynamo.onnx",
            vec![D::DimValue(2), D::DimValue(16)],
        ),
        (
            "mlp_norm_legacy13.onnx",
            vec![D::DimParam("N".into()), D::DimValue(16)],
        ),
    ] {
        let bytes = import_file(&dir().join(file)).unwrap();
        let aligned = AlignedBytes::from_slice(&bytes);
        let model = Model::parse(&aligned).unwrap();
        assert_eq!(model.static_shapes, file.contains("dynamo"), "{file}");
        let m = export(&model, &ExportOptions::default()).unwrap();
        let t = match m.graph.input[0].type_.value.as_ref().unwrap() {
            onnx_protobuf::type_proto::Value::TensorType(t) => t.clone(),
            _ => unreachable!(),
        };
        let dims: Vec<D> = t
            .shape
            .dim
            .iter()
            .map(|d| d.value.clone().unwrap())
            .collect();
        assert_eq!(dims, want, "{file}");
    }
}

/// PyTorch's default export fixes the batch at the example's size; imported with the
/// leading axis as the batch axis (as training needs), every dynamo fixture runs its two
/// samples as a batch and still matches onnxruntime.
#[test]
fn a_fixed_leading_axis_imports_as_the_batch_axis_when_asked() {
    use tether_deploy::onnx::{BatchAxis, ImportOptions, import_file_with};
    let options = ImportOptions {
        batch_axis: BatchAxis::Leading,
    };
    for c in manifest().iter().filter(|c| c.model.ends_with("dynamo")) {
        let model = import_file_with(&dir().join(format!("{}.onnx", c.model)), &options)
            .unwrap_or_else(|e| panic!("{}: {e}", c.model));
        let aligned = AlignedBytes::from_slice(&model);
        let parsed = Model::parse(&aligned).unwrap();
        assert_eq!(
            parsed.input_shape().as_slice(),
            &c.input_shape[1..],
            "{}",
            c.model
        );
        assert!(!parsed.static_shapes, "{}", c.model);
        let x = f32s(&dir().join(format!("{}.in.f32", c.input)));
        let want = f32s(&dir().join(format!("{}.ort.f32", c.model)));
        let y = common::run(&model, &x, c.input_shape[0]);
        for (a, b) in y.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{}: {a} vs {b}",
                c.model
            );
        }
    }
}

/// The encoder-decoder (Resize, ConvTranspose, Concat) goes back out to ONNX and in again
/// with the same outputs, for both exporters' graphs.
#[test]
fn resize_and_transposed_convolution_export_and_import_back() {
    use tether_deploy::onnx::{ExportOptions, export, import};
    for file in ["tiny_unet_dynamo.onnx", "tiny_unet_legacy13.onnx"] {
        let bytes = import_file(&dir().join(file)).unwrap();
        let aligned = AlignedBytes::from_slice(&bytes);
        let model = Model::parse(&aligned).unwrap();
        let m = export(&model, &ExportOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let ops: Vec<&str> = m.graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(
            ops.contains(&"Resize") && ops.contains(&"ConvTranspose"),
            "{ops:?}"
        );
        let again = import(&m, &Default::default()).unwrap();
        let x = f32s(&dir().join("tiny_unet.in.f32"));
        let per = model.input_shape().numel();
        let (a, b) = (
            common::run(&bytes, &x, x.len() / per),
            common::run(&again, &x, x.len() / per),
        );
        assert_eq!(a, b, "{file}");
    }
}
