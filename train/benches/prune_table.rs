//! The L0-pruning benchmark (issue: sparsity-constrained pruning, acceptance table).
//!
//! Runs the `tether-train prune` CLI over a grid (models x datasets x target densities x
//! seeds, each with its dense baseline trained with the same budget), then writes:
//! - `out/bench/prune_table.md`: the density table (achieved vs target, +-0.01 check),
//!   accuracy against the dense baseline (within 0.5 points at 0.1), per-layer targets
//!   (every layer within +-0.02), nuPI vs gradient ascent (overshoot, steps to settle), and
//!   the fixed-penalty baseline;
//! - `out/bench/prune_table.json`: every run's summary;
//! - `out/bench/prune_dual.png`: density and multiplier of nuPI and gradient ascent side
//!   by side; `out/bench/prune_penalty.png`: where fixed penalties land.
//!
//! Each run lives in `out/bench/prune/<dataset>-<model>-<run>-s<seed>/` and is skipped when
//! its `summary.json` exists (`--fresh` reruns), so an interrupted sweep resumes.
//!
//! ```text
//! cargo bench -p tether-train --bench prune_table -- --jobs 2
//! cargo bench -p tether-train --bench prune_table -- --models lenet300 --seeds 0,1,2
//! ```

mod common;

use common::{SweepArgs, read_json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;
use tether_train::io::write_atomic;
use tether_train::plot::{Panel, Series, line_chart, line_chart_grid};
use tether_train::transient::transient;

/// Half-width of the density band of the acceptance table.
const DENSITY_TOLERANCE: f64 = 0.01;
/// Half-width of the per-layer band.
const LAYER_TOLERANCE: f64 = 0.02;
/// Accuracy loss (points) allowed at density 0.1.
const ACCURACY_TOLERANCE: f64 = 0.5;
/// The target of the per-layer, dual-comparison and penalty runs.
const FOCUS_TARGET: f64 = 0.1;

#[derive(Parser, Debug)]
#[command(about = "The L0-pruning benchmark: density/accuracy table over a grid of runs")]
struct Args {
    /// Models (tether-train names).
    #[arg(long, value_delimiter = ',', default_value = "lenet300,lenet5")]
    models: Vec<String>,
    /// Datasets (tether-train names).
    #[arg(long, value_delimiter = ',', default_value = "mnist,fashion-mnist")]
    datasets: Vec<String>,
    /// Global target densities.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.2,0.1,0.05")]
    targets: Vec<f64>,
    /// Seeds (each run is repeated per seed).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// Seeds of one model instead of `--seeds`, e.g. `lenet5=0` (repeatable).
    #[arg(long, value_name = "MODEL=SEEDS")]
    seeds_for: Vec<String>,
    /// Fixed L0 coefficients of the penalty baseline (first model and dataset only).
    #[arg(long, value_delimiter = ',', default_value = "2,10,40")]
    penalties: Vec<f64>,
    /// Epochs per run (the same budget for pruned and dense runs).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Epochs of one model instead of `--epochs`, e.g. `lenet5=3` (repeatable).
    #[arg(long, value_name = "MODEL=EPOCHS", default_value = "lenet5=3")]
    epochs_for: Vec<String>,
    /// Train on only the first N images (a quick check of the benchmark itself).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Runs at once (each is single-threaded).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    #[command(flatten)]
    sweep: SweepArgs,
}

/// One CLI invocation.
#[derive(Clone, Debug)]
struct Run {
    dataset: String,
    model: String,
    seed: u64,
    /// `dense`, `t0.1`, `t0.1-per-layer`, `t0.1-ga`, `penalty-10`.
    label: String,
    extra: Vec<String>,
}

impl Run {
    fn dir(&self, root: &Path) -> PathBuf {
        root.join("prune").join(format!(
            "{}-{}-{}-s{}",
            self.dataset, self.model, self.label, self.seed
        ))
    }
}

/// `model`'s entry of a repeatable `MODEL=VALUES` flag (`flag` names it in errors), parsed
/// as a comma-separated list; `None` when the model has no entry.
fn per_model<T: std::str::FromStr>(
    entries: &[String],
    flag: &str,
    model: &str,
) -> anyhow::Result<Option<Vec<T>>> {
    for entry in entries {
        let (name, list) = entry
            .split_once('=')
            .with_context(|| format!("{flag} takes MODEL=VALUES, got {entry:?}"))?;
        if name == model {
            return list
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("bad value {s:?} in {flag} {entry:?}"))
                })
                .collect::<anyhow::Result<Vec<T>>>()
                .map(Some);
        }
    }
    Ok(None)
}

/// The seeds of `model`: its `--seeds-for` entry, else `--seeds`.
fn seeds_of(a: &Args, model: &str) -> anyhow::Result<Vec<u64>> {
    Ok(per_model(&a.seeds_for, "--seeds-for", model)?.unwrap_or_else(|| a.seeds.clone()))
}

/// The epochs of `model`: its `--epochs-for` entry, else `--epochs`.
fn epochs_of(a: &Args, model: &str) -> anyhow::Result<usize> {
    match per_model::<usize>(&a.epochs_for, "--epochs-for", model)?.as_deref() {
        None => Ok(a.epochs),
        Some([n]) => Ok(*n),
        Some(_) => anyhow::bail!("--epochs-for takes one number per model"),
    }
}

fn grid(a: &Args) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (di, dataset) in a.datasets.iter().enumerate() {
        for (mi, model) in a.models.iter().enumerate() {
            let seeds = seeds_of(a, model)?;
            for &seed in &seeds {
                let run = |label: String, extra: Vec<String>| Run {
                    dataset: dataset.clone(),
                    model: model.clone(),
                    seed,
                    label,
                    extra,
                };
                runs.push(run("dense".into(), vec!["--dense".into()]));
                for &t in &a.targets {
                    runs.push(run(
                        format!("t{t}"),
                        vec!["--target-density".into(), t.to_string()],
                    ));
                }
                let focus = vec!["--target-density".into(), FOCUS_TARGET.to_string()];
                runs.push(run(
                    format!("t{FOCUS_TARGET}-per-layer"),
                    [focus.clone(), vec!["--per-layer".into()]].concat(),
                ));
                // The baselines (gradient ascent, fixed penalties): one model, one seed.
                if di == 0 && mi == 0 && seed == seeds[0] {
                    runs.push(run(
                        format!("t{FOCUS_TARGET}-ga"),
                        [focus.clone(), vec!["--dual".into(), "ga".into()]].concat(),
                    ));
                    for &c in &a.penalties {
                        runs.push(run(
                            format!("penalty-{c}"),
                            vec!["--fixed-penalty".into(), c.to_string()],
                        ));
                    }
                }
            }
        }
    }
    Ok(runs)
}

fn execute(run: &Run, root: &Path, args: &Args) -> anyhow::Result<()> {
    let dir = run.dir(root);
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("run.log"))?;
    let status = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(["prune", "--model", &run.model, "--dataset", &run.dataset])
        .args(["--seed", &run.seed.to_string()])
        .args(["--epochs", &epochs_of(args, &run.model)?.to_string()])
        .args(
            args.train_limit
                .map(|n| vec!["--train-limit".to_string(), n.to_string()])
                .unwrap_or_default(),
        )
        .arg("--out")
        .arg(&dir)
        .args(&run.extra)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "{} failed ({status}); see {}",
        dir.display(),
        dir.join("run.log").display()
    );
    Ok(())
}

/// Columns of a run's `metrics.csv`, by header name.
fn read_columns(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<f64>>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .context("empty metrics")?
        .split(',')
        .map(String::from)
        .collect();
    let mut cols: BTreeMap<String, Vec<f64>> =
        header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines {
        for (h, v) in header.iter().zip(line.split(',')) {
            cols.get_mut(h).expect("header").push(v.parse()?);
        }
    }
    Ok(cols)
}

fn final_of(summary: &Value, key: &str) -> f64 {
    summary["final"][key].as_f64().unwrap_or(f64::NAN)
}

/// Mean, min and max.
fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, min, max)
}

fn fmt_range(xs: &[f64], scale: f64, digits: usize) -> String {
    let (mean, min, max) = stats(xs);
    if xs.len() == 1 {
        format!("{:.*}", digits, mean * scale)
    } else {
        format!(
            "{:.*} [{:.*}, {:.*}]",
            digits,
            mean * scale,
            digits,
            min * scale,
            digits,
            max * scale
        )
    }
}

fn check(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    let runs = grid(&args)?;
    let todo: Vec<Run> = runs
        .iter()
        .filter(|r| args.sweep.fresh || !r.dir(&args.sweep.out).join("summary.json").exists())
        .cloned()
        .collect();
    if !args.sweep.report_only && !todo.is_empty() {
        println!(
            "{} runs ({} already done), {} at a time",
            todo.len(),
            runs.len() - todo.len(),
            args.jobs
        );
        let queue = Mutex::new(todo.into_iter().enumerate());
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..args.jobs {
                s.spawn(|| {
                    loop {
                        let next = queue.lock().expect("queue").next();
                        let Some((i, run)) = next else { break };
                        let started = std::time::Instant::now();
                        let result = execute(&run, &args.sweep.out, &args);
                        println!(
                            "[{}] {} {} {} seed {}: {} in {:.0} s",
                            i + 1,
                            run.dataset,
                            run.model,
                            run.label,
                            run.seed,
                            if result.is_ok() { "done" } else { "FAILED" },
                            started.elapsed().as_secs_f64()
                        );
                        if let Err(e) = result {
                            failures.lock().expect("failures").push(e.to_string());
                        }
                    }
                });
            }
        });
        let failures = failures.into_inner().expect("failures");
        anyhow::ensure!(failures.is_empty(), "failed runs:\n{}", failures.join("\n"));
    }
    report(&args, &runs)
}

/// Summaries of the runs with `label` for one dataset and model, over the seeds found.
fn summaries(
    args: &Args,
    runs: &[Run],
    dataset: &str,
    model: &str,
    label: &str,
) -> Vec<(Run, Value)> {
    runs.iter()
        .filter(|r| r.dataset == dataset && r.model == model && r.label == label)
        .filter_map(|r| {
            read_json(&r.dir(&args.sweep.out).join("summary.json"))
                .ok()
                .map(|s| (r.clone(), s))
        })
        .collect()
}

fn report(args: &Args, runs: &[Run]) -> anyhow::Result<()> {
    let mut md = String::new();
    let mut all = Vec::new();
    md.push_str(&format!(
        "Global density targets, nuPI on the multiplier; epochs per run: {}; density is \
         the fraction of gated weights kept with deterministic gates; accuracy on the test \
         set. Several seeds: mean [min, max].\n\n",
        args.models
            .iter()
            .map(|m| Ok(format!("{m} {}", epochs_of(args, m)?)))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(", ")
    ));
    md.push_str(
        "| dataset | model | seeds | dense acc % | target | density | within +-0.01 | acc % | acc - dense (pt) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut layer_rows = String::new();
    for dataset in &args.datasets {
        for model in &args.models {
            let dense = summaries(args, runs, dataset, model, "dense");
            let dense_acc: Vec<f64> = dense
                .iter()
                .map(|(_, s)| final_of(s, "test_accuracy"))
                .collect();
            all.extend(
                dense
                    .iter()
                    .map(|(r, s)| (r.dir(&args.sweep.out), s.clone())),
            );
            for &t in &args.targets {
                let got = summaries(args, runs, dataset, model, &format!("t{t}"));
                if got.is_empty() {
                    continue;
                }
                all.extend(got.iter().map(|(r, s)| (r.dir(&args.sweep.out), s.clone())));
                let dens: Vec<f64> = got.iter().map(|(_, s)| final_of(s, "density")).collect();
                let acc: Vec<f64> = got
                    .iter()
                    .map(|(_, s)| final_of(s, "test_accuracy"))
                    .collect();
                let within = dens.iter().all(|d| (d - t).abs() <= DENSITY_TOLERANCE);
                let gap = if dense_acc.is_empty() {
                    "n/a".to_string()
                } else {
                    let d = stats(&dense_acc).0;
                    let gap = (stats(&acc).0 - d) * 100.0;
                    let verdict = if (t - FOCUS_TARGET).abs() < 1e-12 {
                        format!(" ({})", check(gap >= -ACCURACY_TOLERANCE))
                    } else {
                        String::new()
                    };
                    format!("{gap:+.2}{verdict}")
                };
                md.push_str(&format!(
                    "| {dataset} | {model} | {} | {} | {t} | {} | {} | {} | {gap} |\n",
                    got.len(),
                    if dense_acc.is_empty() {
                        "n/a".into()
                    } else {
                        fmt_range(&dense_acc, 100.0, 2)
                    },
                    fmt_range(&dens, 1.0, 4),
                    check(within),
                    fmt_range(&acc, 100.0, 2),
                ));
            }
            for (r, s) in summaries(
                args,
                runs,
                dataset,
                model,
                &format!("t{FOCUS_TARGET}-per-layer"),
            ) {
                all.push((r.dir(&args.sweep.out), s.clone()));
                let layers: Vec<f64> = s["layers"]
                    .as_array()
                    .map(|ls| ls.iter().filter_map(|l| l["density"].as_f64()).collect())
                    .unwrap_or_default();
                let ok = !layers.is_empty()
                    && layers
                        .iter()
                        .all(|d| (d - FOCUS_TARGET).abs() <= LAYER_TOLERANCE);
                let shown: Vec<String> = layers.iter().map(|d| format!("{d:.4}")).collect();
                layer_rows.push_str(&format!(
                    "| {dataset} | {model} | {} | {} | {} | {:.2} |\n",
                    r.seed,
                    shown.join(" / "),
                    check(ok),
                    final_of(&s, "test_accuracy") * 100.0
                ));
            }
        }
    }
    md.push_str(&format!(
        "\nPer-layer targets ({FOCUS_TARGET} in every layer, one constraint each):\n\n\
         | dataset | model | seed | layer densities | all within +-{LAYER_TOLERANCE} | acc % |\n\
         |---|---|---|---|---|---|\n{layer_rows}"
    ));
    if let (Some(dataset), Some(model)) = (args.datasets.first(), args.models.first()) {
        dual_section(args, runs, dataset, model, &mut md, &mut all)?;
        penalty_section(args, runs, dataset, model, &mut md, &mut all)?;
    }
    write_atomic(&args.sweep.out.join("prune_table.md"), md.as_bytes())?;
    let json: Vec<Value> = all
        .into_iter()
        .map(|(dir, s)| serde_json::json!({"dir": dir.display().to_string(), "summary": s}))
        .collect();
    write_atomic(
        &args.sweep.out.join("prune_table.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!("{md}");
    println!(
        "wrote {}/{{prune_table.md, prune_table.json, prune_dual.png, prune_penalty.png}}",
        args.sweep.out.display()
    );
    Ok(())
}

/// nuPI vs gradient ascent at the focus target: curves side by side, overshoot and settling.
fn dual_section(
    args: &Args,
    runs: &[Run],
    dataset: &str,
    model: &str,
    md: &mut String,
    all: &mut Vec<(PathBuf, Value)>,
) -> anyhow::Result<()> {
    let seed = seeds_of(args, model)?[0];
    let methods = [
        ("nuPI", format!("t{FOCUS_TARGET}")),
        ("gradient ascent", format!("t{FOCUS_TARGET}-ga")),
    ];
    let mut density_panels = Vec::new();
    let mut multiplier_panels = Vec::new();
    md.push_str(&format!(
        "\nnuPI vs gradient ascent on the multiplier ({dataset}, {model}, target {FOCUS_TARGET}, \
         seed {seed}; density of the deterministic gates at every step; settled = within \
         +-{DENSITY_TOLERANCE} of the target for the rest of the run):\n\n\
         | dual update | first reaches target (step) | overshoot below target | settles (step) | final density | acc % |\n\
         |---|---|---|---|---|---|\n"
    ));
    for (name, label) in &methods {
        let Some(run) = runs.iter().find(|r| {
            r.dataset == dataset && r.model == model && &r.label == label && r.seed == seed
        }) else {
            continue;
        };
        let dir = run.dir(&args.sweep.out);
        let (Ok(cols), Ok(summary)) = (
            read_columns(&dir.join("metrics.csv")),
            read_json(&dir.join("summary.json")),
        ) else {
            continue;
        };
        if label.ends_with("-ga") {
            // (The nuPI run is in the main table already.)
            all.push((dir.clone(), summary.clone()));
        }
        let steps = &cols["step"];
        let density = &cols["global_density"];
        let lambda = &cols["global_multiplier"];
        let t = transient(density, FOCUS_TARGET, DENSITY_TOLERANCE);
        let opt = |x: Option<usize>| x.map_or("never".to_string(), |v| v.to_string());
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {:.4} | {:.2} |\n",
            opt(t.first_reach),
            t.overshoot.map_or("n/a".into(), |o| format!("{o:.4}")),
            opt(t.settle),
            final_of(&summary, "density"),
            final_of(&summary, "test_accuracy") * 100.0
        ));
        let series = |ys: &[f64], label: String| Series {
            label,
            points: steps.iter().copied().zip(ys.iter().copied()).collect(),
        };
        density_panels.push(Panel {
            title: format!("{name}: density"),
            x_label: "step".into(),
            y_label: "fraction kept".into(),
            series: vec![
                series(density, "density (deterministic gates)".into()),
                series(&cols["global_expected_density"], "expected density".into()),
                series(&vec![FOCUS_TARGET; steps.len()], "target".into()),
            ],
        });
        multiplier_panels.push(Panel {
            title: format!("{name}: multiplier"),
            x_label: "step".into(),
            y_label: "lambda".into(),
            series: vec![series(lambda, "lambda".into())],
        });
    }
    if density_panels.len() == 2 {
        density_panels.extend(multiplier_panels);
        line_chart_grid(&args.sweep.out.join("prune_dual.png"), &density_panels, 2)?;
    }
    Ok(())
}

/// The fixed-penalty baseline: the density each coefficient lands at.
fn penalty_section(
    args: &Args,
    runs: &[Run],
    dataset: &str,
    model: &str,
    md: &mut String,
    all: &mut Vec<(PathBuf, Value)>,
) -> anyhow::Result<()> {
    md.push_str(&format!(
        "\nFixed L0 penalty instead of a constraint ({dataset}, {model}): the density is \
         whatever the coefficient lands at.\n\n\
         | L0 coefficient | density | acc % |\n|---|---|---|\n"
    ));
    let mut points = Vec::new();
    for &c in &args.penalties {
        for (r, s) in summaries(args, runs, dataset, model, &format!("penalty-{c}")) {
            all.push((r.dir(&args.sweep.out), s.clone()));
            let d = final_of(&s, "density");
            md.push_str(&format!(
                "| {c} | {d:.4} | {:.2} |\n",
                final_of(&s, "test_accuracy") * 100.0
            ));
            points.push((c, d));
        }
    }
    if points.len() >= 2 {
        line_chart(
            &args.sweep.out.join("prune_penalty.png"),
            &[Panel {
                title: format!("Fixed L0 penalty: where it lands ({dataset}, {model})"),
                x_label: "L0 coefficient".into(),
                y_label: "final density".into(),
                series: vec![
                    Series {
                        label: "fixed penalty".into(),
                        points,
                    },
                    Series {
                        label: format!("constrained run's target {FOCUS_TARGET}"),
                        points: vec![
                            (args.penalties[0], FOCUS_TARGET),
                            (*args.penalties.last().expect("non-empty"), FOCUS_TARGET),
                        ],
                    },
                ],
            }],
        )?;
    }
    Ok(())
}
