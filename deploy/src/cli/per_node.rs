//! `bench --per-node`: where one inference's time goes, step by step and summed by kind
//! of op, on the automatic kernels, single thread.
//!
//! Each step is timed by a clock read between steps ([`Plan::run_observed`]): on Linux the
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so that time spent waiting for a core on
//! a loaded machine is not counted, elsewhere the wall clock. A trial runs the plan as
//! many times as fill about 10 ms, and each step's figure is the median over the trials
//! of its mean time in a trial. A clock read costs well under a microsecond, so the
//! steps' sum is close to a whole inference's time.

use std::io::Write;
use std::string::String;
use std::time::Instant;
use std::vec::Vec;

use anyhow::ensure;

use super::host::host_plan_options;
use crate::plan::{KernelChoice, Plan};

/// Seconds of repetitions per trial (as `bench`'s).
const TRIAL_SECONDS: f64 = 0.01;

/// Seconds of this thread's CPU time (the wall clock where there is none).
#[cfg(target_os = "linux")]
fn now() -> f64 {
    crate::cpu_time::thread_seconds().unwrap_or_else(wall)
}

/// Seconds of the wall clock since the first call.
fn wall() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[cfg(not(target_os = "linux"))]
fn now() -> f64 {
    wall()
}

/// One step's median time and what it runs.
pub struct StepTime {
    /// What the step runs.
    pub step: crate::plan::StepReport,
    /// Median seconds per inference (thread CPU time on Linux).
    pub seconds: f64,
}

/// The median time of every step of `model`'s automatic plan at `batch`, over `trials`
/// trials, with deterministic inputs in [0, 1).
///
/// # Errors
/// No trial, a zero batch, a model that does not plan or a failing run.
pub fn step_times(
    model: &crate::format::Model,
    batch: usize,
    trials: usize,
) -> anyhow::Result<Vec<StepTime>> {
    ensure!(trials >= 1, "--trials must be at least 1");
    ensure!(batch >= 1, "--batch sizes must be at least 1");
    let inputs = super::bench::synthetic_inputs(model, batch);
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut plan = Plan::new(model.clone(), &host_plan_options(batch, KernelChoice::Auto))?;
    let steps = plan.steps();
    plan.run_observed(&refs, &mut |_| {})?;
    let t = now();
    let mut reps = 0usize;
    while now() - t < TRIAL_SECONDS {
        plan.run_observed(&refs, &mut |_| {})?;
        reps += 1;
    }
    let reps = reps.max(1);
    let mut per_trial = std::vec![Vec::with_capacity(trials); steps.len()];
    let mut sums = std::vec![0.0f64; steps.len()];
    for _ in 0..trials {
        sums.fill(0.0);
        for _ in 0..reps {
            let mut last = now();
            plan.run_observed(&refs, &mut |i| {
                let t = now();
                sums[i] += t - last;
                last = t;
            })?;
        }
        for (t, s) in per_trial.iter_mut().zip(&sums) {
            t.push(s / reps as f64);
        }
    }
    Ok(steps
        .into_iter()
        .zip(per_trial)
        .map(|(step, mut t)| {
            t.sort_by(f64::total_cmp);
            StepTime {
                step,
                seconds: t[t.len() / 2],
            }
        })
        .collect())
}

/// Prints [`step_times`] as a table, then the sums by kind (largest first), to `out`.
///
/// # Errors
/// As [`step_times`], or a write to `out` failing.
pub fn print_step_times(
    model: &crate::format::Model,
    batch: usize,
    trials: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let times = step_times(model, batch, trials)?;
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    writeln!(
        out,
        "batch {batch}: per step, median of {trials} trials (automatic kernels; thread CPU \
         time on Linux)"
    )?;
    writeln!(
        out,
        "{:>4} {:>5}  {:<10} {:<15} {:<20} {:>10} {:>6}  detail",
        "step", "node", "op", "kind", "kernel", "us", "%"
    )?;
    for (i, t) in times.iter().enumerate() {
        let s = &t.step;
        writeln!(
            out,
            "{i:>4} {:>5}  {:<10} {:<15} {:<20} {:>10.1} {:>6.1}  {}",
            s.node,
            s.op,
            s.kind,
            s.kernel,
            t.seconds * 1e6,
            100.0 * t.seconds / total,
            s.detail
        )?;
    }
    let mut kinds: Vec<(&str, f64, usize)> = Vec::new();
    for t in &times {
        match kinds.iter_mut().find(|k| k.0 == t.step.kind) {
            Some(k) => {
                k.1 += t.seconds;
                k.2 += 1;
            }
            None => kinds.push((t.step.kind, t.seconds, 1)),
        }
    }
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    writeln!(out, "batch {batch}: by kind")?;
    for (kind, s, n) in &kinds {
        let label = String::from(*kind);
        writeln!(
            out,
            "  {label:<15} {:>10.1} us {:>6.1} %  ({n} steps)",
            s * 1e6,
            100.0 * s / total
        )?;
    }
    writeln!(out, "  {:<15} {:>10.1} us", "total", total * 1e6)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlignedBytes, Model, ModelBuilder, OpSpec};

    #[test]
    fn every_step_is_timed_and_summed_by_kind() {
        let mut mb = ModelBuilder::new(&[8]);
        let w = mb.dense(&[4, 8], &[0.5; 32]);
        let h = mb.op(
            OpSpec::Linear {
                weight: w,
                bias: None,
            },
            &[mb.input()],
        );
        let y = mb.op(OpSpec::Sine { w0: 1.0 }, &[h]);
        let bytes = AlignedBytes::from_slice(&mb.finish(y).expect("a valid model"));
        let model = Model::parse(&bytes).expect("parses");
        let times = step_times(&model, 2, 3).expect("times");
        let kinds: Vec<&str> = times.iter().map(|t| t.step.kind).collect();
        assert_eq!(kinds, ["linear", "elementwise"]);
        assert!(
            times
                .iter()
                .all(|t| t.seconds.is_finite() && t.seconds >= 0.0)
        );

        let mut out = Vec::new();
        print_step_times(&model, 2, 3, &mut out).expect("prints");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("batch 2: by kind"), "{text}");
        assert!(text.contains("  linear "), "{text}");
        assert!(text.contains("  total "), "{text}");
        let err = step_times(&model, 2, 0).err().expect("no trial");
        assert!(std::format!("{err}").contains("--trials"), "{err}");
    }
}
