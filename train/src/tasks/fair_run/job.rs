//! The three phases of a fair-pruning run in order: the dense model, pruning, and the
//! fine-tuning under the group constraints, each measured per group on both splits.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tether_models::masked::MaskedMlp;
use tether_models::mlp::{Mlp, MlpConfig};

use crate::constrained::{ConstraintKind, ConstraintSet, FormulationConfig, MultiplierConfig};
use crate::data::groups;
use crate::tasks::fair::{FairProblem, GroupMetrics, GroupedSet};
use crate::tasks::outputs::save_record;

use super::data::FairData;
use super::outputs::{Measured, max, write_outputs};
use super::schedule::{Candidate, PRUNING_SHUFFLE, Phase, load_mlp, primal_optimizer, run_epochs};
use super::{FairConfig, FairDataset, FairMethod, FairReport};

/// Samples per evaluation batch.
const EVAL_BATCH: usize = 1000;

/// The dense model and what choosing it measured.
struct Dense<B: AutodiffBackend> {
    model: Mlp<B>,
    /// Validation loss after each dense epoch (empty without a held-out set).
    val_losses: Vec<f64>,
    /// The epoch kept (1-based).
    kept_epoch: usize,
}

/// Trains, prunes and fine-tunes on `data`, and writes every output.
pub(super) fn train<B: AutodiffBackend>(
    c: &FairConfig,
    data: FairData,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<FairReport> {
    B::seed(device, c.seed);
    let g = data.groups.len();
    let train = GroupedSet::<B>::new(
        data.train.0,
        data.dim,
        &data.train.1,
        data.groups.train.clone(),
        device,
    );
    let test = GroupedSet::<B::InnerBackend>::new(
        data.test.0,
        data.dim,
        &data.test.1,
        data.groups.test.clone(),
        device,
    );
    let train_eval = train.clone().inner();
    let widths = match c.dataset {
        FairDataset::Adult => [vec![data.dim], c.hidden.clone(), vec![data.classes]].concat(),
        _ => vec![784, 300, 100, 10],
    };
    if progress {
        println!(
            "{:?}: {} training samples, {} groups ({} samples in none), widths {widths:?}",
            c.dataset,
            train.len(),
            g,
            data.groups
                .train
                .iter()
                .filter(|&&i| i == groups::NO_GROUP)
                .count()
        );
    }
    let fresh = MlpConfig::new(widths.clone()).init::<B>(device);
    let dense_epochs = c.dense_epochs();
    let epochs = c.fine_tune_epochs();
    let label = |l: &'static str| progress.then_some(l);

    // 1. The dense model: the epoch with the lowest validation loss (or the last).
    let started = Instant::now();
    let val = (!data.val.1.is_empty()).then(|| {
        let n = data.val.1.len();
        GroupedSet::<B::InnerBackend>::new(
            data.val.0,
            data.dim,
            &data.val.1,
            vec![groups::NO_GROUP; n],
            device,
        )
    });
    let dense = match &c.dense_from {
        Some(dir) => Dense {
            model: load_mlp(fresh, &widths, &dir.join("dense.mpk"), device)?,
            val_losses: Vec::new(),
            kept_epoch: dense_epochs,
        },
        None => {
            let phase = Phase {
                epochs: dense_epochs,
                decay: false,
                label: label("dense"),
                checks: usize::from(val.is_some()),
                shuffle_from: 0,
            };
            train_dense(c, fresh, &train, val.as_ref(), &phase, device, progress)?
        }
    };
    save_record(dense.model.clone(), &c.out, "dense", "the dense model")?;
    let dense_secs = started.elapsed().as_secs_f64();
    let dense_eval = dense.model.valid();
    let dense_train = GroupMetrics::measure(&dense_eval, &train_eval, g, EVAL_BATCH);
    let dense_test = GroupMetrics::measure(&dense_eval, &test, g, EVAL_BATCH);
    if progress {
        println!(
            "dense: train accuracy {:.4}, test accuracy {:.4}",
            dense_train.accuracy, dense_test.accuracy
        );
    }

    // 2. Pruning: by magnitude (in one shot or gradually), or the zeros of an L0-pruned
    //    model.
    let ramp = |e: usize| {
        let p = c.prune_epochs as f64;
        c.sparsity * (1.0 - (1.0 - (e as f64 + 1.0) / p).powi(3))
    };
    let masked = match &c.pruned_from {
        None if c.prune_epochs > 0 => {
            let mut set = ConstraintSet::<B>::new(device);
            let mut primal = primal_optimizer(c, c.ft_lr)?;
            let phase = Phase {
                epochs: c.prune_epochs,
                decay: false,
                label: label("prune"),
                checks: 0,
                shuffle_from: PRUNING_SHUFFLE,
            };
            run_epochs(
                MaskedMlp::magnitude(dense.model, 0.0),
                &train,
                c,
                &mut primal,
                &mut set,
                &FairProblem::unconstrained(),
                &phase,
                &mut Vec::new(),
                |e, m: MaskedMlp<B>| m.prune_to(ramp(e)),
                |_, _| {},
            )?
        }
        None => MaskedMlp::magnitude(dense.model, c.sparsity),
        Some(dir) => {
            let path = dir.join("model.mpk");
            let fresh = MlpConfig::new(widths.clone()).init::<B>(device);
            let pruned: Mlp<B> = load_mlp(fresh, &widths, &path, device)?;
            MaskedMlp::from_zeros(pruned)
        }
    };
    let pruned_eval = masked.valid();
    let pruned_train = GroupMetrics::measure(&pruned_eval, &train_eval, g, EVAL_BATCH);
    let pruned_test = GroupMetrics::measure(&pruned_eval, &test, g, EVAL_BATCH);
    if progress {
        println!(
            "pruned to density {:.4} ({:.4} with the output layer): train accuracy {:.4}, test accuracy {:.4}",
            masked.density(),
            masked.total_density(),
            pruned_train.accuracy,
            pruned_test.accuracy
        );
    }

    // 3. Fine-tuning.
    let dual = c.dual_optimizer();
    let mut set = ConstraintSet::<B>::new(device);
    let problem = match c.method {
        FairMethod::Naive => FairProblem::unconstrained(),
        FairMethod::EqualLoss => {
            let id = set.add(
                "equal-loss",
                ConstraintKind::Equality,
                g,
                FormulationConfig::Lagrangian(MultiplierConfig::new(dual.clone()).indexed()),
            )?;
            FairProblem::equalized_loss(id)
        }
        FairMethod::Ceag => {
            let id = set.add(
                "excess-accuracy-gap",
                ConstraintKind::Inequality,
                g,
                FormulationConfig::Lagrangian(MultiplierConfig::new(dual.clone()).indexed()),
            )?;
            FairProblem::excess_accuracy_gap(id, dense_train.clone(), c.epsilon, c.buffer)
                .with_margin(c.margin)
                .with_detached_overall(!c.keep_overall_gradient)
        }
    };
    let mut primal = primal_optimizer(c, c.ft_lr)?;
    let mut log = Vec::new();
    let started = Instant::now();
    // CEAG keeps the best iterate among `checks_per_epoch` evaluations on the training
    // set: the last-evaluated iterate whose groups all meet the bound with the best
    // accuracy, else the one with the smallest worst gap (the best-iterate rule that goes
    // with the proxy-constraint pattern, Cotter et al. 2019). The baselines keep their
    // last iterate.
    let select = c.method == FairMethod::Ceag;
    let mut best: Option<Candidate<MaskedMlp<B::InnerBackend>>> = None;
    let mut checks_log: Vec<Vec<f64>> = Vec::new();
    let phase = Phase {
        epochs,
        decay: !c.constant_lr,
        label: label("fine-tune"),
        checks: if select { c.checks_per_epoch } else { 0 },
        shuffle_from: 0,
    };
    let tuned = run_epochs(
        masked,
        &train,
        c,
        &mut primal,
        &mut set,
        &problem,
        &phase,
        &mut log,
        |_, m| m,
        |at, model| {
            let m = model.valid();
            let metrics = GroupMetrics::measure(&m, &train_eval, g, EVAL_BATCH);
            let worst = max(&dense_train.excess_gaps(&metrics));
            checks_log.push(vec![at, metrics.accuracy, worst]);
            let candidate = Candidate {
                feasible: worst <= c.epsilon,
                accuracy: metrics.accuracy,
                worst,
                at,
                model: m,
            };
            if best.as_ref().is_none_or(|b| candidate.beats(b)) {
                best = Some(candidate);
            }
        },
    )?;
    let ft_secs = started.elapsed().as_secs_f64();
    let last_train = GroupMetrics::measure(&tuned.valid(), &train_eval, g, EVAL_BATCH);
    let last_worst = max(&dense_train.excess_gaps(&last_train));
    let (eval, selected_at) = match best {
        Some(b) => (b.model, b.at),
        None => (tuned.valid(), epochs as f64),
    };
    if select && progress {
        println!(
            "kept the iterate at epoch {selected_at:.2} of {epochs} (last iterate: worst train gap {last_worst:+.4})"
        );
    }
    let final_train = GroupMetrics::measure(&eval, &train_eval, g, EVAL_BATCH);
    let final_test = GroupMetrics::measure(&eval, &test, g, EVAL_BATCH);
    let multipliers = set
        .constraints()
        .first()
        .and_then(|k| k.formulation().multiplier().map(|m| m.to_vec()))
        .unwrap_or_else(|| vec![0.0; g]);

    // 4. Outputs.
    write_outputs(
        c,
        &Measured {
            groups: &data.groups,
            validation_samples: data.val.1.len(),
            dense: [&dense_train, &dense_test],
            pruned: [&pruned_train, &pruned_test],
            fine_tuned: [&final_train, &final_test],
            multipliers: &multipliers,
            buffer: problem.buffer(),
            log: &log,
            checks: select.then_some(&checks_log[..]),
            dense_epochs,
            epochs,
            val_losses: &dense.val_losses,
            dense_kept_epoch: dense.kept_epoch,
            selected_at,
            last_worst,
            seconds: [dense_secs, ft_secs],
        },
        &eval,
    )
}

/// Trains the dense model from `fresh`, keeping the epoch of lowest loss on `val` when
/// there is one (early stopping), else the last.
fn train_dense<B: AutodiffBackend>(
    c: &FairConfig,
    fresh: Mlp<B>,
    train: &GroupedSet<B>,
    val: Option<&GroupedSet<B::InnerBackend>>,
    phase: &Phase<'_>,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<Dense<B>> {
    let mut set = ConstraintSet::<B>::new(device);
    let mut primal = primal_optimizer(c, c.lr)?;
    let mut val_losses: Vec<f64> = Vec::new();
    // (epoch, validation loss, model) of the best epoch so far.
    let mut kept: Option<(usize, f64, Mlp<B>)> = None;
    let last = run_epochs(
        fresh,
        train,
        c,
        &mut primal,
        &mut set,
        &FairProblem::unconstrained(),
        phase,
        &mut Vec::new(),
        |_, m| m,
        |_, model: &Mlp<B>| {
            let Some(val) = val else { return };
            let loss = GroupMetrics::measure(&model.valid(), val, 0, EVAL_BATCH).loss;
            val_losses.push(loss);
            if kept.as_ref().is_none_or(|(_, best, _)| loss < *best) {
                kept = Some((val_losses.len(), loss, model.clone()));
            }
        },
    )?;
    Ok(match kept {
        Some((epoch, loss, model)) => {
            if progress {
                println!(
                    "dense: kept epoch {epoch} of {} (validation loss {loss:.4}; by epoch: {})",
                    phase.epochs,
                    val_losses
                        .iter()
                        .map(|l| format!("{l:.4}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Dense {
                model,
                val_losses,
                kept_epoch: epoch,
            }
        }
        None => Dense {
            model: last,
            val_losses,
            kept_epoch: phase.epochs,
        },
    })
}
