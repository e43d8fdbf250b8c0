//! tether's side of `scripts/bench-train-vs-torch.py`: one training step (forward,
//! cross-entropy, plus the expected density for gated networks, backward, Adam) of
//! LeNet-300-100, LeNet-5, the small ResNet and a MobileNet-style network, gated (a hard-concrete gate on every
//! weight) and ungated, batch 128, flex backend. Before timing, one step of each network
//! must give every parameter a non-zero gradient.
//!
//! `--serve`: reads `NETWORK VARIANT STEPS` lines on stdin (`lenet300|lenet5|resnet|mobilenet`,
//! `gated|ungated`) and answers each with the wall seconds and the process CPU seconds per
//! step of that many steps (`WALL CPU`), so that the script interleaves tether's rounds
//! with PyTorch's in one run. Without it,
//! prints a table of median step times (`--rounds`, `--steps`).
//!
//! `--profile NETWORK VARIANT`: runs `--steps` steps with `tether_models::conv::timing`
//! on and prints the convolutions' CPU time per step by layer and pass, beside the step's
//! (the rest is burn's element-wise ops, pooling, the loss, the optimizer and the gates).
//!
//! `TETHER_CONV=burn` in the environment trains through burn's own convolution instead of
//! `tether_models::conv`'s (the "before" figures of issue 33); `TETHER_CONV=im2col` keeps
//! tether's convolution but its forward products on im2col and faer instead of the
//! implicit-GEMM kernel.
//!
//! Threads: the default build is single-threaded; with `--features flex-rayon`,
//! `RAYON_NUM_THREADS` sets burn-flex's (and tether's convolutions') thread count.
//!
//! Run: `cargo run --release -p tether-train --example train_vs_torch -- --rounds 5`

// Shared with the benches and tests/timed_networks.rs, which use more of them.
#[allow(dead_code)]
#[path = "../benches/common/conv_nets.rs"]
mod conv_nets;
#[allow(dead_code)]
#[path = "../benches/common/gate_nets.rs"]
mod gate_nets;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::Parser;
use conv_nets::{GatedMobileNet, MobileNet};
use gate_nets::{assert_trains_every_parameter, gated_loss, plain_loss};
use tether_models::gated::GatedNetwork;
use tether_models::l0::GateStructure;
use tether_models::lenet5::{GatedLenet5Config, Lenet5Config};
use tether_models::resnet::{GatedResnetConfig, ResnetConfig};

type B = Autodiff<Flex>;

const BATCH: usize = 128;
const NETWORKS: [&str; 4] = ["lenet300", "lenet5", "resnet", "mobilenet"];
const VARIANTS: [&str; 2] = ["ungated", "gated"];

#[derive(Parser)]
struct Args {
    /// Answer `NETWORK VARIANT STEPS` lines on stdin (for the Python script).
    #[arg(long)]
    serve: bool,
    /// Profile the convolutions of one network: `NETWORK VARIANT`.
    #[arg(long, num_args = 2, value_names = ["NETWORK", "VARIANT"])]
    profile: Option<Vec<String>>,
    /// Rounds of the standalone table.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Steps per round of the standalone table.
    #[arg(long, default_value_t = 3)]
    steps: usize,
}

/// One training step of a network, owning the network and its optimizer.
type Step = Box<dyn FnMut()>;

fn batch() -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
    let device = Default::default();
    let x = Tensor::random([BATCH, 784], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    (
        x,
        Tensor::from_data(TensorData::new(labels, [BATCH]), &device),
    )
}

fn gated_step<M: AutodiffModule<B> + GatedNetwork<B> + 'static>(name: &str, mut net: M) -> Step {
    let (x, y) = batch();
    assert_trains_every_parameter(name, &net, gated_loss(&net, x.clone(), y.clone()));
    let mut opt = AdamConfig::new().init::<B, M>();
    Box::new(move || {
        let loss = gated_loss(&net, x.clone(), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = opt.step(1e-3, net.clone(), grads);
    })
}

fn plain_step<M: AutodiffModule<B> + 'static>(
    name: &str,
    mut net: M,
    forward: fn(&M, Tensor<B, 2>) -> Tensor<B, 2>,
) -> Step {
    let (x, y) = batch();
    assert_trains_every_parameter(name, &net, plain_loss(forward(&net, x.clone()), y.clone()));
    let mut opt = AdamConfig::new().init::<B, M>();
    Box::new(move || {
        let loss = plain_loss(forward(&net, x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = opt.step(1e-3, net.clone(), grads);
    })
}

/// The step of `network`, `variant`, freshly built (and checked).
fn build(network: &str, variant: &str) -> anyhow::Result<Step> {
    let device = Default::default();
    let name = format!("{network}, {variant}");
    Ok(match (network, variant) {
        ("lenet300", "gated") => gated_step(&name, gate_nets::lenet300::<B>(&device).0),
        ("lenet300", "ungated") => {
            plain_step(&name, gate_nets::lenet300::<B>(&device).1, |n, x| {
                n.forward(x)
            })
        }
        ("lenet5", "gated") => gated_step(
            &name,
            GatedLenet5Config::new(GateStructure::Weight).init::<B>(&device),
        ),
        ("lenet5", "ungated") => plain_step(&name, Lenet5Config::new().init(&device), |n, x| {
            n.forward(x)
        }),
        ("resnet", "gated") => gated_step(
            &name,
            GatedResnetConfig::new(GateStructure::Weight).init::<B>(&device),
        ),
        ("resnet", "ungated") => plain_step(&name, ResnetConfig::new().init(&device), |n, x| {
            n.forward(x)
        }),
        ("mobilenet", "gated") => gated_step(&name, GatedMobileNet::<B>::new(&device)),
        ("mobilenet", "ungated") => {
            plain_step(&name, MobileNet::new(&device), |n: &MobileNet<B>, x| {
                n.forward(x)
            })
        }
        _ => bail!("unknown network {network:?} or variant {variant:?}"),
    })
}

/// CPU seconds this process (all its threads) has run.
#[cfg(target_os = "linux")]
fn process_cpu_seconds() -> f64 {
    tether_deploy::cpu_time::process_seconds()
        .expect("clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed")
}

#[cfg(not(target_os = "linux"))]
fn process_cpu_seconds() -> f64 {
    f64::NAN
}

/// Wall and process CPU seconds per step of `steps` steps.
fn time(step: &mut Step, steps: usize) -> (f64, f64) {
    let (start, cpu) = (Instant::now(), process_cpu_seconds());
    for _ in 0..steps {
        step();
    }
    let n = steps as f64;
    (
        start.elapsed().as_secs_f64() / n,
        (process_cpu_seconds() - cpu) / n,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn serve() -> anyhow::Result<()> {
    let mut steps: HashMap<(String, String), Step> = HashMap::new();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [network, variant, n] = words[..] else {
            bail!("expected `NETWORK VARIANT STEPS`, got {line:?}");
        };
        let n: usize = n.parse().with_context(|| format!("steps in {line:?}"))?;
        let key = (network.to_string(), variant.to_string());
        if !steps.contains_key(&key) {
            let mut step = build(network, variant)?;
            step(); // warm caches and allocators
            steps.insert(key.clone(), step);
        }
        let (wall, cpu) = time(steps.get_mut(&key).expect("inserted above"), n);
        let mut out = stdout.lock();
        writeln!(out, "{wall} {cpu}")?;
        out.flush()?;
    }
    Ok(())
}

/// Prints the per-layer profile of `steps` steps of one network.
fn profile(network: &str, variant: &str, steps: usize) -> anyhow::Result<()> {
    use tether_models::conv::timing;
    let mut step = build(network, variant)?;
    step();
    timing::take();
    timing::set_enabled(true);
    let (_, cpu) = time(&mut step, steps);
    timing::set_enabled(false);
    let entries = timing::take();
    let n = steps as f64;
    println!(
        "{network} {variant}: {:.1} CPU ms per step ({steps} steps)",
        cpu * 1e3
    );
    println!("| layer | pass | calls/step | CPU ms/step |");
    println!("|---|---|---|---|");
    let mut total = 0.0;
    for e in &entries {
        total += e.seconds;
        println!(
            "| {} | {:?} | {} | {:.2} |",
            e.layer,
            e.pass,
            e.calls as f64 / n,
            e.seconds / n * 1e3
        );
    }
    println!(
        "convolutions: {:.1} CPU ms per step; the rest of the step: {:.1}",
        total / n * 1e3,
        (cpu * n - total) / n * 1e3
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match std::env::var("TETHER_CONV").as_deref() {
        Ok("burn") => tether_models::conv::set_enabled(false),
        Ok("im2col") => tether_models::conv::set_implicit_enabled(false),
        Ok("tether") | Err(_) => {}
        Ok(other) => bail!("TETHER_CONV must be `burn`, `im2col` or `tether`, got {other:?}"),
    }
    if args.serve {
        return serve();
    }
    if let Some(p) = &args.profile {
        return profile(&p[0], &p[1], args.steps);
    }
    println!(
        "| network | variant | step ms (median of {}) |",
        args.rounds
    );
    println!("|---|---|---|");
    for network in NETWORKS {
        for variant in VARIANTS {
            let mut step = build(network, variant)?;
            step();
            let t = median(
                (0..args.rounds)
                    .map(|_| time(&mut step, args.steps).0)
                    .collect(),
            );
            println!("| {network} | {variant} | {:.1} |", t * 1e3);
        }
    }
    Ok(())
}
