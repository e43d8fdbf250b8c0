//! Round trips and hostile bytes for the whole file.

use alloc::vec;
use alloc::vec::Vec;

use super::file::QTensor;
use super::*;

fn lcg(s: &mut u32) -> u32 {
    *s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    *s >> 8
}

/// A random model of `arch` for a `width x height` image: weights of a few bits, latents
/// mostly small with a zero level, upsampling pre-filters within +-0.15 (drawn last, so
/// the rest is what the same seed gave before version 3).
fn random_file(width: usize, height: usize, arch: Arch, seed: u32) -> CoolChic {
    let mut s = seed;
    let tensors = |mlp: Mlp, s: &mut u32| -> Vec<QTensor> {
        mlp.layers
            .iter()
            .flat_map(|l| [l.weight.len(), l.bias.len()])
            .map(|n| {
                let values: Vec<f32> = (0..n)
                    .map(|_| (lcg(s) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                QTensor::quantise(&values, 6)
            })
            .collect()
    };
    let arm = tensors(arch.arm(), &mut s);
    let synthesis = tensors(arch.synthesis(), &mut s);
    let latents = (0..arch.levels)
        .map(|l| {
            let (r, c) = Arch::level_size(width, height, l);
            if l == 1 {
                return vec![0; r * c];
            }
            (0..r * c)
                .map(|_| match lcg(&mut s) % 10 {
                    0..=5 => 0,
                    6..=8 => (lcg(&mut s) % 5) as i32 - 2,
                    _ => (lcg(&mut s) % 127) as i32 - 63,
                })
                .collect()
        })
        .collect();
    let filters: Vec<f32> = (0..arch.upsampling_len())
        .map(|_| (lcg(&mut s) % 301) as f32 / 1000.0 - 0.15)
        .collect();
    CoolChic {
        header: Header {
            width,
            height,
            arch,
        },
        arm,
        synthesis,
        latents,
        upsampling: QTensor::quantise(&filters, 7),
    }
}

/// `c` without its upsampling filters (what versions 1 and 2 hold).
fn fixed_upsampling(mut c: CoolChic) -> CoolChic {
    c.upsampling = CoolChic::no_upsampling(&c.header.arch);
    c
}

fn arch() -> Arch {
    Arch {
        levels: 4,
        context: 8,
        arm_hidden: vec![6],
        synth_hidden: vec![8, 5],
    }
}

#[test]
fn files_round_trip_exactly_and_render_deterministically() {
    for (w, h, seed) in [(13, 7, 1), (1, 1, 2), (33, 20, 3)] {
        let c = random_file(w, h, arch(), seed);
        let bytes = encode(&c).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back, c);
        let rgb = synthesis::render(&back).unwrap();
        assert_eq!(rgb.len(), w * h * 3);
        assert_eq!(synthesis::decode_image(&bytes).unwrap(), (w, h, rgb));
    }
}

#[test]
fn upsampling_is_bilinear_on_a_half_pixel_grid() {
    // 2 -> 4 samples: positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    let t: Vec<_> = (0..4).map(|i| synthesis::taps(i, 2, 1)).collect();
    assert_eq!(t, [(0, 1, 0.0), (0, 1, 0.25), (0, 1, 0.75), (1, 1, 0.0)]);
    // Level 0 is the identity.
    assert!((0..5).all(|i| synthesis::taps(i, 5, 0) == (i, (i + 1).min(4), 0.0)));
}

#[test]
fn every_truncation_and_every_flipped_byte_is_an_error() {
    let c = random_file(12, 9, arch(), 7);
    let bytes = encode(&c).unwrap();
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "truncated to {cut}");
    }
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            assert!(decode(&bad).is_err(), "byte {i} bit {bit:#x}");
        }
    }
    assert_eq!(decode(&[]), Err(CodecError::Truncated));
    assert_eq!(decode(&[0; 64]), Err(CodecError::BadMagic));
    let mut v4 = bytes.clone();
    v4[2] = 4;
    assert_eq!(decode(&v4), Err(CodecError::UnsupportedVersion(4)));
}

#[test]
fn a_valid_checksum_over_a_damaged_stream_is_still_an_error() {
    // Corrupt the stream and fix the CRC: the rANS end-state check or a table catches it.
    let c = random_file(16, 16, arch(), 9);
    let bytes = encode(&c).unwrap();
    let body = bytes.len() - 4;
    let mut caught = 0;
    let mut tried = 0;
    for i in (12..body).step_by(3) {
        let mut bad = bytes[..body].to_vec();
        bad[i] ^= 0x10;
        let crc = crc32fast::hash(&bad);
        bad.extend_from_slice(&crc.to_le_bytes());
        tried += 1;
        match decode(&bad) {
            Err(_) => caught += 1,
            // Decoding must never panic; a different valid file is possible in principle.
            Ok(other) => assert_ne!(other, c),
        }
    }
    assert!(caught * 10 >= tried * 9, "{caught} of {tried}");
}

#[test]
fn weights_quantise_to_power_of_two_steps_within_range() {
    let q = QTensor::quantise(&[0.5, -0.26, 7.0], 8);
    // 7.0 * 2^8 = 1792 > 1023: the step coarsens to 2^-7 (7.0 * 128 = 896).
    assert_eq!(q.exponent, 7);
    assert_eq!(q.codes, [64, -33, 896]);
    assert_eq!(q.values(), [0.5, -33.0 / 128.0, 7.0]);
}

#[test]
fn the_encoder_refuses_what_the_format_cannot_hold() {
    let mut c = random_file(8, 8, arch(), 4);
    c.latents[0][3] = LATENT_MAX + 1;
    assert!(matches!(encode(&c), Err(CodecError::Model(_))));
    let mut c = random_file(8, 8, arch(), 4);
    c.latents.pop();
    assert!(encode(&c).is_err());
    let mut c = random_file(8, 8, arch(), 4);
    c.arm[0].codes.pop();
    assert!(encode(&c).is_err());
}

fn wide() -> Arch {
    Arch {
        levels: 5,
        context: 12,
        arm_hidden: vec![24, 24],
        synth_hidden: vec![32, 32],
    }
}

/// Length and CRC-32 of the file of `version` and CRC-32 of the image, for two models.
fn fingerprints(version: u8) -> Vec<(usize, u32, u32)> {
    let mut got = Vec::new();
    for (w, h, a, seed) in [(33, 20, arch(), 3), (70, 45, wide(), 11)] {
        let mut c = random_file(w, h, a, seed);
        if version < file::UPSAMPLING_VERSION {
            c = fixed_upsampling(c);
        }
        let bytes = file::encode_version(&c, version).unwrap();
        assert_eq!(decode(&bytes).unwrap(), c, "version {version}");
        let rgb = synthesis::render(&c).unwrap();
        let body = &bytes[..bytes.len() - 4];
        got.push((bytes.len(), crc32fast::hash(body), crc32fast::hash(&rgb)));
    }
    got
}

/// CRC-32 of a version-1 file and of its image, written and rendered by the code before
/// the lanes and the search from the mode (commit 2c66094): the bits of the format and of
/// the decoded image must never change with an optimisation.
#[test]
fn the_bitstream_and_the_pixels_are_those_of_the_scalar_reference() {
    assert_eq!(
        fingerprints(1),
        [
            (854, 328_025_425, 2_153_211_933),
            (7569, 228_690_002, 71_027_839)
        ]
    );
}

/// The same for version 2 (its tables by `exp_poly`), with the values written when it was
/// introduced; the images are version 1's (the version changes only the entropy coder's
/// tables). The firmware test checks the same decoder's bits on a Cortex-M4.
#[test]
fn the_version_2_bitstream_is_that_of_its_scalar_reference() {
    let got = fingerprints(2);
    assert_eq!(got, V2_FINGERPRINTS);
    assert_eq!(
        [got[0].2, got[1].2],
        [2_153_211_933, 71_027_839],
        "the pixels do not depend on the version"
    );
}

const V2_FINGERPRINTS: [(usize, u32, u32); 2] = [
    (854, 1_420_812_135, 2_153_211_933),
    (7569, 2_950_603_299, 71_027_839),
];

#[test]
fn an_unknown_version_is_refused_by_name() {
    let c = random_file(8, 8, arch(), 4);
    let mut bytes = encode(&c).unwrap();
    assert_eq!(bytes[2], file::VERSION);
    bytes[2] = 4;
    assert_eq!(decode(&bytes), Err(CodecError::UnsupportedVersion(4)));
    assert_eq!(
        file::encode_version(&c, 0),
        Err(CodecError::UnsupportedVersion(0))
    );
}

/// Version 3: the same ARM, synthesis and latents as the version-2 files, with learned
/// upsampling filters; the values written when it was introduced. The firmware test checks
/// the same decoder's bits on a Cortex-M4.
#[test]
fn the_version_3_bitstream_and_pixels_are_fixed() {
    let got = fingerprints(3);
    assert_eq!(got, V3_FINGERPRINTS);
    assert_ne!(
        [got[0].2, got[1].2],
        [V2_FINGERPRINTS[0].2, V2_FINGERPRINTS[1].2],
        "the filters change the pixels"
    );
}

const V3_FINGERPRINTS: [(usize, u32, u32); 2] = [
    (860, 1_729_397_076, 1_132_129_749),
    (7576, 3_773_360_124, 1_279_032_642),
];

#[test]
fn older_versions_refuse_learned_filters_and_read_as_unfiltered() {
    let c = random_file(20, 12, arch(), 5);
    assert!(c.upsampling.codes.iter().any(|&v| v != 0));
    assert!(matches!(
        file::encode_version(&c, 2),
        Err(CodecError::Model(_))
    ));
    let plain = fixed_upsampling(c.clone());
    let bytes = file::encode_version(&plain, 2).unwrap();
    assert_eq!(decode(&bytes).unwrap(), plain);
    // A zero filter is the bilinear upsampling, bit for bit, in every version.
    let v3 = encode(&plain).unwrap();
    assert_eq!(
        synthesis::decode_image(&v3).unwrap(),
        synthesis::decode_image(&bytes).unwrap()
    );
    assert_ne!(
        synthesis::render(&c).unwrap(),
        synthesis::render(&plain).unwrap()
    );
}

/// The pre-filter against its definition in `f64` (module docs of [`synthesis`]), on a
/// grid whose edges clamp (3 rows: every tap of the middle row reaches an edge).
#[test]
fn the_prefilter_is_its_definition() {
    let (rows, cols) = (3, 7);
    let mut s = 17;
    let x: Vec<f32> = (0..rows * cols)
        .map(|_| (lcg(&mut s) % 127) as f32 - 63.0)
        .collect();
    let k = [0.125f32, -0.0625];
    let got = synthesis::prefilter(&x, rows, cols, k);
    let c = 1.0 - 2.0 * f64::from(k[0]) - 2.0 * f64::from(k[1]);
    let at = |v: &dyn Fn(i64) -> f64, i: i64, n: i64| -> f64 {
        let t = |j: i64| v(j.clamp(0, n - 1));
        c * t(i) + f64::from(k[0]) * (t(i - 1) + t(i + 1)) + f64::from(k[1]) * (t(i - 2) + t(i + 2))
    };
    for y in 0..rows as i64 {
        for xx in 0..cols as i64 {
            let row_filtered = |r: i64| {
                at(
                    &|j| f64::from(x[(r * cols as i64 + j) as usize]),
                    xx,
                    cols as i64,
                )
            };
            let want = at(&row_filtered, y, rows as i64);
            let g = f64::from(got[(y * cols as i64 + xx) as usize]);
            assert!((g - want).abs() < 1e-4, "({y}, {xx}): {g} vs {want}");
        }
    }
    // The zero filter is the identity.
    assert_eq!(synthesis::prefilter(&x, rows, cols, [0.0, 0.0]), x);
}
