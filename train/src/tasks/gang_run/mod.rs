//! The GANG job end to end, as `tether-train gang` runs it: a GAN on a 2D mixture of
//! Gaussians solved as a finite zero-sum game between mixtures of generators and
//! classifiers by Parallel Nash Memory (Oliehoek et al. 2018; the game is
//! [`super::gang`], the loop [`super::nash_memory`]), or trained as a standard GAN (the
//! baseline); then measured: modes covered, high-quality samples, and the exploitability of
//! the final mixtures against fresh best responses. [`GangRunConfig`] holds every setting
//! (serde and clap, as [`super::fair_run::FairConfig`]), [`run`] is the job,
//! [`GangReport`] what it found.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use tether_train::tasks::gang_run::{GangRunConfig, run};
//!
//! let config = GangRunConfig {
//!     iterations: Some(20),
//!     ..GangRunConfig::default()
//! };
//! let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
//! println!("{} of {} modes", report.summary.modes_covered, report.summary.modes);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Written under [`GangRunConfig::out`]: `metrics.csv` (PNM: per iteration; GAN: per
//! snapshot), PNM's `payoff.csv`, `mixtures.json` and `value.png`, `samples.png` and one
//! scatter plot per iteration or snapshot in `samples/`, every generator with weight as
//! `generators/g<row>.mpk`, `summary.json` and `report.md`.

mod outputs;
mod play;

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::data::mixtures::Mixture;
use crate::denormals::FlushDenormals;
use crate::device::DeviceKind;
use crate::io::write_atomic;
use crate::optim::OptimizerArgs;
use crate::resume::{RunControl, checkpoint_dir, open_checkpoint, remove_checkpoint, settings_key};
use crate::tasks::gang::{
    Exploitability, GanGame, GangConfig, SampleQuality, exploitability, sample_quality,
};
use crate::tasks::outputs::write_json;

/// The data distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixtureKind {
    /// 8 Gaussians on a circle of radius 2 (std 0.02).
    Ring8,
    /// 25 Gaussians on the grid {-4,-2,0,2,4}^2 (std 0.05).
    Grid25,
}

impl MixtureKind {
    /// The mixture itself.
    pub fn mixture(self) -> Mixture {
        match self {
            MixtureKind::Ring8 => Mixture::ring8(),
            MixtureKind::Grid25 => Mixture::grid25(),
        }
    }

    /// Half the side of the plots' square: the modes and a margin.
    pub fn extent(self) -> f64 {
        match self {
            MixtureKind::Ring8 => 3.0,
            MixtureKind::Grid25 => 5.5,
        }
    }

    /// The name `summary.json` and the flag use.
    pub fn name(self) -> &'static str {
        match self {
            MixtureKind::Ring8 => "ring8",
            MixtureKind::Grid25 => "grid25",
        }
    }
}

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GangMethod {
    /// Parallel Nash Memory: mixtures grown by best responses, equilibria by LP.
    Pnm,
    /// A standard GAN trained by simultaneous gradient descent-ascent.
    Gan,
}

impl GangMethod {
    /// The name `summary.json` and the flag use.
    pub fn name(self) -> &'static str {
        match self {
            GangMethod::Pnm => "pnm",
            GangMethod::Gan => "gan",
        }
    }
}

/// Every setting of a GANG run. Each field is the `tether-train gang` flag of the same
/// name (dashes for underscores), and a config file's key; its doc is the flag's help. The
/// defaults are the flags' ([`Default`] parses an empty command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct GangRunConfig {
    /// The data distribution.
    #[arg(long, value_enum, default_value_t = MixtureKind::Ring8)]
    pub data: MixtureKind,
    /// PNM or the GAN baseline.
    #[arg(long, value_enum, default_value_t = GangMethod::Pnm)]
    pub method: GangMethod,
    /// PNM: the most iterations (each adds one generator and one classifier); default 80
    /// on the ring, 160 on the grid (where PNM reached its equilibrium at 130-144
    /// iterations in every seed, and was still short of it at 80).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// PNM: stop when neither best response gains more than this (a resource-bounded
    /// Nash equilibrium; payoffs are in nats, the constant classifier scores 2 ln 2).
    #[arg(long, default_value_t = 0.01)]
    pub epsilon: f64,
    /// Adam steps per best response.
    #[arg(long, default_value_t = 1000)]
    pub response_steps: usize,
    /// GAN: simultaneous steps (each moves both networks); default: as many per player
    /// as PNM's iteration budget allows (`iterations x response-steps`).
    #[arg(long)]
    pub gan_steps: Option<usize>,
    /// Samples per step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Adam beta_1.
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f64,
    /// The optimizer of responses and of the GAN baseline; its keys sit at the top level
    /// of a config file, as its flags do on the command line.
    #[command(flatten)]
    #[serde(flatten)]
    pub optimizer: OptimizerArgs,
    /// Latent dimension of the generators.
    #[arg(long, default_value_t = 4)]
    pub latent_dim: usize,
    /// Hidden widths of the generators, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub generator_hidden: Vec<usize>,
    /// Hidden widths of the classifiers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub classifier_hidden: Vec<usize>,
    /// Weight of the classifiers' background term (uniform points labelled fake: a
    /// tie-break off the data, see the docs of `GangConfig::background`; 0 disables).
    #[arg(long, default_value_t = 0.5)]
    pub background: f64,
    /// Random restarts per generator response (the best one is kept).
    #[arg(long, default_value_t = 4)]
    pub restarts: usize,
    /// Samples the payoffs are estimated on (fixed for the whole run).
    #[arg(long, default_value_t = 2048)]
    pub eval_samples: usize,
    /// Samples drawn for the mode metrics.
    #[arg(long, default_value_t = 2500)]
    pub metric_samples: usize,
    /// Steps of the fresh best responses that measure exploitability (default: twice
    /// `--response-steps`).
    #[arg(long)]
    pub exploit_steps: Option<usize>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/gang")]
    pub out: PathBuf,
    /// Write a checkpoint to OUT/checkpoint every N PNM iterations, or every N of the GAN
    /// baseline's snapshots (0: only when interrupted). SIGINT (Ctrl-C), SIGTERM and
    /// SIGHUP write one after the PNM iteration or GAN step under way (a second signal
    /// stops at once); a finished run removes it.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub checkpoint_every: usize,
    /// Continue the run whose checkpoint is in DIR (OUT/checkpoint, or that run's OUT),
    /// with the same settings; the result equals the uninterrupted run's bit for bit on
    /// CPU.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
}

impl Default for GangRunConfig {
    fn default() -> Self {
        crate::tasks::flag_defaults()
    }
}

impl GangRunConfig {
    /// `iterations`, or the data set's default.
    pub fn iterations(&self) -> usize {
        self.iterations.unwrap_or(match self.data {
            MixtureKind::Ring8 => 80,
            MixtureKind::Grid25 => 160,
        })
    }

    /// `exploit_steps`, or twice `response_steps`.
    pub fn exploit_steps(&self) -> usize {
        self.exploit_steps.unwrap_or(2 * self.response_steps)
    }

    /// The game's settings (networks, responses, payoff sample).
    pub fn game(&self) -> GangConfig {
        GangConfig {
            latent_dim: self.latent_dim,
            generator_hidden: self.generator_hidden.clone(),
            classifier_hidden: self.classifier_hidden.clone(),
            response_steps: self.response_steps,
            batch_size: self.batch,
            lr: self.lr,
            beta_1: self.beta1,
            optimizer: self.optimizer.clone(),
            eval_samples: self.eval_samples,
            background: self.background,
            restarts: self.restarts,
        }
    }

    /// Checks the settings the game does not check itself ([`GanGame::new`] refuses bad
    /// networks, rates and restarts), so a bad one fails before any work. Messages name
    /// the CLI flags.
    ///
    /// # Errors
    /// The first setting out of its range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.optimizer.validate()?;
        anyhow::ensure!(self.iterations() > 0, "--iterations must be at least 1");
        anyhow::ensure!(
            self.epsilon.is_finite() && self.epsilon >= 0.0,
            "--epsilon must be a finite number >= 0, got {}",
            self.epsilon
        );
        anyhow::ensure!(
            self.metric_samples > 0,
            "--metric-samples must be at least 1"
        );
        anyhow::ensure!(
            self.gan_steps != Some(0) && self.exploit_steps != Some(0),
            "--gan-steps and --exploit-steps must be at least 1"
        );
        Ok(())
    }
}

/// What a run found, as written to `summary.json` (the benchmark reads it back).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GangSummary {
    /// The data distribution's name.
    pub data: String,
    /// `pnm` or `gan`.
    pub method: String,
    /// The seed.
    pub seed: u64,
    /// PNM iterations run; the GAN's steps.
    pub iterations: usize,
    /// PNM reached a resource-bounded Nash equilibrium (always false for the GAN).
    pub converged: bool,
    /// Generators with weight in the final mixture.
    pub generators: usize,
    /// Gradient steps of both players, exploitability's responses excluded.
    pub gradient_steps: usize,
    /// Modes covered by the final mixture's samples.
    pub modes_covered: usize,
    /// Modes of the data.
    pub modes: usize,
    /// Fraction of samples within 3 standard deviations of a mode.
    pub high_quality: f64,
    /// `u_G` of the final mixtures.
    pub value: f64,
    /// `u_G` of a fresh generator response against the classifier mixture.
    pub generator_response: f64,
    /// `u_G` of the generator mixture against a fresh classifier response.
    pub classifier_response: f64,
    /// `generator_response - classifier_response`: zero at an equilibrium.
    pub exploitability: f64,
    /// Wall-clock seconds of the training (PNM or GAN), measurements excluded.
    pub seconds: f64,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct GangReport {
    /// `summary.json`'s contents.
    pub summary: GangSummary,
    /// The final mixture's samples on the data.
    pub quality: SampleQuality,
    /// The final mixtures against fresh best responses.
    pub exploitability: Exploitability,
    /// The files written, by name, under [`GangRunConfig::out`] (the folders `samples/`
    /// and `generators/` among them).
    pub files: Vec<&'static str>,
}

/// Runs the GANG job on backend `B` and writes its outputs. `progress` shows a progress
/// bar, as the CLI does; without it the run is silent. Subnormal floats are flushed
/// throughout, as under the CLI.
///
/// # Errors
/// A setting out of range ([`GangRunConfig::validate`], [`GanGame::new`]), a failed
/// equilibrium solve or training step, or an output that cannot be written.
pub fn run<B: AutodiffBackend>(
    config: &GangRunConfig,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<GangReport> {
    run_controlled::<B>(config, device, &RunControl::new(progress))
}

/// [`run`] with a [`RunControl`]: checkpoints every [`GangRunConfig::checkpoint_every`]
/// PNM iterations or GAN snapshots and when the interrupt is raised (then
/// [`crate::resume::Interrupted`] is returned), and continues from
/// [`GangRunConfig::resume`].
///
/// # Errors
/// As [`run`]; a resume folder without a checkpoint of a gang run with these settings.
pub fn run_controlled<B: AutodiffBackend>(
    config: &GangRunConfig,
    device: &B::Device,
    control: &RunControl,
) -> anyhow::Result<GangReport> {
    let progress = control.progress;
    let _flush = FlushDenormals::new();
    config.validate()?;
    let a = config;
    crate::io::check_output_dir(&a.out, "--out")?;
    let resume = match &a.resume {
        Some(path) => {
            let (dir, run) = open_checkpoint(path, "gang", &settings_key(a)?)?;
            Some((dir, run))
        }
        None => None,
    };
    let checkpoints = play::Checkpointing {
        dir: checkpoint_dir(&a.out),
        every: a.checkpoint_every,
        interrupt: control.interrupt.clone(),
        key: settings_key(a)?,
        resume,
    };
    let mut game = GanGame::<B>::new(a.data.mixture(), a.game(), device.clone(), a.seed)?;
    let started = Instant::now();
    let mixtures = match a.method {
        GangMethod::Pnm => play::run_pnm(a, &mut game, progress, &checkpoints)?,
        GangMethod::Gan => play::run_gan(a, &mut game, progress, &checkpoints)?,
    };
    let train_seconds = started.elapsed().as_secs_f64();
    let (gens, gw) = (&mixtures.generators, &mixtures.generator_weights);
    let (cls, cw) = (&mixtures.classifiers, &mixtures.classifier_weights);
    outputs::save_generators(&a.out, gens, gw)?;
    let (samples, owner) = game.sample_mixture(gens, gw, a.metric_samples);
    let quality = sample_quality(game.data(), &samples);
    let gradient_steps = game.gradient_steps();
    let ex = exploitability(&mut game, (gens, gw), (cls, cw), a.exploit_steps())?;
    let title = format!(
        "{} on {}: {}/{} modes, {:.1}% high quality",
        a.method.name(),
        a.data.name(),
        quality.modes_covered,
        quality.modes,
        100.0 * quality.high_quality
    );
    outputs::scatter(
        a,
        &game,
        &samples,
        &owner,
        &title,
        &a.out.join("samples.png"),
    )?;
    let summary = GangSummary {
        data: a.data.name().into(),
        method: a.method.name().into(),
        seed: a.seed,
        iterations: mixtures.iterations,
        converged: mixtures.converged,
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
    write_json(&a.out.join("summary.json"), &summary)?;
    write_atomic(
        &a.out.join("report.md"),
        outputs::report(a, &summary, &quality, &ex).as_bytes(),
    )?;
    // Every output is written: nothing is left to resume.
    remove_checkpoint(&a.out)?;
    let files = match a.method {
        GangMethod::Pnm => vec![
            "metrics.csv",
            "payoff.csv",
            "mixtures.json",
            "value.png",
            "samples",
            "samples.png",
            "generators",
            "summary.json",
            "report.md",
        ],
        GangMethod::Gan => vec![
            "metrics.csv",
            "samples",
            "samples.png",
            "generators",
            "summary.json",
            "report.md",
        ],
    };
    Ok(GangReport {
        summary,
        quality,
        exploitability: ex,
        files,
    })
}

/// [`run`] as a [`crate::device::BackendTask`], for [`crate::device::run_on`].
pub struct GangTask<'a> {
    /// The settings.
    pub config: &'a GangRunConfig,
    /// Whether to show progress.
    pub progress: bool,
}

impl crate::device::BackendTask for GangTask<'_> {
    type Output = anyhow::Result<GangReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run::<B>(self.config, &device, self.progress)
    }
}

/// [`run_controlled`] as a [`crate::device::BackendTask`] (the CLI's, with its signals).
pub struct ControlledGangTask<'a> {
    /// The settings.
    pub config: &'a GangRunConfig,
    /// Progress and interrupt.
    pub control: &'a RunControl,
}

impl crate::device::BackendTask for ControlledGangTask<'_> {
    type Output = anyhow::Result<GangReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_controlled::<B>(self.config, &device, self.control)
    }
}

/// [`run`] on the backend `kind` names.
///
/// # Errors
/// The device is not compiled in or not present, or [`run`]'s errors.
pub fn run_on(
    kind: DeviceKind,
    config: &GangRunConfig,
    progress: bool,
) -> anyhow::Result<GangReport> {
    crate::device::run_on(kind, GangTask { config, progress })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_round_trips_through_json_with_the_flags_defaults() {
        let d = GangRunConfig::default();
        assert_eq!((d.data, d.method), (MixtureKind::Ring8, GangMethod::Pnm));
        assert_eq!((d.iterations(), d.exploit_steps()), (80, 2000));
        assert_eq!(d.generator_hidden, vec![64, 64]);
        let config = GangRunConfig {
            data: MixtureKind::Grid25,
            method: GangMethod::Gan,
            ..GangRunConfig::default()
        };
        assert_eq!(config.iterations(), 160);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            (&json["data"], &json["method"]),
            (&"grid25".into(), &"gan".into())
        );
        assert_eq!(
            serde_json::from_value::<GangRunConfig>(json).unwrap(),
            config
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |c: GangRunConfig| c.validate().unwrap_err().to_string();
        let e = bad(GangRunConfig {
            iterations: Some(0),
            ..GangRunConfig::default()
        });
        assert!(e.contains("--iterations must be at least 1"), "{e}");
        let e = bad(GangRunConfig {
            epsilon: f64::NAN,
            ..GangRunConfig::default()
        });
        assert!(e.contains("--epsilon"), "{e}");
        let e = bad(GangRunConfig {
            exploit_steps: Some(0),
            ..GangRunConfig::default()
        });
        assert!(e.contains("--exploit-steps"), "{e}");
        assert!(GangRunConfig::default().validate().is_ok());
    }
}
