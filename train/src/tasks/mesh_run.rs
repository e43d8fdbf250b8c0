//! The mesh job end to end, as `tether-train mesh` runs it: per-vertex parcellation of the
//! cortex with an equivariant mesh attention network (EMAN, Basu et al., TMLR 2022) fed
//! RelTan features (eq. 6) or raw coordinates (the baseline), trained on the left
//! hemisphere and tested on the mirrored right one as it is and under random rotations,
//! translations, scalings, vertex permutations and gauge changes; then exported to
//! tether-deploy's format and checked against burn on the test hemisphere. The problem is
//! [`super::mesh`]. [`MeshConfig`] holds every setting (serde and clap, as
//! [`super::fair_run::FairConfig`]), [`run`] is the job, [`MeshReport`] what it measured.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use tether_train::tasks::mesh_run::{MeshConfig, run};
//!
//! let config = MeshConfig {
//!     steps: 100,
//!     ..MeshConfig::default()
//! };
//! let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
//! println!("test accuracy {:.4}", report.summary.test_accuracy);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Written under [`MeshConfig::out`]: `loss.csv`, `accuracy.csv`, `training.png`,
//! `model.mpk` (a burn record), `model.tthr` (tether-deploy), `config.json` (the network's
//! [`EmanNetConfig`]) and `summary.json`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tether_deploy::mesh::{MeshPlan, RelTanOptions};
use tether_deploy::{AlignedBytes, Model};
use tether_models::eman::export::to_deploy;
use tether_models::eman::{EmanInput, EmanNet, EmanNetConfig};

use crate::constrained::{ConstrainedOptimizer, ConstraintSet, UpdateScheme};
use crate::constrained::{load_checkpoint, save_checkpoint_with};
use crate::data::cortex::{CorticalParcellation, LabelledMesh, Parcellation};
use crate::denormals::FlushDenormals;
use crate::device::DeviceKind;
use crate::io::{csv, write_atomic};
use crate::optim::OptimizerArgs;
use crate::plot::{Panel, Series, line_chart};
use crate::resume::{
    Position, RUN_FILE, RunControl, RunState, checkpoint_dir, open_checkpoint, remove_checkpoint,
    settings_key,
};
use crate::tasks::mesh::{MeshSegmentation, PreparedMesh, RandomTransform, accuracy};
use crate::tasks::outputs::{save_record, write_json};
use crate::trainer::{Checkpoints, FitOptions, StepsStop, fit_resumable, progress_bar};

/// What the network is fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshInput {
    /// Relative tangential features: EMAN, equivariant to all five symmetries.
    Reltan,
    /// Raw vertex coordinates: the same network, not invariant to rotation, translation
    /// or scale.
    Xyz,
}

/// Every setting of a mesh run. Each field is the `tether-train mesh` flag of the same
/// name (dashes for underscores), and a config file's key; its doc is the flag's help. The
/// defaults are the flags' ([`Default`] parses an empty command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct MeshConfig {
    /// The labels to learn.
    #[arg(long, value_enum, default_value_t = Parcellation::Mesulam)]
    pub parcellation: Parcellation,
    /// The network's input.
    #[arg(long, value_enum, default_value_t = MeshInput::Reltan)]
    pub input: MeshInput,
    /// RelTan's relative powers (one order-1 input feature each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.7")]
    pub reltan_powers: Vec<f64>,
    /// Hidden channels.
    #[arg(long, default_value_t = 8)]
    pub channels: usize,
    /// Largest rotation order of the hidden features.
    #[arg(long, default_value_t = 2)]
    pub order: usize,
    /// Residual blocks (two attention layers each).
    #[arg(long, default_value_t = 1)]
    pub blocks: usize,
    /// Attention heads per layer.
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Training steps (each over every vertex of the training hemisphere).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// The network's optimizer; its keys sit at the top level of a config file, as its
    /// flags do on the command line.
    #[command(flatten)]
    #[serde(flatten)]
    pub optimizer: OptimizerArgs,
    /// Evaluate on the test hemisphere every this many steps (0: only at the end).
    #[arg(long, default_value_t = 25)]
    pub eval_every: usize,
    /// Randomly transformed copies of the test hemisphere.
    #[arg(long, default_value_t = 4)]
    pub transforms: usize,
    /// Largest translation per axis of a transformed copy (mm).
    #[arg(long, default_value_t = 100.0)]
    pub translation: f64,
    /// Random seed (initialisation and transformations).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/mesh")]
    pub out: PathBuf,
    /// Write a checkpoint to OUT/checkpoint every N steps (0: only when interrupted).
    /// SIGINT (Ctrl-C), SIGTERM and SIGHUP write one after the step under way (a second
    /// signal stops at once); a finished run removes it.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub checkpoint_every: usize,
    /// Continue the run whose checkpoint is in DIR (OUT/checkpoint, or that run's OUT),
    /// with the same settings; the result equals the uninterrupted run's bit for bit on
    /// CPU.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        crate::tasks::flag_defaults()
    }
}

impl MeshConfig {
    /// Checks every setting, so a bad one fails before the meshes are read. Messages name
    /// the CLI flags.
    ///
    /// # Errors
    /// The first setting out of its range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.optimizer.validate()?;
        anyhow::ensure!(self.steps > 0, "--steps must be at least 1");
        anyhow::ensure!(
            self.channels > 0 && self.heads > 0 && self.channels.is_multiple_of(self.heads),
            "--heads ({}) must divide --channels ({})",
            self.heads,
            self.channels
        );
        anyhow::ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "--lr must be a positive number"
        );
        anyhow::ensure!(
            !self.reltan_powers.is_empty() && self.reltan_powers.iter().all(|r| r.is_finite()),
            "--reltan-powers must be finite numbers"
        );
        anyhow::ensure!(
            self.reltan_powers.len() <= tether_deploy::format::MAX_RELTAN_POWERS,
            "--reltan-powers: at most {} (what the deploy format carries)",
            tether_deploy::format::MAX_RELTAN_POWERS
        );
        anyhow::ensure!(
            self.translation.is_finite() && self.translation >= 0.0,
            "--translation must be a finite number >= 0"
        );
        Ok(())
    }
}

/// What a run found, as written to `summary.json` (the benchmark reads it back).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshSummary {
    /// The labels learnt.
    pub parcellation: Parcellation,
    /// The network's input.
    pub input: MeshInput,
    /// The seed.
    pub seed: u64,
    /// Training steps.
    pub steps: usize,
    /// The network's parameters.
    pub parameters: usize,
    /// Fraction of the training hemisphere's vertices labelled right.
    pub train_accuracy: f64,
    /// The same on the test hemisphere.
    pub test_accuracy: f64,
    /// The same on each randomly transformed copy of the test hemisphere.
    pub transformed_accuracy: Vec<f64>,
    /// Their mean (NaN without copies).
    pub transformed_mean: f64,
    /// Wall-clock seconds per training step.
    pub seconds_per_step: f64,
    /// Largest |difference| between tether-deploy's and burn's outputs on the test mesh.
    pub deploy_max_diff: f64,
    /// tether-deploy on the test mesh, geometry included (ms, single thread).
    pub deploy_ms: f64,
    /// burn's forward on the test mesh, geometry precomputed (ms).
    pub burn_ms: f64,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct MeshReport {
    /// `summary.json`'s contents.
    pub summary: MeshSummary,
    /// The files written, by name, under [`MeshConfig::out`].
    pub files: Vec<&'static str>,
}

/// Runs the mesh job on backend `B`: reads the parcellation (`scripts/fetch-data
/// brainspace`), trains, evaluates, exports and writes the outputs. `progress` shows
/// progress bars, as the CLI does; without it the run is silent. Subnormal floats are
/// flushed throughout, as under the CLI.
///
/// # Errors
/// A setting out of range ([`MeshConfig::validate`]), missing meshes, a training failure,
/// an export tether-deploy disagrees with (beyond f32 rounding), or an output that cannot
/// be written.
pub fn run<B: AutodiffBackend>(
    config: &MeshConfig,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<MeshReport> {
    run_controlled::<B>(config, device, &RunControl::new(progress))
}

/// A mesh run's state beside its model, optimizer and multipliers: the logs so far.
#[derive(Serialize, Deserialize)]
struct MeshState {
    losses: Vec<Vec<f64>>,
    evals: Vec<Vec<f64>>,
    seconds: f64,
}

/// [`run`] with a [`RunControl`]: checkpoints every [`MeshConfig::checkpoint_every`]
/// steps and when the interrupt is raised (then [`crate::resume::Interrupted`] is
/// returned), and continues from [`MeshConfig::resume`].
///
/// # Errors
/// As [`run`]; a resume folder without a checkpoint of a mesh run with these settings.
pub fn run_controlled<B: AutodiffBackend>(
    config: &MeshConfig,
    device: &B::Device,
    control: &RunControl,
) -> anyhow::Result<MeshReport> {
    let progress = control.progress;
    let _flush = FlushDenormals::new();
    config.validate()?;
    crate::io::check_output_dir(&config.out, "--out")?;
    let resume = match &config.resume {
        Some(path) => {
            let (dir, run) = open_checkpoint(path, "mesh", &settings_key(config)?)?;
            let state: MeshState = serde_json::from_value(run.task)
                .with_context(|| format!("corrupt checkpoint {}", dir.display()))?;
            Some((dir, run.position.global_step, state))
        }
        None => None,
    };
    let data = CorticalParcellation::load(config.parcellation)?;
    let args = config;
    B::seed(device, args.seed);
    let input = match args.input {
        // Rounded to f32, as the deploy format stores them: burn and the exported model
        // then compute from identical inputs.
        MeshInput::Reltan => EmanInput::RelTan(RelTanOptions {
            powers: args
                .reltan_powers
                .iter()
                .map(|&p| f64::from(p as f32))
                .collect(),
            ..Default::default()
        }),
        MeshInput::Xyz => EmanInput::xyz_fitted(&data.train.mesh),
    };
    let net_config = EmanNetConfig::new(input.channels(), input.order(), data.classes)
        .with_channels(args.channels)
        .with_order(args.order)
        .with_blocks(args.blocks)
        .with_heads(args.heads);
    let net = net_config.init::<B>(device);
    let parameters = net.num_params();

    // The training mesh on the autodiff backend; the evaluation meshes on its inner one.
    let train = prepare::<B>(&data.train, &input, args.order, device)?;
    let train_eval = prepare::<B::InnerBackend>(&data.train, &input, args.order, device)?;
    let test = prepare::<B::InnerBackend>(&data.test, &input, args.order, device)?;

    let mut set = ConstraintSet::<B>::new(device);
    let primal = args.optimizer.build()?;
    let health = primal.health();
    let mut opt = ConstrainedOptimizer::new(primal, args.lr, UpdateScheme::Simultaneous);
    let problem = MeshSegmentation { mesh: train };
    let label = format!("mesh {:?}", args.input).to_lowercase();
    let bar = progress_bar(args.steps, progress.then_some(label.as_str()));
    let options = FitOptions::new(args.steps, None)
        .with_health(health)
        .with_bar(bar.clone());
    let losses = RefCell::new(Vec::new());
    let evals: RefCell<Vec<Vec<f64>>> = RefCell::new(Vec::new());
    let (net, from, seconds_before) = match &resume {
        Some((dir, step, state)) => {
            let (net, _) = load_checkpoint(dir, net, &mut opt, &mut set)?;
            *losses.borrow_mut() = state.losses.clone();
            *evals.borrow_mut() = state.evals.clone();
            bar.set_position(*step as u64);
            if progress {
                println!("resuming from {}: step {step}", dir.display());
            }
            (net, *step, state.seconds)
        }
        None => (net, 0, 0.0),
    };
    let start = Instant::now();
    let checkpoint = checkpoint_dir(&args.out);
    let save = |net: &EmanNet<B>,
                opt: &ConstrainedOptimizer<_>,
                set: &ConstraintSet<B>,
                step: usize|
     -> anyhow::Result<()> {
        let state = MeshState {
            losses: losses.borrow().clone(),
            evals: evals.borrow().clone(),
            seconds: seconds_before + start.elapsed().as_secs_f64(),
        };
        let json =
            RunState::file_bytes("mesh", settings_key(args)?, Position::at_step(step), &state)?;
        save_checkpoint_with(
            &checkpoint,
            step as u64,
            net,
            opt,
            set,
            &[(RUN_FILE, &json)],
        )?;
        Ok(())
    };
    let net = fit_resumable(
        net,
        &mut opt,
        &mut set,
        &problem,
        from..args.steps,
        args.seed,
        &options,
        Some(Checkpoints {
            every: args.checkpoint_every,
            interrupt: &control.interrupt,
            dir: &checkpoint,
        }),
        |_| (),
        |step, info| {
            losses
                .borrow_mut()
                .push(vec![step as f64, info.values.loss]);
            if args.eval_every > 0 && step % args.eval_every == 0 {
                let valid = info.model.valid();
                evals.borrow_mut().push(vec![
                    step as f64,
                    accuracy(&valid, &train_eval),
                    accuracy(&valid, &test),
                ]);
            }
        },
        save,
    )
    .map_err(|stop| match stop {
        StepsStop::Train(e) => anyhow::Error::from(e),
        StepsStop::Save(e) => e,
        StepsStop::Interrupted(i) => i.into(),
    })?;
    bar.finish();
    let (losses, mut evals) = (losses.into_inner(), evals.into_inner());
    // Per step of this process's part of the run, the resumed part included.
    let seconds_per_step = start.elapsed().as_secs_f64() / (args.steps - from).max(1) as f64;
    let net = net.valid();
    let train_accuracy = accuracy(&net, &train_eval);
    let test_accuracy = accuracy(&net, &test);
    evals.push(vec![args.steps as f64, train_accuracy, test_accuracy]);

    let transformed_accuracy = transformed(args, &data, &net, &input, device, progress)?;
    let transformed_mean = if transformed_accuracy.is_empty() {
        f64::NAN
    } else {
        transformed_accuracy.iter().sum::<f64>() / transformed_accuracy.len() as f64
    };

    let out = &args.out;
    write_curves(args, &losses, &evals)?;
    save_record(net.clone(), out, "model", "the model")?;
    write_atomic(&out.join("config.json"), net_config.to_string().as_bytes())?;
    // The deploy model, checked against burn on the test hemisphere.
    let bytes = to_deploy(&net, &input).context("exporting to the deploy format")?;
    write_atomic(&out.join("model.tthr"), &bytes)?;
    let aligned = AlignedBytes::from_slice(&bytes);
    let mut plan = MeshPlan::new(Model::parse(&aligned)?)?;
    let t = Instant::now();
    let deployed = plan.run(&data.test.mesh)?.to_vec();
    let deploy_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let reference: Vec<f32> = net
        .forward(test.features.clone(), &test.graph)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let burn_ms = t.elapsed().as_secs_f64() * 1e3;
    let deploy_max_diff = deployed
        .iter()
        .zip(&reference)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    // Both sides compute in f32, in different orders: their difference grows with the
    // outputs' magnitude (about 1e-5 of it through a few layers; an f64 reference and both
    // sides' own errors: the eman_parity example). A bug is off by far more.
    let magnitude = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    anyhow::ensure!(
        deployed.len() == reference.len() && deploy_max_diff < 1e-3 * f64::from(magnitude),
        "tether-deploy disagrees with burn on the test mesh (max |diff| {deploy_max_diff:e} \
         for outputs up to {magnitude})"
    );
    let summary = MeshSummary {
        parcellation: args.parcellation,
        input: args.input,
        seed: args.seed,
        steps: args.steps,
        parameters,
        train_accuracy,
        test_accuracy,
        transformed_accuracy,
        transformed_mean,
        seconds_per_step,
        deploy_max_diff,
        deploy_ms,
        burn_ms,
    };
    write_json(&out.join("summary.json"), &summary)?;
    // Every output is written: nothing is left to resume.
    remove_checkpoint(out)?;
    Ok(MeshReport {
        summary,
        files: vec![
            "loss.csv",
            "accuracy.csv",
            "training.png",
            "model.mpk",
            "model.tthr",
            "config.json",
            "summary.json",
        ],
    })
}

/// `m` with its features and graph on backend `Bk`.
fn prepare<Bk: Backend>(
    m: &LabelledMesh,
    input: &EmanInput,
    order: usize,
    device: &Bk::Device,
) -> anyhow::Result<PreparedMesh<Bk>> {
    PreparedMesh::new(&m.mesh, &m.labels, input, None, order, device)
        .with_context(|| format!("preparing the {}", m.name))
}

/// The accuracy of `net` on each of `transforms` randomly transformed copies of the test
/// hemisphere (rotated, translated, scaled, permuted, re-gauged).
fn transformed<B: Backend>(
    args: &MeshConfig,
    data: &CorticalParcellation,
    net: &EmanNet<B>,
    input: &EmanInput,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<Vec<f64>> {
    let bar = if progress {
        ProgressBar::new(args.transforms as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("transformed copies [{bar:30}] {pos}/{len}")
            .expect("valid template"),
    );
    let mut accuracies = Vec::new();
    for k in 0..args.transforms {
        let t = RandomTransform::sample(
            data.test.mesh.vertex_count(),
            args.translation,
            args.seed.wrapping_mul(1000) + k as u64,
        );
        let (mesh, labels) = t.apply(&data.test.mesh, &data.test.labels)?;
        let moved = PreparedMesh::new(&mesh, &labels, input, Some(t.gauge), args.order, device)?;
        accuracies.push(accuracy(net, &moved));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(accuracies)
}

/// `loss.csv`, `accuracy.csv` and their plot, `training.png`.
fn write_curves(args: &MeshConfig, losses: &[Vec<f64>], evals: &[Vec<f64>]) -> anyhow::Result<()> {
    let out = &args.out;
    write_atomic(
        &out.join("loss.csv"),
        csv(&["step".into(), "loss".into()], losses).as_bytes(),
    )?;
    write_atomic(
        &out.join("accuracy.csv"),
        csv(
            &[
                "step".into(),
                "train_accuracy".into(),
                "test_accuracy".into(),
            ],
            evals,
        )
        .as_bytes(),
    )?;
    let series = |label: &str, col: usize, rows: &[Vec<f64>]| Series {
        label: label.into(),
        points: rows.iter().map(|r| (r[0], r[col])).collect(),
    };
    line_chart(
        &out.join("training.png"),
        &[
            Panel {
                title: "training loss (cross-entropy over all vertices)".into(),
                x_label: "step".into(),
                y_label: "loss".into(),
                series: vec![series("train", 1, losses)],
            },
            Panel {
                title: "accuracy".into(),
                x_label: "step".into(),
                y_label: "fraction of vertices".into(),
                series: vec![
                    series("train (left)", 1, evals),
                    series("test (right, mirrored)", 2, evals),
                ],
            },
        ],
    )
}

/// [`run`] as a [`crate::device::BackendTask`], for [`crate::device::run_on`].
pub struct MeshTask<'a> {
    /// The settings.
    pub config: &'a MeshConfig,
    /// Whether to show progress.
    pub progress: bool,
}

impl crate::device::BackendTask for MeshTask<'_> {
    type Output = anyhow::Result<MeshReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run::<B>(self.config, &device, self.progress)
    }
}

/// [`run_controlled`] as a [`crate::device::BackendTask`] (the CLI's, with its signals).
pub struct ControlledMeshTask<'a> {
    /// The settings.
    pub config: &'a MeshConfig,
    /// Progress and interrupt.
    pub control: &'a RunControl,
}

impl crate::device::BackendTask for ControlledMeshTask<'_> {
    type Output = anyhow::Result<MeshReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_controlled::<B>(self.config, &device, self.control)
    }
}

/// [`run`] on the backend `kind` names.
///
/// # Errors
/// The device is not compiled in or not present, or [`run`]'s errors.
pub fn run_on(kind: DeviceKind, config: &MeshConfig, progress: bool) -> anyhow::Result<MeshReport> {
    crate::device::run_on(kind, MeshTask { config, progress })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_round_trips_through_json_with_the_flags_defaults() {
        let d = MeshConfig::default();
        assert_eq!((d.input, d.channels, d.steps), (MeshInput::Reltan, 8, 300));
        assert_eq!(d.reltan_powers, vec![0.5, 0.7]);
        let config = MeshConfig {
            input: MeshInput::Xyz,
            parcellation: Parcellation::Schaefer100,
            ..MeshConfig::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["input"], "xyz");
        assert_eq!(json["parcellation"], "schaefer100");
        assert_eq!(serde_json::from_value::<MeshConfig>(json).unwrap(), config);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |c: MeshConfig| c.validate().unwrap_err().to_string();
        let e = bad(MeshConfig {
            heads: 3,
            ..MeshConfig::default()
        });
        assert!(e.contains("--heads (3) must divide --channels (8)"), "{e}");
        let e = bad(MeshConfig {
            reltan_powers: vec![],
            ..MeshConfig::default()
        });
        assert!(e.contains("--reltan-powers"), "{e}");
        let e = bad(MeshConfig {
            translation: -1.0,
            ..MeshConfig::default()
        });
        assert!(e.contains("--translation"), "{e}");
        assert!(MeshConfig::default().validate().is_ok());
    }
}
