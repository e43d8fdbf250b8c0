//! ONNX export checked by an independent runtime: tether models exported to ONNX load in
//! tract and compute what tether-deploy computes (within 1e-5), and import back to
//! models that compute bit for bit what the originals do.

use std::path::Path;

use tether_deploy::format::{ConvGeom, PoolGeom, Unary};
use tether_deploy::onnx::{ExportOptions, export_bytes, import_bytes};
use tether_deploy::{AlignedBytes, Model, ModelBuilder, OpSpec};

#[path = "../../deploy/tests/common/mod.rs"]
mod common;
#[path = "common/tract.rs"]
mod tract_run;

use common::{lcg, pruned, run as tether};
use tract_run::tract;

/// A pruned convolutional network using every exported geometry: asymmetric padding,
/// strides, dilation, groups, ceil-mode and padded average pooling, a residual add, a
/// SIREN sine, sigmoid, and a softmax.
fn conv_net() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[2, 13, 11]);
    let c1 = b.csr(&[4, 2, 3, 3], &pruned(72, 1, 0.3));
    let c1b = b.dense(&[4], &lcg(4, 2));
    let c2 = b.dense(&[4, 2, 2, 2], &pruned(32, 3, 0.5));
    let l1 = b.csr(&[10, 112], &pruned(1120, 4, 0.1));
    let l1b = b.dense(&[10], &lcg(10, 5));
    let l2 = b.dense_f16(&[10, 10], &lcg(100, 6));
    let x = b.op(
        OpSpec::Conv {
            weight: c1,
            bias: Some(c1b),
            geom: ConvGeom {
                stride: [1, 2],
                pads: [1, 0, 2, 1],
                dilation: [1, 1],
                group: 1,
            },
        },
        &[b.input()],
    );
    let x = b.op(OpSpec::Relu, &[x]);
    let x = b.op(
        OpSpec::MaxPool(PoolGeom {
            ceil: true,
            ..PoolGeom::simple(2, 2)
        }),
        &[x],
    );
    let x = b.op(
        OpSpec::Conv {
            weight: c2,
            bias: None,
            geom: ConvGeom {
                stride: [1, 1],
                pads: [1, 1, 0, 0],
                dilation: [2, 1],
                group: 2,
            },
        },
        &[x],
    );
    let x = b.op(OpSpec::Unary(Unary::Sigmoid), &[x]);
    let x = b.op(
        OpSpec::AvgPool(PoolGeom {
            pads: [1, 1, 1, 1],
            count_pad: true,
            ..PoolGeom::simple(2, 1)
        }),
        &[x],
    );
    let x = b.op(OpSpec::Flatten, &[x]);
    let h = b.op(
        OpSpec::Linear {
            weight: l1,
            bias: Some(l1b),
        },
        &[x],
    );
    let h = b.op(OpSpec::Sine { w0: 3.0 }, &[h]);
    let y = b.op(
        OpSpec::Linear {
            weight: l2,
            bias: None,
        },
        &[h],
    );
    let y = b.op(OpSpec::Add, &[y, h]);
    let y = b.op(OpSpec::Softmax, &[y]);
    b.finish(y).expect("valid model")
}

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
    let model = std::fs::read(asset.join("lenet300-mnist-0.1.tthr")).unwrap();
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
