//! A ReLU or Clip after a convolution is computed on the convolution's output tile when
//! nothing else reads the convolution's output, and left as its own op when something
//! does: both against the definition, with every kernel choice. Likewise a residual Add
//! (and the ReLU after it) after a convolution of one group.

mod common;

use common::lcg;
use tether_deploy::format::{ConvGeom, Unary};
use tether_deploy::write::ValueId;
use tether_deploy::{AlignedBytes, KernelChoice, Model, ModelBuilder, OpSpec, Plan, PlanOptions};

const C: usize = 3;
const H: usize = 9;
const W: usize = 10;
const M: usize = 12;

/// The 3x3, padding-1 convolution of one `[C, H, W]` sample, by its definition.
fn conv(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; M * H * W];
    for o in 0..M {
        for i in 0..H {
            for j in 0..W {
                let mut s = b[o] as f64;
                for c in 0..C {
                    for di in 0..3 {
                        for dj in 0..3 {
                            let (yi, xj) = (i as isize + di - 1, j as isize + dj - 1);
                            if yi < 0 || xj < 0 || yi >= H as isize || xj >= W as isize {
                                continue;
                            }
                            let xv = x[(c * H + yi as usize) * W + xj as usize] as f64;
                            s += xv * w[((o * C + c) * 3 + di as usize) * 3 + dj as usize] as f64;
                        }
                    }
                }
                y[(o * H + i) * W + j] = s as f32;
            }
        }
    }
    y
}

/// `conv(x)` then `tail`, the model output; the weights half zeros (so the sparse kernels
/// run under `Sparse` and `Auto`'s choice is exercised).
fn model(tail: impl Fn(&mut ModelBuilder, ValueId) -> ValueId) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let w: Vec<f32> = lcg(M * C * 9, 3)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % 2 == 0 { v } else { 0.0 })
        .collect();
    let b = lcg(M, 4);
    let mut mb = ModelBuilder::new(&[C, H, W]);
    let wt = mb.dense(&[M, C, 3, 3], &w);
    let bt = mb.dense(&[M], &b);
    let a = mb.op(
        OpSpec::Conv {
            weight: wt,
            bias: Some(bt),
            geom: ConvGeom::simple(1, 1),
        },
        &[mb.input()],
    );
    let y = tail(&mut mb, a);
    (mb.finish(y).expect("valid model"), w, b)
}

fn run_all(bytes: &[u8], x: &[f32], n: usize) -> Vec<(KernelChoice, Vec<f32>)> {
    let aligned = AlignedBytes::from_slice(bytes);
    [
        KernelChoice::Auto,
        KernelChoice::Dense,
        KernelChoice::Sparse,
    ]
    .into_iter()
    .map(|kernels| {
        let model = Model::parse(&aligned).expect("a valid model");
        let options = PlanOptions {
            batch: n,
            kernels,
            ..Default::default()
        };
        let mut plan = Plan::new(model, &options).expect("plans");
        (kernels, plan.run(x).expect("runs").to_vec())
    })
    .collect()
}

fn check(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(
            g == e || (g - e).abs() <= 1e-5 * (1.0 + e.abs()) || (g.is_nan() && e.is_nan()),
            "{what}: at {i} {g} vs {e}"
        );
    }
}

#[test]
fn relu_and_clip_fused_into_the_convolution() {
    for (name, f) in [("relu", Unary::Identity), ("clip", Unary::Clip(-0.2, 0.3))] {
        let (bytes, w, b) = model(|mb, a| match f {
            Unary::Identity => mb.op(OpSpec::Relu, &[a]),
            f => mb.op(OpSpec::Unary(f), &[a]),
        });
        let act = |v: f32| match f {
            Unary::Clip(lo, hi) => {
                let m = if v < lo { lo } else { v };
                if m > hi { hi } else { m }
            }
            _ => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
        };
        let n = 3;
        let mut x = lcg(n * C * H * W, 5);
        x[C * H * W + 40] = f32::NAN; // sample 1: NaN reaches its neighbours' outputs
        let want: Vec<f32> = (0..n)
            .flat_map(|s| conv(&x[s * C * H * W..(s + 1) * C * H * W], &w, &b))
            .map(act)
            .collect();
        for (k, got) in run_all(&bytes, &x, n) {
            check(&got, &want, &format!("{name} {k:?}"));
        }
    }
}

#[test]
fn not_fused_where_the_convolution_output_has_another_reader() {
    // a + relu(a): the convolution's output is read twice, so it stays as computed.
    let (bytes, w, b) = model(|mb, a| {
        let r = mb.op(OpSpec::Relu, &[a]);
        mb.op(OpSpec::Add, &[a, r])
    });
    let x = lcg(2 * C * H * W, 6);
    let want: Vec<f32> = (0..2)
        .flat_map(|s| conv(&x[s * C * H * W..(s + 1) * C * H * W], &w, &b))
        .map(|v| v + if v < 0.0 { 0.0 } else { v })
        .collect();
    for (k, got) in run_all(&bytes, &x, 2) {
        check(&got, &want, &format!("{k:?}"));
    }
}

/// `tail(conv_a(x), conv_b(x))`, the model output: `conv_b` runs first, so the Add after
/// `conv_a` can take its output as the residual. Returns the model and both convolutions
/// of each sample of `x`.
fn two_convs(
    x: &[f32],
    n: usize,
    tail: impl Fn(&mut ModelBuilder, ValueId, ValueId) -> ValueId,
) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let half = |v: Vec<f32>| -> Vec<f32> {
        v.into_iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 0 { v } else { 0.0 })
            .collect()
    };
    let (wa, ba) = (half(lcg(M * C * 9, 11)), lcg(M, 12));
    let (wb, bb) = (half(lcg(M * C * 9, 13)), lcg(M, 14));
    let mut mb = ModelBuilder::new(&[C, H, W]);
    let conv_op = |mb: &mut ModelBuilder, w: &[f32], b: &[f32]| {
        let wt = mb.dense(&[M, C, 3, 3], w);
        let bt = mb.dense(&[M], b);
        let spec = OpSpec::Conv {
            weight: wt,
            bias: Some(bt),
            geom: ConvGeom::simple(1, 1),
        };
        mb.op(spec, &[mb.input()])
    };
    let vb = conv_op(&mut mb, &wb, &bb);
    let va = conv_op(&mut mb, &wa, &ba);
    let y = tail(&mut mb, va, vb);
    let per = |w: &[f32], b: &[f32]| -> Vec<f32> {
        (0..n)
            .flat_map(|s| conv(&x[s * C * H * W..(s + 1) * C * H * W], w, b))
            .collect()
    };
    (
        mb.finish(y).expect("valid model"),
        per(&wa, &ba),
        per(&wb, &bb),
    )
}

#[test]
fn residual_add_and_its_relu_fused_into_the_convolution() {
    let n = 3;
    let mut x = lcg(n * C * H * W, 15);
    x[2 * C * H * W + 17] = f32::INFINITY; // sample 2: the infinity goes through the sum
    let relu = |v: f32| if v < 0.0 { 0.0 } else { v };
    // Both operand orders, with and without the ReLU after the sum.
    for (swap, with_relu) in [(false, true), (true, true), (false, false), (true, false)] {
        let (bytes, a, b) = two_convs(&x, n, |mb, va, vb| {
            let ins = if swap { [vb, va] } else { [va, vb] };
            let s = mb.op(OpSpec::Add, &ins);
            if with_relu {
                mb.op(OpSpec::Relu, &[s])
            } else {
                s
            }
        });
        let want: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| if with_relu { relu(a + b) } else { a + b })
            .collect();
        for (k, got) in run_all(&bytes, &x, n) {
            check(&got, &want, &format!("swap {swap} relu {with_relu} {k:?}"));
        }
    }
}

#[test]
fn residual_not_fused_after_the_convolutions_own_activation() {
    // relu(a) + b: the ReLU belongs before the sum, so the Add stays its own op.
    let n = 2;
    let x = lcg(n * C * H * W, 16);
    let (bytes, a, b) = two_convs(&x, n, |mb, va, vb| {
        let r = mb.op(OpSpec::Relu, &[va]);
        mb.op(OpSpec::Add, &[r, vb])
    });
    let want: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(a, b)| if *a < 0.0 { *b } else { a + b })
        .collect();
    for (k, got) in run_all(&bytes, &x, n) {
        check(&got, &want, &format!("{k:?}"));
    }
}
