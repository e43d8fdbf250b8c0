//! The magnitude baselines (one-shot global magnitude, Zhu & Gupta's gmp) as run methods.

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tether_models::classifier::Classifier;

use super::config::Method;
use super::job::{Job, MethodState};
use super::outputs::Export;
use super::report::{LayerResult, PruneReport, layers_json};
use crate::constrained::{ConstrainedOptimizer, ConstraintSet, UpdateScheme};
use crate::io::{csv, write_atomic};
use crate::plot::{Panel, Series, line_chart};
use crate::tasks::budget::BudgetResult;
use crate::tasks::budget::flash::FlashModel;
use crate::tasks::budget::units::{Bytes, Seconds};
use crate::tasks::metrics;

impl Job<'_> {
    /// A magnitude baseline ([`Method::Magnitude`] or [`Method::Gmp`]): trains the dense
    /// `model` through the same loop, optimizer and data as the L0 runs, prunes it by
    /// global magnitude on the method's schedule to the density target or to the largest
    /// size that fits the flash budget (whichever keeps fewer weights), fine-tunes, and
    /// writes the same outputs (`export` gets the network with the pruned weights zeroed).
    pub(super) fn train_magnitude<B, M>(
        self,
        model: M,
        device: &B::Device,
        deploy_bytes: impl Fn(&M::InnerModule) -> anyhow::Result<Vec<u8>>,
        export: impl Export<M::InnerModule>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Classifier<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        use crate::tasks::magnitude::{
            MaskedProblem, Masks, gmp_density, largest_fitting, prunable,
        };
        let c = self.config;
        let layers = prunable(&model.valid());
        let numels: Vec<usize> = layers.iter().map(|l| l.numel).collect();
        let total: usize = numels.iter().sum();
        let flash = match c.max_flash {
            Some(Bytes(max)) => {
                let flash = FlashModel::from_export(&deploy_bytes(&model.valid())?, &numels)?;
                let min = flash.min_size();
                anyhow::ensure!(
                    max as usize >= min,
                    "--max-flash {}: this network cannot be written in under {min} bytes ({})",
                    Bytes(max),
                    Bytes(min as u64)
                );
                Some((flash, max as usize))
            }
            None => None,
        };
        let latency = match c.max_latency {
            Some(Seconds(max)) => Some((
                self.latency_model(&deploy_bytes(&model.valid())?, &numels)?,
                max,
            )),
            None => None,
        };
        if let Some(Bytes(max)) = c.max_ram {
            let tthr = deploy_bytes(&model.valid())?;
            let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
            let full = tether_deploy::cli::device_ram(
                &tether_deploy::Model::parse(&aligned)?,
                c.ram_batch,
            )?;
            anyhow::ensure!(
                full <= max as usize,
                "--max-ram {}: this network needs {} of RAM at batch {} whatever its weights, \
                 and --method {} prunes single weights, which leaves every activation as \
                 wide; prune whole units with --method l0 --structure unit",
                Bytes(max),
                Bytes(full as u64),
                c.ram_batch,
                c.method_name()
            );
        }
        let density_keep = c
            .density_target()
            .map_or(total, |t| (t * total as f64).round() as usize);
        // The final count: the density target's, lowered to what fits the flash budget
        // with this network's weights as they are now.
        let final_keep = |masks: &Masks<B::InnerBackend>, net: &M::InnerModule| -> usize {
            let mut keep = density_keep.min(masks.kept().iter().sum());
            let counts = masks.counts_for(net);
            if let Some((flash, max)) = &flash {
                keep = largest_fitting(keep, |k| flash.size(&counts(k)) <= *max).unwrap_or(0);
            }
            if let Some((latency, max)) = &latency {
                keep = largest_fitting(keep, |k| latency.latency(&counts(k)) <= *max).unwrap_or(0);
            }
            keep
        };
        let steps_per_epoch = c
            .train_limit
            .map_or(self.train.len(), |l| l.min(self.train.len()))
            / c.batch;
        let prune_end = (c.epochs - c.magnitude_finetune_epochs()).max(1) * steps_per_epoch;
        let every = (prune_end / 100).max(1);
        let problem = MaskedProblem::<B>::new(Masks::full(layers, device));
        // The ramp's end density, estimated from the dense network (the last step uses
        // the exact count).
        let ramp_to = final_keep(&problem.masks(), &model.valid()) as f64 / total as f64;
        let mut set = ConstraintSet::<B>::new(device);
        let primal = c.optimizer.build()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        let method = c.method;
        let (model, epochs, steps) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &problem,
            health,
            MethodState {
                save: &|| serde_json::json!({"masks": problem.masks().to_hex()}),
                restore: &|state| {
                    let hex: Vec<String> = serde_json::from_value(state["masks"].clone())
                        .context("the checkpoint's masks")?;
                    problem.restore(&hex, device)
                },
            },
            |_, _, model| Ok(model),
            |step, info, steps| {
                // The masks for the next step, from the weights as they are.
                let next = step + 1;
                let keep = if next == prune_end {
                    Some(final_keep(&problem.masks(), &info.model.valid()))
                } else if method == Method::Gmp && next < prune_end && next % every == 0 {
                    let d = gmp_density(next, 0, prune_end, every, ramp_to);
                    Some((d * total as f64).round() as usize)
                } else {
                    None
                };
                if let Some(k) = keep {
                    problem.prune_to(&info.model.valid(), k, device);
                }
                if !info.read {
                    return;
                }
                steps.push(vec![
                    step as f64,
                    info.values.loss,
                    problem.masks().density(),
                ]);
            },
            |eval, test| {
                let masks = problem.masks();
                let masked = masks.apply(eval.clone());
                (
                    metrics::accuracy(test, |x| masked.logits(x)),
                    masks.density(),
                )
            },
        )?;
        let masks = problem.into_masks();
        write_atomic(
            &c.out.join("metrics.csv"),
            csv(&["step".into(), "loss".into(), "density".into()], &steps).as_bytes(),
        )?;
        let pruned = masks.apply(model.valid());
        let per_layer: Vec<LayerResult> = masks
            .layers()
            .iter()
            .zip(masks.kept())
            .map(|(l, kept)| LayerResult {
                gated_params: l.numel,
                kept,
                density: kept as f64 / l.numel as f64,
            })
            .collect();
        let layers_json = layers_json(&per_layer);
        let last = epochs.last();
        let mut summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(), "method": c.method_name(),
            "target_density": c.density_target(), "seed": c.seed, "epochs": c.epochs,
            "finetune_epochs": c.magnitude_finetune_epochs(), "dense": false,
            "optimizer": c.optimizer.optimizer,
            "final": {"test_accuracy": last.map(|e| e.test_accuracy), "density": last.map(|e| e.density)},
            "layers": layers_json,
        });
        let (st, tthr) = export(&pruned, &c.out, self.export_meta())?;
        let mut budgets = Vec::new();
        let kept = masks.kept();
        if let Some((model, max)) = &flash {
            budgets.push(
                BudgetResult::new("flash", *max as f64, tthr.len() as f64)
                    .with_predicted(model.size(&kept) as f64),
            );
        }
        if let Some((model, max)) = &latency {
            budgets.push(
                self.latency_result(*max, &tthr)?
                    .with_predicted(model.latency(&kept)),
            );
        }
        budgets.extend(self.ram_result(&tthr)?);
        if !budgets.is_empty() {
            summary["budgets"] = serde_json::to_value(&budgets)?;
        }
        if self.progress {
            for b in &budgets {
                println!("{}", b.describe());
            }
        }
        let mut panel_title = "Density".to_string();
        for b in &budgets {
            panel_title = format!(
                "{panel_title}; {} budget {}, reached {} ({})",
                b.name,
                b.budget,
                b.achieved,
                if b.met { "met" } else { "NOT met" }
            );
        }
        let end = steps.len() as f64;
        let mut series = vec![Series {
            label: format!("density ({})", c.method_name()),
            points: steps.iter().map(|r| (r[0], r[2])).collect(),
        }];
        if let Some(t) = c.density_target() {
            series.push(Series {
                label: format!("target {t}"),
                points: vec![(0.0, t), (end, t)],
            });
        }
        line_chart(
            &c.out.join("density.png"),
            &[Panel {
                title: panel_title,
                x_label: "step".into(),
                y_label: "fraction of weights kept".into(),
                series,
            }],
        )?;
        self.write_outputs(&st, &tthr, &summary)?;
        Ok(PruneReport {
            budgets,
            test_accuracy: last.map_or(f64::NAN, |e| e.test_accuracy),
            density: last.map_or(f64::NAN, |e| e.density),
            epochs,
            layers: per_layer,
            summary,
            files: vec![
                "metrics.csv",
                "epochs.csv",
                "training.png",
                "density.png",
                "model.mpk",
                "model.safetensors",
                "model.tthr",
                "summary.json",
            ],
        })
    }
}
