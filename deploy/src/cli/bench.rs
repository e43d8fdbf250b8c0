//! `bench`: the latency of one inference with dense, sparse and automatic kernels, single
//! thread (a mesh model: in f32 and f64 on a mesh).

use std::io::Write;
use std::time::Instant;
use std::vec::Vec;

use anyhow::{Context, ensure};

use super::config::BenchConfig;
use super::files::{load_model, parse_model};
use super::host::host_plan_options;
use super::mesh::{bench_mesh, is_mesh_model};
use crate::plan::{KernelChoice, Plan};

/// Seconds of repetitions one timed trial of a kernel choice fills (measured on a warm
/// plan).
const TRIAL_SECONDS: f64 = 0.01;

/// A warm plan of one model at the automatic kernels, single thread, and the number of
/// runs that fill one timed trial (about 10 ms): what [`latency`] times, and what a caller
/// timing several models interleaves (the same load then hits them alike).
pub struct PlanTimer<'a> {
    plan: Plan<'a>,
    inputs: Vec<Vec<f32>>,
    reps: usize,
}

/// Deterministic values in [0, 1) for each input of `model`, `batch` samples each.
pub(super) fn synthetic_inputs(model: &crate::format::Model, batch: usize) -> Vec<Vec<f32>> {
    model
        .inputs
        .iter()
        .map(|&v| {
            (0..model.shapes[v].numel() * batch)
                .map(|i| ((i * 31) % 17) as f32 / 17.0)
                .collect()
        })
        .collect()
}

/// Runs `plan` on `inputs` (every input of the model); output 0's first value.
fn run_once(plan: &mut Plan, inputs: &[Vec<f32>]) -> Result<f32, crate::error::Error> {
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    plan.run_inputs(&refs).map(|y| y[0])
}

impl<'a> PlanTimer<'a> {
    /// Plans `model` for `batch` samples, warms it and counts the runs of one trial.
    ///
    /// # Errors
    /// A zero batch, a model that does not plan, or a failing run.
    pub fn new(model: crate::format::Model<'a>, batch: usize) -> anyhow::Result<Self> {
        ensure!(batch >= 1, "batch must be at least 1");
        let inputs = synthetic_inputs(&model, batch);
        let mut plan = Plan::new(model, &host_plan_options(batch, KernelChoice::Auto))?;
        run_once(&mut plan, &inputs)?;
        let t = Instant::now();
        let mut reps = 0usize;
        while t.elapsed().as_secs_f64() < TRIAL_SECONDS {
            run_once(&mut plan, &inputs)?;
            reps += 1;
        }
        Ok(Self {
            plan,
            inputs,
            reps: reps.max(1),
        })
    }

    /// Seconds per inference over one trial.
    ///
    /// # Errors
    /// A failing run.
    pub fn trial(&mut self) -> anyhow::Result<f64> {
        let t = Instant::now();
        for _ in 0..self.reps {
            std::hint::black_box(run_once(&mut self.plan, &self.inputs)?);
        }
        Ok(t.elapsed().as_secs_f64() / self.reps as f64)
    }
}

/// Median seconds of one inference of `model` at `batch` with the automatic kernels,
/// single thread, over `trials` trials of a [`PlanTimer`]: the `auto` column of
/// [`bench()`], and the latency a budget is judged by.
///
/// # Errors
/// The model does not plan, or a run fails.
pub fn latency(model: &crate::format::Model, batch: usize, trials: usize) -> anyhow::Result<f64> {
    ensure!(trials >= 1, "trials must be at least 1");
    let mut timer = PlanTimer::new(model.clone(), batch)?;
    let mut times = (0..trials)
        .map(|_| timer.trial())
        .collect::<anyhow::Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times `config.model` at each batch size, the kernel choices in turn within each trial,
/// and prints the medians and the median dense / auto ratio to `out` (a mesh model: on
/// `config.mesh`, see [`bench_mesh`]; with `config.per_node`, each step of the automatic
/// plan, see [`print_step_times`](super::print_step_times)).
///
/// # Errors
/// No trial or a zero batch size, a mesh missing for a mesh model (or given for another),
/// an unreadable or invalid model, or a write to `out` failing.
pub fn bench(config: &BenchConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let BenchConfig {
        model: path,
        batches,
        trials,
        mesh,
        per_node,
    } = config;
    let trials = *trials;
    ensure!(trials >= 1, "--trials must be at least 1");
    let bytes = load_model(path)?;
    let model = parse_model(&bytes, path)?;
    if is_mesh_model(&model) {
        let mesh = mesh
            .as_deref()
            .context("a mesh model is timed on a mesh: give --mesh FILE")?;
        return bench_mesh(model, path, mesh, trials, out);
    }
    ensure!(mesh.is_none(), "--mesh is for mesh models");
    if *per_node {
        writeln!(out, "{}: time per step, single thread", path.display())?;
        for &batch in batches {
            super::per_node::print_step_times(&model, batch, trials, out)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{}: latency per batch, single thread; {trials} trials, the kernel choices in turn \
         within each trial; times are medians, the ratio is the median of per-trial ratios \
         (so load on the machine hits both sides alike)",
        path.display()
    )?;
    writeln!(
        out,
        "{:>5}  {:>12} {:>12} {:>12}  {:>14}",
        "batch", "dense", "sparse", "auto", "dense / auto"
    )?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for &batch in batches {
        ensure!(batch >= 1, "--batch sizes must be at least 1");
        let inputs = synthetic_inputs(&model, batch);
        let mut plans = Vec::new();
        for k in [
            KernelChoice::Dense,
            KernelChoice::Sparse,
            KernelChoice::Auto,
        ] {
            let mut plan = Plan::new(model.clone(), &host_plan_options(batch, k))?;
            // Repetitions filling ~10 ms, measured on a warm plan.
            run_once(&mut plan, &inputs)?;
            let t = Instant::now();
            let mut reps = 0usize;
            while t.elapsed().as_secs_f64() < TRIAL_SECONDS {
                run_once(&mut plan, &inputs)?;
                reps += 1;
            }
            plans.push((plan, reps));
        }
        let mut times: [Vec<f64>; 3] = Default::default();
        for _ in 0..trials {
            for ((plan, reps), out) in plans.iter_mut().zip(times.iter_mut()) {
                let t = Instant::now();
                for _ in 0..*reps {
                    std::hint::black_box(run_once(plan, &inputs).unwrap_or(0.0));
                }
                out.push(t.elapsed().as_secs_f64() / *reps as f64);
            }
        }
        let ratio = median(times[0].iter().zip(&times[2]).map(|(d, a)| d / a).collect());
        let [d, s, a] = times.map(median);
        writeln!(
            out,
            "{batch:>5}  {:>9.1} us {:>9.1} us {:>9.1} us  {:>13.2}x",
            d * 1e6,
            s * 1e6,
            a * 1e6,
            ratio
        )?;
    }
    Ok(())
}
