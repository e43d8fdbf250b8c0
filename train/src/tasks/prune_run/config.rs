//! The settings of a pruning run: [`PruneConfig`], every flag of `tether-train prune`,
//! and the choices it names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tether_models::graph::NormSites;

use crate::constrained::{DualOptimizer, NuPiConfig};
use crate::data::mnist::MnistKind;
use crate::optim::OptimizerArgs;
use crate::resume::CheckpointEvery;
use crate::tasks::budget::units::{Bytes, Seconds};
use crate::tasks::prune_warmup::GateInit;

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
pub(super) const NORM_CALIBRATION_SAMPLES: usize = 512;

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
    pub(super) fn magnitude_finetune_epochs(&self) -> usize {
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
    pub(super) fn goal(&self) -> String {
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
    pub(super) fn target(&self) -> f64 {
        self.density_target().unwrap_or(1.0)
    }
}

/// Training samples the per-epoch training accuracy is measured on (the first ones): a
/// forward pass over all of a large set every epoch would cost a sizeable part of an
/// epoch's training.
pub const TRAIN_EVAL_SAMPLES: usize = 10_000;
