//! The L0 method: the network trained under its gates and constraints.

use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use tether_models::gated::GatedNetwork;

use super::config::Structure;
use super::job::{Job, MethodState};
use super::metrics_csv::{Logged, write_metrics};
use super::outputs::{Export, unit_layers};
use super::report::{LayerResult, PruneReport, layers_json};
use crate::constrained::{
    ConstrainedOptimizer, ConstraintKind, ConstraintSet, DualOptimizer, FormulationConfig,
    MultiplierConfig, UpdateScheme,
};
use crate::optim::{DecayStart, TwoGroups};
use crate::tasks::budget::BudgetResult;
use crate::tasks::budget::flash::FlashModel;
use crate::tasks::budget::units::{Bytes, Seconds};
use crate::tasks::budget::widths::{Measured, WidthModel};
use crate::tasks::prune::{
    FlashConstraint, FlashOf, LatencyConstraint, PruneProblem, RamConstraint, accuracy,
    global_density, layer_densities,
};
use crate::tasks::prune_ramp::Ramp;
use crate::tasks::prune_warmup::{open_gates, ranked_gates};
use crate::trainer::StepInfo;

impl Job<'_> {
    /// Trains `model` under its constraints (density, budgets) and writes every output;
    /// `export` folds the gates, saves the burn record and returns the safetensors and
    /// deploy bytes; `deploy_bytes` writes the deploy format alone (a budget reads the
    /// network's fixed cost off it before training).
    pub(super) fn train<B, M>(
        self,
        model: M,
        device: &B::Device,
        deploy_bytes: impl Fn(&M::InnerModule) -> anyhow::Result<Vec<u8>>,
        export: impl Export<M::InnerModule>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + GatedNetwork<B>,
        M::InnerModule: GatedNetwork<B::InnerBackend>,
    {
        let model = self.adopt_ids(model)?;
        let c = self.config;
        let gated: Vec<usize> = model.layer_gates().iter().map(|l| l.gated).collect();
        let layers = gated.len();
        let dual = c.dual_optimizer();
        let mut set = ConstraintSet::<B>::new(device);
        let multiplier = match c.fixed_penalty {
            // A multiplier that never moves is a fixed penalty coefficient.
            Some(p) => MultiplierConfig::new(DualOptimizer::gradient_ascent(0.0)).with_init(p),
            None => {
                MultiplierConfig::new(dual.clone()).with_restart_on_feasible(!c.no_dual_restarts)
            }
        };
        // What metrics.csv and the plot follow, in the order of the constraint set.
        let mut logged: Vec<Logged> = Vec::new();
        let mut problem = match c.density_target() {
            Some(t) => {
                let targets = if c.per_layer {
                    vec![t; layers]
                } else {
                    vec![t]
                };
                let id = set.add(
                    "density",
                    ConstraintKind::Inequality,
                    targets.len(),
                    FormulationConfig::Lagrangian(multiplier.clone()),
                )?;
                for (k, &t) in targets.iter().enumerate() {
                    let name = if c.per_layer {
                        format!("layer{k}")
                    } else {
                        "global".into()
                    };
                    logged.push(Logged::density(id, k, name, t));
                }
                PruneProblem::new(id, targets)
            }
            None => PruneProblem::budgets_only(),
        };
        if let Some(Bytes(max)) = c.max_flash {
            let export = deploy_bytes(&model.valid())?;
            let flash = if c.structure == Structure::Unit {
                FlashOf::Units(WidthModel::from_export(
                    &export,
                    &gated,
                    &unit_layers(c, layers),
                    Measured::FileBytes,
                )?)
            } else {
                FlashOf::Weights(FlashModel::from_export(&export, &gated)?)
            };
            let min = flash.min_size()?;
            anyhow::ensure!(
                max as usize >= min,
                "--max-flash {}: this network cannot be written in under {min} bytes ({}: \
                 its tables, biases, ungated tensors and {}); give at least that",
                Bytes(max),
                Bytes(min as u64),
                if c.structure == Structure::Unit {
                    "one unit of every layer"
                } else {
                    "the row pointers of its pruned weights"
                }
            );
            let id = set.add(
                "flash",
                ConstraintKind::Inequality,
                1,
                FormulationConfig::Lagrangian(multiplier.clone()),
            )?;
            if self.progress {
                println!(
                    "flash budget {} (the unpruned network: {}, the smallest it can be: {})",
                    Bytes(max),
                    Bytes(flash.full_size() as u64),
                    Bytes(min as u64)
                );
            }
            let constraint = FlashConstraint {
                id,
                model: flash,
                budget: max as usize,
            };
            logged.push(Logged::flash(&constraint));
            problem = problem.with_flash(constraint);
        }
        if let Some(Seconds(max)) = c.max_latency {
            let latency = self.latency_model(&deploy_bytes(&model.valid())?, &gated)?;
            let id = set.add(
                "latency",
                ConstraintKind::Inequality,
                1,
                FormulationConfig::Lagrangian(multiplier.clone()),
            )?;
            let constraint = LatencyConstraint {
                id,
                model: latency,
                budget: max,
            };
            logged.push(Logged::latency(&constraint));
            problem = problem.with_latency(constraint);
        }
        if let Some(Bytes(max)) = c.max_ram {
            let ram = WidthModel::from_export(
                &deploy_bytes(&model.valid())?,
                &gated,
                &unit_layers(c, layers),
                Measured::DeviceRam { batch: c.ram_batch },
            )?;
            if let Some(model) = self.ram_model_needed(ram, max as usize)? {
                let id = set.add(
                    "ram",
                    ConstraintKind::Inequality,
                    1,
                    FormulationConfig::Lagrangian(multiplier.clone()),
                )?;
                let constraint = RamConstraint {
                    id,
                    model,
                    budget: max as usize,
                };
                logged.push(Logged::ram(&constraint));
                problem = problem.with_ram(constraint);
            }
        }
        let steps_per_epoch = c
            .train_limit
            .map_or(self.train.len(), |l| l.min(self.train.len()))
            / c.batch;
        let problem = problem.with_ramp(Ramp::new(
            c.warmup() * steps_per_epoch,
            c.ramp_epochs * steps_per_epoch,
        ));
        let gate_ids = model.gate_ids();
        // The chosen optimizer steps the weights; the gate locations keep Adam (their
        // rate and momentum are tuned for it, see `gate_lr`).
        let weights = c.optimizer.build()?;
        let health = weights.health();
        let mut primal = TwoGroups::new(
            weights,
            AdamConfig::new().with_beta_1(c.gate_momentum as f32).init(),
            gate_ids.clone(),
            c.gate_lr / c.lr,
        );
        // The gates' rate decays from the step every constraint is first met.
        let decay_start = DecayStart::new();
        if !c.constant_gate_lr {
            primal = primal.with_second_decay(c.epochs * steps_per_epoch, decay_start.clone());
        }
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        // One step's row of metrics.csv (only the read steps have values), and the
        // learning-rate decay's start once every constraint is met at its final bound.
        let log_step = |step: usize, info: &StepInfo<'_, B, M>, steps: &mut Vec<Vec<f64>>| {
            if !info.read {
                return;
            }
            if problem.is_frozen() {
                // Gates and multipliers no longer move: their last values (none yet in
                // the warm-up), the new loss.
                let mut row = steps
                    .last()
                    .cloned()
                    .unwrap_or_else(|| vec![f64::NAN; 2 + 3 * logged.len()]);
                row[0] = step as f64;
                row[1] = info.values.loss;
                steps.push(row);
                return;
            }
            let met =
                info.values.constraints.iter().all(|(_, _, strict)| {
                    strict.as_ref().is_some_and(|s| s.iter().all(|&g| g <= 0.0))
                });
            // Met at a ramped bound is not met: the decay waits for the final one.
            if met && problem.ramp().done() {
                decay_start.fire(step + 1);
            }
            let mut row = vec![step as f64, info.values.loss];
            for l in &logged {
                row.extend(l.observe(info, problem.ramp()));
            }
            steps.push(row);
        };
        let (model, epochs, steps) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &problem,
            health,
            MethodState::none(),
            |epoch, first_step, model| {
                // Each step's bound; set here for a resumed run's first step, then after
                // every step for the next.
                problem.ramp().at_step(first_step);
                // The dense warm-up: every gate open and held (frozen: deterministic gates,
                // no constraint). Set at every warm-up epoch's start, so that a resumed
                // run is in the same state.
                let warmup = c.warmup();
                if epoch < warmup {
                    if epoch == 0 && self.progress {
                        println!("epochs 1-{warmup}: dense warm-up (gates open and held)");
                    }
                    problem.freeze();
                    return Ok(open_gates(model, &gate_ids));
                }
                let model = if epoch == warmup && warmup > 0 {
                    problem.thaw();
                    let p = c.gate_init_drop_rate;
                    ranked_gates(
                        model,
                        &gate_ids,
                        (1.0 - p).ln() - p.ln(),
                        c.gate_init_spread,
                        c.gate_init,
                        c.seed,
                    )?
                } else {
                    model
                };
                if epoch + c.finetune_epochs >= c.epochs
                    && c.finetune_epochs > 0
                    && !problem.is_frozen()
                {
                    if self.progress {
                        println!(
                            "epochs {}-{}: fine-tuning the pruned network (gates frozen)",
                            epoch + 1,
                            c.epochs
                        );
                    }
                    problem.freeze();
                }
                Ok(model)
            },
            |step, info, steps| {
                log_step(step, &info, steps);
                // The next step's bound (this step's values were measured against this
                // step's, and logged with it above).
                problem.ramp().at_step(step + 1);
            },
            |eval, test| {
                let (_, dens) = global_density(eval);
                let dens: f32 = dens.into_scalar().elem();
                (accuracy(eval, test), dens as f64)
            },
        )?;
        let eval = model.valid();
        let (_, true_d) = layer_densities(&eval);
        let per_layer: Vec<LayerResult> = eval
            .layer_gates()
            .iter()
            .zip(true_d)
            .map(|(l, d)| {
                let d: f32 = d.into_scalar().elem();
                LayerResult {
                    gated_params: l.gated,
                    kept: (d as f64 * l.gated as f64).round() as usize,
                    density: d as f64,
                }
            })
            .collect();
        let layers_json = layers_json(&per_layer);
        let last = epochs.last();
        let mut summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(),
            "target_density": c.density_target(),
            "per_layer_constraints": c.per_layer, "dual": format!("{dual:?}"),
            "fixed_penalty": c.fixed_penalty, "seed": c.seed, "epochs": c.epochs, "finetune_epochs": c.finetune_epochs, "dense": false,
            "warmup_epochs": c.warmup(), "ramp_epochs": c.ramp_epochs, "gate_init": c.gate_init, "gate_init_drop_rate": c.gate_init_drop_rate,
            "optimizer": c.optimizer.optimizer,
            "gate_lr_schedule": if c.constant_gate_lr { "constant" } else { "cosine" },
            "final": {"test_accuracy": last.map(|e| e.test_accuracy), "density": last.map(|e| e.density)},
            "layers": layers_json,
        });
        // The budgets are judged on the file as written, not on the model of its size.
        let (st, tthr) = export(&eval, &c.out, self.export_meta())?;
        let mut budgets = Vec::new();
        let kept: Vec<usize> = per_layer.iter().map(|l| l.kept).collect();
        if let Some(flash) = &problem.flash {
            let active: Vec<_> = eval.layer_gates().into_iter().map(|l| l.active).collect();
            budgets.push(
                BudgetResult::new("flash", flash.budget as f64, tthr.len() as f64)
                    .with_predicted(flash.model.size_of(&active)? as f64),
            );
        }
        if let Some(latency) = &problem.latency {
            budgets.push(
                self.latency_result(latency.budget, &tthr)?
                    .with_predicted(latency.model.latency(&kept)),
            );
        }
        let ram = self.ram_result(&tthr)?;
        budgets.extend(match (&problem.ram, ram) {
            (Some(r), Some(b)) => {
                let active: Vec<_> = eval.layer_gates().into_iter().map(|l| l.active).collect();
                let predicted = r.model.measure(&r.model.widths_of(&active))?;
                Some(b.with_predicted(predicted as f64))
            }
            (_, b) => b,
        });
        write_metrics(c, &logged, &steps, &budgets)?;
        if !budgets.is_empty() {
            summary["budgets"] = serde_json::to_value(&budgets)?;
            if self.progress {
                for b in &budgets {
                    println!("{}", b.describe());
                }
            }
        }
        self.write_outputs(&st, &tthr, &summary)?;
        let files = vec![
            "metrics.csv",
            "epochs.csv",
            "training.png",
            "density.png",
            "model.mpk",
            "model.safetensors",
            "model.tthr",
            "summary.json",
        ];
        Ok(PruneReport {
            budgets,
            test_accuracy: last.map_or(f64::NAN, |e| e.test_accuracy),
            density: last.map_or(f64::NAN, |e| e.density),
            epochs,
            layers: per_layer,
            summary,
            files,
        })
    }
}
