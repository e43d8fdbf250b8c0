//! What a fair-pruning run writes: the per-group table (`groups.csv`, `report.md`), the
//! step log (`metrics.csv`), the gaps plot, the best-iterate checks, the fine-tuned model
//! and `summary.json`; and the [`FairReport`] with the same numbers.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use tether_models::graph::GraphNet;

use crate::data::groups::Groups;
use crate::io::{csv, write_atomic};
use crate::plot::{Panel, Series, line_chart};
use crate::tasks::budget::BudgetResult;
use crate::tasks::budget::latency::{LATENCY_TRIALS, measure_latency};
use crate::tasks::fair::{GroupMetrics, ReplayBuffer};
use crate::tasks::outputs::write_json;

use super::{FairConfig, FairMethod, FairReport, GroupResult, StageResult};

/// Everything a run measured, for its outputs. Pairs and triples are `[train, test]`.
pub(super) struct Measured<'a> {
    pub groups: &'a Groups,
    pub validation_samples: usize,
    pub dense: [&'a GroupMetrics; 2],
    pub pruned: [&'a GroupMetrics; 2],
    pub fine_tuned: [&'a GroupMetrics; 2],
    /// The final multiplier of every group.
    pub multipliers: &'a [f64],
    /// CEAG's replay buffer at the end (empty for the other methods).
    pub buffer: ReplayBuffer,
    /// The fine-tuning's step log.
    pub log: &'a [Vec<f64>],
    /// CEAG's best-iterate checks: `[epoch, train accuracy, worst train gap]`.
    pub checks: Option<&'a [Vec<f64>]>,
    /// The fine-tuning's accuracy after each epoch: `[epoch, train, test]`.
    pub epoch_log: &'a [Vec<f64>],
    pub dense_epochs: usize,
    pub epochs: usize,
    pub val_losses: &'a [f64],
    pub dense_kept_epoch: usize,
    pub selected_at: f64,
    /// The last iterate's worst training gap (CEAG may keep another).
    pub last_worst: f64,
    /// Wall-clock seconds of the dense training and of the fine-tuning.
    pub seconds: [f64; 2],
    /// The flash budget and the file size predicted for it, when one was given.
    pub flash_budget: Option<(usize, usize)>,
    /// The latency budget (seconds), the latency model's prediction for the final network
    /// and the batch, when one was given.
    pub latency_budget: Option<(f64, f64, usize)>,
    /// The RAM budget and the batch it is for, when one was given.
    pub ram_budget: Option<(usize, usize)>,
}

/// Writes every output of the run and returns its report; `eval` is the fine-tuned model.
pub(super) fn write_outputs<B: Backend>(
    c: &FairConfig,
    m: &Measured<'_>,
    eval: &GraphNet<B>,
) -> anyhow::Result<FairReport> {
    let g = m.groups.len();
    let [dense_train, dense_test] = m.dense;
    let [pruned_train, pruned_test] = m.pruned;
    let [final_train, final_test] = m.fine_tuned;
    let gaps = |sparse: &GroupMetrics, dense: &GroupMetrics| dense.excess_gaps(sparse);
    let (before_tr, before_te) = (
        gaps(pruned_train, dense_train),
        gaps(pruned_test, dense_test),
    );
    let (after_tr, after_te) = (gaps(final_train, dense_train), gaps(final_test, dense_test));
    let buffer = &m.buffer;
    let full = (0..g).filter(|&k| buffer.is_full(k)).count();
    // The gaps as the multipliers last saw them: from the replay buffer (CEAG only).
    let buffered: Vec<f64> = match (c.method, buffer.overall_accuracy()) {
        (FairMethod::Ceag, Some(overall)) => (0..g)
            .map(|k| {
                buffer.group_accuracy(k).map_or(f64::NAN, |acc| {
                    (dense_train.group_accuracy[k] - acc) - (dense_train.accuracy - overall)
                })
            })
            .collect(),
        _ => vec![f64::NAN; g],
    };
    let full_max = (0..g)
        .filter(|&k| buffer.is_full(k))
        .map(|k| buffered[k])
        .fold(f64::NEG_INFINITY, f64::max);
    let groups: Vec<GroupResult> = (0..g)
        .map(|k| GroupResult {
            name: m.groups.names[k].clone(),
            train_count: dense_train.group_count[k],
            test_count: dense_test.group_count[k],
            train_accuracy: [
                dense_train.group_accuracy[k],
                pruned_train.group_accuracy[k],
                final_train.group_accuracy[k],
            ],
            test_accuracy: [
                dense_test.group_accuracy[k],
                pruned_test.group_accuracy[k],
                final_test.group_accuracy[k],
            ],
            train_gap: [before_tr[k], after_tr[k]],
            test_gap: [before_te[k], after_te[k]],
            multiplier: m.multipliers[k],
            buffer_train_gap: buffered[k],
        })
        .collect();

    let stage = |train: &GroupMetrics, test: &GroupMetrics, tr: &[f64], te: &[f64]| StageResult {
        train_accuracy: train.accuracy,
        test_accuracy: test.accuracy,
        train_max_excess_gap: max(tr),
        test_max_excess_gap: max(te),
    };
    let pruned = stage(pruned_train, pruned_test, &before_tr, &before_te);
    let fine_tuned = stage(final_train, final_test, &after_tr, &after_te);
    let mut files = vec![
        "report.md",
        "groups.csv",
        "metrics.csv",
        "epochs.csv",
        "gaps.png",
        "training.png",
    ];
    write_atomic(
        &c.out.join("epochs.csv"),
        csv(
            &[
                "epoch".into(),
                "train_accuracy".into(),
                "test_accuracy".into(),
            ],
            m.epoch_log,
        )
        .as_bytes(),
    )?;
    plot_training(c, m)?;
    if let Some(checks) = m.checks {
        write_atomic(
            &c.out.join("checks.csv"),
            csv(
                &[
                    "epoch".into(),
                    "train_accuracy".into(),
                    "train_max_excess_gap".into(),
                ],
                checks,
            )
            .as_bytes(),
        )?;
    }
    write_atomic(&c.out.join("groups.csv"), groups_csv(&groups).as_bytes())?;
    write_atomic(
        &c.out.join("report.md"),
        report_md(c, dense_train, dense_test, &pruned, &fine_tuned, &groups).as_bytes(),
    )?;
    let log_header: Vec<String> = [
        "step",
        "loss",
        "max_violation",
        "mean_multiplier",
        "max_multiplier",
    ]
    .map(String::from)
    .to_vec();
    write_atomic(
        &c.out.join("metrics.csv"),
        csv(&log_header, m.log).as_bytes(),
    )?;
    plot_gaps(c, g, [&before_tr, &after_tr], [&before_te, &after_te])?;
    write_atomic(
        &c.out.join("model.safetensors"),
        &tether_models::export::graph_to_safetensors(
            eval,
            HashMap::from([
                ("task".to_string(), "fair-prune".to_string()),
                ("sparsity".to_string(), c.sparsity.to_string()),
            ]),
        )?,
    )?;
    // The masks folded in: pruned weights are exact zeros, stored sparse where smaller.
    let tthr = eval.to_deploy()?;
    write_atomic(&c.out.join("model.tthr"), &tthr)?;
    let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
    let onnx = tether_deploy::onnx::export_bytes(
        &tether_deploy::Model::parse(&aligned)?,
        &Default::default(),
    )?;
    write_atomic(&c.out.join("model.onnx"), &onnx)?;
    // The budgets judged on the file as written, and on the written model as timed.
    let mut budgets: Vec<BudgetResult> = m
        .flash_budget
        .iter()
        .map(|&(budget, predicted)| {
            BudgetResult::new("flash", budget as f64, tthr.len() as f64)
                .with_predicted(predicted as f64)
        })
        .collect();
    if let Some((budget, predicted, batch)) = m.latency_budget {
        let measured = measure_latency(&tthr, batch, LATENCY_TRIALS)?;
        budgets.push(BudgetResult::new("latency", budget, measured).with_predicted(predicted));
    }
    if let Some((budget, batch)) = m.ram_budget {
        let ram = tether_deploy::cli::device_ram(&tether_deploy::Model::parse(&aligned)?, batch)?;
        budgets.push(BudgetResult::new("ram", budget as f64, ram as f64));
    }
    let steps = m.log.len().max(1) as f64;
    let violating = after_tr.iter().filter(|&&x| x > c.epsilon).count();
    let [dense_secs, ft_secs] = m.seconds;
    let summary = serde_json::json!({
        "dataset": format!("{:?}", c.dataset), "groups": c.groups.clone().unwrap_or_default(),
        "group_count": g, "method": format!("{:?}", c.method), "sparsity": c.sparsity,
        "model": c.model.as_ref().map_or("mlp".to_string(), |m| m.display().to_string()),
        "data": c.own.data.as_ref().map(|d| d.display().to_string()),
        "density": eval.masked_density(), "density_all_layers": eval.masked_total_density(),
        "pruning": if c.pruned_from.is_some() { "l0" } else if c.prune_epochs > 0 { "gradual magnitude" } else { "magnitude" },
        "prune_epochs": c.prune_epochs, "epsilon": c.epsilon, "margin": c.margin,
        "dual": format!("{:?}", c.dual_optimizer()),
        "buffer": c.buffer, "groups_with_full_buffer": full, "seed": c.seed,
        "optimizer": c.optimizer.optimizer,
        "epochs": m.epochs, "dense_epochs": m.dense_epochs,
        "val_fraction": c.val_fraction, "validation_samples": m.validation_samples,
        "dense_validation_loss_by_epoch": m.val_losses,
        "dense_epoch_kept": if c.dense_from.is_some() { serde_json::Value::Null } else { serde_json::json!(m.dense_kept_epoch) },
        "overall_gradient_in_constraints": c.keep_overall_gradient,
        "dense": {"train_accuracy": dense_train.accuracy, "test_accuracy": dense_test.accuracy},
        "pruned": {"train_accuracy": pruned.train_accuracy, "test_accuracy": pruned.test_accuracy,
                   "train_max_excess_gap": pruned.train_max_excess_gap, "test_max_excess_gap": pruned.test_max_excess_gap},
        "final": {"train_accuracy": fine_tuned.train_accuracy, "test_accuracy": fine_tuned.test_accuracy,
                  "train_max_excess_gap": fine_tuned.train_max_excess_gap, "test_max_excess_gap": fine_tuned.test_max_excess_gap,
                  "train_groups_over_epsilon": violating, "selected_at_epoch": m.selected_at,
                  "last_iterate_train_max_excess_gap": m.last_worst,
                  "buffer_max_excess_gap_full_groups": if full > 0 { serde_json::json!(full_max) } else { serde_json::Value::Null }},
        "seconds": {"dense": dense_secs, "fine_tune": ft_secs, "per_fine_tune_step": ft_secs / steps},
    });
    let mut summary = summary;
    if !budgets.is_empty() {
        summary["budgets"] = serde_json::to_value(&budgets)?;
    }
    write_json(&c.out.join("summary.json"), &summary)?;
    files.extend([
        "dense.tthr",
        "model.safetensors",
        "model.tthr",
        "model.onnx",
        "summary.json",
    ]);
    if m.checks.is_some() {
        files.push("checks.csv");
    }
    Ok(FairReport {
        dense: (dense_train.accuracy, dense_test.accuracy),
        pruned,
        fine_tuned,
        train_groups_over_epsilon: violating,
        density: eval.masked_density(),
        groups,
        summary,
        files,
    })
}

/// `groups.csv`'s columns.
fn group_header() -> Vec<String> {
    [
        "group",
        "train_n",
        "test_n",
        "dense_train_acc",
        "pruned_train_acc",
        "sparse_train_acc",
        "pruned_train_gap",
        "sparse_train_gap",
        "dense_test_acc",
        "pruned_test_acc",
        "sparse_test_acc",
        "pruned_test_gap",
        "sparse_test_gap",
        "multiplier",
        "buffer_train_gap",
        "name",
    ]
    .map(String::from)
    .to_vec()
}

/// `groups.csv`: [`group_rows`]' numbers, then the group's name (last, quoted where it
/// holds a comma or a quote, so the numeric columns split on commas alike).
fn groups_csv(groups: &[GroupResult]) -> String {
    let mut out = group_header().join(",");
    out.push('\n');
    for (row, g) in group_rows(groups).iter().zip(groups) {
        for v in row {
            out.push_str(&format!("{v},"));
        }
        if g.name.contains([',', '"', '\n']) {
            out.push_str(&format!("\"{}\"", g.name.replace('"', "\"\"")));
        } else {
            out.push_str(&g.name);
        }
        out.push('\n');
    }
    out
}

/// `groups.csv`'s rows, one per group in [`group_header`]'s order.
fn group_rows(groups: &[GroupResult]) -> Vec<Vec<f64>> {
    groups
        .iter()
        .enumerate()
        .map(|(k, r)| {
            vec![
                k as f64,
                r.train_count as f64,
                r.test_count as f64,
                r.train_accuracy[0],
                r.train_accuracy[1],
                r.train_accuracy[2],
                r.train_gap[0],
                r.train_gap[1],
                r.test_accuracy[0],
                r.test_accuracy[1],
                r.test_accuracy[2],
                r.test_gap[0],
                r.test_gap[1],
                r.multiplier,
                r.buffer_train_gap,
            ]
        })
        .collect()
}

/// `report.md`: the three models side by side, then one row per group.
fn report_md(
    c: &FairConfig,
    dense_train: &GroupMetrics,
    dense_test: &GroupMetrics,
    pruned: &StageResult,
    fine_tuned: &StageResult,
    groups: &[GroupResult],
) -> String {
    let mut md = format!(
        "# fair-prune: {:?}, groups {}, sparsity {}, method {:?}, epsilon {}\n\n\
         | | dense | pruned | fine-tuned |\n|---|---|---|---|\n\
         | train accuracy | {:.4} | {:.4} | {:.4} |\n| test accuracy | {:.4} | {:.4} | {:.4} |\n\
         | train max excess gap | 0 | {:.4} | {:.4} |\n| test max excess gap | 0 | {:.4} | {:.4} |\n\n\
         Per group (accuracies on train / test; excess gap = group drop - overall drop; \
         constraint: gap <= {} on train):\n\n\
         | group | name | train n | test n | dense acc train | sparse acc train | gap train | gap in buffer | dense acc test | sparse acc test | gap test | multiplier |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        c.dataset,
        c.groups.as_deref().unwrap_or("default"),
        c.sparsity,
        c.method,
        c.epsilon,
        dense_train.accuracy,
        pruned.train_accuracy,
        fine_tuned.train_accuracy,
        dense_test.accuracy,
        pruned.test_accuracy,
        fine_tuned.test_accuracy,
        pruned.train_max_excess_gap,
        fine_tuned.train_max_excess_gap,
        pruned.test_max_excess_gap,
        fine_tuned.test_max_excess_gap,
        c.epsilon,
    );
    for (k, r) in groups.iter().enumerate() {
        md.push_str(&format!(
            "| {k} | {} | {} | {} | {:.4} | {:.4} | {:+.4} | {:+.4} | {:.4} | {:.4} | {:+.4} | {:.4} |\n",
            r.name,
            r.train_count,
            r.test_count,
            r.train_accuracy[0],
            r.train_accuracy[2],
            r.train_gap[1],
            r.buffer_train_gap,
            r.test_accuracy[0],
            r.test_accuracy[2],
            r.test_gap[1],
            r.multiplier,
        ));
    }
    md
}

/// `training.png`: the fine-tuning's loss at every step, the worst violation and the
/// multipliers (constrained methods), and the training and test accuracy after each epoch
/// against the dense and the freshly pruned model's.
fn plot_training(c: &FairConfig, m: &Measured<'_>) -> anyhow::Result<()> {
    let column = |label: &str, col: usize| Series {
        label: label.into(),
        points: m.log.iter().map(|r| (r[0], r[col])).collect(),
    };
    let mut panels = vec![Panel {
        title: format!(
            "Fine-tuning loss ({:?}, cross-entropy of the batch)",
            c.method
        ),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: vec![column("each step", 1)],
    }];
    if c.method != FairMethod::Naive {
        panels.push(Panel {
            title: "Constraints: the worst violation and the multipliers".into(),
            x_label: "step".into(),
            y_label: "violation / lambda".into(),
            series: vec![
                column("max violation", 2),
                column("mean multiplier", 3),
                column("max |multiplier|", 4),
            ],
        });
    }
    let epochs = m.epoch_log.len().max(1) as f64;
    let level = |label: String, y: f64| Series {
        label,
        points: vec![(0.0, y), (epochs, y)],
    };
    let accuracy =
        |col: usize| -> Vec<(f64, f64)> { m.epoch_log.iter().map(|r| (r[0], r[col])).collect() };
    panels.push(Panel {
        title: "Accuracy after each fine-tuning epoch (0: as pruned)".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series: vec![
            Series {
                label: "train".into(),
                points: std::iter::once((0.0, m.pruned[0].accuracy))
                    .chain(accuracy(1))
                    .collect(),
            },
            Series {
                label: "test".into(),
                points: std::iter::once((0.0, m.pruned[1].accuracy))
                    .chain(accuracy(2))
                    .collect(),
            },
            level(
                format!("dense, train {:.4}", m.dense[0].accuracy),
                m.dense[0].accuracy,
            ),
            level(
                format!("dense, test {:.4}", m.dense[1].accuracy),
                m.dense[1].accuracy,
            ),
        ],
    });
    line_chart(&c.out.join("training.png"), &panels)
}

/// `gaps.png`: every group's excess gap after pruning and after fine-tuning, against
/// epsilon, on the training set and on the test set.
fn plot_gaps(
    c: &FairConfig,
    g: usize,
    train: [&[f64]; 2],
    test: [&[f64]; 2],
) -> anyhow::Result<()> {
    let series = |label: &str, v: &[f64]| Series {
        label: label.into(),
        points: v.iter().enumerate().map(|(k, &y)| (k as f64, y)).collect(),
    };
    let eps = Series {
        label: format!("epsilon {}", c.epsilon),
        points: vec![(0.0, c.epsilon), ((g.max(2) - 1) as f64, c.epsilon)],
    };
    line_chart(
        &c.out.join("gaps.png"),
        &[
            Panel {
                title: format!("Excess accuracy gap per group, train ({:?})", c.method),
                x_label: "group".into(),
                y_label: "group drop - overall drop".into(),
                series: vec![
                    series("after pruning", train[0]),
                    series("after fine-tuning", train[1]),
                    eps.clone(),
                ],
            },
            Panel {
                title: "Excess accuracy gap per group, test".into(),
                x_label: "group".into(),
                y_label: "group drop - overall drop".into(),
                series: vec![
                    series("after pruning", test[0]),
                    series("after fine-tuning", test[1]),
                    eps,
                ],
            },
        ],
    )
}

/// The largest entry (`-inf` for none).
pub(super) fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
