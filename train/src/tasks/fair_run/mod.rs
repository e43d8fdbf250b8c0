//! The fair-pruning job end to end, as `tether-train fair-prune` runs it: train a dense
//! network (the built-in MLP or the user's ONNX model, both a [`GraphNet`]), prune it (by
//! magnitude, in one shot or gradually, or take the zeros of an
//! L0-pruned model), fine-tune it with every group's excess accuracy gap bounded (CEAG,
//! Hashemizadeh et al., ICLR 2024, Eq. 4: `D_g - D <= eps`) or with a baseline objective,
//! and report per group. The problem itself is [`super::fair`]; this module is the schedule
//! around it. [`FairConfig`] holds every setting (serde: a TOML or JSON file can hold one;
//! clap: the CLI's flags are its fields), [`run`] is the job, [`FairReport`] what it
//! measured.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use tether_train::tasks::fair_run::{FairConfig, run};
//!
//! let config = FairConfig {
//!     sparsity: 0.9,
//!     epsilon: 0.02,
//!     ..FairConfig::default()
//! };
//! let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
//! println!("worst train gap {:+.4}", report.fine_tuned.train_max_excess_gap);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! The data is a built-in dataset or the user's own ([`FairConfig::own`]: a CSV with a
//! group column, an image folder, arrays).
//!
//! Written under [`FairConfig::out`]: `dense.tthr` (the dense model, tether-deploy's format),
//! `report.md` and `groups.csv` (per group: accuracies and excess gaps of the dense,
//! pruned and fine-tuned models, multipliers), `metrics.csv` (per step: loss, largest
//! violation, mean and largest multiplier), `gaps.png`, `checks.csv` (CEAG: the iterates
//! evaluated for the best-iterate choice), `model.safetensors`, `model.tthr` and
//! `model.onnx` (the fine-tuned model, zeros folded in) and `summary.json`.
//!
//! [`GraphNet`]: tether_models::graph::GraphNet

mod data;
mod job;
mod outputs;
pub mod replicas;
mod schedule;

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::constrained::{DualOptimizer, NuPiConfig};
use crate::denormals::FlushDenormals;
use crate::device::DeviceKind;
use crate::optim::OptimizerArgs;
use crate::resume::{CheckpointEvery, RunControl};
use crate::tasks::prune_run::DualUpdate;

/// Datasets with groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FairDataset {
    /// UCI Adult (income > 50K), groupings race, sex, race-sex, sex-age-occupation.
    Adult,
    /// MNIST digits, grouping class.
    Mnist,
    /// Fashion-MNIST, grouping class.
    FashionMnist,
}

/// The fine-tuning objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FairMethod {
    /// Constrained excess accuracy gap: every group's accuracy drop at most the overall
    /// drop plus epsilon (Hashemizadeh et al., ICLR 2024).
    Ceag,
    /// Naive fine-tuning: cross-entropy only.
    Naive,
    /// Equalised loss: every group's loss equal to the overall loss (equality constraints).
    EqualLoss,
}

/// Every setting of a fair-pruning run. Each field is the `tether-train fair-prune` flag of
/// the same name (dashes for underscores), and a config file's key; its doc is the flag's
/// help. The defaults are the flags' ([`Default`] parses an empty command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct FairConfig {
    /// Dataset.
    #[arg(long, value_enum, default_value_t = FairDataset::Adult)]
    pub dataset: FairDataset,
    /// Grouping by name: race, sex, race-sex, sex-age-occupation (adult); class (images);
    /// random-N (any). Default: race-sex for adult, class for images.
    #[arg(long)]
    pub groups: Option<String>,
    /// Intersections with fewer training samples than this are left unconstrained.
    #[arg(long, default_value_t = 50)]
    pub min_group_size: usize,
    /// Fraction of each hidden layer's weights removed by magnitude pruning, in [0, 1)
    /// (the output layer stays dense).
    #[arg(long, default_value_t = 0.9)]
    pub sparsity: f64,
    /// Flash budget: the written model.tthr takes at most this much (64KiB, 256K). The
    /// sparsity is raised from --sparsity to the smallest that fits (every hidden layer
    /// pruned to it by magnitude; the file's size is exact per layer), and a budget below
    /// the network's fixed cost is refused before training. Give --sparsity 0 to let the
    /// budget alone decide.
    #[arg(long, value_name = "SIZE", conflicts_with = "pruned_from")]
    pub max_flash: Option<crate::tasks::budget::units::Bytes>,
    /// Latency budget: one inference of the written model in tether-deploy on this host
    /// (single thread, --latency-batch samples) takes at most this long (2.5ms, 800us). The
    /// deploy kernels are timed on the network before training to fit a per-layer cost
    /// model, and the sparsity is raised from --sparsity to the smallest whose predicted
    /// latency fits (with --max-flash, the larger of the two); the end of the run measures
    /// the written model as `tether-deploy bench` does.
    #[arg(long, value_name = "TIME", conflicts_with = "pruned_from")]
    pub max_latency: Option<crate::tasks::budget::units::Seconds>,
    /// The batch size --max-latency is for.
    #[arg(long, default_value_t = 1)]
    pub latency_batch: usize,
    /// RAM budget: running the written model on a microcontroller takes at most this much
    /// RAM besides the model in flash (activations and scratch for --ram-batch samples;
    /// `tether-deploy inspect`'s RAM). Magnitude pruning removes single weights, which
    /// leaves every activation as wide, so this is checked before training (a network
    /// that does not fit is refused, naming its RAM; `prune --structure unit --max-ram`
    /// narrows one) and reported on the written model.
    #[arg(long, value_name = "SIZE", conflicts_with = "pruned_from")]
    pub max_ram: Option<crate::tasks::budget::units::Bytes>,
    /// The batch size --max-ram is for.
    #[arg(long, default_value_t = 1)]
    pub ram_batch: usize,
    /// A device description (TOML: name, flash, ram, latency; see `tether-deploy inspect
    /// --board`): its flash, RAM and latency become --max-flash, --max-ram and
    /// --max-latency where those are not given.
    #[arg(long, value_name = "FILE", conflicts_with = "pruned_from")]
    pub board: Option<PathBuf>,
    /// The L0 route: instead of magnitude pruning, fine-tune the model that `tether-train
    /// prune` wrote to DIR (its `model.tthr`, gates folded; same data and network); its
    /// zeros stay zero.
    #[arg(long, value_name = "DIR", conflicts_with = "sparsity")]
    pub pruned_from: Option<PathBuf>,
    /// Gradual magnitude pruning (Zhu & Gupta 2017, as in the Balancing Act reference
    /// code): this many epochs of cross-entropy training (constraints off) before the
    /// fine-tuning epochs, each starting with a magnitude pruning step on the cubic ramp
    /// s_e = s (1 - (1 - (e+1)/P)^3), so the last reaches --sparsity. 0 prunes in one shot.
    #[arg(long, default_value_t = 0, conflicts_with = "pruned_from")]
    pub prune_epochs: usize,
    /// Tolerance on each group's excess accuracy gap (CEAG), >= 0.
    #[arg(long, default_value_t = 0.01)]
    pub epsilon: f64,
    /// CEAG's multipliers aim at epsilon - margin (the result is still judged against
    /// epsilon): the replay buffer's estimates are noisier than epsilon, and iterates aimed
    /// at the bound itself end on either side of it. In [0, epsilon].
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Fine-tuning objective.
    #[arg(long, value_enum, default_value_t = FairMethod::Ceag)]
    pub method: FairMethod,
    /// Multiplier update rule.
    #[arg(long, value_enum, default_value_t = DualUpdate::Ga)]
    pub dual: DualUpdate,
    /// Dual step size. Equalised loss wants about a tenth: its multipliers are free in
    /// sign and diverged at 0.02 on Fashion-MNIST.
    #[arg(long, default_value_t = 0.02)]
    pub dual_lr: f64,
    /// nuPI proportional gain.
    #[arg(long, default_value_t = 1.0)]
    pub kp: f64,
    /// CEAG's surrogate exactly as the paper writes it: the primal step sees sum_g
    /// lambda_g (grad L_g - grad L). By default the overall loss is detached inside the
    /// constraints (sum_g lambda_g grad L_g): with its gradient kept, the overall loss's
    /// weight turns negative once the multipliers sum past 1 and the step raises it
    /// (Adult race x sex, 90%: train accuracy 0.844 vs 0.851 detached; 0.81 with a
    /// larger dual step).
    #[arg(long)]
    pub keep_overall_gradient: bool,
    /// Evaluations on the training set per fine-tuning epoch, among which CEAG keeps the
    /// best iterate (0 keeps the last).
    #[arg(long, default_value_t = 4)]
    pub checks_per_epoch: usize,
    /// Samples per group in the replay buffer that estimates the sparse model's accuracy.
    #[arg(long, default_value_t = 256)]
    pub buffer: usize,
    /// Hidden widths of the MLP (adult). A 10%-dense 256-128 MLP cannot keep the dense
    /// model's accuracy on every one of 100 small groups; 1024,512 does (BENCHMARKS.md).
    #[arg(long, value_delimiter = ',', default_value = "256,128")]
    pub hidden: Vec<usize>,
    /// Your own network instead of the built-in MLP: an ONNX file (a PyTorch export; its
    /// weights may sit in an external `.onnx.data` file) that takes the data's samples and
    /// outputs a score per class. Its Linear and Conv layers but the last are pruned by
    /// magnitude, like the MLP's hidden layers; `model.onnx` is written beside the other
    /// outputs.
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    /// The user's own data instead of --dataset (`--data` and the flags that read it;
    /// its groups: --group-column or --groups-file).
    #[command(flatten)]
    #[serde(flatten)]
    pub own: crate::data::own::OwnDataArgs,
    /// CSV data: the column naming each sample's group (the groups whose accuracy drop is
    /// bounded), or several, comma-separated, for their intersections (`race,sex`: groups
    /// such as `White/Male`).
    #[arg(long, value_name = "NAME", requires = "data")]
    pub group_column: Option<String>,
    /// Groups of --data that is not a CSV: for an image folder a CSV with columns `path`
    /// (relative to the folder) and `group`; for NPY features an array of group ids or
    /// names, one per sample.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub groups_file: Option<PathBuf>,
    /// Epochs of dense training (default: 10 for adult, 5 for images).
    #[arg(long)]
    pub dense_epochs: Option<usize>,
    /// Fraction of the training set held out to choose the dense reference: the epoch
    /// with the lowest validation loss is kept (early stopping) instead of the last. The
    /// held-out samples take no part in pruning or fine-tuning either; every "train"
    /// figure is on the rest. 0 (the default, the paper's setting) keeps the last epoch
    /// and trains on everything. (On Adult the validation loss barely moves over 10
    /// epochs, so this does not stop the memorising of small groups; `--weight-decay`
    /// narrows it: see BENCHMARKS.md.)
    #[arg(long, default_value_t = 0.0)]
    pub val_fraction: f64,
    /// Epochs of fine-tuning after pruning (default: 20 for adult, 10 for images).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Learning rate of the dense training (Adam and Shampoo with Adam grafting: 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// The weights' optimizer; its keys sit at the top level of a config file, as its
    /// flags do on the command line.
    #[command(flatten)]
    #[serde(flatten)]
    pub optimizer: OptimizerArgs,
    /// Keep the fine-tuning learning rate constant instead of a cosine decay over epochs.
    #[arg(long)]
    pub constant_lr: bool,
    /// Learning rate of the fine-tuning (start of its cosine decay).
    #[arg(long, default_value_t = 5e-4)]
    pub ft_lr: f64,
    /// Reuse the dense model of an earlier run (its `dense.tthr`; same data, network and
    /// seed) instead of training one.
    #[arg(long)]
    pub dense_from: Option<PathBuf>,
    /// Use only the first N training samples (quick runs, tests).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Seed of the initialisation, the batch order and random groupings.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/fair")]
    pub out: PathBuf,
    /// Write a checkpoint of the fine-tuning to OUT/checkpoint every N of its epochs (0 or
    /// never: only when interrupted). SIGINT (Ctrl-C), SIGTERM and SIGHUP write one after
    /// the step under way (during the dense and pruning phases, at the first fine-tuning
    /// step; a second signal stops at once); a finished run removes it.
    #[arg(long, value_name = "N", default_value = "1")]
    pub checkpoint_every: CheckpointEvery,
    /// Continue the run whose checkpoint is in DIR (OUT/checkpoint, or that run's OUT),
    /// with the same settings; the result equals the uninterrupted run's bit for bit on
    /// CPU.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
}

impl Default for FairConfig {
    fn default() -> Self {
        crate::tasks::flag_defaults()
    }
}

impl FairConfig {
    /// Checks every setting, so a bad one fails before any data is read. Messages name
    /// the CLI flags (a config file's keys are the same names with underscores).
    ///
    /// # Errors
    /// The first setting out of its range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.optimizer.validate()?;
        self.own.validate()?;
        anyhow::ensure!(
            (0.0..1.0).contains(&self.sparsity),
            "--sparsity must lie in [0, 1), got {}",
            self.sparsity
        );
        anyhow::ensure!(
            self.own.data.is_none() || self.groups.is_none(),
            "--groups names a grouping of the built-in datasets; the groups of --data come \
             from --group-column (CSV) or --groups-file"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.val_fraction),
            "--val-fraction must lie in [0, 1), got {}",
            self.val_fraction
        );
        anyhow::ensure!(
            self.epsilon >= 0.0 && self.epsilon.is_finite(),
            "--epsilon must be finite and >= 0, got {}",
            self.epsilon
        );
        anyhow::ensure!(
            self.margin >= 0.0 && self.margin <= self.epsilon,
            "--margin must lie in [0, --epsilon], got {}",
            self.margin
        );
        anyhow::ensure!(
            self.epochs != Some(0)
                && self.dense_epochs != Some(0)
                && self.batch > 0
                && self.buffer > 0,
            "--epochs, --dense-epochs, --batch and --buffer must be at least 1"
        );
        anyhow::ensure!(
            self.lr > 0.0 && self.ft_lr > 0.0,
            "--lr and --ft-lr must be > 0"
        );
        anyhow::ensure!(
            self.latency_batch >= 1,
            "--latency-batch must be at least 1"
        );
        anyhow::ensure!(self.ram_batch >= 1, "--ram-batch must be at least 1");
        if let Some(crate::tasks::budget::units::Seconds(t)) = self.max_latency {
            anyhow::ensure!(
                t > 0.0 && t.is_finite(),
                "--max-latency must be a positive time"
            );
        }
        anyhow::ensure!(
            self.hidden.iter().all(|&h| h > 0),
            "--hidden widths must be at least 1"
        );
        // The command line refuses the pair itself; a config file reaches this.
        anyhow::ensure!(
            self.pruned_from.is_none() || self.prune_epochs == 0,
            "--prune-epochs prunes by magnitude, --pruned-from takes an L0-pruned model: \
             give one of them"
        );
        self.dual_optimizer().validate()?;
        Ok(())
    }

    /// The multipliers' update rule these settings describe.
    pub fn dual_optimizer(&self) -> DualOptimizer {
        match self.dual {
            DualUpdate::Ga => DualOptimizer::gradient_ascent(self.dual_lr),
            DualUpdate::Nupi => DualOptimizer::NuPi(NuPiConfig::new(self.dual_lr).with_kp(self.kp)),
        }
    }

    /// Epochs of dense training: `dense_epochs`, or the dataset's default.
    pub fn dense_epochs(&self) -> usize {
        self.dense_epochs.unwrap_or(match self.dataset {
            _ if self.own.data.is_some() => 10,
            FairDataset::Adult => 10,
            _ => 5,
        })
    }

    /// Epochs of fine-tuning: `epochs`, or the dataset's default.
    pub fn fine_tune_epochs(&self) -> usize {
        self.epochs.unwrap_or(match self.dataset {
            _ if self.own.data.is_some() => 20,
            FairDataset::Adult => 20,
            _ => 10,
        })
    }
}

/// Accuracies and worst excess gaps of one model (the pruned one, or the fine-tuned one)
/// against the dense model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageResult {
    /// Accuracy on the training set (less the held-out part).
    pub train_accuracy: f64,
    /// Accuracy on the test set.
    pub test_accuracy: f64,
    /// The largest excess accuracy gap of a group on the training set.
    pub train_max_excess_gap: f64,
    /// The largest excess accuracy gap of a group on the test set.
    pub test_max_excess_gap: f64,
}

/// One group's row of `groups.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupResult {
    /// The group's name (e.g. `White/Female`).
    pub name: String,
    /// Training samples in the group.
    pub train_count: usize,
    /// Test samples in the group.
    pub test_count: usize,
    /// Accuracy of the dense, pruned and fine-tuned models on the group's training samples.
    pub train_accuracy: [f64; 3],
    /// The same on its test samples.
    pub test_accuracy: [f64; 3],
    /// Excess accuracy gap after pruning and after fine-tuning, training set.
    pub train_gap: [f64; 2],
    /// The same on the test set.
    pub test_gap: [f64; 2],
    /// The group's final multiplier (0 without a constraint).
    pub multiplier: f64,
    /// The gap as the multipliers last saw it, from the replay buffer (CEAG; else NaN).
    pub buffer_train_gap: f64,
}

/// What a run measured (the same numbers as its `summary.json` and `groups.csv`).
#[derive(Clone, Debug)]
pub struct FairReport {
    /// The dense model's training and test accuracy.
    pub dense: (f64, f64),
    /// The model after pruning, before fine-tuning.
    pub pruned: StageResult,
    /// The fine-tuned model (for CEAG the best iterate among the checks).
    pub fine_tuned: StageResult,
    /// Groups whose training gap after fine-tuning exceeds epsilon.
    pub train_groups_over_epsilon: usize,
    /// Fraction of the pruned layers' weights kept.
    pub density: f64,
    /// Every group.
    pub groups: Vec<GroupResult>,
    /// `summary.json`'s contents.
    pub summary: serde_json::Value,
    /// The files written, by name, under [`FairConfig::out`].
    pub files: Vec<&'static str>,
}

/// Runs the fair-pruning job on backend `B`: reads the dataset from the data cache
/// (`scripts/fetch-data`), builds its groups, trains, prunes and fine-tunes, and writes
/// the outputs. `progress` shows progress bars and a line per phase, as the CLI does;
/// without it the run is silent. Subnormal floats are flushed throughout, as under the
/// CLI, so the numbers are the CLI's.
///
/// # Errors
/// A setting out of range ([`FairConfig::validate`]), a missing dataset, an unknown or
/// empty grouping, a `dense_from`/`pruned_from` model of other widths, a training failure
/// or an output that cannot be written.
pub fn run<B: AutodiffBackend>(
    config: &FairConfig,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<FairReport> {
    run_controlled::<B>(config, device, &RunControl::new(progress))
}

/// [`run`] with a [`RunControl`]: an interrupt that stops the fine-tuning with a
/// checkpoint.
///
/// # Errors
/// As [`run`]; [`crate::resume::Interrupted`] (downcast the error) when the interrupt
/// stopped it; a `resume` checkpoint that is missing, corrupt or of other settings.
pub fn run_controlled<B: AutodiffBackend>(
    config: &FairConfig,
    device: &B::Device,
    control: &RunControl,
) -> anyhow::Result<FairReport> {
    let _flush = FlushDenormals::new();
    // The board's flash budget where no flag gave one.
    let mut config = config.clone();
    if let Some(path) = &config.board {
        let board = tether_deploy::cli::board::Board::load(path)?;
        config.max_flash = config.max_flash.or(board.flash);
        config.max_latency = config.max_latency.or(board.latency);
        config.max_ram = config.max_ram.or(board.ram);
    }
    let config = &config;
    config.validate()?;
    anyhow::ensure!(
        config.max_latency.is_none() || crate::parallel::group().is_none_or(|g| g.size() == 1),
        "--max-latency with several replicas (processes or --devices): each would time the \
         kernels itself and could choose another sparsity (run the latency budget on one \
         replica)"
    );
    crate::io::check_output_dir(&config.out, "--out")?;
    let resume = job::read_resume(config)?;
    // The user's network, imported before any data is read (a bad file fails first).
    let graph = match &config.model {
        Some(path) => Some(job::import(path)?),
        None => None,
    };
    let input_shape = graph.as_deref().map(job::input_shape).transpose()?;
    let data = data::load(config, input_shape)?;
    job::train::<B>(config, data, graph, device, control, resume)
}

/// [`run`] as a [`crate::device::BackendTask`], for [`crate::device::run_on`]: the CLI's
/// way to pick the backend at run time.
pub struct FairTask<'a> {
    /// The settings.
    pub config: &'a FairConfig,
    /// Whether to show progress.
    pub progress: bool,
}

impl crate::device::BackendTask for FairTask<'_> {
    type Output = anyhow::Result<FairReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run::<B>(self.config, &device, self.progress)
    }
}

/// [`run_controlled`] as a [`crate::device::BackendTask`] (the CLI's, with its signals).
pub struct ControlledFairTask<'a> {
    /// The settings.
    pub config: &'a FairConfig,
    /// Progress and interrupt.
    pub control: &'a RunControl,
}

impl crate::device::BackendTask for ControlledFairTask<'_> {
    type Output = anyhow::Result<FairReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_controlled::<B>(self.config, &device, self.control)
    }
}

/// [`run`] on the backend `kind` names.
///
/// # Errors
/// The device is not compiled in or not present, or [`run`]'s errors.
pub fn run_on(kind: DeviceKind, config: &FairConfig, progress: bool) -> anyhow::Result<FairReport> {
    crate::device::run_on(kind, FairTask { config, progress })?
}

#[cfg(test)]
mod tests;
