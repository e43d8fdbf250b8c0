//! `tether-train prune`: train a gated network under a density constraint. The job itself
//! is the library's [`tether_train::tasks::prune_run`]; this file turns the flags (and
//! `--config`) into its [`PruneConfig`] and prints what it reports.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::ArgMatches;
use tether_train::data::mnist::{ImageSet, MnistKind, Split};
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::optim::OptimizerArgs;
use tether_train::tasks::budget::units::{Bytes, Seconds};
use tether_train::tasks::prune_run::{
    DualUpdate, Method, ModelSpec, PruneConfig, PruneReport, Structure, run_with_data,
};

#[derive(Clone, Debug, clap::Args)]
pub struct PruneArgs {
    /// Network to prune: a built-in one (lenet300, lenet5, resnet), or your own as an
    /// ONNX file (`torch.onnx.export`'s, weights in a `.onnx.data` file beside it or
    /// inside), whose Linear and Conv weights are gated.
    #[arg(long, default_value = "lenet300")]
    model: ModelSpec,
    /// How to prune: l0 (hard-concrete gates under the constraints), or a magnitude
    /// baseline with the same epochs, optimizer, data and outputs: magnitude (one-shot
    /// global magnitude after the first half of the epochs, then fine-tuning) or gmp (Zhu
    /// & Gupta's cubic schedule over the first three quarters). --finetune-epochs sets
    /// how many epochs fine-tune at the end.
    #[arg(long, value_enum, default_value_t = Method::L0)]
    method: Method,
    /// Dataset.
    #[arg(long, value_enum, default_value_t = MnistKind::Mnist)]
    dataset: MnistKind,
    /// Target fraction of gated parameters kept, in (0, 1]. Default 0.1, or none when a
    /// budget (--max-flash) is given; 1 turns the density constraint off (a budget is then
    /// needed).
    #[arg(long)]
    target_density: Option<f64>,
    /// Flash budget: the written model.tthr takes at most this much (64KiB, 256K, 1.5MB).
    /// A constraint of its own, met exactly by the file as written (its size a function
    /// of each layer's kept weights, dense or CSR as the writer stores them).
    #[arg(long, value_name = "SIZE")]
    max_flash: Option<Bytes>,
    /// Latency budget: one inference of the written model in tether-deploy on this host
    /// (single thread, --latency-batch samples) takes at most this long (2.5ms, 800us). The
    /// deploy kernels are timed on the network before training to fit a per-layer cost
    /// model; the end of the run measures the written model as `tether-deploy bench` does.
    #[arg(long, value_name = "TIME")]
    max_latency: Option<Seconds>,
    /// The batch size --max-latency is for.
    #[arg(long, default_value_t = 1)]
    latency_batch: usize,
    /// One constraint per layer (each layer at the target) instead of one global constraint.
    #[arg(long)]
    per_layer: bool,
    /// What a gate removes.
    #[arg(long, value_enum, default_value_t = Structure::Weight)]
    structure: Structure,
    /// Multiplier update rule.
    #[arg(long, value_enum, default_value_t = DualUpdate::Nupi)]
    dual: DualUpdate,
    /// Dual step size. Larger steps drive the density down faster but overshoot below the
    /// target, and gates pushed shut reopen slowly.
    #[arg(long, default_value_t = 0.1)]
    dual_lr: f64,
    /// nuPI proportional gain.
    #[arg(long, default_value_t = 2.0)]
    kp: f64,
    /// Keep the multiplier when the density drops below the target, instead of the dual
    /// restart (reset to 0) that the controlled-sparsity paper recommends.
    #[arg(long)]
    no_dual_restarts: bool,
    /// Baseline: instead of a constraint, a fixed L0 penalty with this coefficient (the
    /// multiplier is frozen at it). The density it lands at is whatever it lands at.
    #[arg(long, conflicts_with_all = ["dual", "dual_lr", "kp", "no_dual_restarts"])]
    fixed_penalty: Option<f64>,
    /// Baseline: train the same network without gates or constraints, with the same
    /// budget (epochs, batch, learning rate), to measure what pruning costs in accuracy.
    #[arg(long, conflicts_with_all = ["per_layer", "structure", "dual", "dual_lr", "kp", "no_dual_restarts", "fixed_penalty", "gate_lr", "gate_init_spread", "gate_momentum", "constant_gate_lr", "target_density", "max_flash", "max_latency"])]
    dense: bool,
    /// Epochs over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Of `--epochs`, the last N fine-tune the pruned network: the gates frozen where
    /// they are (deterministic, as they will be folded), the constraint off, the weights
    /// trained without the sampled gates' noise. The budget stays `--epochs`.
    #[arg(long, default_value_t = 0, conflicts_with_all = ["dense", "fixed_penalty"])]
    finetune_epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate of the weights (Adam and Shampoo with Adam grafting: 1e-3; SGD with
    /// momentum wants about 0.05).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[command(flatten)]
    optimizer: OptimizerArgs,
    /// Keep the gates' learning rate constant instead of decaying it to 0 on a cosine from
    /// the step the density first meets the target to the end of the run. At a constant rate, gates whose gradient is mostly noise random-walk and
    /// the density drifts under the target (MNIST LeNet-300-100, target 0.5, 10 epochs:
    /// 0.488). Decaying the weights' rate too cost accuracy at 0.1 (0.9750 vs 0.9795).
    #[arg(long)]
    constant_gate_lr: bool,
    /// Adam learning rate of the gate locations. The default suits runs of a thousand
    /// steps or more; short runs need more (a few hundred steps: 0.3) for the gates to
    /// reach the target in time.
    #[arg(long, default_value_t = 0.05)]
    gate_lr: f64,
    /// Adam's first-moment decay (beta1) for the gate locations. With momentum (0.9) the
    /// gates coast on after the multiplier lets go and carry the density below the target;
    /// gates below the test-time threshold get almost no gradient back, so the undershoot
    /// stays (MNIST LeNet-300-100 at target 0.5: 0.484 with 0.9, 0.4975 with 0).
    #[arg(long, default_value_t = 0.0)]
    gate_momentum: f64,
    /// Standard deviation of the initial gate locations (log alpha). Spread gates leave
    /// the test-time threshold one by one, so the true density falls smoothly and the
    /// multiplier can settle on the target; alike gates (0.01, the reference code's) cross
    /// together and the density jumps below the target (0.4825 at target 0.5).
    #[arg(long, default_value_t = 2.0)]
    gate_init_spread: f64,
    /// Use only the first N training images (quick runs, tests).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on only the first N test images (quick runs, tests).
    #[arg(long)]
    test_limit: Option<usize>,
    /// Seed of the initialisation and the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/prune")]
    out: PathBuf,
    /// Your own training data instead of --dataset: an image folder (one subfolder per
    /// class, PNG/JPEG), a CSV (--label-column), NPY/NPZ arrays (x and y) or IDX files.
    /// Normalised with the training split's per-channel statistics.
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Test data for --data; without it --holdout of --data is held out.
    #[arg(long, value_name = "PATH", requires = "data")]
    test_data: Option<PathBuf>,
    /// Without --test-data: the fraction of --data held out as the test set (the same
    /// fraction of every class).
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Image folders: resize every image to HxW (e.g. 32x32).
    #[arg(long, value_name = "HxW")]
    image_size: Option<String>,
    /// CSV data: the column holding the labels.
    #[arg(long, value_name = "NAME")]
    label_column: Option<String>,
    /// CSV data without a header row: columns are named by position, from 0
    /// (`--label-column 64` is the 65th).
    #[arg(long)]
    no_header: bool,
    /// Read the settings from this TOML file: one key per flag, its name with underscores
    /// (`target_density = 0.2`). A flag given on the command line overrides the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

impl PruneArgs {
    /// The settings these flags give (defaults included).
    fn to_config(&self) -> PruneConfig {
        PruneConfig {
            model: self.model.clone(),
            method: self.method,
            data: self.data.clone(),
            test_data: self.test_data.clone(),
            holdout: self.holdout,
            image_size: self.image_size.clone(),
            label_column: self.label_column.clone(),
            no_header: self.no_header,
            dataset: self.dataset,
            target_density: self.target_density,
            max_flash: self.max_flash,
            max_latency: self.max_latency,
            latency_batch: self.latency_batch,
            per_layer: self.per_layer,
            structure: self.structure,
            dual: self.dual,
            dual_lr: self.dual_lr,
            kp: self.kp,
            no_dual_restarts: self.no_dual_restarts,
            fixed_penalty: self.fixed_penalty,
            dense: self.dense,
            epochs: self.epochs,
            finetune_epochs: self.finetune_epochs,
            batch: self.batch,
            lr: self.lr,
            optimizer: self.optimizer.clone(),
            constant_gate_lr: self.constant_gate_lr,
            gate_lr: self.gate_lr,
            gate_momentum: self.gate_momentum,
            gate_init_spread: self.gate_init_spread,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            seed: self.seed,
            out: self.out.clone(),
        }
    }
}

/// `matches` are the prune subcommand's, for `--config` (which flags were given).
pub fn run(args: PruneArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let flags = args.to_config();
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &flags, matches)?,
        None => flags,
    };
    // Every setting and the output folder are checked before the data is read.
    config.validate()?;
    tether_train::io::check_output_dir(&config.out, "--out")?;
    if config.is_own() {
        let report = run_on(args.device.device, OwnTask { config: &config })??;
        print_report(&config, &report);
        return Ok(());
    }
    let train = ImageSet::load(config.dataset, Split::Train)?;
    let test = ImageSet::load(config.dataset, Split::Test)?;
    let task = Task {
        config: &config,
        train: &train,
        test: &test,
    };
    let report = run_on(args.device.device, task)??;
    print_report(&config, &report);
    Ok(())
}

fn print_report(config: &PruneConfig, report: &PruneReport) {
    for l in report.summary["layers"].as_array().into_iter().flatten() {
        println!(
            "layer {}: kept {} of {} ({:.4})",
            l["layer"],
            l["kept"],
            l["gated_params"],
            l["density"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "wrote {}/{{{}}}",
        config.out.display(),
        report.files.join(", ")
    );
}

/// The own-model / own-data job: the library loads the data itself.
struct OwnTask<'a> {
    config: &'a PruneConfig,
}

impl BackendTask for OwnTask<'_> {
    type Output = anyhow::Result<PruneReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        tether_train::tasks::prune_run::run::<B>(self.config, &device, true)
    }
}

struct Task<'a> {
    config: &'a PruneConfig,
    train: &'a ImageSet,
    test: &'a ImageSet,
}

impl BackendTask for Task<'_> {
    type Output = anyhow::Result<PruneReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_with_data::<B>(self.config, self.train, self.test, &device, true)
    }
}
