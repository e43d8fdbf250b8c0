//! The two ways a GANG run trains: Parallel Nash Memory (mixtures grown by best responses,
//! the empirical game's equilibrium by LP) and the standard GAN baseline; each writes its
//! trace (`metrics.csv`, per-iteration scatter plots, PNM's payoffs and mixtures).

use burn::tensor::backend::AutodiffBackend;

use crate::io::{csv, write_atomic};
use crate::plot::{Panel, Series, line_chart};
use crate::tasks::gang::{GanGame, Player, sample_quality};
use crate::tasks::nash_memory::{PnmConfig, PnmRecord, parallel_nash_memory};
use crate::tasks::outputs::write_json;

use super::GangRunConfig;
use super::outputs::{progress_bar, scatter};

/// Scatter plots written along a GAN run.
const GAN_SNAPSHOTS: usize = 20;

/// The final mixtures of a run and how it ended.
pub(super) struct Mixtures<B: AutodiffBackend> {
    pub generators: Vec<Player<B>>,
    pub generator_weights: Vec<f64>,
    pub classifiers: Vec<Player<B>>,
    pub classifier_weights: Vec<f64>,
    /// PNM iterations run, or the GAN's steps.
    pub iterations: usize,
    /// PNM reached a resource-bounded Nash equilibrium.
    pub converged: bool,
}

/// Parallel Nash Memory from one untrained generator and classifier, to an RB-NE or
/// `config.iterations()`.
pub(super) fn run_pnm<B: AutodiffBackend>(
    a: &GangRunConfig,
    game: &mut GanGame<B>,
    progress: bool,
) -> anyhow::Result<Mixtures<B>> {
    let bar = progress_bar(progress, a.iterations() as u64, "PNM");
    let g0 = game.new_generator();
    let c0 = game.new_classifier();
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut plot_error = None;
    let config = PnmConfig {
        epsilon: a.epsilon,
        max_iterations: a.iterations(),
    };
    // The callback cannot borrow the game (the loop holds it): collect the records and
    // plot each iteration's mixture after the loop, from the stored strategies.
    let mut records: Vec<PnmRecord> = Vec::new();
    let out = parallel_nash_memory(game, g0, c0, config, |r, _, _| {
        bar.set_message(format!(
            "value {:.3}  gains G {:+.3} C {:+.3}",
            r.equilibrium.value,
            r.row_gain(),
            r.col_gain()
        ));
        bar.inc(1);
        records.push(r.clone());
    })?;
    bar.finish();
    for r in &records {
        let gens = &out.rows[..r.rows];
        let (samples, owner) = game.sample_mixture(gens, &r.equilibrium.row, a.metric_samples);
        let q = sample_quality(game.data(), &samples);
        let title = format!(
            "PNM iteration {}: {} generators, {}/{} modes",
            r.iteration,
            r.equilibrium.row.iter().filter(|w| **w > 1e-6).count(),
            q.modes_covered,
            q.modes
        );
        let path = a.out.join(format!("samples/iter_{:03}.png", r.iteration));
        if let Err(e) = scatter(a, game, &samples, &owner, &title, &path) {
            plot_error.get_or_insert(e);
        }
        let (gain_g, gain_c) = (r.row_gain(), r.col_gain());
        rows.push(vec![
            r.iteration as f64,
            r.rows as f64,
            r.equilibrium.value,
            r.row_response,
            r.col_response,
            gain_g,
            gain_c,
            q.modes_covered as f64,
            q.high_quality,
        ]);
    }
    if let Some(e) = plot_error {
        return Err(e);
    }
    let header: Vec<String> = [
        "iteration",
        "strategies",
        "value",
        "generator_response",
        "classifier_response",
        "generator_gain",
        "classifier_gain",
        "modes_covered",
        "high_quality",
    ]
    .map(String::from)
    .to_vec();
    write_atomic(&a.out.join("metrics.csv"), csv(&header, &rows).as_bytes())?;
    let n = out.payoff.len();
    let header: Vec<String> = std::iter::once("generator".to_string())
        .chain((0..n).map(|j| format!("c{j}")))
        .collect();
    let payoff_rows: Vec<Vec<f64>> = out
        .payoff
        .iter()
        .enumerate()
        .map(|(i, r)| std::iter::once(i as f64).chain(r.iter().copied()).collect())
        .collect();
    write_atomic(
        &a.out.join("payoff.csv"),
        csv(&header, &payoff_rows).as_bytes(),
    )?;
    let weights = serde_json::json!({
        "generators": out.equilibrium.row,
        "classifiers": out.equilibrium.col,
        "value": out.equilibrium.value,
    });
    write_json(&a.out.join("mixtures.json"), &weights)?;
    plot_value(a, &rows)?;
    let iterations = out.history.len();
    Ok(Mixtures {
        generators: out.rows,
        generator_weights: out.equilibrium.row,
        classifiers: out.cols,
        classifier_weights: out.equilibrium.col,
        iterations,
        converged: out.converged,
    })
}

/// `value.png`: the empirical game's value and what each iteration's new responses earn,
/// and the modes the generator mixture covers.
fn plot_value(a: &GangRunConfig, rows: &[Vec<f64>]) -> anyhow::Result<()> {
    let series = |label: &str, col: usize| Series {
        label: label.into(),
        points: rows.iter().map(|r| (r[0], r[col])).collect(),
    };
    line_chart(
        &a.out.join("value.png"),
        &[
            Panel {
                title: "Empirical game value and what the new best responses earn".into(),
                x_label: "PNM iteration".into(),
                y_label: "payoff to the generator (nats)".into(),
                series: vec![
                    series("value of the empirical game", 2),
                    series("new generator vs classifier mixture", 3),
                    series("generator mixture vs new classifier", 4),
                ],
            },
            Panel {
                title: "Modes covered by the generator mixture".into(),
                x_label: "PNM iteration".into(),
                y_label: "modes".into(),
                series: vec![series("modes covered", 7)],
            },
        ],
    )
}

/// The GAN baseline: `gan_steps` (default: PNM's budget per player) simultaneous steps,
/// with [`GAN_SNAPSHOTS`] scatter plots along the way.
pub(super) fn run_gan<B: AutodiffBackend>(
    a: &GangRunConfig,
    game: &mut GanGame<B>,
    progress: bool,
) -> anyhow::Result<Mixtures<B>> {
    let steps = a.gan_steps.unwrap_or(a.iterations() * a.response_steps);
    let bar = progress_bar(progress, 1, "GAN");
    bar.set_message(format!("{steps} simultaneous steps"));
    let every = steps.div_ceil(GAN_SNAPSHOTS);
    let run = game.train_gan(steps, every, a.metric_samples)?;
    let (g, c, trace) = (run.generator, run.classifier, run.trace);
    bar.inc(1);
    bar.finish();
    let mut rows = Vec::new();
    for snap in &trace {
        let q = sample_quality(game.data(), &snap.samples);
        let title = format!(
            "GAN step {}: {}/{} modes",
            snap.step, q.modes_covered, q.modes
        );
        let owner = vec![0; snap.samples.len() / 2];
        let path = a.out.join(format!("samples/step_{:07}.png", snap.step));
        scatter(a, game, &snap.samples, &owner, &title, &path)?;
        rows.push(vec![
            snap.step as f64,
            snap.classifier_loss,
            snap.generator_loss,
            q.modes_covered as f64,
            q.high_quality,
        ]);
    }
    let header: Vec<String> = [
        "step",
        "classifier_loss",
        "generator_loss",
        "modes_covered",
        "high_quality",
    ]
    .map(String::from)
    .to_vec();
    write_atomic(&a.out.join("metrics.csv"), csv(&header, &rows).as_bytes())?;
    Ok(Mixtures {
        generators: vec![g],
        generator_weights: vec![1.0],
        classifiers: vec![c],
        classifier_weights: vec![1.0],
        iterations: steps,
        converged: false,
    })
}
