//! Per-step overhead of the constrained machinery over the bare loss step, on a small
//! network: LeNet-300-100 (`[784, 300, 100, 10]`), batch 128, SGD, flex backend.
//!
//! - `bare`: forward, cross-entropy, backward, SGD step, loss read back to the host (as any
//!   loop that logs its loss does).
//! - `1 dense constraint`: the same objective under a loss budget (Lagrangian, nuPI),
//!   through `ConstrainedOptimizer::roll` (validation, one host read, Lagrangian, dual step).
//! - `100 indexed constraints`: one loss constraint per group of samples (sample `i` in
//!   group `i mod 100`; the per-group means are one small matmul), indexed multipliers
//!   updated by nuPI for the groups present.
//!
//! Rounds interleave the three so that machine noise hits them alike; the figure is the
//! ratio of medians. Writes `out/bench/constrained_overhead.json`.
//!
//! Run: `cargo bench -p tether-train --bench constrained_overhead`

use std::path::Path;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use tether_models::mlp::{Mlp, MlpConfig};
use tether_models::trainable::untrained_params;
use tether_train::constrained::*;
use tether_train::io::write_atomic;

type B = Autodiff<Flex>;

const BATCH: usize = 128;
const GROUPS: usize = 100;
const ROUNDS: usize = 15;
const STEPS_PER_ROUND: usize = 10;

struct Batch {
    x: Tensor<B, 2>,
    y: Tensor<B, 1, Int>,
    /// `[batch, groups]` one-hot membership divided by the group size.
    group_mean: Tensor<B, 2>,
}

fn per_sample_loss(model: &Mlp<B>, batch: &Batch) -> Tensor<B, 1> {
    let logp = log_softmax(model.forward(batch.x.clone()), 1);
    logp.gather(1, batch.y.clone().unsqueeze_dim(1))
        .squeeze_dim::<1>(1)
        .neg()
}

/// A loss budget `mean loss <= 2`: the constraint itself costs nothing to compute, so the
/// difference to `bare` is the machinery alone.
struct LossBudget(ConstraintId);
impl ConstrainedProblem<B, Mlp<B>> for LossBudget {
    type Input = Batch;
    fn compute_cmp_state(&self, model: &Mlp<B>, batch: &Batch) -> CmpState<B> {
        let loss = per_sample_loss(model, batch).mean();
        let violation = loss.clone().sub_scalar(2.0);
        CmpState::new(loss).with(self.0, ConstraintState::new(violation))
    }
}

struct GroupLosses(ConstraintId);
impl ConstrainedProblem<B, Mlp<B>> for GroupLosses {
    type Input = Batch;
    fn compute_cmp_state(&self, model: &Mlp<B>, batch: &Batch) -> CmpState<B> {
        let per = per_sample_loss(model, batch);
        let loss = per.clone().mean();
        let group = per
            .unsqueeze_dim::<2>(0)
            .matmul(batch.group_mean.clone())
            .squeeze_dim::<1>(0);
        let violation = group.sub_scalar(2.0);
        let present: Vec<usize> = (0..GROUPS.min(BATCH)).collect();
        CmpState::new(loss).with(self.0, ConstraintState::indexed(violation, present))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let device = Default::default();
    let cfg = MlpConfig::new(vec![784, 300, 100, 10]);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    let mut onehot = vec![0f32; BATCH * GROUPS];
    for i in 0..BATCH {
        onehot[i * GROUPS + i % GROUPS] = 1.0;
    }
    let sizes: Vec<f32> = (0..GROUPS)
        .map(|g| (0..BATCH).filter(|i| i % GROUPS == g).count() as f32)
        .collect();
    for i in 0..BATCH {
        for g in 0..GROUPS {
            onehot[i * GROUPS + g] /= sizes[g];
        }
    }
    let batch = Batch {
        x: Tensor::random([BATCH, 784], Distribution::Normal(0.0, 1.0), &device),
        y: Tensor::from_data(TensorData::new(labels, [BATCH]), &device),
        group_mean: Tensor::from_data(TensorData::new(onehot, [BATCH, GROUPS]), &device),
    };
    let nupi = || MultiplierConfig::new(DualOptimizer::NuPi(NuPiConfig::new(0.01).with_kp(1.0)));

    // Bare loop.
    let mut bare_model: Mlp<B> = cfg.init(&device);
    let mut bare_opt = SgdConfig::new().init::<B, Mlp<B>>();
    // One dense constraint.
    let mut dense_set = ConstraintSet::<B>::new(&device);
    let budget = dense_set.add(
        "budget",
        ConstraintKind::Inequality,
        1,
        FormulationConfig::Lagrangian(nupi()),
    )?;
    let mut dense_model: Mlp<B> = cfg.init(&device);
    let mut dense_opt =
        ConstrainedOptimizer::new(SgdConfig::new().init(), 0.01, UpdateScheme::Simultaneous);
    // 100 indexed constraints.
    let mut idx_set = ConstraintSet::<B>::new(&device);
    let groups = idx_set.add(
        "groups",
        ConstraintKind::Inequality,
        GROUPS,
        FormulationConfig::Lagrangian(nupi().indexed()),
    )?;
    let mut idx_model: Mlp<B> = cfg.init(&device);
    let mut idx_opt =
        ConstrainedOptimizer::new(SgdConfig::new().init(), 0.01, UpdateScheme::Simultaneous);

    // Every timed network trains all of its parameters (a parameter without a gradient
    // would make its step look cheaper than training it).
    for (what, model) in [
        ("bare", &bare_model),
        ("dense", &dense_model),
        ("indexed", &idx_model),
    ] {
        let missing = untrained_params(model, per_sample_loss(model, &batch).mean());
        assert!(
            missing.is_empty(),
            "{what}: parameters without a gradient: {missing:?}"
        );
    }

    let (mut t_bare, mut t_dense, mut t_idx) = (vec![], vec![], vec![]);
    for round in 0..=ROUNDS {
        let mut times = [0.0; 3];
        // Rotate the order each round so that no variant always runs first.
        for k in 0..3 {
            let which = (k + round) % 3;
            let start = Instant::now();
            for _ in 0..STEPS_PER_ROUND {
                match which {
                    0 => {
                        let loss = per_sample_loss(&bare_model, &batch).mean();
                        let grads = GradientsParams::from_grads(loss.backward(), &bare_model);
                        let _logged: f32 = loss.into_scalar();
                        bare_model = bare_opt.step(0.01, bare_model, grads);
                    }
                    1 => {
                        let problem = LossBudget(budget);
                        dense_model = dense_opt
                            .roll(dense_model, &mut dense_set, &problem, &batch)?
                            .model;
                    }
                    _ => {
                        let problem = GroupLosses(groups);
                        idx_model = idx_opt
                            .roll(idx_model, &mut idx_set, &problem, &batch)?
                            .model;
                    }
                }
            }
            times[which] = start.elapsed().as_secs_f64() / STEPS_PER_ROUND as f64;
        }
        if round > 0 {
            // round 0 warms caches and allocators
            t_bare.push(times[0]);
            t_dense.push(times[1]);
            t_idx.push(times[2]);
        }
    }
    let _ = idx_model.valid();
    let (b, d, i) = (median(t_bare), median(t_dense), median(t_idx));
    println!("| step | median ms | ratio to bare |");
    println!("|---|---|---|");
    println!("| bare loss step | {:.3} | 1.00 |", b * 1e3);
    println!(
        "| 1 dense constraint (nuPI) | {:.3} | {:.3} |",
        d * 1e3,
        d / b
    );
    println!(
        "| {GROUPS} indexed constraints (nuPI) | {:.3} | {:.3} |",
        i * 1e3,
        i / b
    );
    let json = serde_json::json!({
        "network": "LeNet-300-100", "batch": BATCH, "backend": "flex",
        "rounds": ROUNDS, "steps_per_round": STEPS_PER_ROUND,
        "median_seconds": {"bare": b, "dense_1": d, "indexed_100": i},
        "ratio_to_bare": {"dense_1": d / b, "indexed_100": i / b},
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/bench/constrained_overhead.json");
    write_atomic(&out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}
