//! What a GANG run shows and writes besides its traces: the progress bar, scatter plots of
//! samples over the data, the generators' records and `report.md`.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::plot::{PointSet, ScatterPanel, scatter_grid};
use crate::tasks::gang::{Exploitability, GanGame, Player, SampleQuality};
use crate::tasks::outputs::save_record;

use super::{GangMethod, GangRunConfig, GangSummary};

/// A progress bar of `len` steps labelled `label`; hidden without `progress`.
pub(super) fn progress_bar(progress: bool, len: u64, label: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// A scatter plot of `samples` (coloured by `owner`, the generator that drew each) over
/// 2,000 points of the data, written to `path`.
pub(super) fn scatter<B: AutodiffBackend>(
    a: &GangRunConfig,
    game: &GanGame<B>,
    samples: &[f32],
    owner: &[usize],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let data = game.data().sample(2000, a.seed ^ 0xda7a);
    let mut sets = vec![PointSet {
        label: "data".into(),
        points: data
            .chunks_exact(2)
            .map(|p| (p[0] as f64, p[1] as f64))
            .collect(),
        color: None,
    }];
    let components = owner.iter().copied().max().map_or(0, |m| m + 1);
    for k in 0..components {
        let points: Vec<(f64, f64)> = samples
            .chunks_exact(2)
            .zip(owner)
            .filter(|(_, o)| **o == k)
            .map(|(p, _)| (p[0] as f64, p[1] as f64))
            .collect();
        if !points.is_empty() {
            sets.push(PointSet {
                label: String::new(),
                points,
                color: Some(k),
            });
        }
    }
    scatter_grid(
        path,
        &[ScatterPanel {
            title: title.into(),
            extent: a.data.extent(),
            sets,
        }],
        1,
    )
}

/// Writes every generator with weight, as a burn record `generators/g<row>.mpk` (the row
/// of `payoff.csv` and the index into `mixtures.json`).
pub(super) fn save_generators<B: AutodiffBackend>(
    out: &Path,
    gens: &[Player<B>],
    weights: &[f64],
) -> anyhow::Result<()> {
    let dir = out.join("generators");
    std::fs::create_dir_all(&dir)?;
    for (i, (g, w)) in gens.iter().zip(weights).enumerate() {
        if *w <= 0.0 {
            continue;
        }
        save_record(
            g.net.clone(),
            &dir,
            &format!("g{i}"),
            &format!("generator {i}"),
        )?;
    }
    Ok(())
}

/// `report.md`: the summary as a table, with what the metrics mean.
pub(super) fn report(
    a: &GangRunConfig,
    s: &GangSummary,
    q: &SampleQuality,
    ex: &Exploitability,
) -> String {
    format!(
        "# tether-train gang: {method} on {data} (seed {seed})\n\n\
         | metric | value |\n|---|---|\n\
         | modes covered | {covered}/{modes} |\n\
         | high-quality samples | {hq:.1}% |\n\
         | exploitability (fresh responses, {steps} steps) | {ex:.4} |\n\
         | u_G(mixtures) | {value:.4} |\n\
         | u_G(fresh generator vs classifiers) | {gr:.4} |\n\
         | u_G(generators vs fresh classifier) | {cr:.4} |\n\
         | generators with weight | {gens} |\n\
         | iterations | {it} |\n\
         | reached an RB-NE (epsilon {eps}) | {conv} |\n\
         | gradient steps (both players) | {gs} |\n\
         | training time | {secs:.1} s |\n\n\
         High quality: within 3 standard deviations of a mode. A mode is covered when at \
         least 20 of every 2,500 samples (PacGAN's threshold; {n} samples drawn) are high-quality samples of it. Exploitability is \
         u_G(BR_G, s_C) - u_G(s_G, BR_C): zero at an equilibrium.\n",
        method = s.method,
        data = s.data,
        seed = s.seed,
        covered = q.modes_covered,
        modes = q.modes,
        hq = 100.0 * q.high_quality,
        steps = a.exploit_steps(),
        ex = ex.total(),
        value = ex.value,
        gr = ex.generator_response,
        cr = ex.classifier_response,
        gens = s.generators,
        it = s.iterations,
        eps = a.epsilon,
        conv = if a.method == GangMethod::Pnm {
            s.converged.to_string()
        } else {
            "n/a".into()
        },
        gs = s.gradient_steps,
        secs = s.seconds,
        n = a.metric_samples,
    )
}
