//! The pruning job end to end, as `tether-train prune` runs it: load MNIST or
//! Fashion-MNIST, build the network, train it under the density constraint of
//! [`super::prune`] (or dense, the baseline), measure it on the test set after every epoch,
//! and write its outputs. [`PruneConfig`] holds every setting (serde: a TOML or JSON file
//! can hold one), [`run`] is the job, [`PruneReport`] what it measured.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use tether_train::tasks::prune_run::{PruneConfig, run};
//!
//! let config = PruneConfig {
//!     target_density: Some(0.1),
//!     ..PruneConfig::default()
//! };
//! let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
//! println!("{:.4} at density {:.4}", report.test_accuracy, report.density);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Written under [`PruneConfig::out`]: `metrics.csv` (loss, expected and true density and
//! multiplier per step), `epochs.csv` (test accuracy and density per epoch), `density.png`
//! (pruned runs), `model.mpk` (the network with its gates folded in, a burn record),
//! `model.safetensors` (PyTorch's layout), `model.tthr` (tether-deploy's format, pruned
//! weights stored sparse) and `summary.json`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::optim::AdamConfig;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};
use tether_models::classifier::Classifier;
use tether_models::export::graph_to_safetensors;
use tether_models::gated::GatedNetwork;
use tether_models::graph::{GraphNet, GraphNetConfig, NormSites};
use tether_models::l0::{GateStructure, HardConcreteConfig};
use tether_models::lenet5::Lenet5Config;
use tether_models::mlp::MlpConfig;
use tether_models::resnet::ResnetConfig;
use tether_models::to_deploy::{Storage, lenet5_to_deploy, mlp_to_deploy, resnet_to_deploy};

use crate::constrained::{
    ConstrainedOptimizer, ConstrainedProblem, ConstraintKind, ConstraintSet, DualOptimizer,
    FormulationConfig, MultiplierConfig, NuPiConfig, UpdateScheme, adopt_checkpoint_ids,
    load_checkpoint, save_checkpoint_with,
};
use crate::data::batches::{Batch, shuffled_order};
use crate::data::mnist::{ImageSet, MnistKind, Split};
use crate::data::stream::{HostBatch, PREFETCH_DEPTH, SampleSource, batch_count, with_batches};
use crate::io::{check_output_dir, csv, write_atomic};
use crate::optim::shampoo::ShampooHealth;
use crate::optim::{DecayStart, OptimizerArgs, TwoGroups};
use crate::plot::{Panel, Series, line_chart, vertical_marks};
use crate::resume::{
    CheckpointEvery, Interrupt, Interrupted, Position, RUN_FILE, RunState, checkpoint_dir,
    open_checkpoint, remove_checkpoint, settings_key,
};
use crate::tasks::budget::BudgetResult;
use crate::tasks::budget::flash::FlashModel;
use crate::tasks::budget::latency::{LATENCY_TRIALS, LatencyModel, measure_latency};
use crate::tasks::budget::units::{Bytes, Seconds};
use crate::tasks::budget::widths::{Measured, WidthModel};
use crate::tasks::classify::ClassifyProblem;
use crate::tasks::metrics;
use crate::tasks::prune::{
    FlashConstraint, FlashOf, LatencyConstraint, PruneProblem, RamConstraint, accuracy,
    global_density, layer_densities,
};
use crate::tasks::prune_ramp::Ramp;
use crate::tasks::prune_warmup::{GateInit, open_gates, ranked_gates};
use crate::trainer::{FitOptions, StepInfo, try_fit};

/// Networks that can be pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// LeNet-300-100: a 784-300-100-10 ReLU MLP.
    Lenet300,
    /// LeNet-5 (Caffe variant): two 5x5 convolutions (20, 50 channels) and 800-500-10.
    Lenet5,
    /// A small ResNet: a 3x3 stem and three basic blocks (16, 32, 64 channels), average
    /// pooling, 64-10 (77k parameters; for Fashion-MNIST).
    Resnet,
}

/// The network a run prunes: a built-in one, or the user's own as an ONNX file
/// (PyTorch's export; weights may sit in a `.onnx.data` file beside it), whose leading
/// input axis is the batch axis and whose Linear and Conv weights are gated. Written as
/// the CLI's `--model` value, in a config file too: `lenet5`, or `path/to/net.onnx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// A built-in network.
    Builtin(Model),
    /// An ONNX file.
    Onnx(PathBuf),
}

impl From<Model> for ModelSpec {
    fn from(m: Model) -> Self {
        ModelSpec::Builtin(m)
    }
}

impl std::str::FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use clap::ValueEnum;
        if let Ok(m) = Model::from_str(s, true) {
            return Ok(ModelSpec::Builtin(m));
        }
        if s.to_ascii_lowercase().ends_with(".onnx") {
            return Ok(ModelSpec::Onnx(PathBuf::from(s)));
        }
        Err(format!(
            "{s:?} is neither a built-in network (lenet300, lenet5, resnet) nor an .onnx file"
        ))
    }
}

impl ModelSpec {
    /// How outputs name it: the built-in network's name (as `summary.json` always wrote
    /// it), or the file's path.
    pub fn label(&self) -> String {
        match self {
            ModelSpec::Builtin(m) => format!("{m:?}"),
            ModelSpec::Onnx(p) => p.display().to_string(),
        }
    }
}

impl Serialize for ModelSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ModelSpec::Builtin(m) => m.serialize(s),
            ModelSpec::Onnx(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ModelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a gate removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Structure {
    /// One gate per weight (unstructured sparsity).
    Weight,
    /// One gate per hidden unit (removes whole units).
    Unit,
    /// One gate per 1x4 block of a linear layer's weights (4 consecutive inputs of one
    /// output; convolutions per weight): sparsity tether-deploy runs with plain loads
    /// instead of gathers at batch 1.
    Block1x4,
}

/// How the network is pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Hard-concrete L0 gates under constraints (density, budgets): Controlled Sparsity.
    #[default]
    L0,
    /// One-shot global magnitude pruning: dense training, the largest |w| kept, then
    /// fine-tuning with the rest held at zero (the first half of the epochs dense unless
    /// `finetune_epochs` says how many fine-tune).
    Magnitude,
    /// Zhu & Gupta's gradual magnitude pruning: a cubic sparsity ramp over the first three
    /// quarters of the epochs (unless `finetune_epochs` says how many fine-tune at the
    /// end), 100 pruning steps.
    Gmp,
}

/// What happens to an imported network's BatchNorms (`--model FILE.onnx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BatchNormMode {
    /// Trained as PyTorch's `model.train()` does (batch statistics, running averages for
    /// evaluation), folded back at export: the file's BatchNormalization nodes, and one
    /// after every convolution with a bias, where PyTorch's default export folded them
    /// (a convolution that had none gains a trainable normalisation while training; the
    /// exported graph is unchanged in shape).
    #[default]
    Train,
    /// Only the file's own BatchNormalization nodes are trained (an export that kept
    /// them); convolutions get none.
    Imported,
    /// Frozen at the imported statistics (the folded affine maps stay as they are).
    Frozen,
}

impl BatchNormMode {
    /// The graph sites this mode trains.
    pub fn sites(self) -> NormSites {
        match self {
            BatchNormMode::Train => NormSites::AfterConvs,
            BatchNormMode::Imported => NormSites::Imported,
            BatchNormMode::Frozen => NormSites::None,
        }
    }
}

/// How many random training samples measure the BatchNorms' starting statistics
/// ([`GraphNet::train_batch_norms`]).
const NORM_CALIBRATION_SAMPLES: usize = 512;

/// Which multiplier update to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DualUpdate {
    /// Projected gradient ascent.
    Ga,
    /// The nuPI controller.
    Nupi,
}

/// Every setting of a pruning run. The defaults are the CLI's, chosen so that the density
/// lands on the target (README, "Run"); the `tether-train prune` flag of each field is its
/// name with dashes, and its `--help` says what happens without the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct PruneConfig {
    /// Network to prune: a built-in one (lenet300, lenet5, resnet), or your own as an
    /// ONNX file (`torch.onnx.export`'s, weights in a `.onnx.data` file beside it or
    /// inside), whose Linear and Conv weights are gated.
    #[arg(long, default_value = "lenet300")]
    pub model: ModelSpec,
    /// How to prune: l0 (hard-concrete gates under the constraints), or a magnitude
    /// baseline with the same epochs, optimizer, data and outputs: magnitude (one-shot
    /// global magnitude after the first half of the epochs, then fine-tuning) or gmp (Zhu
    /// & Gupta's cubic schedule over the first three quarters). --finetune-epochs sets
    /// how many epochs fine-tune at the end.
    #[arg(long, value_enum, default_value_t = Method::L0)]
    pub method: Method,
    /// Dataset.
    #[arg(long, value_enum, default_value_t = MnistKind::Mnist)]
    pub dataset: MnistKind,
    /// An imported network's BatchNorms (--model FILE.onnx): train (batch statistics in
    /// training as PyTorch's fine-tuning does, folded back at export; where the export
    /// folded them into the convolutions, one after each convolution), imported (only
    /// the file's BatchNormalization nodes), or frozen (the imported statistics).
    #[arg(long, value_enum, default_value_t = BatchNormMode::Train)]
    pub batch_norm: BatchNormMode,
    /// Target fraction of gated parameters kept, in (0, 1]. Default 0.1, or none when a
    /// budget (--max-flash) is given; 1 turns the density constraint off (a budget is then
    /// needed).
    #[arg(long)]
    pub target_density: Option<f64>,
    /// Flash budget: the written model.tthr takes at most this much (64KiB, 256K, 1.5MB).
    /// A constraint of its own, met exactly by the file as written (its size a function
    /// of each layer's kept weights, dense or CSR as the writer stores them).
    #[arg(long, value_name = "SIZE")]
    pub max_flash: Option<Bytes>,
    /// Latency budget: one inference of the written model in tether-deploy on this host
    /// (single thread, --latency-batch samples) takes at most this long (2.5ms, 800us). The
    /// deploy kernels are timed on the network before training to fit a per-layer cost
    /// model; the end of the run measures the written model as `tether-deploy bench` does.
    #[arg(long, value_name = "TIME")]
    pub max_latency: Option<Seconds>,
    /// The batch size --max-latency is for.
    #[arg(long, default_value_t = 1)]
    pub latency_batch: usize,
    /// RAM budget: running the written model on a microcontroller takes at most this much
    /// RAM besides the model in flash (the deploy plan's activations and scratch for
    /// --ram-batch samples, every weight read in place; `tether-deploy inspect`'s RAM).
    /// Only whole units and channels lower it, so it needs --structure unit unless the
    /// unpruned network already fits; closed units are cut out of the written model.
    #[arg(long, value_name = "SIZE")]
    pub max_ram: Option<Bytes>,
    /// The batch size --max-ram is for.
    #[arg(long, default_value_t = 1)]
    pub ram_batch: usize,
    /// A device description (TOML: name, flash, ram, latency; see `tether-deploy inspect
    /// --board`): its flash, RAM and latency become --max-flash, --max-ram and
    /// --max-latency where those are not given.
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// One constraint per layer (each layer at the target) instead of one global constraint.
    #[arg(long)]
    pub per_layer: bool,
    /// What a gate removes.
    #[arg(long, value_enum, default_value_t = Structure::Weight)]
    pub structure: Structure,
    /// Multiplier update rule.
    #[arg(long, value_enum, default_value_t = DualUpdate::Nupi)]
    pub dual: DualUpdate,
    /// Dual step size. Larger steps drive the density down faster but overshoot below the
    /// target, and gates pushed shut reopen slowly.
    #[arg(long, default_value_t = 0.1)]
    pub dual_lr: f64,
    /// nuPI proportional gain.
    #[arg(long, default_value_t = 2.0)]
    pub kp: f64,
    /// Keep the multiplier when the density drops below the target, instead of the dual
    /// restart (reset to 0) that the controlled-sparsity paper recommends.
    #[arg(long)]
    pub no_dual_restarts: bool,
    /// Baseline: instead of a constraint, a fixed L0 penalty with this coefficient (the
    /// multiplier is frozen at it). The density it lands at is whatever it lands at.
    #[arg(long, conflicts_with_all = ["dual", "dual_lr", "kp", "no_dual_restarts"])]
    pub fixed_penalty: Option<f64>,
    /// Baseline: train the same network without gates or constraints, with the same
    /// budget (epochs, batch, learning rate), to measure what pruning costs in accuracy.
    #[arg(long, conflicts_with_all = ["per_layer", "structure", "dual", "dual_lr", "kp", "no_dual_restarts", "fixed_penalty", "gate_lr", "gate_init_spread", "gate_momentum", "constant_gate_lr", "target_density", "max_flash", "max_latency", "max_ram"])]
    pub dense: bool,
    /// Epochs over the training set.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Of `--epochs`, the last N fine-tune the pruned network: the gates frozen where
    /// they are (deterministic, as they will be folded), the constraint off, the weights
    /// trained without the sampled gates' noise. The budget stays `--epochs`.
    #[arg(long, default_value_t = 0, conflicts_with_all = ["dense", "fixed_penalty"])]
    pub finetune_epochs: usize,
    /// L0 method: of `--epochs`, the first N train the network dense (every gate open and
    /// held, no constraint) before the gates act, as the magnitude baselines train dense
    /// before they cut; the gates then start as --gate-init says. The budget stays
    /// `--epochs`. Default: 3 in 10 of the epochs, rounded down (none below 4 epochs, and
    /// none with a budget: a budget's multiplier needs the steps, MNIST LeNet-300-100 at
    /// --max-flash 32KiB in 10 epochs ended at 39504 bytes with 3); 0 is the method without
    /// a warm-up (MNIST LeNet-300-100, 10 epochs, density 0.1:
    /// 0.9834 over 3 seeds with 3, 0.9791 without; BENCHMARKS.md, "Pruning methods").
    #[arg(long, conflicts_with_all = ["dense"])]
    pub warmup_epochs: Option<usize>,
    /// L0 method: over the N epochs after the warm-up, each target (density, flash, RAM,
    /// latency) descends from the unpruned network's value to the asked one on Zhu &
    /// Gupta's cubic schedule, as gmp's density does, instead of being asked in full from
    /// the first gated step (the multiplier then closes the network within about an
    /// epoch, faster than the weights adapt). 0: the whole target at once.
    #[arg(long, default_value_t = 0, conflicts_with_all = ["dense", "fixed_penalty"])]
    pub ramp_epochs: usize,
    /// After --warmup-epochs: the gate locations drawn from their initial distribution
    /// (--gate-init-drop-rate, --gate-init-spread) and assigned in the order of the
    /// weights' magnitude (magnitude: the weights global magnitude pruning would keep start
    /// the most open), or in a random order (random). Without a warm-up the gates keep
    /// their random initialisation.
    #[arg(long, value_enum, default_value_t = GateInit::Magnitude)]
    pub gate_init: GateInit,
    /// Initial probability that a gate is dropped: the mean gate location is
    /// log((1 - p) / p) (Louizos et al.'s droprate_init; 0.5, a location of 0, is theirs
    /// and Gallego-Posada et al.'s for MNIST).
    #[arg(long, default_value_t = 0.5)]
    pub gate_init_drop_rate: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Learning rate of the weights (Adam and Shampoo with Adam grafting: 1e-3; SGD with
    /// momentum wants about 0.05).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// The weights' optimizer (the gate locations always use Adam); its keys sit at the
    /// top level of a config file, as its flags do on the command line.
    #[command(flatten)]
    #[serde(flatten)]
    pub optimizer: OptimizerArgs,
    /// Keep the gates' learning rate constant instead of decaying it to 0 on a cosine from
    /// the step the density first meets the target to the end of the run. At a constant rate, gates whose gradient is mostly noise random-walk and
    /// the density drifts under the target (MNIST LeNet-300-100, target 0.5, 10 epochs:
    /// 0.488). Decaying the weights' rate too cost accuracy at 0.1 (0.9750 vs 0.9795).
    #[arg(long)]
    pub constant_gate_lr: bool,
    /// Adam learning rate of the gate locations. The default suits runs of a thousand
    /// steps or more; short runs need more (a few hundred steps: 0.3) for the gates to
    /// reach the target in time.
    #[arg(long, default_value_t = 0.05)]
    pub gate_lr: f64,
    /// Adam's first-moment decay (beta1) for the gate locations. With momentum (0.9) the
    /// gates coast on after the multiplier lets go and carry the density below the target;
    /// gates below the test-time threshold get almost no gradient back, so the undershoot
    /// stays (MNIST LeNet-300-100 at target 0.5: 0.484 with 0.9, 0.4975 with 0).
    #[arg(long, default_value_t = 0.0)]
    pub gate_momentum: f64,
    /// Standard deviation of the initial gate locations (log alpha). Spread gates leave
    /// the test-time threshold one by one, so the true density falls smoothly and the
    /// multiplier can settle on the target; alike gates (0.01, the reference code's) cross
    /// together and the density jumps below the target (0.4825 at target 0.5).
    #[arg(long, default_value_t = 2.0)]
    pub gate_init_spread: f64,
    /// Use only the first N training images (quick runs, tests).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images (quick runs, tests).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Seed of the initialisation and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Log every N-th training step (metrics.csv's rows, the progress bar's loss): the
    /// steps between read nothing back to the host, which on a GPU spares a
    /// synchronisation per step. The learning-rate decay that starts once the constraints
    /// are met (--lr-decay) then starts at the first logged step they are.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub log_every: usize,
    /// Output folder.
    #[arg(long, default_value = "out/prune")]
    pub out: PathBuf,
    /// Write a checkpoint to OUT/checkpoint every N epochs (0 or never: only when
    /// interrupted). SIGINT (Ctrl-C), SIGTERM and SIGHUP always write one after the step
    /// under way; a finished run removes it.
    #[arg(long, value_name = "N", default_value = "1")]
    pub checkpoint_every: CheckpointEvery,
    /// Continue the run whose checkpoint is in DIR (OUT/checkpoint, or the OUT of that
    /// run), with the same settings; the result equals the uninterrupted run's bit for
    /// bit on CPU.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// The user's own data (`--data` and the flags that read it).
    #[command(flatten)]
    #[serde(flatten)]
    pub own: crate::data::own::OwnDataArgs,
}

impl Default for PruneConfig {
    /// The flags' defaults (one source: the `#[arg]` attributes above).
    fn default() -> Self {
        crate::tasks::flag_defaults()
    }
}

impl PruneConfig {
    /// Checks every setting, so a bad one fails before any data is read. Messages name
    /// the CLI flags (a config file's keys are the same names with underscores).
    ///
    /// # Errors
    /// The first setting out of its range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.optimizer.validate()?;
        if let Some(t) = self.target_density {
            anyhow::ensure!(
                t > 0.0 && t <= 1.0,
                "--target-density must lie in (0, 1], got {t}"
            );
            anyhow::ensure!(
                t < 1.0 || self.has_budget() || self.dense,
                "--target-density 1 keeps every weight: give a budget (--max-flash) to prune \
                 to, or --dense for the unpruned baseline"
            );
        }
        if let Some(Seconds(t)) = self.max_latency {
            anyhow::ensure!(t > 0.0, "--max-latency must be above 0");
        }
        anyhow::ensure!(
            self.latency_batch >= 1,
            "--latency-batch must be at least 1"
        );
        anyhow::ensure!(self.ram_batch >= 1, "--ram-batch must be at least 1");
        if self.has_budget() {
            anyhow::ensure!(
                !self.dense,
                "--dense trains without gates: it cannot meet a budget (--max-flash)"
            );
            anyhow::ensure!(
                self.fixed_penalty.is_none(),
                "--fixed-penalty is a density penalty: it cannot be combined with a budget \
                 (--max-flash)"
            );
        }
        if self.method != Method::L0 {
            anyhow::ensure!(
                !self.dense && !self.per_layer && self.fixed_penalty.is_none(),
                "--method {} prunes by magnitude: --dense, --per-layer and --fixed-penalty \
                 belong to the L0 method",
                self.method_name()
            );
            anyhow::ensure!(
                self.epochs >= 2 || self.finetune_epochs > 0,
                "--method {} needs at least 2 epochs (pruning, then fine-tuning)",
                self.method_name()
            );
        }
        anyhow::ensure!(
            !self.per_layer || self.density_target().is_some(),
            "--per-layer needs a density target (--target-density below 1)"
        );
        anyhow::ensure!(
            self.epochs > 0 && self.batch > 0,
            "--epochs and --batch must be at least 1"
        );
        anyhow::ensure!(
            self.finetune_epochs < self.epochs,
            "--finetune-epochs ({}) must leave at least one of the --epochs ({}) for pruning",
            self.finetune_epochs,
            self.epochs
        );
        if let Some(w) = self.warmup_epochs.filter(|&w| w > 0) {
            anyhow::ensure!(
                w + self.finetune_epochs < self.epochs,
                "--warmup-epochs ({w}) and --finetune-epochs ({}) must leave at least one of \
                 the --epochs ({}) for pruning",
                self.finetune_epochs,
                self.epochs
            );
            anyhow::ensure!(
                self.method == Method::L0 && self.fixed_penalty.is_none(),
                "--warmup-epochs belongs to the L0 method under constraints (the magnitude \
                 baselines have their own schedule; --fixed-penalty has none)"
            );
        }
        if self.ramp_epochs > 0 {
            anyhow::ensure!(
                self.method == Method::L0,
                "--ramp-epochs belongs to the L0 method (gmp has its own cubic schedule)"
            );
            anyhow::ensure!(
                self.warmup() + self.ramp_epochs + self.finetune_epochs <= self.epochs,
                "--ramp-epochs ({}) with the warm-up ({}) and --finetune-epochs ({}) is more \
                 than the --epochs ({})",
                self.ramp_epochs,
                self.warmup(),
                self.finetune_epochs,
                self.epochs
            );
        }
        anyhow::ensure!(
            self.gate_init_drop_rate > 0.0 && self.gate_init_drop_rate < 1.0,
            "--gate-init-drop-rate must lie in (0, 1), got {}",
            self.gate_init_drop_rate
        );
        anyhow::ensure!(
            self.lr > 0.0 && self.gate_lr > 0.0,
            "--lr and --gate-lr must be > 0, got {} and {}",
            self.lr,
            self.gate_lr
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.gate_momentum),
            "--gate-momentum must lie in [0, 1), got {}",
            self.gate_momentum
        );
        anyhow::ensure!(
            self.gate_init_spread >= 0.0 && self.gate_init_spread.is_finite(),
            "--gate-init-spread must be finite and >= 0, got {}",
            self.gate_init_spread
        );
        if let Some(c) = self.fixed_penalty {
            anyhow::ensure!(
                c.is_finite() && c >= 0.0,
                "--fixed-penalty must be finite and >= 0, got {c}"
            );
        }
        self.dual_optimizer().validate()?;
        if let ModelSpec::Onnx(p) = &self.model {
            anyhow::ensure!(
                p.exists(),
                "--model {}: no such file or folder",
                p.display()
            );
        }
        self.own.validate()
    }

    /// True when the run uses the user's own network or data.
    pub fn is_own(&self) -> bool {
        matches!(self.model, ModelSpec::Onnx(_)) || self.own.data.is_some()
    }

    /// The multiplier's update rule these settings describe.
    pub fn dual_optimizer(&self) -> DualOptimizer {
        match self.dual {
            DualUpdate::Ga => DualOptimizer::gradient_ascent(self.dual_lr),
            DualUpdate::Nupi => DualOptimizer::NuPi(NuPiConfig::new(self.dual_lr).with_kp(self.kp)),
        }
    }

    /// The method's name as the flag writes it.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::L0 => "l0",
            Method::Magnitude => "magnitude",
            Method::Gmp => "gmp",
        }
    }

    /// Epochs of the L0 method's dense warm-up: `--warmup-epochs`, or 3 in 10 of the
    /// epochs (the magnitude baselines train dense for 5 or 7 in 10), as many as leave one
    /// epoch for the gates after the fine-tuning, budgets included (the flash budget's
    /// log-ratio violation reaches a 32 KiB budget in the epochs left); none for the other
    /// methods, the dense baseline and a fixed penalty.
    pub fn warmup(&self) -> usize {
        if self.method != Method::L0 || self.dense || self.fixed_penalty.is_some() {
            return 0;
        }
        self.warmup_epochs.unwrap_or_else(|| {
            (3 * self.epochs / 10).min(self.epochs.saturating_sub(self.finetune_epochs + 1))
        })
    }

    /// Epochs of fine-tuning at the final sparsity for the magnitude baselines.
    fn magnitude_finetune_epochs(&self) -> usize {
        if self.finetune_epochs > 0 {
            return self.finetune_epochs;
        }
        match self.method {
            Method::Magnitude => self.epochs / 2,
            _ => self.epochs / 4,
        }
    }

    /// True when a device budget constrains the run.
    pub fn has_budget(&self) -> bool {
        self.max_flash.is_some() || self.max_latency.is_some() || self.max_ram.is_some()
    }

    /// These settings with `board`'s budgets filled in where no flag gave one (the
    /// settings a run uses).
    ///
    /// # Errors
    /// A board file that cannot be read.
    pub fn with_board(&self) -> anyhow::Result<Self> {
        let mut c = self.clone();
        if let Some(path) = &self.board {
            let board = tether_deploy::cli::board::Board::load(path)?;
            c.max_flash = c.max_flash.or(board.flash);
            c.max_latency = c.max_latency.or(board.latency);
            c.max_ram = c.max_ram.or(board.ram);
        }
        Ok(c)
    }

    /// The density the run is constrained to, `None` for none (budgets alone, or the
    /// dense baseline).
    pub fn density_target(&self) -> Option<f64> {
        if self.dense {
            return None;
        }
        match self.target_density {
            Some(t) if t < 1.0 => Some(t),
            Some(_) => None,
            None if self.has_budget() => None,
            None => Some(0.1),
        }
    }

    /// What the run aims at, as the per-epoch line says it.
    fn goal(&self) -> String {
        let mut goals = Vec::new();
        if self.dense {
            goals.push("dense".to_string());
        }
        if let Some(t) = self.density_target() {
            goals.push(format!("target {t}"));
        }
        if let Some(b) = self.max_flash {
            goals.push(format!("flash at most {b}"));
        }
        if let Some(t) = self.max_latency {
            goals.push(format!("latency at most {t}"));
        }
        if let Some(b) = self.max_ram {
            goals.push(format!("RAM at most {b}"));
        }
        goals.join(", ")
    }

    /// The target density of the run as outputs state it: 1 for the dense baseline and
    /// for budgets alone.
    fn target(&self) -> f64 {
        self.density_target().unwrap_or(1.0)
    }
}

/// Training samples the per-epoch training accuracy is measured on (the first ones): a
/// forward pass over all of a large set every epoch would cost a sizeable part of an
/// epoch's training.
pub const TRAIN_EVAL_SAMPLES: usize = 10_000;

/// One epoch's measurement on the test set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochResult {
    /// 1-based epoch.
    pub epoch: usize,
    /// Accuracy in `[0, 1]` on the first [`TRAIN_EVAL_SAMPLES`] training samples, with
    /// deterministic gates (beside the test accuracy: how far the two part).
    pub train_accuracy: f64,
    /// Accuracy in `[0, 1]`, with deterministic gates.
    pub test_accuracy: f64,
    /// Fraction of gated parameters kept (1 for the dense baseline).
    pub density: f64,
}

/// One gated layer of the pruned network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerResult {
    /// Parameters under a gate.
    pub gated_params: usize,
    /// Of those, kept by the deterministic gates.
    pub kept: usize,
    /// `kept / gated_params`.
    pub density: f64,
}

/// What a run measured (the same numbers as its `summary.json`).
#[derive(Clone, Debug)]
pub struct PruneReport {
    /// Each budget the run was given: budget, achieved by the written model, met.
    pub budgets: Vec<BudgetResult>,
    /// Test accuracy after the last epoch.
    pub test_accuracy: f64,
    /// Density after the last epoch.
    pub density: f64,
    /// Every epoch, in order.
    pub epochs: Vec<EpochResult>,
    /// Per gated layer (empty for the dense baseline).
    pub layers: Vec<LayerResult>,
    /// `summary.json`'s contents.
    pub summary: serde_json::Value,
    /// The files written, by name, under [`PruneConfig::out`].
    pub files: Vec<&'static str>,
}

pub use crate::resume::RunControl;

/// Runs the pruning job on backend `B`: reads the dataset from the data cache
/// (`scripts/fetch-data`), then [`run_with_data`]. `progress` shows a progress bar per
/// epoch and prints a line per epoch, as the CLI does; without it the run is silent.
///
/// # Errors
/// A setting out of range ([`PruneConfig::validate`]), a missing dataset, a training
/// failure (a non-finite loss or violation, a failing Shampoo root) or an output that
/// cannot be written.
pub fn run<B: AutodiffBackend>(
    config: &PruneConfig,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<PruneReport> {
    run_controlled::<B>(config, device, &RunControl::new(progress))
}

/// [`run`] with a [`RunControl`]: an interrupt that stops the run with a checkpoint.
///
/// # Errors
/// As [`run`]; [`Interrupted`] (downcast the error) when the interrupt stopped it.
pub fn run_controlled<B: AutodiffBackend>(
    config: &PruneConfig,
    device: &B::Device,
    control: &RunControl,
) -> anyhow::Result<PruneReport> {
    let config = &config.with_board()?;
    config.validate()?;
    check_output_dir(&config.out, "--out")?;
    let resume = read_resume(config)?;
    if config.is_own() {
        return run_own::<B>(config, device, control, resume);
    }
    let train = ImageSet::load(config.dataset, Split::Train)?;
    let test = ImageSet::load(config.dataset, Split::Test)?;
    let (train, test) = (
        Samples::Mnist(Cow::Owned(train)),
        Samples::Mnist(Cow::Owned(test)),
    );
    B::seed(device, config.seed);
    Job::new(config, &train, &test, control, resume).train_builtin::<B>(device)
}

/// The own-model / own-data job: imports the ONNX network (its leading axis as the batch
/// axis), loads the data (checked against the network's input shape and output size,
/// normalised with the training split's statistics), then trains [`GraphNet`] (or a
/// built-in network on the user's data) exactly as the built-in job does. Writes the
/// same outputs plus `model.onnx` for an ONNX network.
fn run_own<B: AutodiffBackend>(
    config: &PruneConfig,
    device: &B::Device,
    control: &RunControl,
    resume: Option<Resumed>,
) -> anyhow::Result<PruneReport> {
    use tether_deploy::onnx::{BatchAxis, ImportOptions, import_file_with};
    let graph = match &config.model {
        ModelSpec::Onnx(path) => Some(
            import_file_with(
                path,
                &ImportOptions {
                    batch_axis: BatchAxis::Leading,
                },
            )
            .with_context(|| format!("importing {}", path.display()))?,
        ),
        ModelSpec::Builtin(_) => None,
    };
    // The network's per-sample input shape and output size.
    let (input_shape, outputs) = match &graph {
        Some(bytes) => {
            let aligned = tether_deploy::AlignedBytes::from_slice(bytes);
            let m = tether_deploy::Model::parse(&aligned)?;
            (
                m.input_shape().as_slice().to_vec(),
                m.output_shape().numel(),
            )
        }
        None => (vec![784], 10),
    };
    let (train, test) = match &config.own.data {
        Some(data) => {
            let load = config.own.load_options()?;
            let prep = config
                .own
                .prepare_options(config.seed, Some(input_shape.clone()))?;
            let p = crate::data::own::prepare_sets(
                data,
                config.own.test_data.as_deref(),
                &load,
                &prep,
                config.own.loading,
            )?;
            if control.progress && p.train.is_streamed() {
                println!(
                    "{}: {} training and {} test images, decoded from their files for each \
                     batch (--loading memory keeps them in memory)",
                    data.display(),
                    p.train.len(),
                    p.test.len()
                );
            }
            (
                Samples::Own(Box::new(p.train)),
                Samples::Own(Box::new(p.test)),
            )
        }
        None => {
            // MNIST / Fashion-MNIST for the user's network: its input must take 28x28.
            anyhow::ensure!(
                input_shape.iter().product::<usize>() == 784,
                "the network's input is {input_shape:?} per sample; {} images are 28x28 \
                 (give your own data with --data)",
                config.dataset.name()
            );
            (
                Samples::Mnist(Cow::Owned(ImageSet::load(config.dataset, Split::Train)?)),
                Samples::Mnist(Cow::Owned(ImageSet::load(config.dataset, Split::Test)?)),
            )
        }
    };
    let classes = train.classes();
    anyhow::ensure!(
        classes <= outputs,
        "the data has {classes} classes but the network outputs {outputs} scores per sample"
    );
    if graph.is_none() {
        anyhow::ensure!(
            train.sample_len() == 784,
            "the built-in networks take 28x28 images (784 values); the data has {} per \
             sample: give your own network with --model FILE.onnx",
            train.sample_len()
        );
    }
    B::seed(device, config.seed);
    let job = Job::new(config, &train, &test, control, resume);
    match graph {
        Some(bytes) => job.train_graph::<B>(bytes, config.batch_norm.sites(), device),
        // A built-in network on the user's 28x28 data: the same run as on MNIST.
        None => job.train_builtin::<B>(device),
    }
}

/// [`run`] on images already loaded (e.g. with [`ImageSet::from_files`]).
///
/// # Errors
/// As [`run`], less the missing dataset.
pub fn run_with_data<B: AutodiffBackend>(
    config: &PruneConfig,
    train: &ImageSet,
    test: &ImageSet,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<PruneReport> {
    run_with_data_controlled::<B>(config, train, test, device, &RunControl::new(progress))
}

/// [`run_with_data`] with a [`RunControl`].
///
/// # Errors
/// As [`run_controlled`], less the missing dataset.
pub fn run_with_data_controlled<B: AutodiffBackend>(
    config: &PruneConfig,
    train: &ImageSet,
    test: &ImageSet,
    device: &B::Device,
    control: &RunControl,
) -> anyhow::Result<PruneReport> {
    let config = &config.with_board()?;
    config.validate()?;
    check_output_dir(&config.out, "--out")?;
    let resume = read_resume(config)?;
    B::seed(device, config.seed);
    let (train, test) = (
        Samples::Mnist(Cow::Borrowed(train)),
        Samples::Mnist(Cow::Borrowed(test)),
    );
    Job::new(config, &train, &test, control, resume).train_builtin::<B>(device)
}

impl<'a> Job<'a> {
    fn new(
        config: &'a PruneConfig,
        train: &'a Samples<'a>,
        test: &'a Samples<'a>,
        control: &RunControl,
        resume: Option<Resumed>,
    ) -> Self {
        Job {
            config,
            train,
            test,
            progress: control.progress,
            interrupt: control.interrupt.clone(),
            resume,
            collective: crate::parallel::group(),
            latency: Default::default(),
        }
    }
}

impl Job<'_> {
    /// A resumed run's fresh network with the checkpoint's parameter ids (what the
    /// optimizer's groups and the masks are keyed by: [`adopt_checkpoint_ids`]).
    fn adopt_ids<B: Backend, M: Module<B>>(&self, model: M) -> anyhow::Result<M> {
        match &self.resume {
            Some(r) => Ok(adopt_checkpoint_ids(&r.dir, model)?),
            None => Ok(model),
        }
    }

    /// Trains the built-in network of the config (pruned or dense) on the job's data: burn's
    /// initialisation of it, written as a graph and trained as one ([`Self::train_graph`]),
    /// like a user's network (one model path). It has no BatchNorm to train.
    fn train_builtin<B: AutodiffBackend>(self, device: &B::Device) -> anyhow::Result<PruneReport> {
        let &ModelSpec::Builtin(builtin) = &self.config.model else {
            anyhow::bail!("train_builtin on an ONNX network");
        };
        let bytes = match builtin {
            Model::Lenet300 => mlp_to_deploy(
                &MlpConfig::new(vec![784, 300, 100, 10]).init::<B>(device),
                Storage::Dense,
            )?,
            Model::Lenet5 => {
                lenet5_to_deploy(&Lenet5Config::new().init::<B>(device), Storage::Dense)?
            }
            Model::Resnet => {
                resnet_to_deploy(&ResnetConfig::new().init::<B>(device), Storage::Dense)?
            }
        };
        self.train_graph::<B>(bytes, NormSites::None, device)
    }

    /// Trains the network of `bytes` (a tether model: the user's import or a built-in
    /// one) as a [`GraphNet`], gated for L0 or plain for the dense and magnitude runs,
    /// its BatchNorms at `sites` trained; writes its outputs and `model.onnx`.
    fn train_graph<B: AutodiffBackend>(
        self,
        bytes: Vec<u8>,
        sites: NormSites,
        device: &B::Device,
    ) -> anyhow::Result<PruneReport> {
        let config = self.config;
        let structure = match config.structure {
            Structure::Weight => GateStructure::Weight,
            Structure::Unit => GateStructure::OutputUnit,
            Structure::Block1x4 => GateStructure::Block1x4,
        };
        let gates = HardConcreteConfig::new()
            .with_init_spread(config.gate_init_spread)
            .with_init_drop_rate(config.gate_init_drop_rate);
        let net_config = GraphNetConfig {
            structure: (!config.dense && config.method == Method::L0).then_some(structure),
            gates,
        };
        let net = GraphNet::<B>::from_model_bytes(&bytes, &net_config, device)?;
        let net = if net.batch_norm_sites(sites) > 0 {
            let x =
                self.train
                    .calibration_batch::<B>(NORM_CALIBRATION_SAMPLES, config.seed, device)?;
            net.train_batch_norms(x, 0.1, sites)
        } else {
            net
        };
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        // Units closed by unit gates are cut out of the written model (and its reader's
        // columns): the same outputs on narrower activations, which is what lowers RAM.
        let cut_units = net_config.structure == Some(GateStructure::OutputUnit);
        let progress = self.progress;
        let export = |eval: &GraphNet<B::InnerBackend>, out: &Path, meta| {
            save_record(eval.clone(), &recorder, out)?;
            let mut tthr = eval.to_deploy()?;
            if cut_units {
                tthr = cut_closed_units(tthr, progress)?;
            }
            let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
            let model = tether_deploy::Model::parse(&aligned)?;
            let onnx = tether_deploy::onnx::export_bytes(&model, &Default::default())?;
            write_atomic(&out.join("model.onnx"), &onnx)?;
            Ok((graph_to_safetensors(eval, meta)?, tthr))
        };
        let mut report = if config.dense || config.method != Method::L0 {
            self.train_plain(net, device, |eval| Ok(eval.to_deploy()?), export)?
        } else {
            self.train(net, device, |eval| Ok(eval.to_deploy()?), export)?
        };
        report.files.push("model.onnx");
        Ok(report)
    }
}

/// Per gated layer, whether its width moves with its gates: every layer but the last
/// (the model's output) under `--structure unit`.
fn unit_layers(c: &PruneConfig, layers: usize) -> Vec<bool> {
    let last = layers.saturating_sub(1);
    (0..layers)
        .map(|l| c.structure == Structure::Unit && l < last)
        .collect()
}

/// `tthr` with the output units its unit gates closed removed
/// ([`tether_deploy::compact::remove_dead_channels`]); says which layers narrowed.
fn cut_closed_units(tthr: Vec<u8>, progress: bool) -> anyhow::Result<Vec<u8>> {
    let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
    let model = tether_deploy::Model::parse(&aligned)?;
    let Some(cut) = tether_deploy::compact::remove_dead_channels(&model)? else {
        return Ok(tthr);
    };
    if progress {
        let layers: Vec<String> = cut
            .narrowed
            .iter()
            .map(|n| format!("op {}: {} -> {}", n.node, n.channels, n.kept))
            .collect();
        println!(
            "closed units cut out of the written model: {}",
            layers.join(", ")
        );
    }
    Ok(cut.bytes)
}

/// Saves a burn record as `out/model.mpk` (the recorder appends ".mpk": write under another
/// name, then rename into place).
fn save_record<B: Backend, M: Module<B>>(
    module: M,
    recorder: &NamedMpkFileRecorder<FullPrecisionSettings>,
    out: &Path,
) -> anyhow::Result<()> {
    // The output folder appears with its first file (`check_output_dir` creates nothing).
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    module
        .save_file(out.join("model-partial"), recorder)
        .context("saving the pruned model")?;
    std::fs::rename(out.join("model-partial.mpk"), out.join("model.mpk"))?;
    Ok(())
}

/// Training or test samples: a registry dataset's images, or the user's own data
/// (normalised already).
enum Samples<'a> {
    /// MNIST or Fashion-MNIST (loaded for this run, or [`run_with_data`]'s), normalised
    /// with MNIST's statistics on upload.
    Mnist(Cow<'a, ImageSet>),
    /// The user's data: in memory, or an image folder read from its files.
    Own(Box<crate::data::own::OwnSet>),
}

impl Samples<'_> {
    fn len(&self) -> usize {
        match self {
            Samples::Mnist(s) => s.len(),
            Samples::Own(s) => s.len(),
        }
    }

    fn sample_len(&self) -> usize {
        match self {
            Samples::Mnist(_) => 784,
            Samples::Own(s) => s.sample_len(),
        }
    }

    fn classes(&self) -> usize {
        match self {
            Samples::Mnist(_) => 10,
            Samples::Own(s) => s.num_classes(),
        }
    }

    /// `n` samples (all if fewer) drawn at random (seeded), normalised as training sees
    /// them, on the device: the batch that measures the BatchNorms' starting statistics.
    ///
    /// # Errors
    /// A sample that cannot be read (it names the file).
    fn calibration_batch<B: Backend>(
        &self,
        n: usize,
        seed: u64,
        device: &B::Device,
    ) -> anyhow::Result<Tensor<B, 2>> {
        let order = shuffled_order(self.len(), seed, u64::MAX);
        let pick = &order[..n.min(order.len())];
        Ok(HostBatch::assemble(self.source(), pick)?
            .to_device::<B>(device)
            .images)
    }

    /// The samples, read one at a time into the batches ([`crate::data::stream`]).
    fn source(&self) -> &dyn SampleSource {
        match self {
            Samples::Mnist(s) => s.as_ref(),
            Samples::Own(s) => &**s,
        }
    }

    /// How many of the samples a run reads: the first `limit`.
    fn limited(&self, limit: Option<usize>) -> usize {
        limit.map_or(self.len(), |l| l.min(self.len()))
    }

    /// Runs `evaluate` on `model` over the first `n` samples in order, in batches of
    /// [`EVAL_BATCH`] assembled as the evaluation goes.
    fn evaluate<B: Backend, M, R>(
        &self,
        model: &M,
        n: usize,
        device: &B::Device,
        evaluate: &impl Fn(&M, &mut dyn Iterator<Item = Batch<B>>) -> R,
    ) -> anyhow::Result<R> {
        let order: Vec<usize> = (0..n).collect();
        with_batches(
            self.source(),
            &order,
            EVAL_BATCH,
            false,
            PREFETCH_DEPTH,
            |batches| {
                let mut failed = None;
                let mut each = batches.map_while(|b| match b {
                    Ok(b) => Some(b.to_device::<B>(device)),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                });
                let out = evaluate(model, &mut each);
                drop(each);
                match failed {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            },
        )
    }
}

/// Samples per evaluation batch (a forward pass only: larger than a training batch).
const EVAL_BATCH: usize = 1000;

/// One run's settings and data.
struct Job<'a> {
    config: &'a PruneConfig,
    train: &'a Samples<'a>,
    test: &'a Samples<'a>,
    progress: bool,
    /// Stops the run (checkpoint written) when raised.
    interrupt: Interrupt,
    /// The checkpoint `--resume` continues from, read and checked before any work.
    resume: Option<Resumed>,
    /// The data-parallel group ([`crate::parallel::set_group`]).
    collective: Option<std::rc::Rc<dyn crate::parallel::Collective>>,
    /// The latency model fitted for this run (timings differ from process to process: a
    /// resumed run takes the interrupted run's from its checkpoint).
    latency: std::cell::RefCell<Option<LatencyModel>>,
}

/// A checkpoint to continue from.
struct Resumed {
    dir: PathBuf,
    state: RunState,
}

/// The run's state beyond the constrained checkpoint: the epochs finished, the metrics
/// rows so far and the method's own (the magnitude masks).
#[derive(Serialize, Deserialize)]
struct PruneState {
    epochs: Vec<EpochResult>,
    rows: Vec<Vec<f64>>,
    method: serde_json::Value,
    #[serde(default)]
    latency: Option<LatencyModel>,
}

/// A method's state for the checkpoint, saved and restored by the method (the L0 and
/// dense runs keep theirs in the optimizer and multipliers: none).
struct MethodState<'a> {
    save: &'a dyn Fn() -> serde_json::Value,
    restore: &'a dyn Fn(serde_json::Value) -> anyhow::Result<()>,
}

impl MethodState<'_> {
    fn none() -> MethodState<'static> {
        MethodState {
            save: &|| serde_json::Value::Null,
            restore: &|_| Ok(()),
        }
    }
}

/// Reads and checks `--resume`'s checkpoint (before any data is read).
fn read_resume(config: &PruneConfig) -> anyhow::Result<Option<Resumed>> {
    let Some(path) = &config.resume else {
        return Ok(None);
    };
    let (dir, state) = open_checkpoint(path, "prune", &settings_key(config)?)?;
    Ok(Some(Resumed { dir, state }))
}

impl Job<'_> {
    /// The epochs of one run, pruned or dense: [`fit`] over each epoch's shuffled batches
    /// (`on_step` gets every step, with its global index and the metrics rows to append to;
    /// only steps with `info.read` have values to log), then
    /// `evaluate` (test accuracy, density) on the test set, written to `epochs.csv`.
    ///
    /// Checkpoints (model, optimizer, multipliers, rows, `method` state, position) go to
    /// `OUT/checkpoint` every [`PruneConfig::checkpoint_every`] epochs and when the
    /// interrupt is raised (then the run returns [`Interrupted`]); a [`Job::resume`]
    /// starts from one. Each step's random draws come from a stream seeded by the run's
    /// seed and the global step, so a resumed run repeats the uninterrupted one exactly.
    #[allow(clippy::too_many_arguments)]
    fn run_epochs<B, M, O, P>(
        &self,
        model: M,
        device: &B::Device,
        opt: &mut ConstrainedOptimizer<O>,
        set: &mut ConstraintSet<B>,
        problem: &P,
        health: Option<ShampooHealth>,
        method: MethodState<'_>,
        mut on_epoch_start: impl FnMut(usize, usize, M) -> anyhow::Result<M>,
        mut on_step: impl FnMut(usize, StepInfo<'_, B, M>, &mut Vec<Vec<f64>>),
        evaluate: impl Fn(
            &M::InnerModule,
            &mut dyn Iterator<Item = Batch<B::InnerBackend>>,
        ) -> (f64, f64),
    ) -> anyhow::Result<(M, Vec<EpochResult>, Vec<Vec<f64>>)>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: burn::optim::Optimizer<M, B>,
        P: ConstrainedProblem<B, M, Input = Batch<B>>,
    {
        let c = self.config;
        // Batches are assembled as training reads them (`data::stream`): memory holds a
        // few batches, never an epoch's worth.
        let train_len = self.train.limited(c.train_limit);
        let test_len = self.test.limited(c.test_limit);
        let train_eval_len = train_len.min(TRAIN_EVAL_SAMPLES);
        let mut steps_per_epoch = 0;
        let (mut model, start, mut epochs, mut rows) = match &self.resume {
            Some(r) => {
                let (model, _) = load_checkpoint(&r.dir, model, opt, set)?;
                let state: PruneState = serde_json::from_value(r.state.task.clone())
                    .with_context(|| format!("corrupt checkpoint {}", r.dir.display()))?;
                (method.restore)(state.method)?;
                if self.progress {
                    println!(
                        "resuming from {}: epoch {}, step {} of it",
                        r.dir.display(),
                        r.state.position.epoch + 1,
                        r.state.position.step_in_epoch
                    );
                }
                (model, r.state.position, state.epochs, state.rows)
            }
            None => (model, Position::default(), Vec::new(), Vec::new()),
        };
        let checkpoint = checkpoint_dir(&c.out);
        let save = |model: &M,
                    opt: &ConstrainedOptimizer<O>,
                    set: &ConstraintSet<B>,
                    position: Position,
                    epochs: &[EpochResult],
                    rows: &[Vec<f64>]|
         -> anyhow::Result<()> {
            let state = PruneState {
                epochs: epochs.to_vec(),
                rows: rows.to_vec(),
                method: (method.save)(),
                latency: self.latency.borrow().clone(),
            };
            let json = RunState::file_bytes("prune", settings_key(c)?, position, &state)?;
            save_checkpoint_with(
                &checkpoint,
                position.global_step as u64,
                model,
                opt,
                set,
                &[(RUN_FILE, &json)],
            )?;
            Ok(())
        };
        let mut offset = start.global_step - start.step_in_epoch;
        for epoch in start.epoch..c.epochs {
            let batches = batch_count(train_len, c.batch, true);
            anyhow::ensure!(batches > 0, "fewer training images than one batch");
            steps_per_epoch = batches;
            let first = if epoch == start.epoch {
                start.step_in_epoch
            } else {
                0
            };
            model = on_epoch_start(epoch, offset + first, model)?;
            let label = self
                .progress
                .then(|| format!("epoch {}/{}", epoch + 1, c.epochs));
            let mut done = first;
            // The epoch's order; a resumed epoch starts at its first step not yet taken.
            let order = shuffled_order(train_len, c.seed, epoch as u64);
            let order = &order[(first * c.batch).min(order.len())..];
            let (order, batch, parallel) = self.shard(order)?;
            model = with_batches(
                self.train.source(),
                &order,
                batch,
                true,
                PREFETCH_DEPTH,
                |stream| {
                    try_fit(
                        model,
                        opt,
                        set,
                        problem,
                        &FitOptions::new(batches - first, label)
                            .with_health(health.clone())
                            .with_interrupt(Some(self.interrupt.clone()))
                            .with_step_seeds(c.seed, offset + first)
                            .with_parallel(parallel)
                            .with_observe_every(c.log_every),
                        |_| match stream.next() {
                            Some(b) => Ok(b?.to_device::<B>(device)),
                            None => Err(anyhow::anyhow!(
                                "internal error: the epoch's batches ran out"
                            )),
                        },
                        |info| {
                            done += 1;
                            // Every step, read or not: the schedules (gmp's cuts, the
                            // L0 ramp) act on each; unread steps (`--log-every`) have no
                            // values, so the callbacks log only where `info.read`.
                            on_step(offset + first + info.step, info, &mut rows)
                        },
                    )
                },
            )?;
            if done < batches {
                let position = Position {
                    epoch,
                    step_in_epoch: done,
                    global_step: offset + done,
                };
                save(&model, opt, set, position, &epochs, &rows)?;
                return Err(Interrupted {
                    checkpoint,
                    position,
                    epochs: c.epochs,
                }
                .into());
            }
            offset += batches;
            let valid = model.valid();
            let (train_accuracy, _) = self.train.evaluate::<B::InnerBackend, _, _>(
                &valid,
                train_eval_len,
                device,
                &evaluate,
            )?;
            let (test_accuracy, density) = self
                .test
                .evaluate::<B::InnerBackend, _, _>(&valid, test_len, device, &evaluate)?;
            if self.progress {
                println!(
                    "epoch {}: train accuracy {train_accuracy:.4}, test accuracy \
                     {test_accuracy:.4}, density {density:.4} ({})",
                    epoch + 1,
                    c.goal()
                );
            }
            epochs.push(EpochResult {
                epoch: epoch + 1,
                train_accuracy,
                test_accuracy,
                density,
            });
            let position = Position {
                epoch: epoch + 1,
                step_in_epoch: 0,
                global_step: offset,
            };
            let interrupted = self.interrupt.is_raised() && epoch + 1 < c.epochs;
            if (c.checkpoint_every.due(epoch + 1) && epoch + 1 < c.epochs) || interrupted {
                save(&model, opt, set, position, &epochs, &rows)?;
            }
            if interrupted {
                return Err(Interrupted {
                    checkpoint,
                    position,
                    epochs: c.epochs,
                }
                .into());
            }
        }
        let table: Vec<Vec<f64>> = epochs
            .iter()
            .map(|e| vec![e.epoch as f64, e.train_accuracy, e.test_accuracy, e.density])
            .collect();
        write_atomic(
            &c.out.join("epochs.csv"),
            csv(
                &[
                    "epoch".into(),
                    "train_accuracy".into(),
                    "test_accuracy".into(),
                    "density".into(),
                ],
                &table,
            )
            .as_bytes(),
        )?;
        training_plot(&c.out.join("training.png"), &rows, &epochs, steps_per_epoch)?;
        Ok((model, epochs, rows))
    }

    /// Data parallelism ([`crate::parallel`]): this rank's samples of the global batches
    /// in `order`, its batch size, and its part in the group; alone, all of `order` in
    /// batches of `--batch-size`.
    fn shard<'o>(
        &self,
        order: &'o [usize],
    ) -> anyhow::Result<(
        Cow<'o, [usize]>,
        usize,
        Option<crate::parallel::DataParallel>,
    )> {
        use crate::parallel::{DataParallel, shard};
        let batch = self.config.batch;
        let Some(group) = &self.collective else {
            return Ok((Cow::Borrowed(order), batch, None));
        };
        anyhow::ensure!(
            self.config.max_latency.is_none(),
            "--max-latency with several replicas (processes or --devices): each would time \
             the kernels itself and constrain a different latency model (run the latency \
             budget on one replica)"
        );
        let (rank, ranks) = (group.rank(), group.size());
        let local = shard::local_batch(batch, ranks)?;
        let order = shard::shard_order(order, batch, rank, ranks)?;
        let parallel = DataParallel::new(group.clone(), local, batch)?;
        Ok((Cow::Owned(order), local, Some(parallel)))
    }

    /// Times the deploy kernels on the exported network (`tthr`) to fit its latency model,
    /// and refuses a budget below the fastest the network can run.
    fn latency_model(&self, tthr: &[u8], gated: &[usize]) -> anyhow::Result<LatencyModel> {
        let c = self.config;
        let Some(Seconds(max)) = c.max_latency else {
            anyhow::bail!("internal error: no latency budget");
        };
        if self.progress {
            println!(
                "timing the deploy kernels for the latency model ({} gated layers, batch {})",
                gated.len(),
                c.latency_batch
            );
        }
        let saved = match &self.resume {
            Some(r) => serde_json::from_value::<PruneState>(r.state.task.clone())
                .ok()
                .and_then(|s| s.latency),
            None => None,
        };
        let model = match saved {
            Some(model) => model,
            None => LatencyModel::measure(tthr, gated, c.latency_batch, LATENCY_TRIALS)?,
        };
        *self.latency.borrow_mut() = Some(model.clone());
        let min = model.min_latency();
        anyhow::ensure!(
            max >= min,
            "--max-latency {}: this network takes at least {} per inference on this host \
             (batch {}) with every gated weight pruned (the rest of its ops); give at least \
             that",
            Seconds(max),
            Seconds(min),
            c.latency_batch
        );
        if self.progress {
            println!(
                "latency budget {} (the unpruned network: {}, the fastest it can be: {})",
                Seconds(max),
                Seconds(model.dense),
                Seconds(min)
            );
        }
        Ok(model)
    }

    /// The RAM budget's model where the budget needs one: `None` when the unpruned
    /// network already runs in `max` bytes (nothing to constrain). Refuses, before any
    /// training, a budget that the network cannot meet: below its RAM with one unit left
    /// per layer, or below its unpruned RAM when no layer is unit-gated (weights pruned
    /// one by one leave every activation as wide).
    fn ram_model_needed(&self, ram: WidthModel, max: usize) -> anyhow::Result<Option<WidthModel>> {
        let c = self.config;
        if ram.full <= max {
            if self.progress {
                println!(
                    "RAM budget {}: the unpruned network already runs in {} (batch {})",
                    Bytes(max as u64),
                    Bytes(ram.full as u64),
                    c.ram_batch
                );
            }
            return Ok(None);
        }
        anyhow::ensure!(
            ram.has_units(),
            "--max-ram {}: this network needs {} of RAM at batch {} whatever its weights \
             (pruning single weights leaves every activation as wide); prune whole units \
             with --structure unit and --method l0",
            Bytes(max as u64),
            Bytes(ram.full as u64),
            c.ram_batch
        );
        let min = ram.min()?;
        anyhow::ensure!(
            max >= min,
            "--max-ram {}: this network needs at least {} of RAM at batch {} with one unit \
             left in every layer (its input, output and the layers' scratch); give at least \
             that",
            Bytes(max as u64),
            Bytes(min as u64),
            c.ram_batch
        );
        if self.progress {
            println!(
                "RAM budget {} (the unpruned network: {}, the least it can take: {})",
                Bytes(max as u64),
                Bytes(ram.full as u64),
                Bytes(min as u64)
            );
        }
        Ok(Some(ram))
    }

    /// The RAM budget judged on the written model: the device's RAM for --ram-batch
    /// samples, as `tether-deploy inspect` reports it.
    fn ram_result(&self, tthr: &[u8]) -> anyhow::Result<Option<BudgetResult>> {
        let Some(Bytes(max)) = self.config.max_ram else {
            return Ok(None);
        };
        let aligned = tether_deploy::AlignedBytes::from_slice(tthr);
        let model = tether_deploy::Model::parse(&aligned)?;
        let ram = tether_deploy::cli::device_ram(&model, self.config.ram_batch)?;
        Ok(Some(BudgetResult::new("ram", max as f64, ram as f64)))
    }

    /// The latency budget judged on the written model, measured as `tether-deploy bench`
    /// measures it.
    fn latency_result(&self, budget: f64, tthr: &[u8]) -> anyhow::Result<BudgetResult> {
        let measured = measure_latency(tthr, self.config.latency_batch, LATENCY_TRIALS)?;
        Ok(BudgetResult::new("latency", budget, measured))
    }

    /// The metadata written into the safetensors header.
    fn export_meta(&self) -> HashMap<String, String> {
        let c = self.config;
        HashMap::from([
            ("model".to_string(), c.model.label()),
            (
                "dataset".to_string(),
                match &c.own.data {
                    Some(p) => p.display().to_string(),
                    None => c.dataset.name().to_string(),
                },
            ),
            ("target_density".to_string(), c.target().to_string()),
        ])
    }

    /// Writes the trained network and `summary.json`; `export` folds the gates (pruned
    /// runs), saves `model.mpk` and returns the safetensors and tether-deploy bytes.
    fn write_model<M>(
        &self,
        eval: &M,
        export: impl FnOnce(&M, &Path, HashMap<String, String>) -> anyhow::Result<(Vec<u8>, Vec<u8>)>,
        summary: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let (st, tthr) = export(eval, &self.config.out, self.export_meta())?;
        self.write_outputs(&st, &tthr, summary)
    }

    /// Writes `model.safetensors`, `model.tthr` and `summary.json`.
    fn write_outputs(
        &self,
        safetensors: &[u8],
        tthr: &[u8],
        summary: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let out = &self.config.out;
        write_atomic(&out.join("model.safetensors"), safetensors)?;
        write_atomic(&out.join("model.tthr"), tthr)?;
        write_atomic(
            &out.join("summary.json"),
            serde_json::to_string_pretty(summary)?.as_bytes(),
        )?;
        // Every output is written: nothing is left to resume.
        remove_checkpoint(out)
    }

    /// The dense baseline: trains `model` (no gates, no constraints) with the same loop,
    /// optimizer and budget as the pruned runs, and writes the same outputs (density 1).
    fn train_dense<B, M>(
        self,
        model: M,
        device: &B::Device,
        export: impl FnOnce(
            &M::InnerModule,
            &Path,
            HashMap<String, String>,
        ) -> anyhow::Result<(Vec<u8>, Vec<u8>)>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Classifier<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        let c = self.config;
        let mut set = ConstraintSet::<B>::new(device);
        let primal = c.optimizer.build()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        let (model, epochs, steps) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &ClassifyProblem,
            health,
            MethodState::none(),
            |_, _, model| Ok(model),
            |step, info, rows| {
                if info.read {
                    rows.push(vec![step as f64, info.values.loss]);
                }
            },
            |eval, test| (metrics::accuracy(test, |x| eval.logits(x)), 1.0),
        )?;
        write_atomic(
            &c.out.join("metrics.csv"),
            csv(&["step".into(), "loss".into()], &steps).as_bytes(),
        )?;
        let test_accuracy = epochs.last().map(|e| e.test_accuracy);
        let summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(), "dense": true,
            "optimizer": c.optimizer.optimizer,
            "target_density": 1.0, "seed": c.seed, "epochs": c.epochs,
            "final": {"test_accuracy": test_accuracy, "density": 1.0},
        });
        self.write_model(&model.valid(), export, &summary)?;
        Ok(PruneReport {
            budgets: Vec::new(),
            test_accuracy: test_accuracy.unwrap_or(f64::NAN),
            density: 1.0,
            epochs,
            layers: Vec::new(),
            summary,
            files: vec![
                "metrics.csv",
                "epochs.csv",
                "training.png",
                "model.mpk",
                "model.safetensors",
                "model.tthr",
                "summary.json",
            ],
        })
    }

    /// Trains a network without gates: the dense baseline, or the magnitude baseline of
    /// [`PruneConfig::method`] (`deploy_bytes` only serves the latter's budgets).
    fn train_plain<B, M>(
        self,
        model: M,
        device: &B::Device,
        deploy_bytes: impl Fn(&M::InnerModule) -> anyhow::Result<Vec<u8>>,
        export: impl FnOnce(
            &M::InnerModule,
            &Path,
            HashMap<String, String>,
        ) -> anyhow::Result<(Vec<u8>, Vec<u8>)>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Classifier<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        let model = self.adopt_ids(model)?;
        if self.config.method == Method::L0 {
            self.train_dense(model, device, export)
        } else {
            self.train_magnitude(model, device, deploy_bytes, export)
        }
    }

    /// A magnitude baseline ([`Method::Magnitude`] or [`Method::Gmp`]): trains the dense
    /// `model` through the same loop, optimizer and data as the L0 runs, prunes it by
    /// global magnitude on the method's schedule to the density target or to the largest
    /// size that fits the flash budget (whichever keeps fewer weights), fine-tunes, and
    /// writes the same outputs (`export` gets the network with the pruned weights zeroed).
    fn train_magnitude<B, M>(
        self,
        model: M,
        device: &B::Device,
        deploy_bytes: impl Fn(&M::InnerModule) -> anyhow::Result<Vec<u8>>,
        export: impl FnOnce(
            &M::InnerModule,
            &Path,
            HashMap<String, String>,
        ) -> anyhow::Result<(Vec<u8>, Vec<u8>)>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Classifier<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        use crate::tasks::magnitude::{
            MaskedProblem, Masks, gmp_density, largest_fitting, prunable,
        };
        let c = self.config;
        let layers = prunable(&model.valid());
        let numels: Vec<usize> = layers.iter().map(|l| l.numel).collect();
        let total: usize = numels.iter().sum();
        let flash = match c.max_flash {
            Some(Bytes(max)) => {
                let flash = FlashModel::from_export(&deploy_bytes(&model.valid())?, &numels)?;
                let min = flash.min_size();
                anyhow::ensure!(
                    max as usize >= min,
                    "--max-flash {}: this network cannot be written in under {min} bytes ({})",
                    Bytes(max),
                    Bytes(min as u64)
                );
                Some((flash, max as usize))
            }
            None => None,
        };
        let latency = match c.max_latency {
            Some(Seconds(max)) => Some((
                self.latency_model(&deploy_bytes(&model.valid())?, &numels)?,
                max,
            )),
            None => None,
        };
        if let Some(Bytes(max)) = c.max_ram {
            let tthr = deploy_bytes(&model.valid())?;
            let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
            let full = tether_deploy::cli::device_ram(
                &tether_deploy::Model::parse(&aligned)?,
                c.ram_batch,
            )?;
            anyhow::ensure!(
                full <= max as usize,
                "--max-ram {}: this network needs {} of RAM at batch {} whatever its weights, \
                 and --method {} prunes single weights, which leaves every activation as \
                 wide; prune whole units with --method l0 --structure unit",
                Bytes(max),
                Bytes(full as u64),
                c.ram_batch,
                c.method_name()
            );
        }
        let density_keep = c
            .density_target()
            .map_or(total, |t| (t * total as f64).round() as usize);
        // The final count: the density target's, lowered to what fits the flash budget
        // with this network's weights as they are now.
        let final_keep = |masks: &Masks<B::InnerBackend>, net: &M::InnerModule| -> usize {
            let mut keep = density_keep.min(masks.kept().iter().sum());
            let counts = masks.counts_for(net);
            if let Some((flash, max)) = &flash {
                keep = largest_fitting(keep, |k| flash.size(&counts(k)) <= *max).unwrap_or(0);
            }
            if let Some((latency, max)) = &latency {
                keep = largest_fitting(keep, |k| latency.latency(&counts(k)) <= *max).unwrap_or(0);
            }
            keep
        };
        let steps_per_epoch = c
            .train_limit
            .map_or(self.train.len(), |l| l.min(self.train.len()))
            / c.batch;
        let prune_end = (c.epochs - c.magnitude_finetune_epochs()).max(1) * steps_per_epoch;
        let every = (prune_end / 100).max(1);
        let problem = MaskedProblem::<B>::new(Masks::full(layers, device));
        // The ramp's end density, estimated from the dense network (the last step uses
        // the exact count).
        let ramp_to = final_keep(&problem.masks(), &model.valid()) as f64 / total as f64;
        let mut set = ConstraintSet::<B>::new(device);
        let primal = c.optimizer.build()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        let method = c.method;
        let (model, epochs, steps) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &problem,
            health,
            MethodState {
                save: &|| serde_json::json!({"masks": problem.masks().to_hex()}),
                restore: &|state| {
                    let hex: Vec<String> = serde_json::from_value(state["masks"].clone())
                        .context("the checkpoint's masks")?;
                    problem.restore(&hex, device)
                },
            },
            |_, _, model| Ok(model),
            |step, info, steps| {
                // The masks for the next step, from the weights as they are.
                let next = step + 1;
                let keep = if next == prune_end {
                    Some(final_keep(&problem.masks(), &info.model.valid()))
                } else if method == Method::Gmp && next < prune_end && next % every == 0 {
                    let d = gmp_density(next, 0, prune_end, every, ramp_to);
                    Some((d * total as f64).round() as usize)
                } else {
                    None
                };
                if let Some(k) = keep {
                    problem.prune_to(&info.model.valid(), k, device);
                }
                if !info.read {
                    return;
                }
                steps.push(vec![
                    step as f64,
                    info.values.loss,
                    problem.masks().density(),
                ]);
            },
            |eval, test| {
                let masks = problem.masks();
                let masked = masks.apply(eval.clone());
                (
                    metrics::accuracy(test, |x| masked.logits(x)),
                    masks.density(),
                )
            },
        )?;
        let masks = problem.into_masks();
        write_atomic(
            &c.out.join("metrics.csv"),
            csv(&["step".into(), "loss".into(), "density".into()], &steps).as_bytes(),
        )?;
        let pruned = masks.apply(model.valid());
        let per_layer: Vec<LayerResult> = masks
            .layers()
            .iter()
            .zip(masks.kept())
            .map(|(l, kept)| LayerResult {
                gated_params: l.numel,
                kept,
                density: kept as f64 / l.numel as f64,
            })
            .collect();
        let layers_json = layers_json(&per_layer);
        let last = epochs.last();
        let mut summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(), "method": c.method_name(),
            "target_density": c.density_target(), "seed": c.seed, "epochs": c.epochs,
            "finetune_epochs": c.magnitude_finetune_epochs(), "dense": false,
            "optimizer": c.optimizer.optimizer,
            "final": {"test_accuracy": last.map(|e| e.test_accuracy), "density": last.map(|e| e.density)},
            "layers": layers_json,
        });
        let (st, tthr) = export(&pruned, &c.out, self.export_meta())?;
        let mut budgets = Vec::new();
        let kept = masks.kept();
        if let Some((model, max)) = &flash {
            budgets.push(
                BudgetResult::new("flash", *max as f64, tthr.len() as f64)
                    .with_predicted(model.size(&kept) as f64),
            );
        }
        if let Some((model, max)) = &latency {
            budgets.push(
                self.latency_result(*max, &tthr)?
                    .with_predicted(model.latency(&kept)),
            );
        }
        budgets.extend(self.ram_result(&tthr)?);
        if !budgets.is_empty() {
            summary["budgets"] = serde_json::to_value(&budgets)?;
        }
        if self.progress {
            for b in &budgets {
                println!("{}", b.describe());
            }
        }
        let mut panel_title = "Density".to_string();
        for b in &budgets {
            panel_title = format!(
                "{panel_title}; {} budget {}, reached {} ({})",
                b.name,
                b.budget,
                b.achieved,
                if b.met { "met" } else { "NOT met" }
            );
        }
        let end = steps.len() as f64;
        let mut series = vec![Series {
            label: format!("density ({})", c.method_name()),
            points: steps.iter().map(|r| (r[0], r[2])).collect(),
        }];
        if let Some(t) = c.density_target() {
            series.push(Series {
                label: format!("target {t}"),
                points: vec![(0.0, t), (end, t)],
            });
        }
        line_chart(
            &c.out.join("density.png"),
            &[Panel {
                title: panel_title,
                x_label: "step".into(),
                y_label: "fraction of weights kept".into(),
                series,
            }],
        )?;
        self.write_outputs(&st, &tthr, &summary)?;
        Ok(PruneReport {
            budgets,
            test_accuracy: last.map_or(f64::NAN, |e| e.test_accuracy),
            density: last.map_or(f64::NAN, |e| e.density),
            epochs,
            layers: per_layer,
            summary,
            files: vec![
                "metrics.csv",
                "epochs.csv",
                "training.png",
                "density.png",
                "model.mpk",
                "model.safetensors",
                "model.tthr",
                "summary.json",
            ],
        })
    }

    /// Trains `model` under its constraints (density, budgets) and writes every output;
    /// `export` folds the gates, saves the burn record and returns the safetensors and
    /// deploy bytes; `deploy_bytes` writes the deploy format alone (a budget reads the
    /// network's fixed cost off it before training).
    fn train<B, M>(
        self,
        model: M,
        device: &B::Device,
        deploy_bytes: impl Fn(&M::InnerModule) -> anyhow::Result<Vec<u8>>,
        export: impl FnOnce(
            &M::InnerModule,
            &Path,
            HashMap<String, String>,
        ) -> anyhow::Result<(Vec<u8>, Vec<u8>)>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + GatedNetwork<B>,
        M::InnerModule: GatedNetwork<B::InnerBackend>,
    {
        let model = self.adopt_ids(model)?;
        let c = self.config;
        let gated: Vec<usize> = model.layer_gates().iter().map(|l| l.gated).collect();
        let layers = gated.len();
        let dual = c.dual_optimizer();
        let mut set = ConstraintSet::<B>::new(device);
        let multiplier = match c.fixed_penalty {
            // A multiplier that never moves is a fixed penalty coefficient.
            Some(p) => MultiplierConfig::new(DualOptimizer::gradient_ascent(0.0)).with_init(p),
            None => {
                MultiplierConfig::new(dual.clone()).with_restart_on_feasible(!c.no_dual_restarts)
            }
        };
        // What metrics.csv and the plot follow, in the order of the constraint set.
        let mut logged: Vec<Logged> = Vec::new();
        let mut problem = match c.density_target() {
            Some(t) => {
                let targets = if c.per_layer {
                    vec![t; layers]
                } else {
                    vec![t]
                };
                let id = set.add(
                    "density",
                    ConstraintKind::Inequality,
                    targets.len(),
                    FormulationConfig::Lagrangian(multiplier.clone()),
                )?;
                for (k, &t) in targets.iter().enumerate() {
                    let name = if c.per_layer {
                        format!("layer{k}")
                    } else {
                        "global".into()
                    };
                    logged.push(Logged::density(id, k, name, t));
                }
                PruneProblem::new(id, targets)
            }
            None => PruneProblem::budgets_only(),
        };
        if let Some(Bytes(max)) = c.max_flash {
            let export = deploy_bytes(&model.valid())?;
            let flash = if c.structure == Structure::Unit {
                FlashOf::Units(WidthModel::from_export(
                    &export,
                    &gated,
                    &unit_layers(c, layers),
                    Measured::FileBytes,
                )?)
            } else {
                FlashOf::Weights(FlashModel::from_export(&export, &gated)?)
            };
            let min = flash.min_size()?;
            anyhow::ensure!(
                max as usize >= min,
                "--max-flash {}: this network cannot be written in under {min} bytes ({}: \
                 its tables, biases, ungated tensors and {}); give at least that",
                Bytes(max),
                Bytes(min as u64),
                if c.structure == Structure::Unit {
                    "one unit of every layer"
                } else {
                    "the row pointers of its pruned weights"
                }
            );
            let id = set.add(
                "flash",
                ConstraintKind::Inequality,
                1,
                FormulationConfig::Lagrangian(multiplier.clone()),
            )?;
            if self.progress {
                println!(
                    "flash budget {} (the unpruned network: {}, the smallest it can be: {})",
                    Bytes(max),
                    Bytes(flash.full_size() as u64),
                    Bytes(min as u64)
                );
            }
            let constraint = FlashConstraint {
                id,
                model: flash,
                budget: max as usize,
            };
            logged.push(Logged::flash(&constraint));
            problem = problem.with_flash(constraint);
        }
        if let Some(Seconds(max)) = c.max_latency {
            let latency = self.latency_model(&deploy_bytes(&model.valid())?, &gated)?;
            let id = set.add(
                "latency",
                ConstraintKind::Inequality,
                1,
                FormulationConfig::Lagrangian(multiplier.clone()),
            )?;
            let constraint = LatencyConstraint {
                id,
                model: latency,
                budget: max,
            };
            logged.push(Logged::latency(&constraint));
            problem = problem.with_latency(constraint);
        }
        if let Some(Bytes(max)) = c.max_ram {
            let ram = WidthModel::from_export(
                &deploy_bytes(&model.valid())?,
                &gated,
                &unit_layers(c, layers),
                Measured::DeviceRam { batch: c.ram_batch },
            )?;
            if let Some(model) = self.ram_model_needed(ram, max as usize)? {
                let id = set.add(
                    "ram",
                    ConstraintKind::Inequality,
                    1,
                    FormulationConfig::Lagrangian(multiplier.clone()),
                )?;
                let constraint = RamConstraint {
                    id,
                    model,
                    budget: max as usize,
                };
                logged.push(Logged::ram(&constraint));
                problem = problem.with_ram(constraint);
            }
        }
        let steps_per_epoch = c
            .train_limit
            .map_or(self.train.len(), |l| l.min(self.train.len()))
            / c.batch;
        let problem = problem.with_ramp(Ramp::new(
            c.warmup() * steps_per_epoch,
            c.ramp_epochs * steps_per_epoch,
        ));
        let gate_ids = model.gate_ids();
        // The chosen optimizer steps the weights; the gate locations keep Adam (their
        // rate and momentum are tuned for it, see `gate_lr`).
        let weights = c.optimizer.build()?;
        let health = weights.health();
        let mut primal = TwoGroups::new(
            weights,
            AdamConfig::new().with_beta_1(c.gate_momentum as f32).init(),
            gate_ids.clone(),
            c.gate_lr / c.lr,
        );
        // The gates' rate decays from the step every constraint is first met.
        let decay_start = DecayStart::new();
        if !c.constant_gate_lr {
            primal = primal.with_second_decay(c.epochs * steps_per_epoch, decay_start.clone());
        }
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        // One step's row of metrics.csv (only the read steps have values), and the
        // learning-rate decay's start once every constraint is met at its final bound.
        let log_step = |step: usize, info: &StepInfo<'_, B, M>, steps: &mut Vec<Vec<f64>>| {
            if !info.read {
                return;
            }
            if problem.is_frozen() {
                // Gates and multipliers no longer move: their last values (none yet in
                // the warm-up), the new loss.
                let mut row = steps
                    .last()
                    .cloned()
                    .unwrap_or_else(|| vec![f64::NAN; 2 + 3 * logged.len()]);
                row[0] = step as f64;
                row[1] = info.values.loss;
                steps.push(row);
                return;
            }
            let met =
                info.values.constraints.iter().all(|(_, _, strict)| {
                    strict.as_ref().is_some_and(|s| s.iter().all(|&g| g <= 0.0))
                });
            // Met at a ramped bound is not met: the decay waits for the final one.
            if met && problem.ramp().done() {
                decay_start.fire(step + 1);
            }
            let mut row = vec![step as f64, info.values.loss];
            for l in &logged {
                row.extend(l.observe(info, problem.ramp()));
            }
            steps.push(row);
        };
        let (model, epochs, steps) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &problem,
            health,
            MethodState::none(),
            |epoch, first_step, model| {
                // Each step's bound; set here for a resumed run's first step, then after
                // every step for the next.
                problem.ramp().at_step(first_step);
                // The dense warm-up: every gate open and held (frozen: deterministic gates,
                // no constraint). Set at every warm-up epoch's start, so that a resumed
                // run is in the same state.
                let warmup = c.warmup();
                if epoch < warmup {
                    if epoch == 0 && self.progress {
                        println!("epochs 1-{warmup}: dense warm-up (gates open and held)");
                    }
                    problem.freeze();
                    return Ok(open_gates(model, &gate_ids));
                }
                let model = if epoch == warmup && warmup > 0 {
                    problem.thaw();
                    let p = c.gate_init_drop_rate;
                    ranked_gates(
                        model,
                        &gate_ids,
                        (1.0 - p).ln() - p.ln(),
                        c.gate_init_spread,
                        c.gate_init,
                        c.seed,
                    )?
                } else {
                    model
                };
                if epoch + c.finetune_epochs >= c.epochs
                    && c.finetune_epochs > 0
                    && !problem.is_frozen()
                {
                    if self.progress {
                        println!(
                            "epochs {}-{}: fine-tuning the pruned network (gates frozen)",
                            epoch + 1,
                            c.epochs
                        );
                    }
                    problem.freeze();
                }
                Ok(model)
            },
            |step, info, steps| {
                log_step(step, &info, steps);
                // The next step's bound (this step's values were measured against this
                // step's, and logged with it above).
                problem.ramp().at_step(step + 1);
            },
            |eval, test| {
                let (_, dens) = global_density(eval);
                let dens: f32 = dens.into_scalar().elem();
                (accuracy(eval, test), dens as f64)
            },
        )?;
        let eval = model.valid();
        let (_, true_d) = layer_densities(&eval);
        let per_layer: Vec<LayerResult> = eval
            .layer_gates()
            .iter()
            .zip(true_d)
            .map(|(l, d)| {
                let d: f32 = d.into_scalar().elem();
                LayerResult {
                    gated_params: l.gated,
                    kept: (d as f64 * l.gated as f64).round() as usize,
                    density: d as f64,
                }
            })
            .collect();
        let layers_json = layers_json(&per_layer);
        let last = epochs.last();
        let mut summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(),
            "target_density": c.density_target(),
            "per_layer_constraints": c.per_layer, "dual": format!("{dual:?}"),
            "fixed_penalty": c.fixed_penalty, "seed": c.seed, "epochs": c.epochs, "finetune_epochs": c.finetune_epochs, "dense": false,
            "warmup_epochs": c.warmup(), "ramp_epochs": c.ramp_epochs, "gate_init": c.gate_init, "gate_init_drop_rate": c.gate_init_drop_rate,
            "optimizer": c.optimizer.optimizer,
            "gate_lr_schedule": if c.constant_gate_lr { "constant" } else { "cosine" },
            "final": {"test_accuracy": last.map(|e| e.test_accuracy), "density": last.map(|e| e.density)},
            "layers": layers_json,
        });
        // The budgets are judged on the file as written, not on the model of its size.
        let (st, tthr) = export(&eval, &c.out, self.export_meta())?;
        let mut budgets = Vec::new();
        let kept: Vec<usize> = per_layer.iter().map(|l| l.kept).collect();
        if let Some(flash) = &problem.flash {
            let active: Vec<_> = eval.layer_gates().into_iter().map(|l| l.active).collect();
            budgets.push(
                BudgetResult::new("flash", flash.budget as f64, tthr.len() as f64)
                    .with_predicted(flash.model.size_of(&active)? as f64),
            );
        }
        if let Some(latency) = &problem.latency {
            budgets.push(
                self.latency_result(latency.budget, &tthr)?
                    .with_predicted(latency.model.latency(&kept)),
            );
        }
        let ram = self.ram_result(&tthr)?;
        budgets.extend(match (&problem.ram, ram) {
            (Some(r), Some(b)) => {
                let active: Vec<_> = eval.layer_gates().into_iter().map(|l| l.active).collect();
                let predicted = r.model.measure(&r.model.widths_of(&active))?;
                Some(b.with_predicted(predicted as f64))
            }
            (_, b) => b,
        });
        write_metrics(c, &logged, &steps, &budgets)?;
        if !budgets.is_empty() {
            summary["budgets"] = serde_json::to_value(&budgets)?;
            if self.progress {
                for b in &budgets {
                    println!("{}", b.describe());
                }
            }
        }
        self.write_outputs(&st, &tthr, &summary)?;
        let files = vec![
            "metrics.csv",
            "epochs.csv",
            "training.png",
            "density.png",
            "model.mpk",
            "model.safetensors",
            "model.tthr",
            "summary.json",
        ];
        Ok(PruneReport {
            budgets,
            test_accuracy: last.map_or(f64::NAN, |e| e.test_accuracy),
            density: last.map_or(f64::NAN, |e| e.density),
            epochs,
            layers: per_layer,
            summary,
            files,
        })
    }
}

/// `training.png`: the loss at every step (and its mean over each epoch) above the
/// training and test accuracy after each epoch. `rows` start `[step, loss, ...]`.
fn training_plot(
    path: &Path,
    rows: &[Vec<f64>],
    epochs: &[EpochResult],
    steps_per_epoch: usize,
) -> anyhow::Result<()> {
    let per_epoch = steps_per_epoch.max(1);
    // Rows are the logged steps (every step, or every `--log-every`-th): grouped by epoch.
    let epoch_means: Vec<(f64, f64)> = rows
        .chunk_by(|a, b| a[0] as usize / per_epoch == b[0] as usize / per_epoch)
        .map(|chunk| {
            let mean = chunk.iter().map(|r| r[1]).sum::<f64>() / chunk.len() as f64;
            let e = chunk[0][0] as usize / per_epoch;
            (((e + 1) * per_epoch) as f64, mean)
        })
        .collect();
    let accuracy = |f: fn(&EpochResult) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|e| (e.epoch as f64, f(e))).collect()
    };
    line_chart(
        path,
        &[
            Panel {
                title: "Training loss (cross-entropy of the batch; sampled gates)".into(),
                x_label: "step".into(),
                y_label: "loss".into(),
                series: vec![
                    Series {
                        label: "each step".into(),
                        points: rows.iter().map(|r| (r[0], r[1])).collect(),
                    },
                    Series {
                        label: "mean over the epoch".into(),
                        points: epoch_means,
                    },
                ],
            },
            Panel {
                title: format!(
                    "Accuracy after each epoch (deterministic gates; train: the first {} samples)",
                    TRAIN_EVAL_SAMPLES
                ),
                x_label: "epoch".into(),
                y_label: "accuracy".into(),
                series: vec![
                    Series {
                        label: "train".into(),
                        points: accuracy(|e| e.train_accuracy),
                    },
                    Series {
                        label: "test".into(),
                        points: accuracy(|e| e.test_accuracy),
                    },
                ],
            },
        ],
    )
}

/// `summary.json`'s `layers`: each pruned layer's counts.
fn layers_json(layers: &[LayerResult]) -> Vec<serde_json::Value> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::json!({"layer": i, "gated_params": l.gated_params,
                "kept": l.kept as f64, "density": l.density as f32})
        })
        .collect()
}

/// How a constraint's violation maps back to its quantity. `unpruned` is the quantity
/// with every gate open, where a ramp ([`Ramp`]) starts its bound.
#[derive(Clone, Copy, Debug)]
enum ToUnit {
    /// `violation * scale + bound` (densities, RAM, latency), the bound ramped from
    /// `unpruned` to `offset`.
    Linear {
        scale: f64,
        offset: f64,
        unpruned: f64,
    },
    /// `bound * exp(violation)` (the flash budget's log-ratio), the bound ramped from
    /// `unpruned` to `aim`.
    LogRatio { aim: f64, unpruned: f64 },
}

impl ToUnit {
    fn at(self, violation: f64, ramp: &Ramp) -> f64 {
        match self {
            Self::Linear {
                scale,
                offset,
                unpruned,
            } => violation * scale + ramp.bound(offset, unpruned),
            Self::LogRatio { aim, unpruned } => ramp.bound(aim, unpruned) * violation.exp(),
        }
    }
}

/// One quantity `metrics.csv` follows per step (three columns: its expected value, its
/// value with deterministic gates, the multiplier) and `density.png` plots.
struct Logged {
    /// Column prefix (`global`, `layer0`, `flash`).
    name: String,
    /// The constraint and entry it reads.
    id: crate::constrained::ConstraintId,
    entry: usize,
    /// Value of the quantity from a violation (the target or budget added back).
    to_unit: ToUnit,
    /// `density` or `bytes`.
    unit: &'static str,
    /// Its target or budget, in `unit`.
    bound: f64,
}

impl Logged {
    fn density(id: crate::constrained::ConstraintId, entry: usize, name: String, t: f64) -> Self {
        Self {
            name,
            id,
            entry,
            to_unit: ToUnit::Linear {
                scale: 1.0,
                offset: t,
                unpruned: 1.0,
            },
            unit: "density",
            bound: t,
        }
    }

    fn flash(f: &FlashConstraint) -> Self {
        Self {
            name: "flash".into(),
            id: f.id,
            entry: 0,
            to_unit: ToUnit::LogRatio {
                aim: f.bytes_of(0.0),
                unpruned: f.model.full_size() as f64,
            },
            unit: "bytes",
            bound: f.budget as f64,
        }
    }

    fn ram(r: &RamConstraint) -> Self {
        Self {
            name: "ram".into(),
            id: r.id,
            entry: 0,
            to_unit: ToUnit::Linear {
                scale: r.bytes_of(1.0) - r.bytes_of(0.0),
                offset: r.bytes_of(0.0),
                unpruned: r.model.full as f64,
            },
            unit: "bytes",
            bound: r.budget as f64,
        }
    }

    fn latency(l: &LatencyConstraint) -> Self {
        Self {
            name: "latency".into(),
            id: l.id,
            entry: 0,
            to_unit: ToUnit::Linear {
                scale: l.seconds_of(1.0) - l.seconds_of(0.0),
                offset: l.seconds_of(0.0),
                unpruned: l.model.dense,
            },
            unit: "seconds",
            bound: l.budget,
        }
    }

    /// Expected value, deterministic value and multiplier at this step (`ramp` as it was
    /// for the step).
    fn observe<B: AutodiffBackend, M>(&self, info: &StepInfo<'_, B, M>, ramp: &Ramp) -> [f64; 3] {
        let Some((_, v, strict)) = info
            .values
            .constraints
            .iter()
            .find(|(id, _, _)| *id == self.id)
        else {
            return [f64::NAN; 3];
        };
        let at = |x: f64| self.to_unit.at(x, ramp);
        let strict = strict.as_ref().map_or(f64::NAN, |s| s[self.entry]);
        let lambda = info
            .set
            .get(self.id)
            .ok()
            .and_then(|c| c.formulation().multiplier())
            .map_or(f64::NAN, |m| m.to_vec()[self.entry]);
        [at(v[self.entry]), at(strict), lambda]
    }
}

/// `metrics.csv` (per step: loss, then per logged quantity its expected value, its value
/// with deterministic gates and its multiplier: `global_density`, `flash_bytes`, ...) and
/// its plot, `density.png`: one panel per kind of constraint with its target or budget
/// (its title says whether the written model met it), and the multipliers.
fn write_metrics(
    c: &PruneConfig,
    logged: &[Logged],
    steps: &[Vec<f64>],
    budgets: &[BudgetResult],
) -> anyhow::Result<()> {
    let mut header: Vec<String> = vec!["step".into(), "loss".into()];
    for l in logged {
        let (n, u) = (&l.name, l.unit);
        header.extend([
            format!("{n}_expected_{u}"),
            format!("{n}_{u}"),
            format!("{n}_multiplier"),
        ]);
    }
    write_atomic(&c.out.join("metrics.csv"), csv(&header, steps).as_bytes())?;
    let series = |col: usize, label: String| Series {
        label,
        points: steps.iter().map(|r| (r[0], r[col])).collect(),
    };
    let end = steps.len() as f64;
    let mut panels = Vec::new();
    let mut mult = Vec::new();
    // One panel per kind of constraint: the densities together, each budget alone.
    for (unit, name, title, y_label) in [
        (
            "density",
            None,
            "Density".to_string(),
            "fraction of parameters kept",
        ),
        (
            "bytes",
            Some("flash"),
            "Flash (model.tthr)".to_string(),
            "bytes",
        ),
        (
            "bytes",
            Some("ram"),
            "RAM (the device's plan)".to_string(),
            "bytes",
        ),
        (
            "seconds",
            None,
            "Latency (tether-deploy, this host)".to_string(),
            "seconds",
        ),
    ] {
        let mut lines = Vec::new();
        let mut title = title;
        let shown = |l: &&Logged| l.unit == unit && name.is_none_or(|n| l.name == n);
        for (k, l) in logged.iter().enumerate().filter(|(_, l)| shown(l)) {
            let n = &l.name;
            lines.push(series(
                3 + 3 * k,
                format!("{n} {unit} (deterministic gates)"),
            ));
            lines.push(series(2 + 3 * k, format!("{n} expected {unit}")));
            mult.push(series(4 + 3 * k, format!("{n} multiplier")));
            let what = if unit == "density" {
                "target"
            } else {
                "budget"
            };
            lines.push(Series {
                label: format!("{what} {}", l.bound),
                points: vec![(0.0, l.bound), (end, l.bound)],
            });
            if let Some(b) = budgets.iter().find(|b| b.name == l.name) {
                title = format!(
                    "{title}: budget {}, written {} ({})",
                    b.budget,
                    b.achieved,
                    if b.met { "met" } else { "NOT met" }
                );
            }
        }
        if !lines.is_empty() {
            panels.push(Panel {
                title,
                x_label: "step".into(),
                y_label: y_label.into(),
                series: lines,
            });
        }
    }
    // Where a multiplier fell to 0 from above: the dual restart (Gallego-Posada et al.
    // 2022, Sec. 4.2) resets it once the constraint is met, so the gates stop being
    // pushed the moment the target is reached; marked, so the drop is not a mystery.
    let top = steps
        .iter()
        .flat_map(|r| (0..logged.len()).map(move |k| r[4 + 3 * k]))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let drops: Vec<f64> = steps
        .windows(2)
        .filter(|w| (0..logged.len()).any(|k| w[0][4 + 3 * k] > 0.0 && w[1][4 + 3 * k] == 0.0))
        .map(|w| w[1][0])
        .collect();
    let restarts = c.fixed_penalty.is_none() && !c.no_dual_restarts;
    let mut title = "Lagrange multipliers".to_string();
    if !drops.is_empty() {
        let what = if restarts {
            "reset to 0 by the dual restart (constraint met)"
        } else {
            "projected to 0 (lambda >= 0)"
        };
        let times = match drops.len() {
            1 => "once".to_string(),
            n => format!("{n} times"),
        };
        title = format!("{title}: marks where one is {what}, {times}");
        mult.push(vertical_marks(
            if restarts {
                "dual restart".into()
            } else {
                "projected to 0".into()
            },
            &drops,
            0.0,
            top.max(1e-9),
        ));
    }
    panels.push(Panel {
        title,
        x_label: "step".into(),
        y_label: "lambda".into(),
        series: mult,
    });
    line_chart(&c.out.join("density.png"), &panels)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_round_trips_through_json_with_the_optimizer_at_the_top_level() {
        let config = PruneConfig {
            model: Model::Lenet5.into(),
            structure: Structure::Block1x4,
            fixed_penalty: Some(0.5),
            ..PruneConfig::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["model"], "lenet5");
        assert_eq!(json["structure"], "block1x4");
        assert_eq!(json["optimizer"], "adam");
        assert_eq!(json["momentum"], 0.9);
        let back: PruneConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        // Missing keys take the defaults.
        let partial: PruneConfig =
            serde_json::from_str(r#"{"epochs": 7, "optimizer": "sgd"}"#).unwrap();
        assert_eq!(partial.epochs, 7);
        assert_eq!(
            partial.optimizer.optimizer,
            crate::optim::OptimizerKind::Sgd
        );
        assert_eq!(partial.batch, PruneConfig::default().batch);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |c: PruneConfig| c.validate().unwrap_err().to_string();
        let e = bad(PruneConfig {
            target_density: Some(0.0),
            ..PruneConfig::default()
        });
        assert!(e.contains("--target-density"), "{e}");
        let e = bad(PruneConfig {
            epochs: 2,
            finetune_epochs: 2,
            ..PruneConfig::default()
        });
        assert!(e.contains("--finetune-epochs (2)"), "{e}");
        let e = bad(PruneConfig {
            dual_lr: -1.0,
            ..PruneConfig::default()
        });
        assert!(!e.is_empty());
        assert!(PruneConfig::default().validate().is_ok());
        let e = bad(PruneConfig {
            epochs: 4,
            warmup_epochs: Some(3),
            finetune_epochs: 1,
            ..PruneConfig::default()
        });
        assert!(e.contains("--warmup-epochs (3)"), "{e}");
        let e = bad(PruneConfig {
            method: Method::Gmp,
            epochs: 10,
            warmup_epochs: Some(2),
            ..PruneConfig::default()
        });
        assert!(e.contains("L0 method"), "{e}");
        let e = bad(PruneConfig {
            method: Method::Gmp,
            ramp_epochs: 4,
            ..PruneConfig::default()
        });
        assert!(e.contains("--ramp-epochs belongs to the L0 method"), "{e}");
        let e = bad(PruneConfig {
            epochs: 10,
            ramp_epochs: 6,
            finetune_epochs: 2,
            ..PruneConfig::default()
        });
        assert!(
            e.contains("--ramp-epochs (6) with the warm-up (3) and --finetune-epochs (2)"),
            "{e}"
        );
        assert!(
            PruneConfig {
                epochs: 10,
                ramp_epochs: 7,
                ..PruneConfig::default()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn a_ramped_bound_maps_back_to_the_quantity_it_was_measured_against() {
        let ramp = Ramp::new(0, 100);
        ramp.at_step(50);
        let density = ToUnit::Linear {
            scale: 1.0,
            offset: 0.1,
            unpruned: 1.0,
        };
        let bound = 0.1 + 0.9 * 0.125;
        // A violation of 0 is the bound of the step, not the final target.
        assert!((density.at(0.0, &ramp) - bound).abs() < 1e-12);
        assert!((density.at(0.02, &ramp) - (bound + 0.02)).abs() < 1e-12);
        let flash = ToUnit::LogRatio {
            aim: 32_000.0,
            unpruned: 1_000_000.0,
        };
        let aim = 32_000.0 + 968_000.0 * 0.125;
        assert!((flash.at(0.0, &ramp) - aim).abs() < 1e-6);
        assert!((flash.at(2f64.ln(), &ramp) - 2.0 * aim).abs() < 1e-6);
        ramp.at_step(100);
        assert!((flash.at(0.0, &ramp) - 32_000.0).abs() < 1e-9);
    }

    #[test]
    fn the_warm_up_defaults_to_three_tenths_of_the_epochs_for_l0_only() {
        let c = |epochs, finetune_epochs, method| PruneConfig {
            epochs,
            finetune_epochs,
            method,
            ..PruneConfig::default()
        };
        assert_eq!(c(10, 0, Method::L0).warmup(), 3);
        assert_eq!(c(3, 0, Method::L0).warmup(), 0);
        assert_eq!(c(4, 0, Method::L0).warmup(), 1);
        // It leaves an epoch for the gates after the fine-tuning.
        assert_eq!(c(4, 3, Method::L0).warmup(), 0);
        assert_eq!(c(10, 0, Method::Magnitude).warmup(), 0);
        let old = PruneConfig {
            warmup_epochs: Some(0),
            ..c(10, 0, Method::L0)
        };
        assert_eq!(old.warmup(), 0);
        let dense = PruneConfig {
            dense: true,
            ..c(10, 0, Method::L0)
        };
        assert_eq!(dense.warmup(), 0);
        let budget = PruneConfig {
            max_flash: Some(Bytes(32 * 1024)),
            ..c(10, 0, Method::L0)
        };
        assert_eq!(budget.warmup(), 3);
        let asked = PruneConfig {
            warmup_epochs: Some(3),
            ..budget
        };
        assert_eq!(asked.warmup(), 3);
    }
}
