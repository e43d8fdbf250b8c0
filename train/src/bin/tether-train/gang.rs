//! `tether-train gang`: a GAN on a 2D mixture of Gaussians, solved as a finite zero-sum
//! game by Parallel Nash Memory, or trained as a standard GAN (the baseline).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tether_train::data::mixtures::Mixture;
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::io::{csv, write_atomic};
use tether_train::optim::OptimizerArgs;
use tether_train::plot::{Panel, PointSet, ScatterPanel, Series, line_chart, scatter_grid};
use tether_train::tasks::gang::{
    Exploitability, GanGame, GangConfig, Player, SampleQuality, exploitability, sample_quality,
};
use tether_train::tasks::nash_memory::{PnmConfig, PnmRecord, parallel_nash_memory};

/// The data distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Data {
    /// 8 Gaussians on a circle of radius 2 (std 0.02).
    Ring8,
    /// 25 Gaussians on the grid {-4,-2,0,2,4}^2 (std 0.05).
    Grid25,
}

impl Data {
    fn mixture(self) -> Mixture {
        match self {
            Data::Ring8 => Mixture::ring8(),
            Data::Grid25 => Mixture::grid25(),
        }
    }

    fn extent(self) -> f64 {
        match self {
            Data::Ring8 => 3.0,
            Data::Grid25 => 5.5,
        }
    }
}

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Parallel Nash Memory: mixtures grown by best responses, equilibria by LP.
    Pnm,
    /// A standard GAN trained by simultaneous gradient descent-ascent.
    Gan,
}

#[derive(Clone, Debug, clap::Args)]
pub struct GangArgs {
    /// The data distribution.
    #[arg(long, value_enum, default_value_t = Data::Ring8)]
    data: Data,
    /// PNM or the GAN baseline.
    #[arg(long, value_enum, default_value_t = Method::Pnm)]
    method: Method,
    /// PNM: the most iterations (each adds one generator and one classifier); default 80
    /// on the ring, 160 on the grid (where PNM reached its equilibrium at 130-144
    /// iterations in every seed, and was still short of it at 80).
    #[arg(long)]
    iterations: Option<usize>,
    /// PNM: stop when neither best response gains more than this (a resource-bounded
    /// Nash equilibrium; payoffs are in nats, the constant classifier scores 2 ln 2).
    #[arg(long, default_value_t = 0.01)]
    epsilon: f64,
    /// Adam steps per best response.
    #[arg(long, default_value_t = 1000)]
    response_steps: usize,
    /// GAN: simultaneous steps (each moves both networks); default: as many per player
    /// as PNM's iteration budget allows (`iterations x response-steps`).
    #[arg(long)]
    gan_steps: Option<usize>,
    /// Samples per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Adam beta_1.
    #[arg(long, default_value_t = 0.5)]
    beta1: f64,
    #[command(flatten)]
    optimizer: OptimizerArgs,
    /// Latent dimension of the generators.
    #[arg(long, default_value_t = 4)]
    latent_dim: usize,
    /// Hidden widths of the generators, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    generator_hidden: Vec<usize>,
    /// Hidden widths of the classifiers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    classifier_hidden: Vec<usize>,
    /// Weight of the classifiers' background term (uniform points labelled fake: a
    /// tie-break off the data, see the docs of `GangConfig::background`; 0 disables).
    #[arg(long, default_value_t = 0.5)]
    background: f64,
    /// Random restarts per generator response (the best one is kept).
    #[arg(long, default_value_t = 4)]
    restarts: usize,
    /// Samples the payoffs are estimated on (fixed for the whole run).
    #[arg(long, default_value_t = 2048)]
    eval_samples: usize,
    /// Samples drawn for the mode metrics.
    #[arg(long, default_value_t = 2500)]
    metric_samples: usize,
    /// Steps of the fresh best responses that measure exploitability (default: twice
    /// `--response-steps`).
    #[arg(long)]
    exploit_steps: Option<usize>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/gang")]
    out: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl GangArgs {
    /// `--iterations`, or the data set's default.
    fn iterations(&self) -> usize {
        self.iterations.unwrap_or(match self.data {
            Data::Ring8 => 80,
            Data::Grid25 => 160,
        })
    }
}

/// What a run found, as written to `summary.json` (the benchmark reads it back).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Summary {
    pub data: String,
    pub method: String,
    pub seed: u64,
    pub iterations: usize,
    pub converged: bool,
    pub generators: usize,
    pub gradient_steps: usize,
    pub modes_covered: usize,
    pub modes: usize,
    pub high_quality: f64,
    pub value: f64,
    pub generator_response: f64,
    pub classifier_response: f64,
    pub exploitability: f64,
    pub seconds: f64,
}

pub fn run(args: GangArgs) -> anyhow::Result<()> {
    args.optimizer.validate()?;
    anyhow::ensure!(args.iterations() > 0, "--iterations must be at least 1");
    anyhow::ensure!(
        args.epsilon.is_finite() && args.epsilon >= 0.0,
        "--epsilon must be a finite number >= 0, got {}",
        args.epsilon
    );
    anyhow::ensure!(
        args.metric_samples > 0,
        "--metric-samples must be at least 1"
    );
    anyhow::ensure!(
        args.gan_steps != Some(0) && args.exploit_steps != Some(0),
        "--gan-steps and --exploit-steps must be at least 1"
    );
    std::fs::create_dir_all(args.out.join("samples"))
        .with_context(|| format!("creating {}", args.out.display()))?;
    let device = args.device.device;
    run_on(device, Task { args })?
}

struct Task {
    args: GangArgs,
}

impl BackendTask for Task {
    type Output = anyhow::Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let a = self.args;
        let config = GangConfig {
            latent_dim: a.latent_dim,
            generator_hidden: a.generator_hidden.clone(),
            classifier_hidden: a.classifier_hidden.clone(),
            response_steps: a.response_steps,
            batch_size: a.batch,
            lr: a.lr,
            beta_1: a.beta1,
            optimizer: a.optimizer.clone(),
            eval_samples: a.eval_samples,
            background: a.background,
            restarts: a.restarts,
        };
        let mut game = GanGame::<B>::new(a.data.mixture(), config, device, a.seed)?;
        let started = Instant::now();
        let (gens, gw, cls, cw, iterations, converged) = match a.method {
            Method::Pnm => run_pnm(&a, &mut game)?,
            Method::Gan => run_gan(&a, &mut game)?,
        };
        let train_seconds = started.elapsed().as_secs_f64();
        save_generators(&a.out, &gens, &gw)?;
        let (samples, owner) = game.sample_mixture(&gens, &gw, a.metric_samples);
        let quality = sample_quality(game.data(), &samples);
        let exploit_steps = a.exploit_steps.unwrap_or(2 * a.response_steps);
        let gradient_steps = game.gradient_steps();
        let ex = exploitability(&mut game, (&gens, &gw), (&cls, &cw), exploit_steps)?;
        let title = format!(
            "{} on {}: {}/{} modes, {:.1}% high quality",
            method_name(a.method),
            data_name(a.data),
            quality.modes_covered,
            quality.modes,
            100.0 * quality.high_quality
        );
        scatter(
            &a,
            &game,
            &samples,
            &owner,
            &title,
            &a.out.join("samples.png"),
        )?;
        let summary = Summary {
            data: data_name(a.data).into(),
            method: method_name(a.method).into(),
            seed: a.seed,
            iterations,
            converged,
            generators: gw.iter().filter(|w| **w > 1e-6).count(),
            gradient_steps,
            modes_covered: quality.modes_covered,
            modes: quality.modes,
            high_quality: quality.high_quality,
            value: ex.value,
            generator_response: ex.generator_response,
            classifier_response: ex.classifier_response,
            exploitability: ex.total(),
            seconds: train_seconds,
        };
        write_atomic(
            &a.out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        write_atomic(
            &a.out.join("report.md"),
            report(&a, &summary, &quality, &ex).as_bytes(),
        )?;
        println!(
            "{}: {}/{} modes covered, {:.1}% high-quality samples, exploitability {:.4} \
             ({} generators, {} gradient steps, {:.1} s); wrote {}",
            method_name(a.method),
            quality.modes_covered,
            quality.modes,
            100.0 * quality.high_quality,
            ex.total(),
            summary.generators,
            gradient_steps,
            train_seconds,
            a.out.display()
        );
        Ok(())
    }
}

type Mixtures<B> = (
    Vec<Player<B>>,
    Vec<f64>,
    Vec<Player<B>>,
    Vec<f64>,
    usize,
    bool,
);

fn run_pnm<B: AutodiffBackend>(a: &GangArgs, game: &mut GanGame<B>) -> anyhow::Result<Mixtures<B>> {
    let bar = progress(a, a.iterations() as u64, "PNM");
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
    write_atomic(
        &a.out.join("mixtures.json"),
        serde_json::to_string_pretty(&weights)?.as_bytes(),
    )?;
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
    )?;
    let iterations = out.history.len();
    Ok((
        out.rows,
        out.equilibrium.row,
        out.cols,
        out.equilibrium.col,
        iterations,
        out.converged,
    ))
}

fn run_gan<B: AutodiffBackend>(a: &GangArgs, game: &mut GanGame<B>) -> anyhow::Result<Mixtures<B>> {
    let steps = a.gan_steps.unwrap_or(a.iterations() * a.response_steps);
    let bar = progress(a, 1, "GAN");
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
    Ok((vec![g], vec![1.0], vec![c], vec![1.0], steps, false))
}

/// Scatter plots written along a GAN run.
const GAN_SNAPSHOTS: usize = 20;

fn progress(a: &GangArgs, len: u64, label: &str) -> ProgressBar {
    if a.quiet {
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

fn scatter<B: AutodiffBackend>(
    a: &GangArgs,
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
/// of `payoff.csv` and the index into `mixtures.json`), each to a temporary name first.
fn save_generators<B: AutodiffBackend>(
    out: &Path,
    gens: &[Player<B>],
    weights: &[f64],
) -> anyhow::Result<()> {
    let dir = out.join("generators");
    std::fs::create_dir_all(&dir)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    for (i, (g, w)) in gens.iter().zip(weights).enumerate() {
        if *w <= 0.0 {
            continue;
        }
        let partial = dir.join(format!("g{i}-partial"));
        g.net
            .clone()
            .save_file(&partial, &recorder)
            .with_context(|| format!("saving generator {i}"))?;
        std::fs::rename(partial.with_extension("mpk"), dir.join(format!("g{i}.mpk")))?;
    }
    Ok(())
}

fn data_name(d: Data) -> &'static str {
    match d {
        Data::Ring8 => "ring8",
        Data::Grid25 => "grid25",
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Pnm => "pnm",
        Method::Gan => "gan",
    }
}

fn report(a: &GangArgs, s: &Summary, q: &SampleQuality, ex: &Exploitability) -> String {
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
        steps = a.exploit_steps.unwrap_or(2 * a.response_steps),
        ex = ex.total(),
        value = ex.value,
        gr = ex.generator_response,
        cr = ex.classifier_response,
        gens = s.generators,
        it = s.iterations,
        eps = a.epsilon,
        conv = if a.method == Method::Pnm {
            s.converged.to_string()
        } else {
            "n/a".into()
        },
        gs = s.gradient_steps,
        secs = s.seconds,
        n = a.metric_samples,
    )
}
