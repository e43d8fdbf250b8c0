//! Malformed models: each malformation is its own error, and none panics.

use alloc::vec::Vec;

use crate::aligned::AlignedBytes;
use crate::error::Error;
use crate::format::Model;
use crate::format::{HEADER_LEN, TENSOR_ENTRY_LEN};
use crate::plan::{KernelChoice, Plan, PlanOptions};
use crate::write::{ModelBuilder, OpSpec};

/// A small MLP: 4 -> 3 (CSR) -> relu -> 2 (dense) -> softmax.
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
    b.finish(y).expect("valid model")
}

/// Recomputes the length and checksum after a patch, so the deeper checks are reached.
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len() as u32;
    bytes[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn parse(bytes: &[u8]) -> Result<(), Error> {
    Model::parse(&AlignedBytes::from_slice(bytes)).map(|_| ())
}

#[test]
fn a_valid_model_runs_and_matches_a_hand_computation() {
    let bytes = AlignedBytes::from_slice(&mlp());
    let model = Model::parse(&bytes).unwrap();
    let mut plan = Plan::new(
        model,
        &PlanOptions {
            batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let y = plan
        .run(&[1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0])
        .unwrap()
        .to_vec();
    // Sample 1: h = relu([1 - 4 + 0.1, 4 + 0.2, 0.5 + 1.5 + 0.3]) = [0, 4.2, 2.3]
    // logits = [-4.2 + 1.15, 4.6] = [-3.05, 4.6].
    let (a, b) = (-3.05f32, 4.6f32);
    let e = [
        (a - b).exp() / (1.0 + (a - b).exp()),
        1.0 / (1.0 + (a - b).exp()),
    ];
    assert!(
        (y[0] - e[0]).abs() < 1e-6 && (y[1] - e[1]).abs() < 1e-6,
        "{y:?}"
    );
    // Sample 2: h = relu(bias) = [0.1, 0.2, 0.3]; logits = [0.1 - 0.2 + 0.15, 0.025 + 0.6].
    let (a, b) = (0.05f32, 0.625f32);
    assert!((y[2] - 1.0 / (1.0 + (b - a).exp())).abs() < 1e-6, "{y:?}");
}

#[test]
fn truncation_anywhere_is_an_error() {
    let bytes = mlp();
    for cut in [0, 3, HEADER_LEN - 1, HEADER_LEN + 5, bytes.len() - 1] {
        let err = parse(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
    }
    // A truncated file whose header was rewritten to match: the tables or data overrun.
    let mut short = bytes[..HEADER_LEN + TENSOR_ENTRY_LEN].to_vec();
    reseal(&mut short);
    assert!(matches!(
        parse(&short).unwrap_err(),
        Error::Truncated { .. }
    ));
}

/// A flipped bit or byte in the file-length field (which the checksum does not cover) is
/// a corrupt header, not a "truncated model" that needs megabytes it never had; a file cut
/// short, even by its last padding bytes, is still truncated, and one whose length field
/// and body are both damaged is judged by its tables.
#[test]
fn a_damaged_length_field_is_a_corrupt_header_not_a_truncation() {
    let bytes = mlp();
    for at in 8..12 {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[at] ^= flip;
            let err = parse(&b).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::CorruptHeader {
                        field: "file length",
                        actual,
                        ..
                    } if actual == bytes.len()
                ),
                "byte {at} ^ {flip:#x}: {err}"
            );
            assert!(alloc::format!("{err}").contains("not truncated"), "{err}");
        }
    }
    // The length field and a weight both damaged: the checksum no longer vouches, the
    // tables still place every tensor inside the bytes.
    let mut b = bytes.clone();
    b[10] ^= 0xff;
    let last = b.len() - 20;
    b[last] ^= 0x40;
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::CorruptHeader { .. }
    ));
    // Cut short, by a table, a tensor or only the final padding: truncated.
    for cut in [HEADER_LEN + 5, bytes.len() / 2, bytes.len() - 1] {
        let err = parse(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
    }
}

/// A short file that does not start as a model does is not one (it is not a "truncated
/// model" that needs 64 bytes); a model's first bytes, even its first two, are truncated.
#[test]
fn a_short_file_of_something_else_is_not_a_model_not_a_truncated_one() {
    assert_eq!(parse(b"hello, world").unwrap_err(), Error::BadMagic);
    assert_eq!(parse(b"TT!").unwrap_err(), Error::BadMagic);
    let bytes = mlp();
    for cut in [0, 2, 4, 40] {
        assert!(
            matches!(parse(&bytes[..cut]).unwrap_err(), Error::Truncated { .. }),
            "cut {cut}"
        );
    }
}

/// The header-length field (outside the checksum, as the file length is) damaged is a
/// corrupt header, named as such; before, the reader ignored it and took the file.
#[test]
fn a_damaged_header_length_field_is_a_corrupt_header() {
    let bytes = mlp();
    for at in 6..8 {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[at] ^= flip;
            let err = parse(&b).unwrap_err();
            assert!(
                matches!(err, Error::BadHeaderLength { found, expected: 64 } if found != 64),
                "byte {at} ^ {flip:#x}: {err}"
            );
            assert!(
                alloc::format!("{err}").starts_with("corrupt model header: its header length"),
                "{err}"
            );
        }
    }
}

/// A header input shape the runtime cannot take is said to be that, not "shapes do not
/// chain" (no op is involved): a zero dimension, a rank outside 1 to 4, more values than
/// 32 bits count.
#[test]
fn a_bad_input_shape_in_the_header_is_named_as_such() {
    let bytes = mlp();
    let patch = |rank: u32, dims: [u32; 4]| {
        let mut b = bytes.clone();
        b[32..36].copy_from_slice(&rank.to_le_bytes());
        for (i, d) in dims.iter().enumerate() {
            b[36 + 4 * i..40 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        reseal(&mut b);
        parse(&b).unwrap_err()
    };
    for (rank, dims, reason) in [
        (1, [0, 0, 0, 0], "a dimension is 0"),
        (
            2,
            [65_536, 65_536, 0, 0],
            "too large: more than 2^32 - 1 values per sample",
        ),
        (5, [4, 1, 1, 1], "its rank is not 1 to 4"),
        (0, [4, 0, 0, 0], "its rank is not 1 to 4"),
    ] {
        assert_eq!(
            patch(rank, dims),
            Error::BadInputShape { reason },
            "{dims:?}"
        );
    }
    let err = patch(2, [65_536, 65_536, 0, 0]);
    assert_eq!(
        alloc::format!("{err}"),
        "invalid model input shape: too large: more than 2^32 - 1 values per sample"
    );
}

#[test]
fn magic_version_and_checksum() {
    let bytes = mlp();
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(parse(&b).unwrap_err(), Error::BadMagic);
    let mut b = bytes.clone();
    b[4] = 9;
    assert_eq!(
        parse(&b).unwrap_err(),
        Error::UnsupportedVersion {
            found: 9,
            newest: crate::format::VERSION
        }
    );
    let mut b = bytes.clone();
    let last = b.len() - 20;
    b[last] ^= 0x40;
    assert!(matches!(parse(&b).unwrap_err(), Error::BadChecksum { .. }));
    let mut b = bytes.clone();
    b.extend_from_slice(&[0; 16]);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::LengthMismatch { .. }
    ));
}

#[test]
fn misaligned_bytes_are_refused_not_misread() {
    let bytes = mlp();
    let mut buf = AlignedBytes::from_slice(&[&[0u8][..], &bytes].concat()).to_vec();
    buf.push(0);
    let aligned = AlignedBytes::from_slice(&[&[0u8][..], &bytes].concat());
    assert_eq!(Model::parse(&aligned[1..]).unwrap_err(), Error::Misaligned);
}

#[test]
fn shapes_that_do_not_chain() {
    // 4 -> Linear[3, 5]: the weight expects 5 inputs.
    let mut b = ModelBuilder::new(&[4]);
    let w = b.dense(&[3, 5], &[0.0; 15]);
    let y = b.op(
        OpSpec::Linear {
            weight: w,
            bias: None,
        },
        &[b.input()],
    );
    assert!(matches!(
        b.finish(y).unwrap_err(),
        Error::ShapeMismatch { index: 0, .. }
    ));
    // A conv on a vector.
    let mut b = ModelBuilder::new(&[16]);
    let w = b.dense(&[1, 1, 3, 3], &[0.0; 9]);
    let y = b.op(
        OpSpec::Conv2d {
            weight: w,
            bias: None,
            stride: 1,
            padding: 0,
        },
        &[b.input()],
    );
    assert!(matches!(
        b.finish(y).unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
    // A pooling window larger than the image.
    let mut b = ModelBuilder::new(&[1, 2, 2]);
    let y = b.op(
        OpSpec::MaxPool2d {
            kernel: 3,
            stride: 1,
        },
        &[b.input()],
    );
    assert!(matches!(
        b.finish(y).unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
    // Add of two shapes; bias of the wrong length.
    let mut b = ModelBuilder::new(&[4]);
    let w = b.dense(&[2, 4], &[0.0; 8]);
    let bias = b.dense(&[3], &[0.0; 3]);
    let h = b.op(
        OpSpec::Linear {
            weight: w,
            bias: Some(bias),
        },
        &[b.input()],
    );
    assert!(matches!(
        b.finish(h).unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
    let mut b = ModelBuilder::new(&[4]);
    let w = b.dense(&[2, 4], &[0.0; 8]);
    let h = b.op(
        OpSpec::Linear {
            weight: w,
            bias: None,
        },
        &[b.input()],
    );
    let y = b.op(OpSpec::Add, &[h, b.input()]);
    assert!(matches!(
        b.finish(y).unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
}

#[test]
fn bad_ops_and_tensors() {
    let bytes = mlp();
    let ops_at = HEADER_LEN + 3 * TENSOR_ENTRY_LEN;
    // Unknown opcode.
    let mut b = bytes.clone();
    b[ops_at] = 200;
    reseal(&mut b);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::BadOp { index: 0, .. }
    ));
    // A tensor reference past the table.
    let mut b = bytes.clone();
    b[ops_at + 24..ops_at + 28].copy_from_slice(&99u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::BadOp { index: 0, .. }
    ));
    // Reading a value defined later.
    let mut b = bytes.clone();
    b[ops_at + 4..ops_at + 8].copy_from_slice(&3u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::BadOp { index: 0, .. }
    ));
    // A data offset past the end; a CSR column index out of range; a NaN weight.
    let mut b = bytes.clone();
    b[HEADER_LEN + 24..HEADER_LEN + 28].copy_from_slice(&0x0fff_fff0u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::BadTensor { index: 0, .. }
    ));
    let t0 =
        u32::from_le_bytes(bytes[HEADER_LEN + 24..HEADER_LEN + 28].try_into().unwrap()) as usize;
    let nnz =
        u32::from_le_bytes(bytes[HEADER_LEN + 20..HEADER_LEN + 24].try_into().unwrap()) as usize;
    let mut b = bytes.clone();
    let idx_at = t0 + 4 * nnz + 4 * 4;
    b[idx_at..idx_at + 2].copy_from_slice(&7u16.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::BadTensor { index: 0, .. }
    ));
    let mut b = bytes.clone();
    b[t0..t0 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        parse(&b).unwrap_err(),
        Error::BadTensor { index: 0, .. }
    ));
}

#[test]
fn wrong_input_length_is_an_error() {
    let bytes = AlignedBytes::from_slice(&mlp());
    let mut plan = Plan::new(Model::parse(&bytes).unwrap(), &PlanOptions::default()).unwrap();
    for n in [0, 3, 5, 8] {
        let err = plan.run(&alloc::vec![0.0; n]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InputLength {
                    per_sample: 4,
                    max_batch: 1,
                    ..
                }
            ),
            "{n}: {err}"
        );
    }
    assert!(plan.run(&[0.0; 4]).is_ok());
}

#[test]
fn every_single_byte_flip_is_caught_or_harmless() {
    // With the checksum recomputed, so each flip reaches the structural checks: no panic,
    // and a model that still loads still plans and runs.
    let bytes = mlp();
    for i in 16..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            reseal(&mut b);
            let aligned = AlignedBytes::from_slice(&b);
            if let Ok(m) = Model::parse(&aligned) {
                let n = m.input_shape().numel();
                if let Ok(mut p) = Plan::new(m, &PlanOptions::default()) {
                    let _ = p.run(&alloc::vec![0.5; n]);
                }
            }
        }
    }
}

#[test]
fn a_hostile_plan_size_is_refused() {
    // A 1x30000x30000 input: the arena alone would be 7 GiB.
    let mut b = ModelBuilder::new(&[1, 30000, 30000]);
    let y = b.op(OpSpec::Relu, &[b.input()]);
    let bytes = AlignedBytes::from_slice(&b.finish(y).unwrap());
    let err = Plan::new(Model::parse(&bytes).unwrap(), &PlanOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn chained_sparse_layers_on_a_batch_match_the_dense_kernels() {
    // Three sparse layers with element-wise ops between: the chain keeps the transposed
    // layout between them; the result must equal the dense kernels' at every batch size.
    let mut b = ModelBuilder::new(&[7]);
    let w: Vec<f32> = (0..7 * 9)
        .map(|i| {
            if i % 3 == 0 {
                (i as f32 * 0.37).sin()
            } else {
                0.0
            }
        })
        .collect();
    let w2: Vec<f32> = (0..9 * 5)
        .map(|i| {
            if i % 2 == 0 {
                (i as f32 * 0.11).cos()
            } else {
                0.0
            }
        })
        .collect();
    let w3: Vec<f32> = (0..5 * 3).map(|i| (i as f32 * 0.7).sin()).collect();
    let (t1, t2, t3) = (b.csr(&[9, 7], &w), b.csr(&[5, 9], &w2), b.csr(&[3, 5], &w3));
    let bias = b.dense(&[5], &[0.1, -0.2, 0.3, 0.0, 0.5]);
    let h = b.op(
        OpSpec::Linear {
            weight: t1,
            bias: None,
        },
        &[b.input()],
    );
    let h = b.op(OpSpec::Relu, &[h]);
    let h = b.op(
        OpSpec::Linear {
            weight: t2,
            bias: Some(bias),
        },
        &[h],
    );
    let h = b.op(OpSpec::Sine { w0: 2.0 }, &[h]);
    let h = b.op(
        OpSpec::Linear {
            weight: t3,
            bias: None,
        },
        &[h],
    );
    let y = b.op(OpSpec::Softmax, &[h]);
    let bytes = AlignedBytes::from_slice(&b.finish(y).unwrap());
    let plan = |kernels| {
        Plan::new(
            Model::parse(&bytes).unwrap(),
            &PlanOptions {
                batch: 5,
                kernels,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (mut sparse, mut dense) = (plan(KernelChoice::Sparse), plan(KernelChoice::Dense));
    let x: Vec<f32> = (0..5 * 7).map(|i| (i as f32 * 0.23).cos()).collect();
    for n in [1, 2, 5] {
        let (a, d) = (
            sparse.run(&x[..n * 7]).unwrap().to_vec(),
            dense.run(&x[..n * 7]).unwrap().to_vec(),
        );
        for (a, d) in a.iter().zip(&d) {
            assert!((a - d).abs() < 1e-6, "batch {n}: {a} vs {d}");
        }
    }
}

#[test]
fn block_and_scattered_sparse_layers_match_the_dense_kernels_at_batch_1() {
    // One layer pruned in whole 1x4 blocks (the plan's block kernel where AVX2 runs), one
    // with scattered nonzeros (SELL-8 there); both against the dense kernels.
    let (i, h, o) = (24, 16, 6);
    let blocks: Vec<f32> = (0..h * i)
        .map(|k| {
            let (r, c) = (k / i, k % i);
            if (r + c / 4) % 3 == 0 {
                (k as f32 * 0.31).sin()
            } else {
                0.0
            }
        })
        .collect();
    let scattered: Vec<f32> = (0..o * h)
        .map(|k| {
            if k % 5 == 1 {
                (k as f32 * 0.17).cos()
            } else {
                0.0
            }
        })
        .collect();
    let mut b = ModelBuilder::new(&[i]);
    let (t1, t2) = (b.csr(&[h, i], &blocks), b.csr(&[o, h], &scattered));
    let bias = b.dense(&[h], &(0..h).map(|k| k as f32 * 0.01).collect::<Vec<_>>());
    let x1 = b.op(
        OpSpec::Linear {
            weight: t1,
            bias: Some(bias),
        },
        &[b.input()],
    );
    let x1 = b.op(OpSpec::Relu, &[x1]);
    let y = b.op(
        OpSpec::Linear {
            weight: t2,
            bias: None,
        },
        &[x1],
    );
    let bytes = AlignedBytes::from_slice(&b.finish(y).unwrap());
    let plan = |kernels| {
        Plan::new(
            Model::parse(&bytes).unwrap(),
            &PlanOptions {
                batch: 1,
                kernels,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (mut sparse, mut dense) = (plan(KernelChoice::Sparse), plan(KernelChoice::Dense));
    let layouts: Vec<_> = sparse.layers().iter().map(|l| l.batch1_layout).collect();
    if crate::kernels::sell::available() {
        assert_eq!(layouts, [Some("1x4 blocks"), Some("sell-8")]);
    } else {
        assert_eq!(layouts, [Some("csr"), Some("csr")]);
    }
    for seed in 0..4 {
        let x: Vec<f32> = (0..i)
            .map(|k| ((k + 7 * seed) as f32 * 0.29).sin())
            .collect();
        let (a, d) = (
            sparse.run(&x).unwrap().to_vec(),
            dense.run(&x).unwrap().to_vec(),
        );
        assert!(d.iter().any(|v| v.abs() > 1e-3));
        for (a, d) in a.iter().zip(&d) {
            assert!((a - d).abs() < 1e-6, "{a} vs {d}");
        }
    }
}

/// A weight stored as CSR but denser than the break-even runs dense under `auto` (the
/// sparse kernel there is several times slower), stays sparse with `expand_csr` off, and
/// stays sparse when the dense copy would not fit `max_bytes`; all three agree.
#[test]
fn auto_runs_a_dense_csr_weight_dense_when_the_copy_fits() {
    let (i, o) = (64, 32);
    let values: Vec<f32> = (0..i * o)
        .map(|k| {
            if k % 2 == 0 {
                (k % 13) as f32 * 0.1 - 0.6
            } else {
                0.0
            }
        })
        .collect();
    let mut b = ModelBuilder::new(&[i]);
    let w = b.smallest(&[o, i], &values);
    let x = b.input();
    let y = b.op(
        OpSpec::Linear {
            weight: w,
            bias: None,
        },
        &[x],
    );
    let bytes = AlignedBytes::from_slice(&b.finish(y).unwrap());
    let model = Model::parse(&bytes).unwrap();
    assert!(
        matches!(model.tensors[0].data, crate::format::TensorData::Csr(_)),
        "density 0.5 is stored as CSR"
    );
    let input: Vec<f32> = (0..i).map(|k| (k as f32 * 0.37).sin()).collect();
    let run = |options: PlanOptions| {
        let mut plan = Plan::new(Model::parse(&bytes).unwrap(), &options).unwrap();
        let sparse = plan.layers()[0].sparse;
        (sparse, plan.run(&input).unwrap().to_vec())
    };
    let (sparse, expanded) = run(PlanOptions::default());
    assert!(!sparse, "auto at batch 1 runs density 0.5 dense");
    let (sparse, kept) = run(PlanOptions {
        expand_csr: false,
        ..Default::default()
    });
    assert!(sparse);
    // Room for the sparse plan (activations, its batch-1 layout: about 6.1 KiB), not for
    // the 8 KiB dense copy.
    let (sparse, fallback) = run(PlanOptions {
        max_bytes: 7000,
        ..Default::default()
    });
    assert!(sparse, "the dense copy does not fit: sparse");
    for (a, b) in expanded.iter().zip(&kept).chain(kept.iter().zip(&fallback)) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn auto_keeps_a_sparse_chain_sparse_on_a_batch_up_to_the_chain_break_even() {
    // LeNet-300-100's shape at 90%: a sparse layer, ReLU, then a layer 65% dense (above the
    // GEMM break-even) that continues the chain at batch 32 and runs dense at batch 1; a
    // layer denser than the chain break-even runs dense either way.
    use crate::plan::{SPARSE_BREAK_EVEN_CHAIN, SPARSE_BREAK_EVEN_GEMM};
    for density in [0.65f64, 0.9] {
        let mut b = ModelBuilder::new(&[20]);
        let w1: Vec<f32> = (0..20 * 16)
            .map(|i| if i % 10 == 0 { 0.5 } else { 0.0 })
            .collect();
        let keep = (density * 16.0 * 4.0).round() as usize;
        let w2: Vec<f32> = (0..16 * 4)
            .map(|i| if i < keep { 0.25 } else { 0.0 })
            .collect();
        let (t1, t2) = (b.dense(&[16, 20], &w1), b.dense(&[4, 16], &w2));
        let h = b.op(
            OpSpec::Linear {
                weight: t1,
                bias: None,
            },
            &[b.input()],
        );
        let h = b.op(OpSpec::Relu, &[h]);
        let y = b.op(
            OpSpec::Linear {
                weight: t2,
                bias: None,
            },
            &[h],
        );
        let bytes = b.finish(y).expect("builds");
        let aligned = AlignedBytes::from_slice(&bytes);
        let got = keep as f64 / 64.0;
        assert!(got > SPARSE_BREAK_EVEN_GEMM);
        for batch in [1, 32] {
            let model = Model::parse(&aligned).expect("valid");
            let plan = Plan::new(
                model,
                &PlanOptions {
                    batch,
                    ..Default::default()
                },
            )
            .expect("plans");
            let layers = plan.layers();
            assert!(layers[0].sparse, "the 10% layer runs sparse");
            let want = batch > 1 && got <= SPARSE_BREAK_EVEN_CHAIN;
            assert_eq!(layers[1].sparse, want, "density {got}, batch {batch}");
        }
    }
}
