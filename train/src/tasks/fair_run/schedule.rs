//! The training schedule of a fair-pruning run: epochs of [`fit`] with a cosine learning
//! rate and evaluations along the way, the primal optimizer, and the best-iterate rule.

use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tether_models::classifier::Classifier;

use crate::constrained::{ConstrainedOptimizer, ConstraintSet, UpdateScheme};
use crate::optim::AnyOptimizer;
use crate::optim::shampoo::ShampooHealth;
use crate::parallel::DataParallel;
use crate::resume::{CheckpointEvery, Interrupt, Interrupted, Position};
use crate::tasks::fair::{FairProblem, GroupedSet};
use crate::trainer::{FitOptions, fit};

use super::FairConfig;

/// Batch orders of the gradual-pruning epochs start here, so that they are none of the
/// dense or fine-tuning epochs' (those count from 0).
pub(super) const PRUNING_SHUFFLE: u64 = 1 << 32;

/// One phase of training (dense, gradual pruning, fine-tuning).
pub(super) struct Phase<'a> {
    /// Epochs of the phase.
    pub epochs: usize,
    /// Cosine decay of the learning rate over the epochs (the last iterates settle).
    pub decay: bool,
    /// The progress bar's label; none without progress.
    pub label: Option<&'a str>,
    /// `on_check` runs this many times per epoch (0: never).
    pub checks: usize,
    /// The epochs' batch orders are `shuffle_from + epoch` (a later phase does not replay
    /// an earlier one's).
    pub shuffle_from: u64,
}

/// The primal optimizer wrapped for [`fit`], and Shampoo's failure handle.
pub(super) struct Primal<M: AutodiffModule<B>, B: AutodiffBackend> {
    /// The optimizer.
    pub opt: ConstrainedOptimizer<AnyOptimizer<M, B>>,
    /// Shampoo's health (none for the other optimizers).
    pub health: Option<ShampooHealth>,
}

/// The configured optimizer at learning rate `lr` (dense training, gradual pruning and
/// fine-tuning each start a fresh one).
pub(super) fn primal_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    c: &FairConfig,
    lr: f64,
) -> anyhow::Result<Primal<M, B>> {
    let primal = c.optimizer.build()?;
    let health = primal.health();
    Ok(Primal {
        opt: ConstrainedOptimizer::new(primal, lr, UpdateScheme::Simultaneous),
        health,
    })
}

/// Writes a checkpoint of the run with the phase's model, optimizer, multipliers and log
/// at a position (the caller adds its own state).
pub(super) type SaveCheckpoint<'a, M, B> = &'a dyn Fn(
    &M,
    &ConstrainedOptimizer<AnyOptimizer<M, B>>,
    &ConstraintSet<B>,
    Position,
    &[Vec<f64>],
) -> anyhow::Result<()>;

/// A phase that stops on an interrupt with a checkpoint, writes one every few epochs, and
/// can start from one (the fine-tuning).
pub(super) struct Resumable<'a, M: AutodiffModule<B>, B: AutodiffBackend> {
    /// Where the phase starts (0 unless resumed).
    pub start: Position,
    /// Stops the phase after the step under way.
    pub interrupt: Interrupt,
    /// Periodic checkpoints, in epochs of the phase.
    pub every: CheckpointEvery,
    /// The folder the checkpoint goes to.
    pub checkpoint: PathBuf,
    /// Writes it.
    pub save: SaveCheckpoint<'a, M, B>,
}

/// `phase.epochs` epochs of [`fit`] over `train`'s shuffled batches; each step appends
/// `[step, loss, max (strict) violation, mean multiplier, max |multiplier|]` to `log`, and
/// `on_check(epochs done, model)` runs `phase.checks` times per epoch (at evenly spaced
/// steps, the last at the epoch's end). `at_epoch_start(epoch, model)` may change the
/// model before each epoch (gradual pruning). Each step's random draws come from a stream
/// seeded by the run's seed and the step. With `resumable` the phase starts where it
/// says, checkpoints, and returns [`Interrupted`] when interrupted.
///
/// In a data-parallel group ([`crate::parallel::group`]: `--devices N` or `mpirun`) each
/// rank takes its shard of every global batch of `c.batch` ([`crate::parallel::shard`]),
/// the loop reduces the loss, violations and gradients, and the ranks agree on every
/// interrupt, so they stop at the same step and boundary.
#[allow(clippy::too_many_arguments)] // the phase's state, each borrowed differently
pub(super) fn run_epochs<B, M>(
    mut model: M,
    train: &GroupedSet<B>,
    c: &FairConfig,
    primal: &mut Primal<M, B>,
    set: &mut ConstraintSet<B>,
    problem: &FairProblem,
    phase: &Phase<'_>,
    log: &mut Vec<Vec<f64>>,
    mut at_epoch_start: impl FnMut(usize, M) -> M,
    mut on_check: impl FnMut(f64, &M),
    resumable: Option<&Resumable<'_, M, B>>,
) -> anyhow::Result<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Classifier<B>,
{
    let epochs = phase.epochs;
    let opt = &mut primal.opt;
    // Data parallelism (`crate::parallel`): this rank trains on its shard of every global
    // batch, the `rank`-th contiguous `local` of its rows.
    let group = crate::parallel::group().filter(|g| g.size() > 1);
    let (rank, local) = match &group {
        Some(g) => (
            g.rank(),
            crate::parallel::shard::local_batch(c.batch, g.size())?,
        ),
        None => (0, c.batch),
    };
    let parallel = match &group {
        Some(g) => Some(DataParallel::new(g.clone(), local, c.batch)?),
        None => None,
    };
    let start = resumable.map_or(Position::default(), |r| r.start);
    let mut offset = start.global_step - start.step_in_epoch;
    let base_lr = opt.lr();
    for epoch in start.epoch..epochs {
        if phase.decay {
            // Cosine over epochs: the last iterates settle.
            let t = epoch as f64 / epochs as f64;
            opt.set_lr(base_lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
        }
        model = at_epoch_start(epoch, model);
        // Each batch is assembled when its step takes it.
        let batches = train.epoch_rows(c.batch, c.seed, phase.shuffle_from + epoch as u64);
        anyhow::ensure!(!batches.is_empty(), "fewer training samples than one batch");
        let chunk = batches.len().div_ceil(phase.checks.max(1));
        // Steps of this epoch taken before the checkpoint the phase resumed from.
        let first = if epoch == start.epoch {
            start.step_in_epoch
        } else {
            0
        };
        for (k, part) in batches.chunks(chunk).enumerate() {
            let part_start = k * chunk;
            if part_start + part.len() <= first {
                // Taken, and checked, before the checkpoint.
                continue;
            }
            let from = part_start + first.saturating_sub(part_start);
            let todo = &batches[from..part_start + part.len()];
            let label = phase.label.map(|l| format!("{l} {}/{epochs}", epoch + 1));
            let mut done = 0;
            let fitted = fit(
                model,
                opt,
                set,
                problem,
                &FitOptions::new(todo.len(), label)
                    .with_health(primal.health.clone())
                    .with_interrupt(resumable.map(|r| r.interrupt.clone()))
                    .with_step_seeds(c.seed, offset + from)
                    .with_parallel(parallel.clone()),
                |s| train.batch(&todo[s][rank * local..(rank + 1) * local]),
                |info| {
                    done += 1;
                    let mut row = vec![(offset + from + info.step) as f64, info.values.loss];
                    match info.values.constraints.first() {
                        Some((_, v, strict)) => {
                            let v = strict.as_ref().unwrap_or(v);
                            row.push(v.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                            let lambda = info.set.constraints()[0]
                                .formulation()
                                .multiplier()
                                .map(|m| m.to_vec())
                                .unwrap_or_default();
                            let n = lambda.len().max(1) as f64;
                            row.push(lambda.iter().sum::<f64>() / n);
                            row.push(lambda.iter().fold(0.0, |m: f64, l| m.max(l.abs())));
                        }
                        None => row.extend([f64::NAN, 0.0, 0.0]),
                    }
                    log.push(row);
                },
            );
            // A rank that could not gather a global batch says why (the step it failed
            // on reports only a NaN loss).
            model = fitted.map_err(|e| problem.take_failure().unwrap_or(e))?;
            if let Some(r) = resumable.filter(|_| done < todo.len()) {
                let position = Position {
                    epoch,
                    step_in_epoch: from + done,
                    global_step: offset + from + done,
                };
                (r.save)(&model, opt, set, position, log)?;
                return Err(Interrupted {
                    checkpoint: r.checkpoint.clone(),
                    position,
                    epochs,
                }
                .into());
            }
            if phase.checks > 0 {
                let done = (part_start + part.len()) as f64 / batches.len() as f64;
                on_check(epoch as f64 + done, &model);
            }
        }
        offset += batches.len();
        if let Some(r) = resumable.filter(|_| epoch + 1 < epochs) {
            let position = Position {
                epoch: epoch + 1,
                step_in_epoch: 0,
                global_step: offset,
            };
            // Every rank stops at the same epoch boundary.
            let interrupted = match &parallel {
                Some(p) => p.any(r.interrupt.is_raised())?,
                None => r.interrupt.is_raised(),
            };
            if r.every.due(epoch + 1) || interrupted {
                (r.save)(&model, opt, set, position, log)?;
            }
            if interrupted {
                return Err(Interrupted {
                    checkpoint: r.checkpoint.clone(),
                    position,
                    epochs,
                }
                .into());
            }
        }
    }
    Ok(model)
}

/// An evaluated fine-tuning iterate.
pub(super) struct Candidate<M> {
    /// Every group's training gap within epsilon.
    pub feasible: bool,
    /// Training accuracy.
    pub accuracy: f64,
    /// The largest training gap.
    pub worst: f64,
    /// Epochs done when it was evaluated.
    pub at: f64,
    /// The iterate.
    pub model: M,
}

impl<M> Candidate<M> {
    /// Feasible beats infeasible; among feasible, higher training accuracy (ties: the
    /// later); among infeasible, the smaller worst gap.
    pub fn beats(&self, other: &Self) -> bool {
        match (self.feasible, other.feasible) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.accuracy >= other.accuracy,
            (false, false) => self.worst <= other.worst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Candidate;

    fn candidate(feasible: bool, accuracy: f64, worst: f64) -> Candidate<()> {
        Candidate {
            feasible,
            accuracy,
            worst,
            at: 0.0,
            model: (),
        }
    }

    /// The best-iterate rule: feasibility first, then accuracy, else the smaller gap.
    #[test]
    fn feasible_iterates_beat_infeasible_ones_then_accuracy_decides() {
        let (good, better) = (candidate(true, 0.8, 0.0), candidate(true, 0.9, 0.0));
        let infeasible = candidate(false, 0.95, 0.05);
        assert!(good.beats(&infeasible) && !infeasible.beats(&good));
        assert!(better.beats(&good) && !good.beats(&better));
        assert!(
            good.beats(&candidate(true, 0.8, 0.0)),
            "ties go to the later"
        );
        assert!(candidate(false, 0.5, 0.01).beats(&infeasible));
    }
}
