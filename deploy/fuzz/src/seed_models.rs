//! The seed models of the `load` fuzz target's corpus: small valid models covering every
//! op and tensor kind. Shared (via `#[path]`) by the `seeds` generator
//! (`deploy/fuzz/src/bin/seeds.rs`) and the regression test `deploy/tests/fuzz_corpus.rs`.

use tether_deploy::{ModelBuilder, OpSpec};

/// A seed model and its per-sample shapes.
pub struct Seed {
    /// File name in `deploy/fuzz/corpus/load/`.
    pub name: &'static str,
    /// The model bytes.
    pub bytes: Vec<u8>,
    /// Per-sample input shape.
    pub input: &'static [usize],
    /// Per-sample output shape.
    pub output: &'static [usize],
}

/// Deterministic weights in [-0.5, 0.5), every `zero_every`-th one an exact zero (0: none).
fn weights(n: usize, seed: u32, zero_every: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if zero_every != 0 && !i.is_multiple_of(zero_every) {
                0.0
            } else {
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            }
        })
        .collect()
}

/// 4 -> 3 (CSR) + bias -> relu -> 2 (f16) -> softmax.
fn mlp() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[4]);
    let w1 = b.csr(
        &[3, 4],
        &[1.0, 0.0, 0.0, -1.0, 0.0, 2.0, 0.0, 0.0, 0.5, 0.0, 0.5, 0.0],
    );
    let b1 = b.dense(&[3], &[0.1, 0.2, 0.3]);
    let w2 = b.dense_f16(&[2, 3], &[1.0, -1.0, 0.5, 0.25, 0.0, 2.0]);
    let h = b.op(
        OpSpec::Linear {
            weight: w1,
            bias: Some(b1),
        },
        &[b.input()],
    );
    let h = b.op(OpSpec::Relu, &[h]);
    let h = b.op(
        OpSpec::Linear {
            weight: w2,
            bias: None,
        },
        &[h],
    );
    let y = b.op(OpSpec::Softmax, &[h]);
    b.finish(y).expect("valid mlp")
}

/// [1, 8, 8] -> conv 3x3 pad 1 (2 channels, bias) -> relu -> max pool 2 -> avg pool 2
/// -> flatten -> linear 8 -> 3 -> softmax.
fn convnet() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[1, 8, 8]);
    let cw = b.dense(&[2, 1, 3, 3], &weights(18, 1, 0));
    let cb = b.dense(&[2], &[0.05, -0.05]);
    let lw = b.dense(&[3, 8], &weights(24, 2, 0));
    let lb = b.dense(&[3], &[0.0, 0.1, -0.1]);
    let h = b.op(
        OpSpec::Conv2d {
            weight: cw,
            bias: Some(cb),
            stride: 1,
            padding: 1,
        },
        &[b.input()],
    );
    let h = b.op(OpSpec::Relu, &[h]);
    let h = b.op(
        OpSpec::MaxPool2d {
            kernel: 2,
            stride: 2,
        },
        &[h],
    );
    let h = b.op(
        OpSpec::AvgPool2d {
            kernel: 2,
            stride: 2,
        },
        &[h],
    );
    let h = b.op(OpSpec::Flatten, &[h]);
    let h = b.op(
        OpSpec::Linear {
            weight: lw,
            bias: Some(lb),
        },
        &[h],
    );
    let y = b.op(OpSpec::Softmax, &[h]);
    b.finish(y).expect("valid convnet")
}

/// A SIREN-style residual block: y = W2 (sin(30 (W1 x + b1)) + x).
fn sine_residual() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[4]);
    let w1 = b.dense(&[4, 4], &weights(16, 3, 0));
    let b1 = b.dense(&[4], &[0.1, 0.0, -0.1, 0.2]);
    let w2 = b.dense(&[2, 4], &weights(8, 4, 0));
    let h = b.op(
        OpSpec::Linear {
            weight: w1,
            bias: Some(b1),
        },
        &[b.input()],
    );
    let s = b.op(OpSpec::Sine { w0: 30.0 }, &[h]);
    let r = b.op(OpSpec::Add, &[s, b.input()]);
    let y = b.op(
        OpSpec::Linear {
            weight: w2,
            bias: None,
        },
        &[r],
    );
    b.finish(y).expect("valid sine residual")
}

/// [2, 6, 6] -> sparse conv 3x3 stride 2 pad 1 (CSR, 3 channels) -> pointwise conv
/// (f16, 2 channels) -> relu -> flatten.
fn sparse_conv() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[2, 6, 6]);
    let cw = b.csr(&[3, 2, 3, 3], &weights(54, 5, 4));
    let pw = b.dense_f16(&[2, 3, 1, 1], &[0.5, -0.25, 1.0, 0.75, 0.0, -1.0]);
    let h = b.op(
        OpSpec::Conv2d {
            weight: cw,
            bias: None,
            stride: 2,
            padding: 1,
        },
        &[b.input()],
    );
    let h = b.op(
        OpSpec::Conv2d {
            weight: pw,
            bias: None,
            stride: 1,
            padding: 0,
        },
        &[h],
    );
    let h = b.op(OpSpec::Relu, &[h]);
    let y = b.op(OpSpec::Flatten, &[h]);
    b.finish(y).expect("valid sparse conv")
}

/// No ops: the output is the input.
fn identity() -> Vec<u8> {
    let b = ModelBuilder::new(&[3]);
    let x = b.input();
    b.finish(x).expect("valid identity")
}

/// Every seed model.
pub fn seeds() -> Vec<Seed> {
    vec![
        Seed {
            name: "seed-mlp-csr-f16.tthr",
            bytes: mlp(),
            input: &[4],
            output: &[2],
        },
        Seed {
            name: "seed-convnet-pool.tthr",
            bytes: convnet(),
            input: &[1, 8, 8],
            output: &[3],
        },
        Seed {
            name: "seed-sine-add.tthr",
            bytes: sine_residual(),
            input: &[4],
            output: &[2],
        },
        Seed {
            name: "seed-sparse-conv.tthr",
            bytes: sparse_conv(),
            input: &[2, 6, 6],
            output: &[18],
        },
        Seed {
            name: "seed-identity.tthr",
            bytes: identity(),
            input: &[3],
            output: &[3],
        },
    ]
}
