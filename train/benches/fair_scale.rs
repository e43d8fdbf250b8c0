//! How CEAG's training step scales with the number of groups (issue: Balancing Act, scale
//! benchmark; goal <= 1.2x from 10 to 1000 groups).
//!
//! The same data (UCI Adult), model (a 90%-pruned 103-256-128-2 MLP), batch (128) and
//! optimizer; only the group ids change: 10, 100 and 1000 synthetic groups assigned by a
//! seeded hash of the sample index. A step is one `ConstrainedOptimizer::roll`: forward,
//! per-sample losses, per-group means of the groups present (a scatter-add, O(batch)),
//! replay-buffer update and query (O(batch)), backward, Adam, and the indexed multiplier
//! update of the groups present. Cross-entropy alone (no constraints) is the reference.
//! Trials interleave the settings; ratios are medians of per-trial ratios.
//!
//! ```text
//! cargo bench -p tether-train --bench fair_scale
//! ```

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use clap::Parser;
use tether_models::masked::MaskedMlp;
use tether_models::mlp::MlpConfig;
use tether_models::trainable::untrained_params;
use tether_train::constrained::{
    ConstrainedOptimizer, ConstraintKind, ConstraintSet, DualOptimizer, FormulationConfig,
    MultiplierConfig, UpdateScheme,
};
use tether_train::data::adult::{self, AdultEncoder, AdultSplit};
use tether_train::data::groups::Groups;
use tether_train::io::write_atomic;
use tether_train::tasks::fair::{FairProblem, GroupMetrics, GroupedBatch, GroupedSet};
use tether_train::tasks::metrics::cross_entropy;

type B = Autodiff<Flex>;

#[derive(Parser, Debug)]
#[command(about = "CEAG step time against the number of groups")]
struct Args {
    /// Group counts.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    groups: Vec<usize>,
    /// Steps per measurement.
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// Interleaved trials.
    #[arg(long, default_value_t = 9)]
    trials: usize,
    /// Output folder.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../out/bench"))]
    out: std::path::PathBuf,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One setting: its problem, constraint set, optimizer state, model and batches.
struct Setting {
    label: String,
    problem: FairProblem,
    set: ConstraintSet<B>,
    opt: ConstrainedOptimizer<
        burn::optim::adaptor::OptimizerAdaptor<burn::optim::Adam, MaskedMlp<B>, B>,
    >,
    model: Option<MaskedMlp<B>>,
    batches: Vec<GroupedBatch<B>>,
    next: usize,
    /// Seconds per step, per trial.
    times: Vec<f64>,
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let device = Default::default();
    let rows = adult::load(AdultSplit::Train)?;
    let enc = AdultEncoder::fit(&rows);
    let x = enc.encode(&rows);
    let y: Vec<i64> = rows.iter().map(|r| i64::from(r.high_income)).collect();
    let n = rows.len();
    let widths = vec![enc.dim(), 256, 128, 2];

    let mut settings = Vec::new();
    // `None`: cross-entropy only, the reference.
    for groups in std::iter::once(None).chain(a.groups.iter().copied().map(Some)) {
        let count = groups.unwrap_or(1);
        let ids = Groups::random(count, n, n, 0)?;
        let data = GroupedSet::<B>::new(x.clone(), enc.dim(), &y, ids.train.clone(), &device);
        let model = MaskedMlp::magnitude(MlpConfig::new(widths.clone()).init::<B>(&device), 0.9);
        let mut set = ConstraintSet::<B>::new(&device);
        let problem = match groups {
            None => FairProblem::unconstrained(),
            Some(g) => {
                let id = set.add(
                    "gap",
                    ConstraintKind::Inequality,
                    g,
                    FormulationConfig::Lagrangian(
                        MultiplierConfig::new(DualOptimizer::gradient_ascent(0.02)).indexed(),
                    ),
                )?;
                let reference =
                    GroupMetrics::measure(&model.valid(), &data.clone().inner(), g, 1000);
                FairProblem::excess_accuracy_gap(id, reference, 0.01, 256)
            }
        };
        let built = Instant::now();
        let batches = data.epoch(128, 0, 0);
        let built_s = built.elapsed().as_secs_f64();
        // The timed network trains all of its parameters (its masks are constants).
        let missing = untrained_params(
            &model,
            cross_entropy(
                model.forward(batches[0].inputs.clone()),
                batches[0].labels.clone(),
            ),
        );
        assert!(
            missing.is_empty(),
            "parameters without a gradient: {missing:?}"
        );
        let per_batch = built_s / batches.len() as f64;
        println!(
            "{}: {} batches, {:.1} groups present per batch, batching {:.0} us per batch",
            groups.map_or("cross-entropy only".to_string(), |g| format!("{g} groups")),
            batches.len(),
            batches.iter().map(|b| b.present.len()).sum::<usize>() as f64 / batches.len() as f64,
            per_batch * 1e6
        );
        settings.push(Setting {
            label: groups.map_or("cross-entropy only".to_string(), |g| format!("{g} groups")),
            problem,
            set,
            opt: ConstrainedOptimizer::new(
                AdamConfig::new().init(),
                5e-4,
                UpdateScheme::Simultaneous,
            ),
            model: Some(model),
            batches,
            next: 0,
            times: Vec::new(),
        });
    }
    // Warm-up, then interleaved trials.
    for trial in 0..=a.trials {
        for s in &mut settings {
            let started = Instant::now();
            for _ in 0..a.steps {
                let batch = &s.batches[s.next % s.batches.len()];
                s.next += 1;
                let out = s.opt.roll(
                    s.model.take().expect("model"),
                    &mut s.set,
                    &s.problem,
                    batch,
                )?;
                s.model = Some(out.model);
            }
            if trial > 0 {
                s.times
                    .push(started.elapsed().as_secs_f64() / a.steps as f64);
            }
        }
    }
    let base = settings[1].times.clone();
    let mut md = format!(
        "UCI Adult, 90%-pruned 103-256-128-2 MLP, batch 128, Flex backend, one thread; \
         {} trials of {} steps, interleaved; median ms per step and median per-trial ratio \
         to {}.\n\n| setting | ms per step | ratio |\n|---|---|---|\n",
        a.trials, a.steps, settings[1].label
    );
    let mut json = Vec::new();
    for s in &settings {
        let mut ratios: Vec<f64> = s.times.iter().zip(&base).map(|(t, b)| t / b).collect();
        let ratio = median(&mut ratios);
        let ms = median(&mut s.times.clone()) * 1e3;
        md.push_str(&format!("| {} | {ms:.3} | {ratio:.3} |\n", s.label));
        json.push(serde_json::json!({"setting": s.label, "ms_per_step": ms, "ratio": ratio}));
    }
    println!("{md}");
    write_atomic(&a.out.join("fair_scale.md"), md.as_bytes())?;
    write_atomic(
        &a.out.join("fair_scale.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!("wrote {}/fair_scale.{{md,json}}", a.out.display());
    Ok(())
}
