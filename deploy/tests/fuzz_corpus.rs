//! The `load` fuzz target's corpus (`deploy/fuzz/corpus/load/`, minimised with
//! `cargo fuzz cmin`) as a regression test on stable: every file goes through what the
//! fuzz target does (`deploy/fuzz/fuzz_targets/load.rs`), as is and with its length and
//! CRC-32 rewritten to match; none may panic, and a model that loads and plans must run.
//! The seed models (`deploy/fuzz/src/seed_models.rs`) must be in the corpus and run.

#[path = "../fuzz/src/seed_models.rs"]
mod seed_models;

use std::path::{Path, PathBuf};

use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/load")
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit: the checksum the
/// format uses (`crc32fast::hash`, which this crate's integration tests cannot name).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Rewrites the length (bytes 8..12) and CRC-32 (12..16) fields to match the bytes.
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len() as u32;
    bytes[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// How far one input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Rejected,
    Parsed,
    Ran,
}

/// What the fuzz target does with one input: parse, plan (batch 2, 16 MiB), run on zeros
/// at batch 1 and 2.
fn exercise(bytes: &[u8]) -> Reached {
    let aligned = AlignedBytes::from_slice(bytes);
    let Ok(model) = Model::parse(&aligned) else {
        return Reached::Rejected;
    };
    let per_sample = model.input_shape().numel();
    let out_per_sample = model.output_shape().numel();
    let options = PlanOptions {
        batch: 2,
        max_bytes: 16 << 20,
        ..Default::default()
    };
    let Ok(mut plan) = Plan::new(model, &options) else {
        return Reached::Parsed;
    };
    for batch in [1, 2] {
        let input = vec![0.0f32; per_sample * batch];
        let out = plan
            .run(&input)
            .expect("a planned model runs on an input of its shape");
        assert_eq!(out.len(), out_per_sample * batch, "output length");
    }
    Reached::Ran
}

/// Both passes of the fuzz target; the furthest either got.
fn both_passes(bytes: &[u8]) -> Reached {
    let mut reached = exercise(bytes);
    if bytes.len() >= 16 {
        let mut sealed = bytes.to_vec();
        reseal(&mut sealed);
        reached = reached.max(exercise(&sealed));
    }
    reached
}

#[test]
fn bitwise_crc32_is_the_formats_checksum() {
    // The standard check value, which crc32fast::hash(b"123456789") also returns.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    // And it agrees with the CRC crc32fast wrote into every seed model.
    for seed in seed_models::seeds() {
        let stored = u32::from_le_bytes(seed.bytes[12..16].try_into().unwrap());
        assert_eq!(crc32(&seed.bytes[16..]), stored, "{}", seed.name);
        let mut resealed = seed.bytes.clone();
        reseal(&mut resealed);
        assert_eq!(resealed, seed.bytes, "{}", seed.name);
    }
}

#[test]
fn the_seed_models_are_in_the_corpus_and_run() {
    let dir = corpus_dir();
    for seed in seed_models::seeds() {
        let path = dir.join(seed.name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate: cd deploy/fuzz && cargo run --bin seeds)",
                path.display()
            )
        });
        // Both the committed file and the builder's current output load and run.
        for (what, bytes) in [("file", &bytes), ("builder", &seed.bytes)] {
            let aligned = AlignedBytes::from_slice(bytes);
            let model = Model::parse(&aligned)
                .unwrap_or_else(|e| panic!("{} ({what}) does not load: {e}", seed.name));
            assert_eq!(model.input_shape().as_slice(), seed.input, "{}", seed.name);
            assert_eq!(
                model.output_shape().as_slice(),
                seed.output,
                "{}",
                seed.name
            );
            let per_sample = model.input_shape().numel();
            let out_per_sample = model.output_shape().numel();
            let options = PlanOptions {
                batch: 2,
                ..Default::default()
            };
            let mut plan = Plan::new(model, &options)
                .unwrap_or_else(|e| panic!("{} ({what}) does not plan: {e}", seed.name));
            let input: Vec<f32> = (0..2 * per_sample)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let y = plan.run(&input).unwrap().to_vec();
            assert_eq!(y.len(), 2 * out_per_sample, "{}", seed.name);
            assert!(y.iter().all(|v| v.is_finite()), "{}: {y:?}", seed.name);
            // Batch 1 gives the first sample's row of batch 2.
            let y1 = plan.run(&input[..per_sample]).unwrap();
            for (a, b) in y1.iter().zip(&y[..out_per_sample]) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{}", seed.name);
            }
            assert_eq!(both_passes(bytes), Reached::Ran, "{} ({what})", seed.name);
        }
    }
}

#[test]
fn every_corpus_file_loads_or_is_refused_without_panicking() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("deploy/fuzz/corpus/load exists")
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let seeds = seed_models::seeds().len();
    assert!(
        files.len() >= seeds,
        "{} corpus files, fewer than the {seeds} seeds",
        files.len()
    );
    let mut counts = [0usize; 3];
    for path in &files {
        let bytes = std::fs::read(path).expect("readable corpus file");
        counts[both_passes(&bytes) as usize] += 1;
    }
    // The corpus reaches past the parser: at least the seeds run.
    assert!(counts[Reached::Ran as usize] >= seeds, "{counts:?}");
    println!(
        "{} files: {} rejected, {} parsed but not planned, {} ran",
        files.len(),
        counts[0],
        counts[1],
        counts[2]
    );
}
