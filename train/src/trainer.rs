//! The one training loop every task runs: roll the constrained optimizer for a number of
//! steps, report each step to a callback (metrics, logging), show progress, stop on the
//! first error (a NaN loss or violation is an error, not a silently poisoned run).
//!
//! The loop's own host reads are the observed values, on the steps
//! [`FitOptions::observe_every`] says; each step's reads (the callback's included) are
//! counted by [`tether_models::host`], so a test can hold a step to what logging asks.

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::constrained::{
    ConstrainedError, ConstrainedOptimizer, ConstrainedProblem, ConstraintSet, ObservedValues,
};
use crate::denormals::FlushDenormals;
use crate::optim::shampoo::ShampooHealth;
use crate::parallel::DataParallel;
use crate::resume::{Interrupt, Interrupted, step_seed};

/// What the loop tells its callback after every step.
pub struct StepInfo<'a, B: AutodiffBackend, M> {
    /// 0-based step index.
    pub step: usize,
    /// The model the values were observed at (before the step): what a caller keeps to
    /// remember the best model seen (COIN keeps its best-PSNR weights).
    pub model: &'a M,
    /// Loss and violations observed at the start of the step: read back to the host on
    /// the steps [`FitOptions::observe_every`] says, [`ObservedValues::unread`] on the
    /// others.
    pub values: &'a ObservedValues,
    /// Whether `values` were read back this step (what a logging callback checks).
    pub read: bool,
    /// The constraint set after the step (multipliers, penalties).
    pub set: &'a ConstraintSet<B>,
}

/// How long to run and how to show it.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Number of steps.
    pub steps: usize,
    /// Label of the progress bar; `None` hides it (tests, benchmarks).
    pub progress: Option<String>,
    /// Shampoo's failure handle ([`crate::optim::AnyOptimizer::health`]), checked after
    /// every step: burn's `Optimizer::step` cannot return an error, so a non-finite gradient
    /// or failing inverse roots surface here.
    pub optimizer_health: Option<ShampooHealth>,
    /// Checked before every step: once raised, the loop returns after the steps taken so
    /// far (the caller counts them through `on_step`, checkpoints and reports).
    pub interrupt: Option<Interrupt>,
    /// `(seed, first)`: before its step `s` the loop reseeds the backend's generator (and
    /// the thread's gate-noise generator, `tether_models::l0::noise`) with
    /// [`step_seed`]`(seed, first + s)`, so each step's random draws (the gates' noise)
    /// depend on the run's seed and the global step alone, and a resumed run draws what
    /// the uninterrupted one did.
    pub step_seeds: Option<(u64, usize)>,
    /// A progress bar of the caller's (several calls sharing one bar); it replaces
    /// `progress`'s and is left unfinished.
    pub bar: Option<ProgressBar>,
    /// This process's part in a data-parallel group ([`crate::parallel`]): the caller
    /// feeds this rank's shard of each global batch, the loop reduces the observations
    /// and gradients so every rank takes the single process's step, and the ranks agree
    /// on the interrupt. `None`: one process.
    pub parallel: Option<DataParallel>,
    /// Read the loss and violations back to the host on every `observe_every`-th global
    /// step (and the call's last), for logging and the finiteness check: on a GPU each
    /// read is a synchronisation that stalls the step. The steps between make no host
    /// read of the loop's own; their non-finite values are counted on the device and
    /// reported by the next read step ([`ConstraintSet::observe`]). 1 (the default):
    /// every step, a NaN stops the run at the step that made it.
    pub observe_every: usize,
}

impl FitOptions {
    /// `steps` steps with a progress bar labelled `progress` (`None`: hidden) and no
    /// optimizer health check.
    pub fn new(steps: usize, progress: Option<String>) -> Self {
        Self {
            steps,
            progress,
            optimizer_health: None,
            interrupt: None,
            step_seeds: None,
            bar: None,
            parallel: None,
            observe_every: 1,
        }
    }

    /// Reads the step's values back only on every `every`-th global step (and the last):
    /// see [`FitOptions::observe_every`]. 0 is taken as 1.
    pub fn with_observe_every(mut self, every: usize) -> Self {
        self.observe_every = every.max(1);
        self
    }

    /// Runs as one rank of `parallel`'s group (`None`: alone).
    pub fn with_parallel(mut self, parallel: Option<DataParallel>) -> Self {
        self.parallel = parallel;
        self
    }

    /// Shows progress on `bar` (the caller's, shared by several calls).
    pub fn with_bar(mut self, bar: ProgressBar) -> Self {
        self.bar = Some(bar);
        self
    }

    /// Stops early when `interrupt` is raised.
    pub fn with_interrupt(mut self, interrupt: Option<Interrupt>) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Step-indexed random streams: step `s` of this call is global step `first + s` of a
    /// run seeded with `seed`.
    pub fn with_step_seeds(mut self, seed: u64, first: usize) -> Self {
        self.step_seeds = Some((seed, first));
        self
    }

    /// Checks `health` after every step.
    pub fn with_health(mut self, health: Option<ShampooHealth>) -> Self {
        self.optimizer_health = health;
        self
    }
}

/// The loop's progress bar: `steps` long, labelled `label` (`None`: hidden).
pub fn progress_bar(steps: usize, label: Option<&str>) -> ProgressBar {
    let Some(label) = label else {
        return ProgressBar::hidden();
    };
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Runs `steps` iterations of `optimizer` on `problem`; `input(step)` supplies each step's
/// input (a batch, or `()`). Returns early, after the step under way, when
/// [`FitOptions::interrupt`] is raised.
pub fn fit<B, M, O, P>(
    model: M,
    optimizer: &mut ConstrainedOptimizer<O>,
    set: &mut ConstraintSet<B>,
    problem: &P,
    options: &FitOptions,
    mut input: impl FnMut(usize) -> P::Input,
    on_step: impl FnMut(StepInfo<'_, B, M>),
) -> Result<M, ConstrainedError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    P: ConstrainedProblem<B, M>,
{
    try_fit(
        model,
        optimizer,
        set,
        problem,
        options,
        |s| Ok(input(s)),
        on_step,
    )
}

/// [`fit`] whose input can fail: batches read from files as training goes
/// ([`crate::data::stream`]). The first input that cannot be had ends the loop with its
/// error, before a step is taken on it.
pub fn try_fit<B, M, O, P, E>(
    mut model: M,
    optimizer: &mut ConstrainedOptimizer<O>,
    set: &mut ConstraintSet<B>,
    problem: &P,
    options: &FitOptions,
    mut input: impl FnMut(usize) -> Result<P::Input, E>,
    mut on_step: impl FnMut(StepInfo<'_, B, M>),
) -> Result<M, E>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    P: ConstrainedProblem<B, M>,
    E: From<ConstrainedError>,
{
    let bar = match &options.bar {
        Some(bar) => bar.clone(),
        None => progress_bar(options.steps, options.progress.as_deref()),
    };
    // Subnormal floats (weights and moments shrunk by decay, squares of tiny gradients)
    // slow x86 arithmetic by an order of magnitude and carry nothing the model can use:
    // the loop, callbacks included, runs with them flushed to zero (`crate::denormals`).
    let _flush = FlushDenormals::new();
    for step in 0..options.steps {
        let started = std::time::Instant::now();
        let reads = tether_models::host::ReadCounter::start();
        let raised = options.interrupt.as_ref().is_some_and(Interrupt::is_raised);
        // Ranks stop after the same step (a signal reaches each at its own moment), or
        // the ones that go on would wait for the others' gradients forever.
        let raised = match &options.parallel {
            Some(p) => p.any(raised)?,
            None => raised,
        };
        if raised {
            if options.bar.is_none() {
                bar.abandon_with_message("interrupted");
            }
            return Ok(model);
        }
        // The host gate path draws from this thread's own generator, seeded alike
        // (`tether_models::l0::noise`): data-parallel replicas on threads share the
        // backend's, and would otherwise interleave their draws. Unset after the step.
        let _noise = options.step_seeds.map(|(seed, first)| {
            let seed = step_seed(seed, first + step);
            B::seed(set.device(), seed);
            tether_models::l0::noise::seed_thread(seed)
        });
        // Burn modules share their tensors: the clone is a handful of reference counts.
        let observed = model.clone();
        let step_input = input(step)?;
        let global = options.step_seeds.map_or(step, |(_, first)| first + step);
        // The call's last step is always read: a NaN on the unread steps before it is
        // reported before the model is handed back (and checkpointed).
        let read = global.is_multiple_of(options.observe_every.max(1)) || step + 1 == options.steps;
        let out = optimizer.roll_observed(
            model,
            set,
            problem,
            &step_input,
            options.parallel.as_ref(),
            read,
        )?;
        model = out.model;
        if let Some(health) = &options.optimizer_health {
            health
                .check()
                .map_err(|e| ConstrainedError::Optimizer(e.to_string()))?;
        }
        crate::parallel::stats::record_step(started.elapsed());
        if read {
            bar.set_message(format!("loss {:.4}", out.values.loss));
        }
        bar.inc(1);
        on_step(StepInfo {
            step,
            model: &observed,
            values: &out.values,
            read,
            set,
        });
        if let Some(interrupt) = &options.interrupt {
            interrupt.count_step();
        }
        tether_models::host::step_done(reads);
    }
    if options.bar.is_none() {
        bar.finish();
    }
    Ok(model)
}

/// Where a resumable run of steps checkpoints, and what stops it.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoints<'a> {
    /// Steps between checkpoints (0: only when interrupted).
    pub every: usize,
    /// Stops the run after the step under way.
    pub interrupt: &'a Interrupt,
    /// The checkpoint folder (reported in [`Interrupted`]).
    pub dir: &'a std::path::Path,
}

/// Why [`fit_resumable`] stopped before its last step.
#[derive(Debug)]
pub enum StepsStop<E> {
    /// A training failure.
    Train(ConstrainedError),
    /// The checkpoint could not be written.
    Save(E),
    /// Interrupted, the checkpoint written.
    Interrupted(Interrupted),
}

/// [`fit`] over the global steps `steps` (from where a resumed run stands) in segments that
/// end at `checkpoints`' boundaries: `save(model, optimizer, set, step)` writes a
/// checkpoint there and when the interrupt stops the run (which then returns
/// [`StepsStop::Interrupted`]). `on_step(step, info)` sees every step, `input(step)` gives
/// its input; step `t` draws its random numbers from [`step_seed`]`(seed, t)`.
/// `options` gives the bar and the health check (its `steps` are ignored).
#[allow(clippy::too_many_arguments)]
pub fn fit_resumable<B, M, O, P, E>(
    mut model: M,
    optimizer: &mut ConstrainedOptimizer<O>,
    set: &mut ConstraintSet<B>,
    problem: &P,
    steps: std::ops::Range<usize>,
    seed: u64,
    options: &FitOptions,
    checkpoints: Option<Checkpoints<'_>>,
    mut input: impl FnMut(usize) -> P::Input,
    mut on_step: impl FnMut(usize, StepInfo<'_, B, M>),
    save: impl Fn(&M, &ConstrainedOptimizer<O>, &ConstraintSet<B>, usize) -> Result<(), E>,
) -> Result<M, StepsStop<E>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    P: ConstrainedProblem<B, M>,
{
    let every = checkpoints.map_or(0, |c| c.every);
    let mut at = steps.start;
    while at < steps.end {
        let next = at
            .checked_div(every)
            .map_or(steps.end, |k| ((k + 1) * every).min(steps.end));
        let mut done = 0;
        let segment = FitOptions {
            steps: next - at,
            interrupt: checkpoints.map(|c| c.interrupt.clone()),
            step_seeds: Some((seed, at)),
            ..options.clone()
        };
        model = fit(
            model,
            optimizer,
            set,
            problem,
            &segment,
            |s| input(at + s),
            |info| {
                done += 1;
                on_step(at + info.step, info);
            },
        )
        .map_err(StepsStop::Train)?;
        at += done;
        if let Some(c) = checkpoints {
            let stopped = at < next;
            if stopped || (at < steps.end && every > 0 && at.is_multiple_of(every)) {
                save(&model, optimizer, set, at).map_err(StepsStop::Save)?;
            }
            if stopped {
                return Err(StepsStop::Interrupted(Interrupted::after_step(c.dir, at)));
            }
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use crate::constrained::{DualOptimizer, UpdateScheme};
    use crate::tasks::svm::{SvmFitConfig, fit_svm};
    use burn::backend::{Autodiff, Flex};

    /// A product whose exact result is subnormal (1e-40).
    fn subnormal_product() -> f32 {
        std::hint::black_box(1e-30f32) * std::hint::black_box(1e-10f32)
    }

    /// Every step (its callback included) runs with subnormals flushed to zero, and the
    /// caller's gradual underflow is back once `fit` returns.
    #[test]
    fn the_loop_flushes_subnormals_and_restores_the_callers_flags() {
        assert!(subnormal_product() > 0.0, "gradual underflow by default");
        let cfg = SvmFitConfig {
            dual: DualOptimizer::gradient_ascent(0.1),
            augmented: None,
            scheme: UpdateScheme::Simultaneous,
            primal_lr: 0.1,
            steps: 3,
        };
        let x = vec![vec![1.0, 0.5], vec![-1.0, -0.5]];
        let y = vec![1.0, -1.0];
        let mut inside = Vec::new();
        fit_svm::<Autodiff<Flex>>(
            &x,
            &y,
            &cfg,
            &Default::default(),
            None,
            false,
            |_, _, _, _| inside.push(subnormal_product()),
        )
        .unwrap();
        assert_eq!(inside.len(), 3);
        #[cfg(target_arch = "x86_64")]
        assert!(inside.iter().all(|&p| p == 0.0), "{inside:?}");
        assert!(subnormal_product() > 0.0, "the caller's flags are restored");
    }
}
