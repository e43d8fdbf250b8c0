//! Shampoo against direct computations: the dense formula on small matrices, mode products
//! on a 3-d block, grafting norms per block, resume, and bad input.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer, SimpleOptimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use faer::Mat;

use super::*;
use crate::data::batches::SplitMix64;

type B = Flex;
type AB = Autodiff<Flex>;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| (rng.next_unit() * 2.0 - 1.0) as f32)
        .collect()
}

fn tensor<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

/// `(a + eps I)^(-1/p)` by the coupled Newton iteration (an independent method: Shampoo's
/// default is the eigendecomposition).
fn newton_root(a: &Mat<f64>, p: f64, eps: f64) -> Mat<f64> {
    let n = a.nrows();
    let flat: Vec<f64> = (0..n * n).map(|i| a[(i / n, i % n)]).collect();
    let method = RootMethod::CoupledNewton {
        max_iterations: 200,
        tolerance: 1e-12,
    };
    let r = inverse_root(&flat, n, p, 1.0, eps, method).unwrap();
    Mat::from_fn(n, n, |i, j| r[i * n + j])
}

/// One block, frequency 1, AdaGrad-style factors (beta2 = 1), no filtering: after each
/// step `W <- W - lr L^(-1/4) G R^(-1/4)` with `L = sum G G^T`, `R = sum G^T G` (Gupta et
/// al. 2018, Algorithm 1), computed here densely in f64; and with the root overridden to
/// 2, `L^(-1/2) G R^(-1/2)`. On every backend.
fn matches_the_dense_formula_on_a_matrix<AB: burn::tensor::backend::AutodiffBackend>() {
    for root in [None, Some(2)] {
        dense_formula_with_root::<AB>(root);
    }
}

fn dense_formula_with_root<AB: burn::tensor::backend::AutodiffBackend>(root: Option<u32>) {
    type I<AB> = <AB as burn::tensor::backend::AutodiffBackend>::InnerBackend;
    let device = Default::default();
    let (m, n, lr, eps) = (3, 4, 0.1, 1e-4);
    let p = root.unwrap_or(4) as f64;
    // Unmerged: the reference would merge a 3x4 matrix into one 12-vector (12 <= 1024).
    let opt = ShampooConfig::default()
        .with_beta1(0.0)
        .with_epsilon(eps)
        .with_merge_dims(false)
        .with_root_override(root)
        .build()
        .unwrap();
    let w0 = random(m * n, 1);
    let on =
        |v: &[f32]| Tensor::<I<AB>, 2>::from_data(TensorData::new(v.to_vec(), [m, n]), &device);
    let mut w = on(&w0);
    let mut state = None;
    let mut l = Mat::<f64>::zeros(m, m);
    let mut r = Mat::<f64>::zeros(n, n);
    let mut expected: Vec<f64> = w0.iter().map(|&v| v as f64).collect();
    for step in 0..4 {
        let g = random(m * n, 10 + step);
        let gm = Mat::<f64>::from_fn(m, n, |i, j| g[i * n + j] as f64);
        l = &l + &gm * gm.transpose();
        r = &r + gm.transpose() * &gm;
        let d = newton_root(&l, p, eps) * &gm * newton_root(&r, p, eps);
        for i in 0..m {
            for j in 0..n {
                expected[i * n + j] -= lr * d[(i, j)];
            }
        }
        let (nw, ns) = SimpleOptimizer::<I<AB>>::step(&opt, lr, w, on(&g), state);
        (w, state) = (nw, ns);
        opt.health().check().unwrap();
        let got = w
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .unwrap();
        for (k, (a, b)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 2e-4 * (1.0 + b.abs()),
                "root {p}, step {step} entry {k}: {a} vs {b}"
            );
        }
    }
    let log = opt.health().snapshot();
    assert_eq!((log.roots_computed, log.root_failures), (8, 0));
}

/// With `beta1`, `beta2 < 1` and bias correction: the filtered gradient and the factors are
/// EMAs divided by `1 - beta^t` before use.
#[test]
fn matches_the_dense_formula_with_emas_and_bias_correction() {
    let (m, n, lr, eps, b1, b2) = (2, 3, 0.05, 1e-3, 0.9, 0.95);
    let opt = ShampooConfig::default()
        .with_beta1(b1)
        .with_beta2(b2)
        .with_epsilon(eps)
        .with_merge_dims(false)
        .build()
        .unwrap();
    let w0 = random(m * n, 2);
    let mut w = tensor(&w0, [m, n]);
    let mut state = None;
    let mut l = Mat::<f64>::zeros(m, m);
    let mut r = Mat::<f64>::zeros(n, n);
    let mut f = Mat::<f64>::zeros(m, n);
    let mut expected: Vec<f64> = w0.iter().map(|&v| v as f64).collect();
    for t in 1..=5 {
        let g = random(m * n, 20 + t);
        let gm = Mat::<f64>::from_fn(m, n, |i, j| g[i * n + j] as f64);
        l = &l * faer::Scale(b2) + &gm * gm.transpose() * faer::Scale(1.0 - b2);
        r = &r * faer::Scale(b2) + gm.transpose() * &gm * faer::Scale(1.0 - b2);
        f = &f * faer::Scale(b1) + &gm * faer::Scale(1.0 - b1);
        let bc2 = 1.0 - b2.powi(t as i32);
        let g_bar = &f * faer::Scale(1.0 / (1.0 - b1.powi(t as i32)));
        let p = newton_root(&(&l * faer::Scale(1.0 / bc2)), 4.0, eps)
            * &g_bar
            * newton_root(&(&r * faer::Scale(1.0 / bc2)), 4.0, eps);
        for i in 0..m {
            for j in 0..n {
                expected[i * n + j] -= lr * p[(i, j)];
            }
        }
        let (nw, ns) = SimpleOptimizer::<B>::step(&opt, lr, w, tensor(&g, [m, n]), state);
        (w, state) = (nw, ns);
        for (a, b) in values(w.clone()).iter().zip(&expected) {
            assert!(
                (*a as f64 - b).abs() < 2e-4 * (1.0 + b.abs()),
                "t {t}: {a} vs {b}"
            );
        }
    }
}

/// A 3-d block is preconditioned by a mode product along every dimension:
/// `P[a,b,c] = sum R1[a,i] R2[b,j] R3[c,k] G[i,j,k]`, with the root 6.
#[test]
fn preconditions_a_three_dimensional_block_by_mode_products() {
    let dims = [2usize, 3, 4];
    let (lr, eps) = (1.0, 1e-3);
    let opt = ShampooConfig::default()
        .with_beta1(0.0)
        .with_epsilon(eps)
        .with_merge_dims(false)
        .build()
        .unwrap();
    let g = random(24, 5);
    let at = |i: usize, j: usize, k: usize| g[(i * 3 + j) * 4 + k] as f64;
    // Factors: contraction over the other two dimensions.
    let factor = |mode: usize| {
        let d = dims[mode];
        Mat::<f64>::from_fn(d, d, |x, y| {
            let mut s = 0.0;
            for i in 0..2 {
                for j in 0..3 {
                    for k in 0..4 {
                        let mut a = [i, j, k];
                        let mut b = [i, j, k];
                        a[mode] = x;
                        b[mode] = y;
                        if (mode == 0 || i == 0) && (mode == 1 || j == 0) && (mode == 2 || k == 0) {
                            // Count each (other-index) combination once.
                        }
                        let _ = (&mut a, &mut b);
                    }
                }
            }
            for (o1, o2) in others(mode) {
                let idx = |v: usize| match mode {
                    0 => (v, o1, o2),
                    1 => (o1, v, o2),
                    _ => (o1, o2, v),
                };
                let (a, b) = (idx(x), idx(y));
                s += at(a.0, a.1, a.2) * at(b.0, b.1, b.2);
            }
            s
        })
    };
    fn others(mode: usize) -> Vec<(usize, usize)> {
        let dims = [2usize, 3, 4];
        let rest: Vec<usize> = (0..3).filter(|&d| d != mode).map(|d| dims[d]).collect();
        (0..rest[0])
            .flat_map(|a| (0..rest[1]).map(move |b| (a, b)))
            .collect()
    }
    let roots: Vec<Mat<f64>> = (0..3).map(|m| newton_root(&factor(m), 6.0, eps)).collect();
    let (w, _) =
        SimpleOptimizer::<B>::step(&opt, lr, tensor(&[0.0; 24], dims), tensor(&g, dims), None);
    let got = values(w);
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                let mut p = 0.0;
                for i in 0..2 {
                    for j in 0..3 {
                        for k in 0..4 {
                            p += roots[0][(a, i)]
                                * roots[1][(b, j)]
                                * roots[2][(c, k)]
                                * at(i, j, k);
                        }
                    }
                }
                let v = got[(a * 3 + b) * 4 + c] as f64;
                assert!(
                    (v + p).abs() < 1e-4 * (1.0 + p.abs()),
                    "[{a},{b},{c}]: {v} vs {}",
                    -p
                );
            }
        }
    }
}

/// Each block's step has the norm of the grafted method's step on that block (blocks of a
/// 5x3 parameter cut at 2: six blocks of different sizes).
#[test]
fn grafting_norms_are_equal_per_block() {
    for grafting in [
        Grafting::Sgd,
        Grafting::adagrad(),
        Grafting::rmsprop(),
        Grafting::adam(),
    ] {
        let opt = ShampooConfig::default()
            .with_max_preconditioner_dim(2)
            .with_beta1(0.0)
            .with_epsilon(1e-6)
            .with_grafting(Some(grafting))
            .build()
            .unwrap();
        let plan = BlockPlan::new(&[5, 3], 2, true);
        assert_eq!(plan.blocks.len(), 6);
        let mut w = tensor(&[0.0; 15], [5, 3]);
        let mut state = None;
        let mut v = [0.0f64; 15];
        for t in 1..=3 {
            let g = random(15, 30 + t);
            let before = values(w.clone());
            let (nw, ns) = SimpleOptimizer::<B>::step(&opt, 1.0, w, tensor(&g, [5, 3]), state);
            (w, state) = (nw, ns);
            let after = values(w.clone());
            // The grafted method's direction, directly.
            let graft: Vec<f64> = (0..15)
                .map(|i| {
                    let gi = g[i] as f64;
                    match grafting {
                        Grafting::Sgd => gi,
                        Grafting::AdaGrad { epsilon } => {
                            v[i] += gi * gi;
                            gi / (v[i].sqrt() + epsilon)
                        }
                        Grafting::RmsProp { beta2, epsilon } => {
                            v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                            gi / (v[i].sqrt() + epsilon)
                        }
                        Grafting::Adam { beta2, epsilon } => {
                            v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                            gi / ((v[i] / (1.0 - beta2.powi(t as i32))).sqrt() + epsilon)
                        }
                    }
                })
                .collect();
            for b in &plan.blocks {
                let idx: Vec<usize> = (b.offsets[0]..b.offsets[0] + b.shape[0])
                    .flat_map(|i| (b.offsets[1]..b.offsets[1] + b.shape[1]).map(move |j| i * 3 + j))
                    .collect();
                let step_norm = idx
                    .iter()
                    .map(|&i| ((before[i] - after[i]) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let graft_norm = idx.iter().map(|&i| graft[i].powi(2)).sum::<f64>().sqrt();
                assert!(
                    (step_norm - graft_norm).abs() < 1e-4 * graft_norm,
                    "{grafting:?} t {t} block {:?}: {step_norm} vs {graft_norm}",
                    b.offsets
                );
            }
        }
    }
}

/// Before `start_preconditioning_step` the grafted method steps alone; roots are first
/// computed at the start step and then every `precondition_frequency` steps.
#[test]
fn grafted_method_alone_until_preconditioning_starts() {
    let opt = ShampooConfig::default()
        .with_beta1(0.0)
        .with_grafting(Some(Grafting::Sgd))
        .with_precondition_frequency(3)
        .with_start_preconditioning_step(Some(4))
        .build()
        .unwrap();
    let mut w = tensor(&[0.0; 6], [2, 3]);
    let mut state = None;
    let mut roots = Vec::new();
    for t in 1..=9 {
        let g = random(6, 40 + t);
        let before = values(w.clone());
        let (nw, ns) = SimpleOptimizer::<B>::step(&opt, 1.0, w, tensor(&g, [2, 3]), state);
        (w, state) = (nw, ns);
        if t < 4 {
            for (i, (b, a)) in before.iter().zip(values(w.clone())).enumerate() {
                assert!((b - a - g[i]).abs() < 1e-6, "t {t}: plain SGD step");
            }
        }
        roots.push(opt.health().snapshot().roots_computed);
    }
    // The 2x3 parameter merges into one 6-vector: one factor, computed at t = 4 (the
    // start), then 6 and 9 (multiples of 3 after it).
    assert_eq!(roots, vec![0, 0, 0, 1, 1, 2, 2, 2, 3]);
}

/// Momentum with dampening, Nesterov, and both weight decays on a scalar parameter
/// (Shampoo on a 1x1 block with SGD grafting is SGD), against the formulas.
#[test]
fn momentum_and_weight_decay_follow_the_formulas() {
    for (nesterov, decoupled) in [(false, false), (true, true), (false, true)] {
        let (mu, damp, wd, lr) = (0.8, 0.1, 0.01, 0.1);
        let opt = ShampooConfig::default()
            .with_beta1(0.0)
            .with_grafting(Some(Grafting::Sgd))
            .with_momentum(mu)
            .with_dampening(damp)
            .with_nesterov(nesterov)
            .with_weight_decay(wd)
            .with_decoupled_weight_decay(decoupled)
            .build()
            .unwrap();
        let (mut w, mut state) = (tensor(&[1.0], [1]), None);
        let (mut x, mut m) = (1.0f64, 0.0f64);
        for t in 1..=4 {
            let g = 0.5 * t as f64 - 1.0;
            let (nw, ns) = SimpleOptimizer::<B>::step(&opt, lr, w, tensor(&[g as f32], [1]), state);
            (w, state) = (nw, ns);
            let g = if decoupled { g } else { g + wd * x };
            let mut p = g; // SGD graft: the direction has the gradient's norm.
            if decoupled {
                p += wd * x;
            }
            m = mu * m + (1.0 - damp) * p;
            p = if nesterov {
                (1.0 - damp) * p + mu * m
            } else {
                m
            };
            x -= lr * p;
            let got = values(w.clone())[0] as f64;
            assert!(
                (got - x).abs() < 1e-6,
                "{nesterov} {decoupled} t {t}: {got} vs {x}"
            );
        }
    }
}

#[derive(Module, Debug)]
struct Net<B: Backend> {
    w: Param<Tensor<B, 2>>,
    c: Param<Tensor<B, 4>>,
}

impl<B: Backend> Net<B> {
    /// The same weights every time (a 4x5 matrix and a 2x3x4x2 tensor).
    fn seeded(device: &B::Device) -> Self {
        let data = |n, seed, shape: Vec<usize>| TensorData::new(random(n, seed), shape);
        Self {
            w: Param::from_tensor(Tensor::from_data(data(20, 7, vec![4, 5]), device)),
            c: Param::from_tensor(Tensor::from_data(data(48, 8, vec![2, 3, 4, 2]), device)),
        }
    }
}

fn net_loss(net: &Net<AB>, x: &Tensor<AB, 2>) -> Tensor<AB, 1> {
    let y = x.clone().matmul(net.w.val()).tanh();
    y.sum() + net.c.val().sin().sum() * 0.1
}

/// Saving the optimizer's record and loading it into a fresh optimizer resumes bit for bit
/// (factors, roots, grafting, filtered gradient, momentum, step count).
#[test]
fn resume_from_a_saved_record_is_bit_identical() {
    let device = Default::default();
    let config = ShampooConfig::default()
        .with_beta2(0.99)
        .with_momentum(0.5)
        .with_grafting(Some(Grafting::adam()))
        .with_precondition_frequency(2)
        .with_max_preconditioner_dim(3);
    let fresh = || Net::<AB>::seeded(&device);
    let x = Tensor::<AB, 2>::from_data(TensorData::new(random(12, 9), [3, 4]), &device);
    let run = |mut net: Net<AB>,
               opt: &mut burn::optim::adaptor::OptimizerAdaptor<Shampoo, Net<AB>, AB>,
               steps: usize| {
        for _ in 0..steps {
            let grads = GradientsParams::from_grads(net_loss(&net, &x).backward(), &net);
            net = opt.step(0.05, net, grads);
        }
        net
    };
    let mut straight = config.init::<AB, Net<AB>>().unwrap();
    let reference = run(fresh(), &mut straight, 7);

    let mut first = config.init::<AB, Net<AB>>().unwrap();
    let half = run(fresh(), &mut first, 4);
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder.record(first.to_record(), ()).unwrap();
    let record = recorder.load(bytes, &device).unwrap();
    let mut second = config.init::<AB, Net<AB>>().unwrap().load_record(record);
    let resumed = run(half, &mut second, 3);
    let v = |t: Tensor<AB, 2>| t.into_data().into_vec::<f32>().unwrap();
    let c = |t: Tensor<AB, 4>| t.into_data().into_vec::<f32>().unwrap();
    assert_eq!(v(reference.w.val()), v(resumed.w.val()));
    assert_eq!(c(reference.c.val()), c(resumed.c.val()));
    assert!(first.optim().health().snapshot().roots_computed > 0);
}

/// A NaN gradient, a zero-size parameter and a persistently failing root are errors on the
/// health handle, and the parameter is left unchanged.
#[test]
fn bad_input_is_reported_and_nothing_moves() {
    let opt = ShampooConfig::default().build().unwrap();
    let w = tensor(&[1.0, 2.0], [2]);
    let (out, _) = SimpleOptimizer::<B>::step(&opt, 0.1, w, tensor(&[f32::NAN, 0.0], [2]), None);
    assert_eq!(values(out), vec![1.0, 2.0]);
    let err = opt.health().check().unwrap_err();
    assert!(
        matches!(err, ShampooError::NonFiniteGradient { step: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not finite"));

    let opt = ShampooConfig::default().build().unwrap();
    let empty = Tensor::<B, 2>::zeros([0, 3], &Default::default());
    let _ = SimpleOptimizer::<B>::step(&opt, 0.1, empty.clone(), empty, None);
    assert!(matches!(
        opt.health().check(),
        Err(ShampooError::ZeroSizeParameter { .. })
    ));

    // A finite gradient whose square overflows f32 poisons the factor: an error at once.
    let opt = ShampooConfig::default().build().unwrap();
    let (out, _) = SimpleOptimizer::<B>::step(
        &opt,
        0.1,
        tensor(&[1.0, 2.0], [2]),
        tensor(&[1e20, 0.0], [2]),
        None,
    );
    assert_eq!(values(out), vec![1.0, 2.0]);
    let err = opt.health().check().unwrap_err();
    assert!(matches!(err, ShampooError::NonFiniteFactor { .. }), "{err}");

    // Newton capped at one iteration never converges: tolerated 3 times, then an error.
    let opt = ShampooConfig::default()
        .with_root_method(RootMethod::CoupledNewton {
            max_iterations: 1,
            tolerance: 1e-15,
        })
        .build()
        .unwrap();
    let (mut w, mut state) = (tensor(&[1.0, 2.0, 3.0, 4.0], [2, 2]), None);
    for t in 1..=4 {
        let before = values(w.clone());
        let (nw, ns) =
            SimpleOptimizer::<B>::step(&opt, 0.1, w, tensor(&[1.0, -2.0, 0.5, 3.0], [2, 2]), state);
        (w, state) = (nw, ns);
        if t <= 3 {
            opt.health().check().unwrap();
        } else {
            let err = opt.health().check().unwrap_err();
            assert!(
                matches!(err, ShampooError::PersistentRootFailure { failures: 4, .. }),
                "{err}"
            );
            assert_eq!(values(w.clone()), before);
        }
    }
    // The 2x2 parameter merges into one 4-vector: one factor per step.
    assert_eq!(opt.health().snapshot().root_failures, 4);
}

/// The host kernels (what a CPU backend runs) and the tensor ops (what a GPU runs) take the
/// same steps: a 6x4x5 parameter cut into four 3-d blocks ({4 or 2} x 4 x {4 or 1}),
/// EMA factors with bias correction, Adam grafting, momentum, decoupled decay, roots every
/// second step; parameters, factors (lower triangles) and roots after each of 6 steps.
#[test]
fn host_kernels_match_the_tensor_ops() {
    let opt = ShampooConfig::default()
        .with_beta2(0.99)
        .with_momentum(0.5)
        .with_weight_decay(0.01)
        .with_grafting(Some(Grafting::adam()))
        .with_precondition_frequency(2)
        .with_max_preconditioner_dim(4)
        .with_epsilon(1e-6)
        .build()
        .unwrap();
    let shape = [6, 4, 5];
    assert_eq!(opt.plan(&shape).blocks.len(), 4);
    let device = Default::default();
    let mut w_host = tensor(&random(120, 1), shape);
    let mut w_tensor = w_host.clone();
    let mut s_host = opt.fresh_state::<B>(&shape, &device);
    let mut s_tensor = s_host.clone();
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what}[{i}]: {x} (host) vs {y} (tensor ops)"
            );
        }
    };
    for t in 1..=6 {
        let g = tensor(&random(120, 100 + t as u64), shape);
        s_host.step = t;
        w_host = opt
            .step_host(0.05, w_host, g.clone(), &mut s_host, t)
            .map_err(|(e, _)| e)
            .unwrap();
        let (w, s) = opt
            .step_checked(0.05, w_tensor, g, Some(s_tensor), t)
            .unwrap();
        (w_tensor, s_tensor) = (w, s);
        close(
            &values(w_host.clone()),
            &values(w_tensor.clone()),
            &format!("step {t} w"),
        );
        for (bh, bt) in s_host.blocks.iter().zip(&s_tensor.blocks) {
            let (bh, bt) = (bh.as_ref().unwrap(), bt.as_ref().unwrap());
            for (fh, ft) in bh.factors.iter().zip(&bt.factors) {
                let d = fh.dims()[0];
                let lower = |f: &Tensor<B, 2>| {
                    let v = values(f.clone());
                    (0..d * d)
                        .filter(|i| i % d <= i / d)
                        .map(|i| v[i])
                        .collect::<Vec<_>>()
                };
                close(&lower(fh), &lower(ft), &format!("step {t} factor"));
            }
            for (rh, rt) in bh.roots.iter().zip(&bt.roots) {
                close(
                    &values(rh.clone()),
                    &values(rt.clone()),
                    &format!("step {t} root"),
                );
            }
        }
    }
    // Both paths, 3 computations (steps 2, 4, 6), 4 blocks of 3 factors.
    assert_eq!(opt.health().snapshot().roots_computed, 2 * 3 * 4 * 3);
}

/// Every block state of `record`, parameter by parameter (`ids`), block by block:
/// factors, roots, grafting statistics, filtered gradient, momentum (`None` blocks and
/// buffers left out, their count kept).
fn state_values<AB2: burn::tensor::backend::AutodiffBackend>(
    record: &<DistributedShampoo<Net<AB2>, AB2> as Optimizer<Net<AB2>, AB2>>::Record,
    ids: &[burn::module::ParamId],
) -> (Vec<f32>, usize) {
    let mut v = vec![];
    let mut missing = 0;
    let host =
        |t: Tensor<AB2::InnerBackend, 2>| t.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    for id in ids {
        let state: ShampooState<AB2::InnerBackend> = record[id].clone().into_state::<1>();
        for b in &state.blocks {
            let Some(b) = b else {
                missing += 1;
                continue;
            };
            for m in b.factors.iter().chain(&b.roots) {
                v.extend(host(m.clone()));
            }
            for x in [&b.graft, &b.filtered, &b.momentum].into_iter().flatten() {
                v.extend(host(x.clone().unsqueeze::<2>()));
            }
        }
    }
    (v, missing)
}

/// Two ranks on two halves of each batch (burn-collective peers on the CPU device, the
/// gradients reduced by [`crate::parallel::DataParallel`]) end every step with the same
/// parameters as one Shampoo on the whole batch: each block's direction comes from its
/// owner alone and is all-gathered. Checked on every backend:
/// - one rank is the single-device optimizer, bit for bit;
/// - two owning ranks are bit for bit two replicated ranks (each computing every block):
///   ownership changes who computes, not what;
/// - each rank owns blocks, every block is owned once, and the ranks' root computations
///   add up to the single run's;
/// - the state gathered for a checkpoint holds every block, equal on both ranks and to
///   the single run's; loaded on one device it continues as the single run does.
fn data_parallel_equals_the_single_device_run<AB: burn::tensor::backend::AutodiffBackend>() {
    let device: burn::tensor::Device<AB> = Default::default();
    let config = ShampooConfig::default()
        .with_beta2(0.99)
        .with_momentum(0.5)
        .with_weight_decay(0.01)
        .with_grafting(Some(Grafting::adam()))
        .with_precondition_frequency(2)
        .with_max_preconditioner_dim(3)
        // Early factors are rank-deficient (a 3x2 block's 3x3 factor has rank 2): with the
        // default 1e-12, eps^(-1/4) = 1e3 amplifies the f32 rounding of the averaged
        // gradient in the null directions to 1e-4; 1e-6 keeps it at 1e-7.
        .with_epsilon(1e-6);
    // Clones share the parameter ids the records are keyed by.
    let init = Net::<AB>::seeded(&device);
    let fresh = || init.clone();
    // A per-sample mean, so the whole batch's gradient is the mean of the halves'.
    let loss = |net: &Net<AB>, x: Tensor<AB, 2>| {
        let n = x.dims()[0] as f64;
        x.matmul(net.w.val()).tanh().sum().div_scalar(n) + net.c.val().sin().sum() * 0.1
    };
    let x = Tensor::<AB, 2>::from_data(TensorData::new(random(32, 9), [8, 4]), &device);
    let (steps, more) = (5, 2);
    let values = |net: &Net<AB>| {
        let mut v = net
            .w
            .val()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .unwrap();
        v.extend(
            net.c
                .val()
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap(),
        );
        v
    };
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what}, entry {i}: {a} vs {b}"
            );
        }
    };

    let mut net = fresh();
    let ids = [net.w.id, net.c.id];
    let mut single = DistributedShampoo::<Net<AB>, AB>::new(config.build().unwrap());
    for _ in 0..steps {
        let grads = GradientsParams::from_grads(loss(&net, x.clone()).backward(), &net);
        net = single.step(0.05, net, grads);
    }
    let single_state = state_values::<AB>(&single.to_record(), &ids);
    let single_roots = single.health().snapshot().roots_computed;
    let after_steps = net.clone();
    for _ in 0..more {
        let grads = GradientsParams::from_grads(loss(&net, x.clone()).backward(), &net);
        net = single.step(0.05, net, grads);
    }
    let expected = values(&after_steps);
    let expected_more = values(&net);

    let run = |devices: &[burn::tensor::Device<AB>], replicate: bool| {
        crate::parallel::local::run_replicas::<AB::InnerBackend, _, _>(devices, |rank| {
            let group = crate::parallel::group().expect("a replica's group");
            let rows = 8 / group.size();
            let parallel = crate::parallel::DataParallel::new(group, rows, 8)?;
            let mut opt =
                DistributedShampoo::<Net<AB>, AB>::new(config.build()?).with_replicated(replicate);
            let mut net = fresh();
            let shard = x.clone().slice([rank * rows..(rank + 1) * rows, 0..4]);
            for _ in 0..steps {
                let grads = GradientsParams::from_grads(loss(&net, shard.clone()).backward(), &net);
                let grads = parallel.reduce_grads(grads, &net)?;
                net = opt.step(0.05, net, grads);
                opt.health().check()?;
            }
            let roots = opt.health().snapshot().roots_computed;
            Ok((values(&net), opt.blocks_per_rank(), roots, opt.to_record()))
        })
        .unwrap()
    };
    // One rank does exactly what the single-device optimizer does.
    assert_eq!(run(std::slice::from_ref(&device), false)[0].0, expected);
    let owned = run(&[device.clone(), device.clone()], false);
    let replicated = run(&[device.clone(), device.clone()], true);
    assert_eq!(owned[0].0, owned[1].0, "replicas differ");
    assert_eq!(
        owned[0].0, replicated[0].0,
        "owning ranks vs replicated ranks"
    );
    close(&owned[0].0, &expected, "2 ranks vs one device");
    let total_blocks: usize = [vec![4, 5], vec![2, 3, 4, 2]]
        .iter()
        .map(|s| BlockPlan::new(s, 3, true).blocks.len())
        .sum();
    let per_rank = &owned[0].1;
    assert_eq!(per_rank, &owned[1].1);
    assert_eq!(per_rank.len(), 2);
    assert!(per_rank.iter().all(|&n| n > 0), "{per_rank:?}");
    assert_eq!(per_rank.iter().sum::<usize>(), total_blocks);
    assert_eq!(owned[0].2 + owned[1].2, single_roots, "roots computed once");
    assert_eq!(
        replicated[0].2, single_roots,
        "a replicated rank computes all"
    );
    // The checkpoint's state: every block, the same on both ranks, the single run's.
    let gathered: Vec<_> = owned
        .iter()
        .map(|o| state_values::<AB>(&o.3, &ids))
        .collect();
    assert_eq!(
        gathered[0].1, 0,
        "a block is missing from the gathered state"
    );
    assert_eq!(
        gathered[0].0, gathered[1].0,
        "ranks gathered different states"
    );
    close(&gathered[0].0, &single_state.0, "gathered vs single state");
    // Resumed on one device from the 2 ranks' record: as the single run.
    let mut resumed = DistributedShampoo::<Net<AB>, AB>::new(config.build().unwrap())
        .load_record(owned[0].3.clone());
    let mut net = after_steps.clone();
    let w = TensorData::new(owned[0].0[..20].to_vec(), [4, 5]);
    let c = TensorData::new(owned[0].0[20..].to_vec(), [2, 3, 4, 2]);
    net.w = Param::initialized(net.w.id, Tensor::from_data(w, &device).require_grad());
    net.c = Param::initialized(net.c.id, Tensor::from_data(c, &device).require_grad());
    for _ in 0..more {
        let grads = GradientsParams::from_grads(loss(&net, x.clone()).backward(), &net);
        net = resumed.step(0.05, net, grads);
    }
    resumed.health().check().unwrap();
    close(
        &values(&net),
        &expected_more,
        "2 ranks resumed on 1 vs 1 whole",
    );
}

#[derive(Module, Debug)]
struct Vector<B: Backend> {
    v: Param<Tensor<B, 1>>,
}

/// A failure on one rank stops every rank at the same step (nobody waits forever on a
/// collective call), and no replica moves: rank 0 owns the only block and its roots
/// fail, rank 1 learns of it in the all-gather.
#[test]
fn a_failing_rank_stops_every_rank() {
    let device: burn::tensor::Device<B> = Default::default();
    let config = ShampooConfig::default()
        .with_root_method(RootMethod::CoupledNewton {
            max_iterations: 1,
            tolerance: 1e-15,
        })
        .with_tolerated_root_failures(0);
    let results = crate::parallel::local::run_replicas::<B, _, _>(&[device, device], |_| {
        let mut opt = DistributedShampoo::<Vector<AB>, AB>::new(config.build()?);
        let net = Vector::<AB> {
            v: Param::from_tensor(Tensor::from_floats([1.0, 2.0, 3.0], &device)),
        };
        let loss = net.v.val().square().sum();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let net = opt.step(0.1, net, grads);
        let v = net.v.val().into_data().into_vec::<f32>().unwrap();
        Ok((opt.health().check(), v))
    })
    .unwrap();
    assert!(
        matches!(
            results[0].0,
            Err(ShampooError::PersistentRootFailure { .. })
        ),
        "{:?}",
        results[0].0
    );
    assert_eq!(results[1].0, Err(ShampooError::PeerFailed));
    for (_, v) in &results {
        assert_eq!(v, &vec![1.0, 2.0, 3.0]);
    }
}

crate::constrained::tests::backend_tests!(
    matches_the_dense_formula_on_a_matrix,
    data_parallel_equals_the_single_device_run
);
