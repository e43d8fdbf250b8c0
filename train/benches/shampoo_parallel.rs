//! Data-parallel Distributed Shampoo on real data: LeNet-5 on MNIST, batch 128, Shampoo
//! with Adam grafting, trained through the one training loop (`trainer::fit`) on one
//! device, then by `--workers` replicas (`parallel::local`: threads on the CPU device,
//! burn-collective's local all-reduce, each on its slice of every batch, each owning a
//! share of the blocks; `--replicate`: each computing every block). Reports the throughput
//! ratio and how far the replicas end from the single-device run (float rounding in the
//! gradient average, amplified by the inverse roots), with the test accuracy of both.
//!
//! Writes `out/bench/shampoo_parallel_eps<epsilon>.json`.
//!
//! Run: `cargo bench -p tether-train --bench shampoo_parallel`

use std::path::Path;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use clap::Parser;
use tether_models::classifier::Classifier;
use tether_models::lenet5::{Lenet5, Lenet5Config};
use tether_train::constrained::{ConstrainedOptimizer, ConstraintSet, UpdateScheme};
use tether_train::data::batches::{Batch, DeviceSet};
use tether_train::data::mnist::{ImageSet, MnistKind, Split};
use tether_train::io::write_atomic;
use tether_train::optim::{OptimizerArgs, OptimizerKind};
use tether_train::parallel::{DataParallel, local::run_replicas};
use tether_train::tasks::classify::ClassifyProblem;
use tether_train::tasks::metrics::accuracy;
use tether_train::trainer::{FitOptions, fit};

type B = Autodiff<Flex>;

#[derive(Parser, Debug)]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Data-parallel workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Shampoo's precondition frequency.
    #[arg(long, default_value_t = 10)]
    frequency: usize,
    /// Shampoo's epsilon (added to the factors' eigenvalues).
    #[arg(long, default_value_t = 1e-12)]
    epsilon: f64,
    /// Every worker computes every block (no ownership).
    #[arg(long)]
    replicate: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const BATCH: usize = 128;
const LR: f64 = 1e-3;

fn params(net: &Lenet5<B>) -> Vec<f32> {
    let mut v = vec![];
    for t in [
        net.conv1.weight.val().flatten::<1>(0, 3),
        net.conv2.weight.val().flatten::<1>(0, 3),
        net.fc1.weight.val().flatten::<1>(0, 1),
        net.fc2.weight.val().flatten::<1>(0, 1),
    ] {
        v.extend(t.into_data().into_vec::<f32>().expect("f32"));
    }
    v
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = Default::default();
    let train = ImageSet::load(MnistKind::Mnist, Split::Train)?;
    let test = ImageSet::load(MnistKind::Mnist, Split::Test)?;
    let train = DeviceSet::<B>::new(&train, None, &device);
    let test = DeviceSet::<Flex>::new(&test, None, &device).in_order(1000);
    let batches: Vec<Batch<B>> = train.epoch(BATCH, 0, 0, true)[..args.steps].to_vec();
    <B as Backend>::seed(&device, 0);
    // burn initialises parameters lazily, each clone on its own: materialise them once so
    // every run starts from the same weights.
    let init = Lenet5Config::new().init::<B>(&device);
    let init = init.clone().load_record(init.into_record());
    let shampoo = OptimizerArgs {
        precondition_frequency: args.frequency,
        shampoo_epsilon: args.epsilon,
        shampoo_replicate: args.replicate,
        ..OptimizerArgs::default().with_kind(OptimizerKind::Shampoo)
    };

    // One device, the whole batch.
    let primal = shampoo.build::<B, Lenet5<B>>()?;
    let health = primal.health();
    let mut opt = ConstrainedOptimizer::new(primal, LR, UpdateScheme::Simultaneous);
    let mut set = ConstraintSet::<B>::new(&device);
    let started = Instant::now();
    let single = fit(
        init.clone(),
        &mut opt,
        &mut set,
        &ClassifyProblem,
        &FitOptions::new(args.steps, Some("1 device".into())).with_health(health),
        |s| batches[s].clone(),
        |_| {},
    )?;
    let single_s = started.elapsed().as_secs_f64();

    // `workers` peers, each on its rows of every batch.
    let rows = BATCH / args.workers;
    let devices = vec![device; args.workers];
    let started = Instant::now();
    let mut replicas = run_replicas::<Flex, _, _>(&devices, |rank| {
        let group = tether_train::parallel::group().expect("a replica's group");
        let parallel = DataParallel::new(group, rows, BATCH)?;
        let primal = shampoo.build::<B, Lenet5<B>>()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, LR, UpdateScheme::Simultaneous);
        let mut set = ConstraintSet::<B>::new(&device);
        let range = rank * rows..(rank + 1) * rows;
        let label = (rank == 0).then(|| format!("{} workers", args.workers));
        let net = fit(
            init.clone(),
            &mut opt,
            &mut set,
            &ClassifyProblem,
            &FitOptions::new(args.steps, label)
                .with_health(health)
                .with_parallel(Some(parallel)),
            |s| Batch {
                images: batches[s].images.clone().slice([range.clone(), 0..784]),
                labels: batches[s].labels.clone().slice([range.clone()]),
            },
            |_| {},
        )?;
        Ok(net)
    })?;
    let parallel_s = started.elapsed().as_secs_f64();

    let reference = params(&single);
    let mut max_diff = 0.0f32;
    let mut replicas_equal = true;
    let first = params(&replicas[0]);
    for r in &replicas {
        let p = params(r);
        replicas_equal &= p == first;
        for (a, b) in p.iter().zip(&reference) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let acc_single = accuracy(&test, |x| single.valid().logits(x));
    let replica = replicas.swap_remove(0).valid();
    let acc_parallel = accuracy(&test, |x| replica.logits(x));
    println!("| run | steps/s | test accuracy |");
    println!("|---|---|---|");
    println!(
        "| 1 device | {:.2} | {acc_single:.4} |",
        args.steps as f64 / single_s
    );
    println!(
        "| {} workers | {:.2} | {acc_parallel:.4} |",
        args.workers,
        args.steps as f64 / parallel_s
    );
    println!(
        "speedup {:.2}x; replicas identical: {replicas_equal}; max |param - single| {max_diff:.2e} (largest |param| {scale:.2})",
        single_s / parallel_s
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../out/bench/shampoo_parallel_eps{:e}.json",
        args.epsilon
    ));
    let json = serde_json::json!({
        "steps": args.steps, "workers": args.workers, "replicate": args.replicate, "frequency": args.frequency, "epsilon": args.epsilon,
        "single_s": single_s, "parallel_s": parallel_s, "speedup": single_s / parallel_s,
        "replicas_identical": replicas_equal, "max_abs_param_diff": max_diff,
        "test_accuracy_single": acc_single, "test_accuracy_parallel": acc_parallel,
    });
    write_atomic(&out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}
