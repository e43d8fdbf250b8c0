//! Fuzzes tether-deploy's model loader: `Model::parse` on arbitrary bytes, then (for what
//! loads) `Plan::new` and `Plan::run` at batch 1 and 2. Any panic is a bug: the loader
//! promises hostile bytes are an `Error`, and a model that loads and plans must run.
//!
//! Each input is tried twice: as is (the header checks: magic, version, length, CRC-32),
//! and with its length and CRC-32 fields rewritten to match, so that mutations reach the
//! structural checks past the checksum.
//!
//! `cd deploy/fuzz && cargo +nightly fuzz run load`

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

fn exercise(bytes: &[u8]) {
    let aligned = AlignedBytes::from_slice(bytes);
    let Ok(model) = Model::parse(&aligned) else {
        return;
    };
    // Computed before the model moves into the plan.
    let per_sample = model.input_shape().numel();
    let out_per_sample = model.output_shape().numel();
    let options = PlanOptions {
        batch: 2,
        max_bytes: 16 << 20,
        ..Default::default()
    };
    // The arena holds the input at batch 2, so within max_bytes the inputs below are small.
    let Ok(mut plan) = Plan::new(model, &options) else {
        return;
    };
    for batch in [1, 2] {
        let input = vec![0.0f32; per_sample * batch];
        let out = plan
            .run(&input)
            .expect("a planned model runs on an input of its shape");
        assert_eq!(out.len(), out_per_sample * batch, "output length");
    }
}

/// Rewrites the length (bytes 8..12) and CRC-32 (12..16) fields to match the bytes.
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len() as u32;
    bytes[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if data.len() >= 16 {
        let mut sealed = data.to_vec();
        reseal(&mut sealed);
        exercise(&sealed);
    }
});
