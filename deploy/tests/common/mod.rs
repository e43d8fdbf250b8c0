//! Helpers shared by the ONNX tests here and in `tests/tests/onnx_tract.rs` (included
//! there by path): deterministic weights, pruned weights, and running model bytes.

#![allow(dead_code)]

use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

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
