//! Helpers shared by the ONNX tests here and in `tests/tests/onnx_tract.rs` (included
//! there by path): deterministic weights, pruned weights, and running model bytes.

#![allow(dead_code)]

use tether_deploy::format::{ConvGeom, PoolGeom, Unary};
use tether_deploy::{AlignedBytes, Model, ModelBuilder, OpSpec, Plan, PlanOptions};

/// Deterministic pseudo-random values in [-1, 1).
pub fn lcg(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1 << 23) as f32 - 1.0
        })
        .collect()
}

/// About `density` of the values kept (the rest exactly zero), as a pruned layer.
pub fn pruned(n: usize, seed: u32, density: f32) -> Vec<f32> {
    lcg(n, seed)
        .into_iter()
        .zip(lcg(n, seed ^ 0x5555))
        .map(|(v, k)| if (k + 1.0) / 2.0 < density { v } else { 0.0 })
        .collect()
}

/// A plan of model bytes for batches of up to `batch`.
pub fn plan(model: Model<'_>, batch: usize) -> Plan<'_> {
    Plan::new(
        model,
        &PlanOptions {
            batch,
            ..Default::default()
        },
    )
    .expect("plans")
}

/// Runs model bytes on `input` (`batch` samples).
pub fn run(bytes: &[u8], input: &[f32], batch: usize) -> Vec<f32> {
    let aligned = AlignedBytes::from_slice(bytes);
    let model = Model::parse(&aligned).expect("a valid model");
    plan(model, batch).run(input).expect("runs").to_vec()
}

/// A pruned convolutional network on `[2, 13, 11]` using every exported geometry: asymmetric padding,
/// strides, dilation, groups, ceil-mode and padded average pooling, a residual add, a
/// SIREN sine, sigmoid, and a softmax.
pub fn conv_net() -> Vec<u8> {
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
