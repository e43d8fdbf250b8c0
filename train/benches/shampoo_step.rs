//! Shampoo's step time over Adam's on LeNet-5 (the Caffe variant: 431k parameters), batch
//! 128, flex backend (one core): whole steps (forward, backward, optimizer), so the ratio is
//! the epoch-time ratio. Shampoo with Adam grafting at precondition frequency 1, 10 and 100
//! (factors up to the reference's 1024), and at 100 with factors cut at 256 and at 128.
//! Each configuration runs a multiple of its frequency per round (so root computations are
//! amortised as in training; the bench checks that each round computed every root exactly
//! once per frequency, nothing more); rounds are interleaved; ratio of medians, of the
//! thread's CPU time (`/proc/thread-self/schedstat`: time another process takes the core
//! does not count) and of wall time.
//!
//! Then where the time goes: the optimizer's share of each step (timed around
//! `Optimizer::step`), the multiply-adds of Shampoo's products per step (factor statistics
//! on one triangle, the mode products of the preconditioning) and the rate the optimizer
//! achieved on them, the parameter blocks and one inverse root per factor size.
//!
//! `--batch`, `--rounds`, `--only adam,shampoo_f100` narrow it.
//!
//! Writes `out/bench/shampoo_step.json` (`shampoo_step_batch<N>.json` for other batches).
//!
//! Run: `cargo bench -p tether-train --bench shampoo_step`

use std::path::Path;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use tether_models::lenet5::{Lenet5, Lenet5Config};
use tether_models::trainable::untrained_params;
use tether_train::io::write_atomic;
use tether_train::optim::shampoo::{BlockPlan, RootMethod, inverse_root};
use tether_train::optim::{AnyOptimizer, OptimizerArgs, OptimizerKind};
use tether_train::tasks::metrics::cross_entropy;

type B = Autodiff<Flex>;
type Net = Lenet5<B>;

#[derive(clap::Parser, Debug)]
struct Args {
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed rounds (after one warm-up round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these configurations (adam, shampoo_f1, shampoo_f10, shampoo_f100,
    /// shampoo_f100_dim256, shampoo_f100_dim128); all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// This thread's CPU time in seconds (`/proc/thread-self/schedstat`, nanoseconds on the
/// CPU); `None` where the file is missing (not Linux).
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

struct Candidate {
    name: String,
    opt: AnyOptimizer<Net, B>,
    net: Net,
    /// Steps per round (a multiple of the precondition frequency).
    steps: usize,
    /// Shampoo's precondition frequency and largest factor (`None` for Adam).
    shampoo: Option<(usize, usize)>,
    times: Vec<f64>,
    cpu_times: Vec<f64>,
    /// Of each round's step time, the optimizer's step (the rest: forward and backward).
    opt_times: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    let cli = <Args as clap::Parser>::parse();
    let batch = cli.batch;
    let device = Default::default();
    let x = Tensor::<B, 2>::random([batch, 784], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let net = Lenet5Config::new().init::<B>(&device);
    // The timed network trains all of its parameters.
    let missing = untrained_params(&net, cross_entropy(net.forward(x.clone()), y.clone()));
    assert!(
        missing.is_empty(),
        "parameters without a gradient: {missing:?}"
    );
    let shapes = param_shapes(&net);

    let shampoo = |freq: usize, max_dim: usize| OptimizerArgs {
        precondition_frequency: freq,
        max_preconditioner_dim: max_dim,
        ..OptimizerArgs::default().with_kind(OptimizerKind::Shampoo)
    };
    let mut candidates = vec![];
    for (name, shampoo_at, steps) in [
        ("adam", None, 100),
        ("shampoo_f1", Some((1, 1024)), 10),
        ("shampoo_f10", Some((10, 1024)), 100),
        ("shampoo_f100", Some((100, 1024)), 100),
        ("shampoo_f100_dim256", Some((100, 256)), 100),
        ("shampoo_f100_dim128", Some((100, 128)), 100),
    ] {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == name) {
            continue;
        }
        let args = match shampoo_at {
            None => OptimizerArgs::default(),
            Some((freq, max_dim)) => shampoo(freq, max_dim),
        };
        candidates.push(Candidate {
            name: name.into(),
            opt: args.build::<B, Net>()?,
            net: net.clone(),
            steps,
            shampoo: shampoo_at,
            times: vec![],
            cpu_times: vec![],
            opt_times: vec![],
        });
    }
    for round in 0..=cli.rounds {
        for c in &mut candidates {
            let roots_before = c.opt.health().map(|h| h.snapshot().roots_computed);
            let start = Instant::now();
            let cpu_start = thread_cpu_s();
            let mut in_optimizer = 0.0;
            for _ in 0..c.steps {
                let loss = cross_entropy(c.net.forward(x.clone()), y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &c.net);
                let opt_start = Instant::now();
                c.net = c.opt.step(1e-3, c.net.clone(), grads);
                in_optimizer += opt_start.elapsed().as_secs_f64();
            }
            let per_step = start.elapsed().as_secs_f64() / c.steps as f64;
            let cpu_per_step = match (cpu_start, thread_cpu_s()) {
                (Some(a), Some(b)) => (b - a) / c.steps as f64,
                _ => per_step,
            };
            let opt_per_step = in_optimizer / c.steps as f64;
            if let Some(h) = c.opt.health() {
                h.check()?;
                // What the round timed: every factor's root once per `freq` steps, no more
                // (the first round also takes the roots of step 1... `freq`).
                let (freq, max_dim) = c.shampoo.expect("a Shampoo candidate");
                let factors: usize = shapes
                    .iter()
                    .flat_map(|s| BlockPlan::new(s, max_dim, true).blocks)
                    .map(|b| b.shape.len())
                    .sum();
                let computed = h.snapshot().roots_computed - roots_before.unwrap_or(0);
                anyhow::ensure!(
                    computed == factors * c.steps / freq,
                    "{}: {computed} roots in a round of {} steps, expected {}",
                    c.name,
                    c.steps,
                    factors * c.steps / freq
                );
            }
            if round > 0 {
                // Round 0 warms caches and allocators, and takes Shampoo's first roots.
                c.times.push(per_step);
                c.cpu_times.push(cpu_per_step);
                c.opt_times.push(opt_per_step);
            }
            eprintln!(
                "round {round} {}: {:.1} ms/step ({:.1} ms CPU), {:.1} of them in the optimizer",
                c.name,
                per_step * 1e3,
                cpu_per_step * 1e3,
                opt_per_step * 1e3
            );
        }
    }
    let Some(adam) = candidates.iter().find(|c| c.name == "adam") else {
        anyhow::bail!("--only must include adam: ratios are to Adam's step time");
    };
    let (adam_wall, adam_cpu) = (median(adam.times.clone()), median(adam.cpu_times.clone()));
    let adam_opt = median(adam.opt_times.clone());
    let mut results = serde_json::Map::new();
    println!(
        "| optimizer | step ms (CPU) | / Adam (CPU) | step ms (wall) | / Adam (wall) | optimizer ms | over Adam's optimizer ms | products GMAC | GMAC/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for c in &candidates {
        let (t, cpu) = (median(c.times.clone()), median(c.cpu_times.clone()));
        let o = median(c.opt_times.clone());
        let macs = c
            .shampoo
            .map_or(0.0, |(_, d)| products_per_step(&shapes, d));
        println!(
            "| {} | {:.1} | {:.3} | {:.1} | {:.3} | {:.1} | {:.1} | {:.3} | {:.1} |",
            c.name,
            cpu * 1e3,
            cpu / adam_cpu,
            t * 1e3,
            t / adam_wall,
            o * 1e3,
            (o - adam_opt) * 1e3,
            macs * 1e-9,
            macs * 1e-9 / (o - adam_opt).max(1e-9)
        );
        results.insert(
            c.name.clone(),
            serde_json::json!({"step_s": t, "ratio_to_adam": t / adam_wall,
                "cpu_step_s": cpu, "cpu_ratio_to_adam": cpu / adam_cpu, "optimizer_s": o,
                "product_macs": macs, "rounds": c.times, "cpu_rounds": c.cpu_times,
                "optimizer_rounds": c.opt_times}),
        );
    }

    // Where the time goes: the blocks and one f64 inverse root per factor size.
    let mut blocks = vec![];
    for max_dim in [1024, 256, 128] {
        let mut sizes: Vec<usize> = vec![];
        for p in &shapes {
            for b in BlockPlan::new(p, max_dim, true).blocks {
                sizes.extend(b.shape);
            }
        }
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let macs = products_per_step(&shapes, max_dim);
        println!(
            "\nmax dim {max_dim}: {:.3} GMAC of products per step; factor sizes {sizes:?}",
            macs * 1e-9
        );
        let mut total = 0.0;
        for &n in sizes.iter().filter(|&&n| n >= 64) {
            let a: Vec<f64> = (0..n * n)
                .map(|i| if i % (n + 1) == 0 { 1.0 } else { 1e-3 })
                .collect();
            let start = Instant::now();
            inverse_root(&a, n, 4.0, 1.0, 1e-12, RootMethod::Eigen)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            total += start.elapsed().as_secs_f64();
        }
        println!(
            "  all roots of one computation (factors >= 64): {:.0} ms",
            total * 1e3
        );
        blocks.push(
            serde_json::json!({"max_dim": max_dim, "factor_sizes": sizes,
            "root_s": total, "product_macs": macs}),
        );
    }
    results.insert("roots".into(), serde_json::Value::Array(blocks));

    let name = if batch == 128 {
        "shampoo_step.json".to_string()
    } else {
        format!("shampoo_step_batch{batch}.json")
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../out/bench")
        .join(name);
    write_atomic(
        &out,
        serde_json::to_string_pretty(&serde_json::Value::Object(results))?.as_bytes(),
    )?;
    println!("\nwrote {}", out.display());
    Ok(())
}

/// Multiply-adds of Shampoo's products per step for parameters of `shapes` with factors up
/// to `max_dim`: per block of `n` elements and mode sizes `d_k`, the factor statistics on
/// one triangle (`n (d_k + 1) / 2` per mode) and the preconditioning's mode products
/// (`n d_k` per mode).
fn products_per_step(shapes: &[Vec<usize>], max_dim: usize) -> f64 {
    let mut macs = 0.0;
    for s in shapes {
        for b in BlockPlan::new(s, max_dim, true).blocks {
            let n = b.numel() as f64;
            for &d in &b.shape {
                macs += n * (d as f64 + 1.0) / 2.0 + n * d as f64;
            }
        }
    }
    macs
}

/// The shapes of LeNet-5's parameters.
fn param_shapes(net: &Net) -> Vec<Vec<usize>> {
    let mut shapes = vec![
        net.conv1.weight.dims().to_vec(),
        net.conv2.weight.dims().to_vec(),
        net.fc1.weight.dims().to_vec(),
        net.fc2.weight.dims().to_vec(),
    ];
    for bias in [
        &net.conv1.bias,
        &net.conv2.bias,
        &net.fc1.bias,
        &net.fc2.bias,
    ] {
        shapes.extend(bias.as_ref().map(|b| b.dims().to_vec()));
    }
    shapes
}
