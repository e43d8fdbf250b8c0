//! ONNX export checked by an independent runtime: tether models exported to ONNX load in
//! tract and compute what tether-deploy computes (within 1e-5), and import back to
//! models that compute bit for bit what the originals do.

use std::path::Path;

use tether_deploy::onnx::{ExportOptions, export_bytes, import_bytes};
use tether_deploy::{AlignedBytes, Model};

#[path = "../../deploy/tests/common/mod.rs"]
mod common;
#[path = "common/tract.rs"]
mod tract_run;

use common::{conv_net, lcg, run as tether};
use tract_run::tract;

fn check(name: &str, original: &[u8], input: &[f32], batch: usize) {
    let aligned = AlignedBytes::from_slice(original);
    let model = Model::parse(&aligned).unwrap();
    let mut shape = vec![batch];
    shape.extend_from_slice(model.input_shape().as_slice());
    let expected = tether(original, input, batch);
    let onnx = export_bytes(&model, &ExportOptions::default()).unwrap();
    let y = tract(&onnx, &shape, input);
    assert_eq!(y.len(), expected.len(), "{name}");
    let worst = y
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "{name}: tract differs by {worst:e}");
    // Imported back: the same model, bit for bit the same outputs.
    let back = import_bytes(&onnx).unwrap();
    assert_eq!(tether(&back, input, batch), expected, "{name}: round trip");
    let back_aligned = AlignedBytes::from_slice(&back);
    let m2 = Model::parse(&back_aligned).unwrap();
    assert_eq!(m2.nodes.len(), model.nodes.len(), "{name}");
    for (a, b) in model.nodes.iter().zip(&m2.nodes) {
        assert_eq!(a.op.name(), b.op.name(), "{name}");
    }
    for (t, u) in model.tensors.iter().zip(&m2.tensors) {
        assert_eq!(t.dims, u.dims, "{name}");
    }
}

#[test]
fn a_pruned_mnist_lenet300_exports_to_onnx_that_tract_runs_identically() {
    let asset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/assets");
    let model = std::fs::read(asset.join("lenet300-mnist-64k.tthr")).unwrap();
    // Real MNIST digits (the firmware's test images), normalised as in training.
    let digits = std::fs::read(asset.join("digits.f32")).unwrap();
    let x: Vec<f32> = digits
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let n = (x.len() / 784).min(32);
    assert!(n >= 8, "{n} digits");
    check("lenet300", &model, &x[..784], 1);
    check("lenet300", &model, &x[..n * 784], n);
}

#[test]
fn a_pruned_conv_net_exports_to_onnx_that_tract_runs_identically() {
    let model = conv_net();
    for batch in [1, 5] {
        check("conv", &model, &lcg(batch * 2 * 13 * 11, 7), batch);
    }
}
