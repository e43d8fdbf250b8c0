//! NaN and the infinities through whole models (issues 24 and 30): every op passes NaN on
//! as IEEE 754 (and ONNX Runtime and PyTorch) do, and the three kernel choices compute the
//! same outputs on inputs holding NaN or an infinity, although the sparse kernels skip the
//! pruned weights (`0 * inf` is NaN in the dense product, so they are made to agree).

use tether_deploy::format::{ConvGeom, PoolGeom, Unary};
use tether_deploy::kernels::sell;
use tether_deploy::{AlignedBytes, KernelChoice, Model, ModelBuilder, OpSpec, Plan, PlanOptions};

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

/// Deterministic values in [-1, 1).
fn lcg(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1 << 23) as f32 - 1.0
        })
        .collect()
}

/// About `density` of the values kept, the rest exactly zero (a pruned layer).
fn pruned(n: usize, seed: u32, density: f32) -> Vec<f32> {
    lcg(n, seed)
        .into_iter()
        .zip(lcg(n, seed ^ 0x5555))
        .map(|(v, k)| if (k + 1.0) / 2.0 < density { v } else { 0.0 })
        .collect()
}

/// Runs `bytes` on `input` (`batch` samples) with the given kernel choice.
fn run(bytes: &[u8], input: &[f32], batch: usize, kernels: KernelChoice) -> Vec<f32> {
    let aligned = AlignedBytes::from_slice(bytes);
    let model = Model::parse(&aligned).expect("a valid model");
    let mut plan = Plan::new(
        model,
        &PlanOptions {
            batch,
            kernels,
            ..Default::default()
        },
    )
    .expect("plans");
    plan.run(input).expect("runs").to_vec()
}

/// The layout each layer's batch-1 calls read, under `kernels`.
fn layouts(bytes: &[u8], batch: usize, kernels: KernelChoice) -> Vec<Option<&'static str>> {
    let aligned = AlignedBytes::from_slice(bytes);
    let plan = Plan::new(
        Model::parse(&aligned).unwrap(),
        &PlanOptions {
            batch,
            kernels,
            ..Default::default()
        },
    )
    .unwrap();
    plan.layers().iter().map(|l| l.batch1_layout).collect()
}

/// Equal, or both NaN (IEEE 754 leaves the sign and payload of a NaN open).
fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Asserts the outputs of two kernel choices agree: every non-finite output identical (a
/// sum holding a non-finite term has one value whatever the order of the additions), the
/// finite ones within the rounding the kernels' own tests allow between dense and sparse
/// sums (`1e-5`).
fn assert_agree(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (&u, &v)) in a.iter().zip(b).enumerate() {
        if u.is_finite() && v.is_finite() {
            assert!((u - v).abs() < 1e-5, "{what}: output {i}: {u} vs {v}");
        } else {
            assert!(same(u, v), "{what}: output {i}: {u} vs {v}");
        }
    }
}

/// 24 -> 16 (pruned in 1x4 blocks; input 23 in every row) -> relu -> 12 (scattered, 15%;
/// its inputs 0 to 3 in every row) -> relu -> 6 (40%): the logits, no softmax, which would
/// make a whole row NaN from one NaN logit and hide a disagreement.
fn mlp() -> Vec<u8> {
    let (i, h1, h2, o) = (24, 16, 12, 6);
    let blocks: Vec<f32> = (0..h1 * i)
        .map(|k| {
            let (r, c) = (k / i, k % i);
            if c != i - 1 && (r + c / 4) % 3 == 0 {
                (k as f32 * 0.31).sin()
            } else {
                0.0
            }
        })
        .collect();
    let mut scattered = pruned(h2 * h1, 3, 0.15);
    for r in 0..h2 {
        scattered[r * h1..r * h1 + 4].fill(0.0);
    }
    let mut b = ModelBuilder::new(&[i]);
    let t1 = b.csr(&[h1, i], &blocks);
    let b1 = b.dense(&[h1], &lcg(h1, 1));
    let t2 = b.csr(&[h2, h1], &scattered);
    let t3 = b.dense(&[o, h2], &pruned(o * h2, 4, 0.4));
    let x = b.op(
        OpSpec::Linear {
            weight: t1,
            bias: Some(b1),
        },
        &[b.input()],
    );
    let x = b.op(OpSpec::Relu, &[x]);
    let x = b.op(
        OpSpec::Linear {
            weight: t2,
            bias: None,
        },
        &[x],
    );
    let x = b.op(OpSpec::Relu, &[x]);
    let y = b.op(
        OpSpec::Linear {
            weight: t3,
            bias: None,
        },
        &[x],
    );
    b.finish(y).unwrap()
}

/// `[2, 12, 12]` -> sparse conv 3x3 (stride 1, no padding: the direct kernel) -> relu ->
/// max pool 2 -> padded sparse conv (im2col) -> padded depthwise conv (its direct kernel
/// when dense) -> grouped pointwise conv -> elu -> flatten -> pruned linear -> softmax.
fn conv_net() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[2, 12, 12]);
    let c1 = b.csr(&[6, 2, 3, 3], &pruned(108, 11, 0.3));
    let c1b = b.dense(&[6], &lcg(6, 12));
    let c2 = b.csr(&[4, 6, 3, 3], &pruned(216, 13, 0.3));
    let dw = b.dense(&[4, 1, 3, 3], &pruned(36, 17, 0.6));
    let c3 = b.dense(&[4, 2, 1, 1], &pruned(8, 14, 0.5));
    let l = b.csr(&[10, 100], &pruned(1000, 15, 0.2));
    let lb = b.dense(&[10], &lcg(10, 16));
    let geom = |pad: usize, group: usize| ConvGeom {
        stride: [1, 1],
        pads: [pad; 4],
        dilation: [1, 1],
        group,
    };
    let x = b.op(
        OpSpec::Conv {
            weight: c1,
            bias: Some(c1b),
            geom: geom(0, 1),
        },
        &[b.input()],
    );
    let x = b.op(OpSpec::Relu, &[x]);
    let x = b.op(OpSpec::MaxPool(PoolGeom::simple(2, 2)), &[x]);
    let x = b.op(
        OpSpec::Conv {
            weight: c2,
            bias: None,
            geom: geom(1, 1),
        },
        &[x],
    );
    let x = b.op(
        OpSpec::Conv {
            weight: dw,
            bias: None,
            geom: geom(1, 4),
        },
        &[x],
    );
    let x = b.op(
        OpSpec::Conv {
            weight: c3,
            bias: None,
            geom: geom(0, 2),
        },
        &[x],
    );
    let x = b.op(OpSpec::Unary(Unary::Elu(1.0)), &[x]);
    let x = b.op(OpSpec::Flatten, &[x]);
    let y = b.op(
        OpSpec::Linear {
            weight: l,
            bias: Some(lb),
        },
        &[x],
    );
    let y = b.op(OpSpec::Softmax, &[y]);
    b.finish(y).unwrap()
}

/// `batch` samples of `per` values; sample `s` gets `marks[s]` (position, value) written
/// over deterministic finite values (an empty list: a finite sample).
fn samples(per: usize, marks: &[&[(usize, f32)]]) -> Vec<f32> {
    let mut x = lcg(per * marks.len(), 77);
    for (s, m) in marks.iter().enumerate() {
        for &(at, v) in *m {
            x[s * per + at] = v;
        }
    }
    x
}

/// Runs `bytes` with the three kernel choices on `input` at `batch`, asserts they agree,
/// and returns the dense outputs.
fn all_kernels_agree(what: &str, bytes: &[u8], input: &[f32], batch: usize) -> Vec<f32> {
    let dense = run(bytes, input, batch, KernelChoice::Dense);
    for k in [KernelChoice::Sparse, KernelChoice::Auto] {
        let other = run(bytes, input, batch, k);
        assert_agree(
            &format!("{what}, batch {batch}, {k:?} vs Dense"),
            &other,
            &dense,
        );
    }
    dense
}

#[test]
fn an_mlp_gives_the_same_outputs_with_every_kernel_on_nan_and_inf() {
    let bytes = mlp();
    // The sparse plan at batch 1 runs the block and SELL-8 kernels where AVX2 runs (their
    // zero padding multiplies, unlike CSR), CSR elsewhere.
    let l = layouts(&bytes, 1, KernelChoice::Sparse);
    if sell::available() {
        assert_eq!(l, [Some("1x4 blocks"), Some("sell-8"), Some("sell-8")]);
    }
    let marks: [&[(usize, f32)]; 7] = [
        &[],
        &[(5, NAN)],
        &[(0, INF)],
        &[(23, -INF)],
        &[(3, INF), (17, -INF)],
        &[(9, INF), (9 + 1, NAN)],
        &[],
    ];
    let per = 24;
    // One sample at a time (batch 1) and all together (the transposed sparse chain).
    let mut one_by_one = Vec::new();
    for m in &marks {
        let x = samples(per, &[m]);
        one_by_one.extend(all_kernels_agree("mlp", &bytes, &x, 1));
    }
    let x: Vec<f32> = marks.iter().flat_map(|m| samples(per, &[m])).collect();
    let batched = all_kernels_agree("mlp", &bytes, &x, marks.len());
    assert_agree("mlp, batch 7 vs batch 1", &batched, &one_by_one);
    // A non-finite input reaches every output: a NaN (or an infinity meeting a pruned
    // weight) makes every hidden unit NaN, and NaN passes every ReLU and the softmax.
    for (s, m) in marks.iter().enumerate() {
        let out = &batched[s * 6..(s + 1) * 6];
        if m.is_empty() {
            assert!(out.iter().all(|v| v.is_finite()), "sample {s}: {out:?}");
        } else {
            assert!(out.iter().all(|v| v.is_nan()), "sample {s}: {out:?}");
        }
    }
}

#[test]
fn a_conv_net_gives_the_same_outputs_with_every_kernel_on_nan_and_inf() {
    let bytes = conv_net();
    // The first convolution runs a direct kernel (no im2col) when sparse: over phase
    // planes with AVX-512, else over the input with AVX2.
    let l = layouts(&bytes, 1, KernelChoice::Sparse);
    if tether_deploy::kernels::sparse_conv::available() {
        assert_eq!(l[0], Some("planes"), "{l:?}");
    } else if sell::available() {
        assert_eq!(l[0], Some("direct"), "{l:?}");
    }
    let per = 2 * 12 * 12;
    let corner = 0;
    let middle = 144 + 6 * 12 + 5;
    let marks: [&[(usize, f32)]; 5] = [
        &[],
        &[(middle, NAN)],
        &[(corner, INF)],
        &[(per - 1, -INF), (middle, INF)],
        &[],
    ];
    let mut one_by_one = Vec::new();
    for m in &marks {
        let x = samples(per, &[m]);
        one_by_one.extend(all_kernels_agree("conv net", &bytes, &x, 1));
    }
    let x: Vec<f32> = marks.iter().flat_map(|m| samples(per, &[m])).collect();
    let batched = all_kernels_agree("conv net", &bytes, &x, marks.len());
    assert_agree("conv net, batch 5 vs batch 1", &batched, &one_by_one);
    for (s, m) in marks.iter().enumerate() {
        let out = &batched[s * 10..(s + 1) * 10];
        // A finite sample stays finite next to the others (no leak across the batch).
        assert_eq!(
            out.iter().all(|v| v.is_finite()),
            m.is_empty(),
            "sample {s}: {out:?}"
        );
    }
}

/// A model of one element-wise op on `[5]`, run on `[NaN, +inf, -inf, 0.5, -0.5]` through
/// the plan (so the op's step dispatch is covered, not only its kernel): the outputs the
/// IEEE formulas give.
#[test]
fn every_activation_in_a_model_passes_nan_on_and_takes_the_limits_of_the_infinities() {
    let x = [NAN, INF, -INF, 0.5, -0.5];
    let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
    let cases: Vec<(&str, OpSpec, [f32; 5])> = vec![
        ("relu", OpSpec::Relu, [NAN, INF, 0.0, 0.5, 0.0]),
        (
            "leaky relu",
            OpSpec::Unary(Unary::LeakyRelu(0.1)),
            [NAN, INF, -INF, 0.5, -0.05],
        ),
        (
            "elu",
            OpSpec::Unary(Unary::Elu(2.0)),
            [NAN, INF, -2.0, 0.5, 2.0 * (-0.5f32).exp_m1()],
        ),
        (
            "hard sigmoid",
            OpSpec::Unary(Unary::HardSigmoid(0.2, 0.5)),
            [NAN, 1.0, 0.0, 0.6, 0.4],
        ),
        (
            "softplus",
            OpSpec::Unary(Unary::Softplus),
            [NAN, INF, 0.0, 0.974_076_9, 0.474_076_9],
        ),
        (
            "sigmoid",
            OpSpec::Unary(Unary::Sigmoid),
            [NAN, 1.0, 0.0, sig(0.5), sig(-0.5)],
        ),
        (
            "tanh",
            OpSpec::Unary(Unary::Tanh),
            [NAN, 1.0, -1.0, 0.5f32.tanh(), (-0.5f32).tanh()],
        ),
        (
            "clip",
            OpSpec::Unary(Unary::Clip(-0.25, 0.25)),
            [NAN, 0.25, -0.25, 0.25, -0.25],
        ),
        (
            "clip to [0, inf)",
            OpSpec::Unary(Unary::Clip(0.0, INF)),
            [NAN, INF, 0.0, 0.5, 0.0],
        ),
        (
            "exp",
            OpSpec::Unary(Unary::Exp),
            [NAN, INF, 0.0, 0.5f32.exp(), (-0.5f32).exp()],
        ),
        ("abs", OpSpec::Unary(Unary::Abs), [NAN, INF, INF, 0.5, 0.5]),
        (
            "sine",
            OpSpec::Sine { w0: 2.0 },
            [NAN, NAN, NAN, 1f32.sin(), (-1f32).sin()],
        ),
    ];
    for (name, op, want) in cases {
        let mut b = ModelBuilder::new(&[5]);
        let y = b.op(op, &[b.input()]);
        let bytes = b.finish(y).unwrap();
        let got = run(&bytes, &x, 1, KernelChoice::Auto);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // The libm functions are within an ulp or two of the rounded exact values
            // written above.
            let close = if w.is_finite() {
                (g - w).abs() <= 2.0 * f32::EPSILON * w.abs().max(f32::MIN_POSITIVE)
            } else {
                same(g, w)
            };
            assert!(close, "{name}({}) = {g}, want {w}", x[i]);
        }
    }
}

/// A NaN anywhere on a softmax axis makes that axis NaN; max pooling a window with a NaN
/// gives NaN (PyTorch, ONNX Runtime); both through the plan.
#[test]
fn softmax_and_max_pool_in_a_model_pass_nan_on() {
    let mut b = ModelBuilder::new(&[1, 4, 4]);
    let y = b.op(OpSpec::MaxPool(PoolGeom::simple(2, 2)), &[b.input()]);
    let bytes = b.finish(y).unwrap();
    let mut x: Vec<f32> = (0..16).map(|i| i as f32).collect();
    x[5] = NAN; // the top-left window's largest cell
    x[2] = INF;
    x[8] = -INF;
    let y = run(&bytes, &x, 1, KernelChoice::Auto);
    assert!(y[0].is_nan(), "{y:?}");
    assert_eq!(&y[1..], &[INF, 13.0, 15.0]);

    let mut b = ModelBuilder::new(&[2, 3]);
    let y = b.op(OpSpec::Softmax, &[b.input()]);
    let bytes = b.finish(y).unwrap();
    let y = run(
        &bytes,
        &[1.0, NAN, 1.0, -INF, 0.0, 0.0],
        1,
        KernelChoice::Auto,
    );
    assert!(y[..3].iter().all(|v| v.is_nan()), "{y:?}");
    assert_eq!(&y[3..], &[0.0, 0.5, 0.5]);
}

/// Resize (nearest and bilinear), the transposed convolution, comparisons and `Where`
/// through the plan: a NaN reaches every output it is a neighbour or a term of (both
/// interpolation weights are applied, as in onnxruntime and PyTorch, so a weight of 0
/// still gives NaN), comparisons with NaN are false, and `Where` passes on the NaN of the
/// branch it takes only.
#[test]
fn resize_transposed_conv_comparisons_and_where_pass_nan_on() {
    use tether_deploy::format::{
        Binary, ConvTransposeGeom, CoordMode, MAX_RANK, NearestRound, ResizeGeom, ResizeMode,
    };
    let resize = |mode, coord| {
        let mut out = [0; MAX_RANK];
        out[..2].copy_from_slice(&[1, 8]);
        let mut scales = [0.0; MAX_RANK];
        scales[..2].copy_from_slice(&[1.0, 2.0]);
        OpSpec::Resize {
            geom: ResizeGeom {
                out,
                scales,
                mode,
                coord,
            },
            rank: 2,
        }
    };
    let x = [1.0, NAN, INF, 4.0];
    let mut b = ModelBuilder::new(&[1, 4]);
    let y = b.op(
        resize(ResizeMode::Linear, CoordMode::HalfPixel),
        &[b.input()],
    );
    let got = run(&b.finish(y).unwrap(), &x, 1, KernelChoice::Auto);
    // Sources -0.25 (clamped to 0), 0.25, 0.75, ..., 3.25 (clamped to 3); PyTorch's
    // `interpolate(mode="linear")` of this input: NaN x5, inf, inf, 4.
    assert!(got[..5].iter().all(|v| v.is_nan()), "{got:?}");
    assert_eq!(&got[5..], &[INF, INF, 4.0]);
    let mut b = ModelBuilder::new(&[1, 4]);
    let y = b.op(
        resize(
            ResizeMode::Nearest(NearestRound::Floor),
            CoordMode::Asymmetric,
        ),
        &[b.input()],
    );
    let got = run(&b.finish(y).unwrap(), &x, 1, KernelChoice::Auto);
    assert!(got[2].is_nan() && got[3].is_nan());
    assert_eq!([got[0], got[1], got[4], got[7]], [1.0, 1.0, INF, 4.0]);

    // A 2x2 stride-2 transposed convolution of [1, 2, 2]: each pixel writes its own 2x2
    // block, so only the NaN pixel's block is NaN, the inf pixel's block is +-inf (and
    // NaN where its weight is 0).
    let mut b = ModelBuilder::new(&[1, 2, 2]);
    let w = b.dense(&[1, 1, 2, 2], &[1.0, -1.0, 0.0, 2.0]);
    let geom = ConvTransposeGeom {
        stride: [2, 2],
        pads: [0; 4],
        dilation: [1, 1],
        group: 1,
        output_padding: [0, 0],
    };
    let y = b.op(
        OpSpec::ConvTranspose {
            weight: w,
            bias: None,
            geom,
        },
        &[b.input()],
    );
    let got = run(
        &b.finish(y).unwrap(),
        &[NAN, INF, 1.0, 0.5],
        1,
        KernelChoice::Auto,
    );
    let block = |by: usize, bx: usize| -> Vec<f32> {
        [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(i, j)| got[(2 * by + i) * 4 + 2 * bx + j])
            .collect()
    };
    assert!(block(0, 0).iter().all(|v| v.is_nan()));
    let inf = block(0, 1);
    assert_eq!([inf[0], inf[1], inf[3]], [INF, -INF, INF]);
    assert!(inf[2].is_nan(), "0 * inf");
    assert_eq!(block(1, 0), [1.0, -1.0, 0.0, 2.0]);
    assert_eq!(block(1, 1), [0.5, -0.5, 0.0, 1.0]);

    // Comparisons with NaN are false; Where takes the branch's NaN only where chosen.
    let x = [NAN, 1.0, INF, -INF];
    let mut b = ModelBuilder::new(&[4]);
    let zero = b.dense(&[1], &[0.0]);
    let z = b.op(OpSpec::Const(zero), &[]);
    let ge = b.op(OpSpec::Binary(Binary::GreaterOrEqual), &[b.input(), z]);
    let lt = b.op(OpSpec::Binary(Binary::Less), &[b.input(), z]);
    let eq = b.op(OpSpec::Binary(Binary::Equal), &[b.input(), b.input()]);
    let s = b.op(OpSpec::Binary(Binary::Add), &[ge, lt]);
    let s = b.op(OpSpec::Binary(Binary::Add), &[s, eq]);
    let got = run(&b.finish(s).unwrap(), &x, 1, KernelChoice::Auto);
    assert_eq!(
        got,
        [0.0, 2.0, 2.0, 2.0],
        "NaN: none true; others: one of ge/lt, and eq"
    );
    let mut b = ModelBuilder::new(&[4]);
    let cond = b.dense(&[4], &[1.0, 0.0, 1.0, 0.0]);
    let c = b.op(OpSpec::Const(cond), &[]);
    let neg = b.op(OpSpec::Unary(Unary::Neg), &[b.input()]);
    let y = b.op(OpSpec::Where, &[c, b.input(), neg]);
    let got = run(
        &b.finish(y).unwrap(),
        &[NAN, NAN, 2.0, 3.0],
        1,
        KernelChoice::Auto,
    );
    assert!(got[0].is_nan() && got[1].is_nan());
    assert_eq!(&got[2..], &[2.0, -3.0]);
}
