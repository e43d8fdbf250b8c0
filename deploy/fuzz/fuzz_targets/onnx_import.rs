//! Fuzzes the ONNX importer: `onnx::import_bytes` on arbitrary bytes, then (for what
//! imports) `Model::parse`, `Plan::new` and `Plan::run`. Any panic is a bug: hostile ONNX
//! is an `OnnxError`, and an import always yields a model that loads and runs.
//!
//! `cd deploy/fuzz && cargo +nightly fuzz run onnx_import`

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = tether_deploy::onnx::import_bytes(data) else {
        return;
    };
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::parse(&aligned).expect("an imported model loads");
    let inputs: Vec<usize> = model
        .inputs
        .iter()
        .map(|&v| model.shapes[v].numel())
        .collect();
    let options = PlanOptions {
        max_bytes: 16 << 20,
        ..Default::default()
    };
    let Ok(mut plan) = Plan::new(model, &options) else {
        return;
    };
    let feeds: Vec<Vec<f32>> = inputs.iter().map(|&n| vec![0.5; n]).collect();
    let refs: Vec<&[f32]> = feeds.iter().map(|v| v.as_slice()).collect();
    plan.run_inputs(&refs)
        .expect("a planned model runs on inputs of its shapes");
});
