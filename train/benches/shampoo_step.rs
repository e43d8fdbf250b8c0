//! Shampoo's step time over Adam's on LeNet-5 (the Caffe variant: 431k parameters), batch
//! 128, flex backend (one core): whole steps (forward, backward, optimizer), so the ratio is
//! the epoch-time ratio. Shampoo with Adam grafting at precondition frequency 1, 10 and 100
//! (factors up to the reference's 1024), and at 100 with factors cut at 256. Each
//! configuration runs a multiple of its frequency per round (so root computations are
//! amortised as in training); rounds are interleaved; ratio of medians.
//!
//! Then where the time goes: the optimizer's share of each step (timed around
//! `Optimizer::step`), the parameter blocks and one inverse root per factor size.
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
    /// shampoo_f100_dim256); all when empty.
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

struct Candidate {
    name: String,
    opt: AnyOptimizer<Net, B>,
    net: Net,
    /// Steps per round (a multiple of the precondition frequency).
    steps: usize,
    times: Vec<f64>,
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

    let shampoo = |freq: usize, max_dim: usize| OptimizerArgs {
        precondition_frequency: freq,
        max_preconditioner_dim: max_dim,
        ..OptimizerArgs::default().with_kind(OptimizerKind::Shampoo)
    };
    let mut candidates = vec![];
    for (name, args, steps) in [
        ("adam", OptimizerArgs::default(), 100),
        ("shampoo_f1", shampoo(1, 1024), 10),
        ("shampoo_f10", shampoo(10, 1024), 100),
        ("shampoo_f100", shampoo(100, 1024), 100),
        ("shampoo_f100_dim256", shampoo(100, 256), 100),
    ] {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == name) {
            continue;
        }
        candidates.push(Candidate {
            name: name.into(),
            opt: args.build::<B, Net>()?,
            net: net.clone(),
            steps,
            times: vec![],
            opt_times: vec![],
        });
    }
    for round in 0..=cli.rounds {
        for c in &mut candidates {
            let start = Instant::now();
            let mut in_optimizer = 0.0;
            for _ in 0..c.steps {
                let loss = cross_entropy(c.net.forward(x.clone()), y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &c.net);
                let opt_start = Instant::now();
                c.net = c.opt.step(1e-3, c.net.clone(), grads);
                in_optimizer += opt_start.elapsed().as_secs_f64();
            }
            let per_step = start.elapsed().as_secs_f64() / c.steps as f64;
            let opt_per_step = in_optimizer / c.steps as f64;
            if let Some(h) = c.opt.health() {
                h.check()?;
            }
            if round > 0 {
                // Round 0 warms caches and allocators, and takes Shampoo's first roots.
                c.times.push(per_step);
                c.opt_times.push(opt_per_step);
            }
            eprintln!(
                "round {round} {}: {:.1} ms/step, {:.1} of them in the optimizer",
                c.name,
                per_step * 1e3,
                opt_per_step * 1e3
            );
        }
    }
    let Some(adam) = candidates.iter().find(|c| c.name == "adam") else {
        anyhow::bail!("--only must include adam: ratios are to Adam's step time");
    };
    let adam = median(adam.times.clone());
    let mut results = serde_json::Map::new();
    println!("| optimizer | step ms | / Adam | optimizer ms |");
    println!("|---|---|---|---|");
    for c in &candidates {
        let t = median(c.times.clone());
        let o = median(c.opt_times.clone());
        println!(
            "| {} | {:.1} | {:.2} | {:.1} |",
            c.name,
            t * 1e3,
            t / adam,
            o * 1e3
        );
        results.insert(
            c.name.clone(),
            serde_json::json!({"step_s": t, "ratio_to_adam": t / adam, "optimizer_s": o,
                "rounds": c.times, "optimizer_rounds": c.opt_times}),
        );
    }

    // Where the time goes: the blocks and one f64 inverse root per factor size.
    let mut blocks = vec![];
    for (name, max_dim) in [("1024", 1024), ("256", 256)] {
        let mut sizes: Vec<usize> = vec![];
        for p in param_shapes(&net) {
            for b in BlockPlan::new(&p, max_dim, true).blocks {
                sizes.extend(b.shape);
            }
        }
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        println!("\nfactor sizes, max dim {name}: {sizes:?}");
        let mut total = 0.0;
        for &n in sizes.iter().filter(|&&n| n >= 64) {
            let a: Vec<f64> = (0..n * n)
                .map(|i| if i % (n + 1) == 0 { 1.0 } else { 1e-3 })
                .collect();
            let start = Instant::now();
            inverse_root(&a, n, 4.0, 1.0, 1e-12, RootMethod::Eigen)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let s = start.elapsed().as_secs_f64();
            total += s;
            println!("  eigen root {n}x{n}: {:.1} ms", s * 1e3);
        }
        println!("  all roots of one computation: {:.0} ms", total * 1e3);
        blocks
            .push(serde_json::json!({"max_dim": max_dim, "factor_sizes": sizes, "root_s": total}));
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
