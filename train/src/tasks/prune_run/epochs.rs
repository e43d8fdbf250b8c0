//! The epoch loop every method of a pruning run goes through: batches, steps,
//! evaluation, checkpoints, data-parallel shards.

use std::borrow::Cow;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::config::TRAIN_EVAL_SAMPLES;
use super::job::{Job, MethodState, PruneState};
use super::outputs::training_plot;
use super::report::EpochResult;
use crate::constrained::{
    ConstrainedOptimizer, ConstrainedProblem, ConstraintSet, load_checkpoint, save_checkpoint_with,
};
use crate::data::batches::{Batch, shuffled_order};
use crate::data::stream::{PREFETCH_DEPTH, batch_count, with_batches};
use crate::io::{csv, write_atomic};
use crate::optim::shampoo::ShampooHealth;
use crate::resume::{Interrupted, Position, RUN_FILE, RunState, checkpoint_dir, settings_key};
use crate::trainer::{FitOptions, StepInfo, try_fit};

impl Job<'_> {
    /// The epochs of one run, pruned or dense: [`fit`] over each epoch's shuffled batches
    /// (`on_step` gets every step, with its global index and the metrics rows to append to;
    /// only steps with `info.read` have values to log), then
    /// `evaluate` (test accuracy, density) on the test set, written to `epochs.csv`.
    ///
    /// Checkpoints (model, optimizer, multipliers, rows, `method` state, position) go to
    /// `OUT/checkpoint` every [`PruneConfig::checkpoint_every`] epochs and when the
    /// interrupt is raised (then the run returns [`Interrupted`]); a [`Job::resume`]
    /// starts from one. Each step's random draws come from a stream seeded by the run's
    /// seed and the global step, so a resumed run repeats the uninterrupted one exactly.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_epochs<B, M, O, P>(
        &self,
        model: M,
        device: &B::Device,
        opt: &mut ConstrainedOptimizer<O>,
        set: &mut ConstraintSet<B>,
        problem: &P,
        health: Option<ShampooHealth>,
        method: MethodState<'_>,
        mut on_epoch_start: impl FnMut(usize, usize, M) -> anyhow::Result<M>,
        mut on_step: impl FnMut(usize, StepInfo<'_, B, M>, &mut Vec<Vec<f64>>),
        evaluate: impl Fn(
            &M::InnerModule,
            &mut dyn Iterator<Item = Batch<B::InnerBackend>>,
        ) -> (f64, f64),
    ) -> anyhow::Result<(M, Vec<EpochResult>, Vec<Vec<f64>>)>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: burn::optim::Optimizer<M, B>,
        P: ConstrainedProblem<B, M, Input = Batch<B>>,
    {
        let c = self.config;
        // Batches are assembled as training reads them (`data::stream`): memory holds a
        // few batches, never an epoch's worth.
        let train_len = self.train.limited(c.train_limit);
        let test_len = self.test.limited(c.test_limit);
        let train_eval_len = train_len.min(TRAIN_EVAL_SAMPLES);
        let mut steps_per_epoch = 0;
        let (mut model, start, mut epochs, mut rows) = match &self.resume {
            Some(r) => {
                let (model, _) = load_checkpoint(&r.dir, model, opt, set)?;
                let state: PruneState = serde_json::from_value(r.state.task.clone())
                    .with_context(|| format!("corrupt checkpoint {}", r.dir.display()))?;
                (method.restore)(state.method)?;
                if self.progress {
                    println!(
                        "resuming from {}: epoch {}, step {} of it",
                        r.dir.display(),
                        r.state.position.epoch + 1,
                        r.state.position.step_in_epoch
                    );
                }
                (model, r.state.position, state.epochs, state.rows)
            }
            None => (model, Position::default(), Vec::new(), Vec::new()),
        };
        let checkpoint = checkpoint_dir(&c.out);
        let save = |model: &M,
                    opt: &ConstrainedOptimizer<O>,
                    set: &ConstraintSet<B>,
                    position: Position,
                    epochs: &[EpochResult],
                    rows: &[Vec<f64>]|
         -> anyhow::Result<()> {
            let state = PruneState {
                epochs: epochs.to_vec(),
                rows: rows.to_vec(),
                method: (method.save)(),
                latency: self.latency.borrow().clone(),
            };
            let json = RunState::file_bytes("prune", settings_key(c)?, position, &state)?;
            save_checkpoint_with(
                &checkpoint,
                position.global_step as u64,
                model,
                opt,
                set,
                &[(RUN_FILE, &json)],
            )?;
            Ok(())
        };
        let mut offset = start.global_step - start.step_in_epoch;
        for epoch in start.epoch..c.epochs {
            let batches = batch_count(train_len, c.batch, true);
            anyhow::ensure!(batches > 0, "fewer training images than one batch");
            steps_per_epoch = batches;
            let first = if epoch == start.epoch {
                start.step_in_epoch
            } else {
                0
            };
            model = on_epoch_start(epoch, offset + first, model)?;
            let label = self
                .progress
                .then(|| format!("epoch {}/{}", epoch + 1, c.epochs));
            let mut done = first;
            // The epoch's order; a resumed epoch starts at its first step not yet taken.
            let order = shuffled_order(train_len, c.seed, epoch as u64);
            let order = &order[(first * c.batch).min(order.len())..];
            let (order, batch, parallel) = self.shard(order)?;
            model = with_batches(
                self.train.source(),
                &order,
                batch,
                true,
                PREFETCH_DEPTH,
                |stream| {
                    try_fit(
                        model,
                        opt,
                        set,
                        problem,
                        &FitOptions::new(batches - first, label)
                            .with_health(health.clone())
                            .with_interrupt(Some(self.interrupt.clone()))
                            .with_step_seeds(c.seed, offset + first)
                            .with_parallel(parallel.clone())
                            .with_observe_every(c.log_every),
                        |_| match stream.next() {
                            Some(b) => Ok(b?.to_device::<B>(device)),
                            None => Err(anyhow::anyhow!(
                                "internal error: the epoch's batches ran out"
                            )),
                        },
                        |info| {
                            done += 1;
                            // Every step, read or not: the schedules (gmp's cuts, the
                            // L0 ramp) act on each; unread steps (`--log-every`) have no
                            // values, so the callbacks log only where `info.read`.
                            on_step(offset + first + info.step, info, &mut rows)
                        },
                    )
                },
            )?;
            if done < batches {
                let position = Position {
                    epoch,
                    step_in_epoch: done,
                    global_step: offset + done,
                };
                save(&model, opt, set, position, &epochs, &rows)?;
                return Err(Interrupted {
                    checkpoint,
                    position,
                    epochs: c.epochs,
                }
                .into());
            }
            offset += batches;
            let valid = model.valid();
            let (train_accuracy, _) = self.train.evaluate::<B::InnerBackend, _, _>(
                &valid,
                train_eval_len,
                device,
                &evaluate,
            )?;
            let (test_accuracy, density) = self
                .test
                .evaluate::<B::InnerBackend, _, _>(&valid, test_len, device, &evaluate)?;
            if self.progress {
                println!(
                    "epoch {}: train accuracy {train_accuracy:.4}, test accuracy \
                     {test_accuracy:.4}, density {density:.4} ({})",
                    epoch + 1,
                    c.goal()
                );
            }
            epochs.push(EpochResult {
                epoch: epoch + 1,
                train_accuracy,
                test_accuracy,
                density,
            });
            let position = Position {
                epoch: epoch + 1,
                step_in_epoch: 0,
                global_step: offset,
            };
            // In a data-parallel group every rank asks at every epoch's end (an all-reduce
            // each takes part in), so they stop at the same boundary: a rank-local answer
            // could leave one rank training and the others gone.
            let raised = match &parallel {
                Some(p) => p.any(self.interrupt.is_raised())?,
                None => self.interrupt.is_raised(),
            };
            let interrupted = raised && epoch + 1 < c.epochs;
            if (c.checkpoint_every.due(epoch + 1) && epoch + 1 < c.epochs) || interrupted {
                save(&model, opt, set, position, &epochs, &rows)?;
            }
            if interrupted {
                return Err(Interrupted {
                    checkpoint,
                    position,
                    epochs: c.epochs,
                }
                .into());
            }
        }
        let table: Vec<Vec<f64>> = epochs
            .iter()
            .map(|e| vec![e.epoch as f64, e.train_accuracy, e.test_accuracy, e.density])
            .collect();
        write_atomic(
            &c.out.join("epochs.csv"),
            csv(
                &[
                    "epoch".into(),
                    "train_accuracy".into(),
                    "test_accuracy".into(),
                    "density".into(),
                ],
                &table,
            )
            .as_bytes(),
        )?;
        training_plot(&c.out.join("training.png"), &rows, &epochs, steps_per_epoch)?;
        Ok((model, epochs, rows))
    }

    /// Data parallelism ([`crate::parallel`]): this rank's samples of the global batches
    /// in `order`, its batch size, and its part in the group; alone, all of `order` in
    /// batches of `--batch-size`.
    pub(super) fn shard<'o>(
        &self,
        order: &'o [usize],
    ) -> anyhow::Result<(
        Cow<'o, [usize]>,
        usize,
        Option<crate::parallel::DataParallel>,
    )> {
        use crate::parallel::{DataParallel, shard};
        let batch = self.config.batch;
        let Some(group) = &self.collective else {
            return Ok((Cow::Borrowed(order), batch, None));
        };
        anyhow::ensure!(
            self.config.max_latency.is_none(),
            "--max-latency with several replicas (processes or --devices): each would time \
             the kernels itself and constrain a different latency model (run the latency \
             budget on one replica)"
        );
        let (rank, ranks) = (group.rank(), group.size());
        let local = shard::local_batch(batch, ranks)?;
        let order = shard::shard_order(order, batch, rank, ranks)?;
        let parallel = DataParallel::new(group.clone(), local, batch)?;
        Ok((Cow::Owned(order), local, Some(parallel)))
    }
}
