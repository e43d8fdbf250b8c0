//! The `coolchic_decode` fuzz target's corpus (`deploy/fuzz/corpus/coolchic_decode/`) on
//! stable, and a deterministic mutation test of its seeds: every file goes through what
//! the fuzz target does (`deploy/fuzz/src/coolchic_check.rs`), as is and with its CRC-32
//! rewritten to match. None may panic; a seed (a real file of `tether-compress encode`)
//! decodes to its image; every truncation, single-byte change and zero-filled run of a
//! seed is an error as is (CRC-32 detects every burst of up to 32 bits), and an error or
//! an image that round-trips once resealed. A forged header is refused before the decoder
//! allocates for its size.

#[path = "../fuzz/src/coolchic_check.rs"]
mod coolchic_check;

use std::path::{Path, PathBuf};

use coolchic_check::{MAX_PIXELS, Outcome, exercise, reseal};
use tether_deploy::coolchic::{CodecError, decode, decode_with_limit};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/coolchic_decode")
}

/// The corpus's files, sorted, and which are seeds.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("deploy/fuzz/corpus/coolchic_decode exists")
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("readable corpus file"))
        })
        .collect();
    files.sort();
    files
}

/// The mutations of `seed`: every truncation, a flip of every byte (of its lowest bit,
/// its highest, or all, in turn) and a zero-filled run of 4 bytes at every other position
/// (where that changes something). (Three flips of every byte and runs at every position
/// took 2 s in a release build, too long for the debug build CI runs.)
fn mutations(seed: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for cut in 0..seed.len() {
        out.push((format!("cut at {cut}"), seed[..cut].to_vec()));
    }
    for i in 0..seed.len() {
        let x = [0x01u8, 0x80, 0xFF][i % 3];
        let mut b = seed.to_vec();
        b[i] ^= x;
        out.push((format!("byte {i} ^ {x:#04x}"), b));
        let end = (i + 4).min(seed.len());
        if i % 2 == 0 && seed[i..end].iter().any(|&v| v != 0) {
            let mut b = seed.to_vec();
            b[i..end].fill(0);
            out.push((format!("bytes {i}..{end} zeroed"), b));
        }
    }
    out
}

#[test]
fn every_corpus_file_decodes_or_is_refused_without_panicking() {
    let files = corpus();
    let seeds = files.iter().filter(|(n, _)| n.starts_with("seed-")).count();
    assert!(
        seeds >= 3 && files.len() > seeds,
        "{seeds} seeds in {} files",
        files.len()
    );
    let mut decoded = 0;
    for (name, bytes) in &files {
        let outcome = exercise(bytes);
        if name.starts_with("seed-") {
            assert!(
                matches!(outcome, Outcome::Decoded(..)),
                "{name}: {outcome:?}"
            );
        }
        decoded += usize::from(matches!(outcome, Outcome::Decoded(..)));
        let mut sealed = bytes.clone();
        reseal(&mut sealed);
        exercise(&sealed);
    }
    assert!(decoded >= seeds, "{decoded} of {} decode", files.len());
}

#[test]
fn damaged_seeds_are_errors_and_resealed_ones_never_panic() {
    let (mut reached, mut images, mut total) = (0, 0, 0);
    for (name, seed) in corpus().iter().filter(|(n, _)| n.starts_with("seed-")) {
        let Outcome::Decoded(w, h) = exercise(seed) else {
            panic!("{name} must decode");
        };
        for (what, bytes) in mutations(seed) {
            total += 1;
            // As is: the checksum (or an earlier field) refuses it.
            assert!(
                matches!(exercise(&bytes), Outcome::Refused(_)),
                "{name}, {what}: a damaged file decoded"
            );
            // Resealed: past the checksum, an error or an image that round-trips.
            if bytes.len() < 4 {
                continue;
            }
            let mut sealed = bytes;
            reseal(&mut sealed);
            match exercise(&sealed) {
                Outcome::Refused(CodecError::BadChecksum) => {
                    panic!("{name}, {what}: a resealed file failed its checksum")
                }
                Outcome::Refused(CodecError::Corrupt(_))
                | Outcome::Refused(CodecError::Truncated) => reached += 1,
                Outcome::Refused(_) => {}
                Outcome::Decoded(..) => images += 1,
            }
        }
        assert!(w * h <= MAX_PIXELS);
    }
    // The resealed mutations reach the checks past the checksum.
    assert!(
        reached > total / 4,
        "{reached} of {total} refused past the checksum"
    );
    println!("{total} mutations: {reached} refused past the checksum, {images} decoded");
}

/// A header of the largest size the format names, every latent level flagged all-zero (a
/// bit each), and a correct checksum: a file of 20 bytes that must be refused before the
/// decoder allocates for its 2^30 pixels.
#[test]
fn a_forged_size_is_refused_before_anything_is_allocated_for_it() {
    let side = tether_deploy::coolchic::MAX_SIDE;
    let mut file = b"CC\x01".to_vec();
    for v in [side, side] {
        // varint, 7 bits a byte.
        let mut v = v;
        loop {
            let b = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                file.push(b);
                break;
            }
            file.push(b | 0x80);
        }
    }
    // levels, context, no hidden layers in either network.
    file.extend_from_slice(&[8, 4, 0, 0]);
    // A stream of zeros: the decoder must not get this far.
    file.extend_from_slice(&[0x00, 0x80, 0x00, 0x00, 0, 0, 0, 0]);
    file.extend_from_slice(&[0; 4]);
    reseal(&mut file);
    let pixels = side * side;
    assert_eq!(
        decode(&file),
        Err(CodecError::TooLarge {
            pixels,
            limit: tether_deploy::coolchic::MAX_PIXELS
        })
    );
    assert_eq!(
        decode_with_limit(&file, 1000),
        Err(CodecError::TooLarge {
            pixels,
            limit: 1000
        })
    );
    let msg = decode(&file).unwrap_err().to_string();
    assert!(msg.contains("pixels") && msg.contains("limit"), "{msg}");
}
