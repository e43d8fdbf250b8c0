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
//!     target_density: 0.1,
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
use burn::tensor::ElementConversion;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use tether_models::classifier::Classifier;
use tether_models::export::{
    graph_to_safetensors, lenet5_to_safetensors, mlp_to_safetensors, resnet_to_safetensors,
};
use tether_models::gated::GatedNetwork;
use tether_models::gated_mlp::GatedMlpConfig;
use tether_models::graph::{GraphNet, GraphNetConfig};
use tether_models::l0::{GateStructure, HardConcreteConfig};
use tether_models::lenet5::{GatedLenet5Config, Lenet5Config};
use tether_models::mlp::MlpConfig;
use tether_models::resnet::{GatedResnetConfig, ResnetConfig};
use tether_models::to_deploy::{Storage, lenet5_to_deploy, mlp_to_deploy, resnet_to_deploy};

use crate::constrained::{
    ConstrainedOptimizer, ConstrainedProblem, ConstraintKind, ConstraintSet, DualOptimizer,
    FormulationConfig, MultiplierConfig, NuPiConfig, UpdateScheme,
};
use crate::data::batches::{Batch, DeviceSet};
use crate::data::mnist::{ImageSet, MnistKind, Split};
use crate::io::{csv, write_atomic};
use crate::optim::shampoo::ShampooHealth;
use crate::optim::{DecayStart, OptimizerArgs, TwoGroups};
use crate::plot::{Panel, Series, line_chart};
use crate::tasks::classify::ClassifyProblem;
use crate::tasks::metrics;
use crate::tasks::prune::{PruneProblem, accuracy, global_density, layer_densities};
use crate::trainer::{FitOptions, StepInfo, fit};

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PruneConfig {
    /// Network to prune.
    pub model: ModelSpec,
    /// Dataset.
    pub dataset: MnistKind,
    /// Target fraction of gated parameters kept, in (0, 1].
    pub target_density: f64,
    /// One constraint per layer (each layer at the target) instead of one global one.
    pub per_layer: bool,
    /// What a gate removes.
    pub structure: Structure,
    /// Multiplier update rule.
    pub dual: DualUpdate,
    /// Dual step size: larger steps drive the density down faster but overshoot below the
    /// target, and gates pushed shut reopen slowly.
    pub dual_lr: f64,
    /// nuPI's proportional gain.
    pub kp: f64,
    /// Keep the multiplier when the density drops below the target, instead of the dual
    /// restart (reset to 0) that the controlled-sparsity paper recommends.
    pub no_dual_restarts: bool,
    /// Baseline: a fixed L0 penalty with this coefficient instead of a constraint (the
    /// multiplier frozen at it); the dual settings are then unused.
    pub fixed_penalty: Option<f64>,
    /// Baseline: the same network without gates or constraints and the same budget; the
    /// gate, constraint and fine-tuning settings are then unused.
    pub dense: bool,
    /// Epochs over the training set.
    pub epochs: usize,
    /// Of `epochs`, the last N train the weights with the gates frozen where they are
    /// (deterministic, as they will be folded) and the constraint off: no sampling noise.
    pub finetune_epochs: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Learning rate of the weights (Adam: 1e-3; SGD with momentum wants about 0.05).
    pub lr: f64,
    /// The weights' optimizer (the gate locations always use Adam); its keys sit at the
    /// top level of a config file, as its flags do on the command line.
    #[serde(flatten)]
    pub optimizer: OptimizerArgs,
    /// Keep the gates' learning rate constant instead of decaying it to 0 on a cosine from
    /// the step the density first meets the target (at a constant rate, gates whose
    /// gradient is mostly noise random-walk and the density drifts under the target).
    pub constant_gate_lr: bool,
    /// Adam learning rate of the gate locations (runs of a few hundred steps need more,
    /// about 0.3, for the gates to reach the target in time).
    pub gate_lr: f64,
    /// Adam's beta1 for the gate locations: with momentum the gates coast on after the
    /// multiplier lets go and carry the density below the target.
    pub gate_momentum: f64,
    /// Standard deviation of the initial gate locations: spread gates cross the test-time
    /// threshold one by one, so the true density falls smoothly to the target.
    pub gate_init_spread: f64,
    /// Use only the first N training images (quick runs, tests).
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images (quick runs, tests).
    pub test_limit: Option<usize>,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
    /// Output folder.
    pub out: PathBuf,
    /// The user's own training data instead of [`PruneConfig::dataset`]: an image folder
    /// (one subfolder per class), a CSV (`label_column`), NPY/NPZ arrays or IDX files
    /// (see [`crate::data::own`]).
    pub data: Option<PathBuf>,
    /// The test data for `data`; without it `holdout` of `data` is held out.
    pub test_data: Option<PathBuf>,
    /// Without `test_data`: the fraction of `data` held out as the test set (stratified).
    pub holdout: f64,
    /// Image folders: resize every image to `HxW`.
    pub image_size: Option<String>,
    /// CSV data: the label column's name.
    pub label_column: Option<String>,
    /// CSV data without a header row: columns are named by position (`"0"`, `"1"`, ...).
    pub no_header: bool,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            model: ModelSpec::Builtin(Model::Lenet300),
            dataset: MnistKind::Mnist,
            target_density: 0.1,
            per_layer: false,
            structure: Structure::Weight,
            dual: DualUpdate::Nupi,
            dual_lr: 0.1,
            kp: 2.0,
            no_dual_restarts: false,
            fixed_penalty: None,
            dense: false,
            epochs: 3,
            finetune_epochs: 0,
            batch: 128,
            lr: 1e-3,
            optimizer: OptimizerArgs::default(),
            constant_gate_lr: false,
            gate_lr: 0.05,
            gate_momentum: 0.0,
            gate_init_spread: 2.0,
            train_limit: None,
            test_limit: None,
            seed: 0,
            out: PathBuf::from("out/prune"),
            data: None,
            test_data: None,
            holdout: 0.2,
            image_size: None,
            label_column: None,
            no_header: false,
        }
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
        anyhow::ensure!(
            self.target_density > 0.0 && self.target_density <= 1.0,
            "--target-density must lie in (0, 1], got {}",
            self.target_density
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
        anyhow::ensure!(
            self.holdout > 0.0 && self.holdout < 1.0,
            "--holdout must lie in (0, 1), got {}",
            self.holdout
        );
        anyhow::ensure!(
            self.test_data.is_none() || self.data.is_some(),
            "--test-data needs --data (the training data)"
        );
        if let Some(size) = &self.image_size {
            crate::data::own::parse_image_size(size)
                .map_err(|e| anyhow::anyhow!("--image-size {size:?}: {e}"))?;
        }
        let onnx = match &self.model {
            ModelSpec::Onnx(p) => Some(p.clone()),
            ModelSpec::Builtin(_) => None,
        };
        for (flag, path) in [
            ("--model", &onnx),
            ("--data", &self.data),
            ("--test-data", &self.test_data),
        ] {
            if let Some(p) = path {
                anyhow::ensure!(p.exists(), "{flag} {}: no such file or folder", p.display());
            }
        }
        Ok(())
    }

    /// True when the run uses the user's own network or data.
    pub fn is_own(&self) -> bool {
        matches!(self.model, ModelSpec::Onnx(_)) || self.data.is_some()
    }

    /// The multiplier's update rule these settings describe.
    pub fn dual_optimizer(&self) -> DualOptimizer {
        match self.dual {
            DualUpdate::Ga => DualOptimizer::gradient_ascent(self.dual_lr),
            DualUpdate::Nupi => DualOptimizer::NuPi(NuPiConfig::new(self.dual_lr).with_kp(self.kp)),
        }
    }

    /// The target density of the run: 1 for the dense baseline.
    fn target(&self) -> f64 {
        if self.dense { 1.0 } else { self.target_density }
    }
}

/// One epoch's measurement on the test set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochResult {
    /// 1-based epoch.
    pub epoch: usize,
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
    config.validate()?;
    if config.is_own() {
        return run_own::<B>(config, device, progress);
    }
    let train = ImageSet::load(config.dataset, Split::Train)?;
    let test = ImageSet::load(config.dataset, Split::Test)?;
    run_with_data::<B>(config, &train, &test, device, progress)
}

/// The own-model / own-data job: imports the ONNX network (its leading axis as the batch
/// axis), loads the data (checked against the network's input shape and output size,
/// normalised with the training split's statistics), then trains [`GraphNet`] (or a
/// built-in network on the user's data) exactly as the built-in job does. Writes the
/// same outputs plus `model.onnx` for an ONNX network.
fn run_own<B: AutodiffBackend>(
    config: &PruneConfig,
    device: &B::Device,
    progress: bool,
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
    let (train, test) = match &config.data {
        Some(data) => {
            let load = crate::data::own::LoadOptions {
                image_size: match &config.image_size {
                    Some(s) => Some(
                        crate::data::own::parse_image_size(s).map_err(|e| anyhow::anyhow!(e))?,
                    ),
                    None => None,
                },
                label_column: config.label_column.clone(),
                header: !config.no_header,
                ..Default::default()
            };
            let prep = crate::data::own::PrepareOptions {
                holdout: config.holdout,
                seed: config.seed,
                input_shape: Some(input_shape.clone()),
                ..Default::default()
            };
            let p = crate::data::own::prepare(data, config.test_data.as_deref(), &load, &prep)?;
            (Samples::Own(p.train), Samples::Own(p.test))
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
    let job = Job {
        config,
        train: &train,
        test: &test,
        progress,
    };
    let Some(bytes) = graph else {
        // A built-in network on the user's 28x28 data: the same run as on MNIST.
        return job.train_builtin::<B>(device);
    };
    let structure = match config.structure {
        Structure::Weight => GateStructure::Weight,
        Structure::Unit => GateStructure::OutputUnit,
        Structure::Block1x4 => GateStructure::Block1x4,
    };
    let gates = HardConcreteConfig::new().with_init_spread(config.gate_init_spread);
    let net_config = GraphNetConfig {
        structure: (!config.dense).then_some(structure),
        gates,
    };
    let net = GraphNet::<B>::from_model_bytes(&bytes, &net_config, device)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let export = |eval: &GraphNet<B::InnerBackend>, out: &Path, meta| {
        save_record(eval.clone(), &recorder, out)?;
        let tthr = eval.to_deploy()?;
        let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
        let model = tether_deploy::Model::parse(&aligned)?;
        let onnx = tether_deploy::onnx::export_bytes(&model, &Default::default())?;
        write_atomic(&out.join("model.onnx"), &onnx)?;
        Ok((graph_to_safetensors(eval, meta)?, tthr))
    };
    let mut report = if config.dense {
        job.train_dense(net, device, export)?
    } else {
        job.train(net, device, export)?
    };
    report.files.push("model.onnx");
    Ok(report)
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
    config.validate()?;
    B::seed(device, config.seed);
    let (train, test) = (
        Samples::Mnist(Cow::Borrowed(train)),
        Samples::Mnist(Cow::Borrowed(test)),
    );
    Job {
        config,
        train: &train,
        test: &test,
        progress,
    }
    .train_builtin::<B>(device)
}

impl Job<'_> {
    /// Trains the built-in network of the config (pruned or dense) on the job's data.
    fn train_builtin<B: AutodiffBackend>(self, device: &B::Device) -> anyhow::Result<PruneReport> {
        let config = self.config;
        let job = self;
        let &ModelSpec::Builtin(builtin) = &config.model else {
            anyhow::bail!("train_builtin on an ONNX network");
        };
        let structure = match config.structure {
            Structure::Weight => GateStructure::Weight,
            Structure::Unit => GateStructure::OutputUnit,
            Structure::Block1x4 => GateStructure::Block1x4,
        };
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        if config.dense {
            return match builtin {
                Model::Lenet300 => {
                    let model = MlpConfig::new(vec![784, 300, 100, 10]).init::<B>(device);
                    job.train_dense(model, device, |eval, out, meta| {
                        save_record(eval.clone(), &recorder, out)?;
                        Ok((
                            mlp_to_safetensors(eval, meta)?,
                            mlp_to_deploy(eval, Storage::Smallest)?,
                        ))
                    })
                }
                Model::Resnet => {
                    let model = ResnetConfig::new().init::<B>(device);
                    job.train_dense(model, device, |eval, out, meta| {
                        save_record(eval.clone(), &recorder, out)?;
                        Ok((
                            resnet_to_safetensors(eval, meta)?,
                            resnet_to_deploy(eval, Storage::Smallest)?,
                        ))
                    })
                }
                Model::Lenet5 => {
                    let model = Lenet5Config::new().init::<B>(device);
                    job.train_dense(model, device, |eval, out, meta| {
                        save_record(eval.clone(), &recorder, out)?;
                        Ok((
                            lenet5_to_safetensors(eval, meta)?,
                            lenet5_to_deploy(eval, Storage::Smallest)?,
                        ))
                    })
                }
            };
        }
        let gates = HardConcreteConfig::new().with_init_spread(config.gate_init_spread);
        match builtin {
            Model::Lenet300 => {
                let model = GatedMlpConfig::new(vec![784, 300, 100, 10], structure)
                    .with_gates(gates)
                    .init::<B>(device);
                job.train(model, device, |eval, out, meta| {
                    let folded = eval.fold();
                    save_record(folded.clone(), &recorder, out)?;
                    Ok((
                        mlp_to_safetensors(&folded, meta)?,
                        mlp_to_deploy(&folded, Storage::Smallest)?,
                    ))
                })
            }
            Model::Resnet => {
                let model = GatedResnetConfig::new(structure)
                    .with_gates(gates)
                    .init::<B>(device);
                job.train(model, device, |eval, out, meta| {
                    let folded = eval.fold();
                    save_record(folded.clone(), &recorder, out)?;
                    Ok((
                        resnet_to_safetensors(&folded, meta)?,
                        resnet_to_deploy(&folded, Storage::Smallest)?,
                    ))
                })
            }
            Model::Lenet5 => {
                let model = GatedLenet5Config::new(structure)
                    .with_gates(gates)
                    .init::<B>(device);
                job.train(model, device, |eval, out, meta| {
                    let folded = eval.fold();
                    save_record(folded.clone(), &recorder, out)?;
                    Ok((
                        lenet5_to_safetensors(&folded, meta)?,
                        lenet5_to_deploy(&folded, Storage::Smallest)?,
                    ))
                })
            }
        }
    }
}

/// Saves a burn record as `out/model.mpk` (the recorder appends ".mpk": write under another
/// name, then rename into place).
fn save_record<B: Backend, M: Module<B>>(
    module: M,
    recorder: &NamedMpkFileRecorder<FullPrecisionSettings>,
    out: &Path,
) -> anyhow::Result<()> {
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
    /// The user's data.
    Own(crate::data::own::LabelledSet),
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
            Samples::Own(s) => s.class_names.len(),
        }
    }

    /// The first `limit` samples on the device.
    fn device_set<B: Backend>(&self, limit: Option<usize>, device: &B::Device) -> DeviceSet<B> {
        match self {
            Samples::Mnist(s) => DeviceSet::new(s, limit, device),
            Samples::Own(s) => {
                let n = limit.map_or(s.len(), |l| l.min(s.len()));
                let len = s.sample_len();
                DeviceSet::from_features(&s.features[..n * len], len, &s.labels_i64()[..n], device)
            }
        }
    }
}

/// One run's settings and data.
struct Job<'a> {
    config: &'a PruneConfig,
    train: &'a Samples<'a>,
    test: &'a Samples<'a>,
    progress: bool,
}

impl Job<'_> {
    /// The epochs of one run, pruned or dense: [`fit`] over each epoch's shuffled batches
    /// (`on_step` gets the global step index), then `evaluate` (test accuracy, density) on
    /// the test set, written to `epochs.csv`.
    #[allow(clippy::too_many_arguments)]
    fn run_epochs<B, M, O, P>(
        &self,
        mut model: M,
        device: &B::Device,
        opt: &mut ConstrainedOptimizer<O>,
        set: &mut ConstraintSet<B>,
        problem: &P,
        health: Option<ShampooHealth>,
        on_epoch_start: impl Fn(usize),
        mut on_step: impl FnMut(usize, StepInfo<'_, B, M>),
        evaluate: impl Fn(&M::InnerModule, &[Batch<B::InnerBackend>]) -> (f64, f64),
    ) -> anyhow::Result<(M, Vec<EpochResult>)>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: burn::optim::Optimizer<M, B>,
        P: ConstrainedProblem<B, M, Input = Batch<B>>,
    {
        let c = self.config;
        let train = self.train.device_set::<B>(c.train_limit, device);
        let test = self
            .test
            .device_set::<B::InnerBackend>(c.test_limit, device);
        let test_batches = test.in_order(1000);
        let mut epochs = Vec::new();
        let mut offset = 0;
        for epoch in 0..c.epochs {
            on_epoch_start(epoch);
            let batches = train.epoch(c.batch, c.seed, epoch as u64, true);
            anyhow::ensure!(!batches.is_empty(), "fewer training images than one batch");
            let label = self
                .progress
                .then(|| format!("epoch {}/{}", epoch + 1, c.epochs));
            model = fit(
                model,
                opt,
                set,
                problem,
                &FitOptions::new(batches.len(), label).with_health(health.clone()),
                |s| batches[s].clone(),
                |info| on_step(offset + info.step, info),
            )?;
            offset += batches.len();
            let (test_accuracy, density) = evaluate(&model.valid(), &test_batches);
            if self.progress {
                println!(
                    "epoch {}: test accuracy {test_accuracy:.4}, density {density:.4} (target {})",
                    epoch + 1,
                    c.target()
                );
            }
            epochs.push(EpochResult {
                epoch: epoch + 1,
                test_accuracy,
                density,
            });
        }
        let rows: Vec<Vec<f64>> = epochs
            .iter()
            .map(|e| vec![e.epoch as f64, e.test_accuracy, e.density])
            .collect();
        write_atomic(
            &c.out.join("epochs.csv"),
            csv(
                &["epoch".into(), "test_accuracy".into(), "density".into()],
                &rows,
            )
            .as_bytes(),
        )?;
        Ok((model, epochs))
    }

    /// The metadata written into the safetensors header.
    fn export_meta(&self) -> HashMap<String, String> {
        let c = self.config;
        HashMap::from([
            ("model".to_string(), c.model.label()),
            (
                "dataset".to_string(),
                match &c.data {
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
        let out = &self.config.out;
        let (st, tthr) = export(eval, out, self.export_meta())?;
        write_atomic(&out.join("model.safetensors"), &st)?;
        write_atomic(&out.join("model.tthr"), &tthr)?;
        write_atomic(
            &out.join("summary.json"),
            serde_json::to_string_pretty(summary)?.as_bytes(),
        )?;
        Ok(())
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
        let mut steps: Vec<Vec<f64>> = Vec::new();
        let (model, epochs) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &ClassifyProblem,
            health,
            |_| {},
            |step, info| steps.push(vec![step as f64, info.values.loss]),
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
            test_accuracy: test_accuracy.unwrap_or(f64::NAN),
            density: 1.0,
            epochs,
            layers: Vec::new(),
            summary,
            files: vec![
                "metrics.csv",
                "epochs.csv",
                "model.mpk",
                "model.safetensors",
                "model.tthr",
                "summary.json",
            ],
        })
    }

    /// Trains `model` under the density constraint and writes every output; `export` folds
    /// the gates, saves the burn record and returns the safetensors and deploy bytes.
    fn train<B, M>(
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
        M: AutodiffModule<B> + GatedNetwork<B>,
        M::InnerModule: GatedNetwork<B::InnerBackend>,
    {
        let c = self.config;
        let layers = model.layer_gates().len();
        let targets = if c.per_layer {
            vec![c.target_density; layers]
        } else {
            vec![c.target_density]
        };
        let dual = c.dual_optimizer();
        let mut set = ConstraintSet::<B>::new(device);
        let multiplier = match c.fixed_penalty {
            // A multiplier that never moves is a fixed penalty coefficient.
            Some(p) => MultiplierConfig::new(DualOptimizer::gradient_ascent(0.0)).with_init(p),
            None => {
                MultiplierConfig::new(dual.clone()).with_restart_on_feasible(!c.no_dual_restarts)
            }
        };
        let density = set.add(
            "density",
            ConstraintKind::Inequality,
            targets.len(),
            FormulationConfig::Lagrangian(multiplier),
        )?;
        let steps_per_epoch = c
            .train_limit
            .map_or(self.train.len(), |l| l.min(self.train.len()))
            / c.batch;
        let problem = PruneProblem::new(density, targets.clone());
        let gate_ids = model.gate_ids();
        // The chosen optimizer steps the weights; the gate locations keep Adam (their
        // rate and momentum are tuned for it, see `gate_lr`).
        let weights = c.optimizer.build()?;
        let health = weights.health();
        let mut primal = TwoGroups::new(
            weights,
            AdamConfig::new().with_beta_1(c.gate_momentum as f32).init(),
            gate_ids,
            c.gate_lr / c.lr,
        );
        // The gates' rate decays from the step the density first meets its target(s).
        let decay_start = DecayStart::new();
        if !c.constant_gate_lr {
            primal = primal.with_second_decay(c.epochs * steps_per_epoch, decay_start.clone());
        }
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        let mut steps: Vec<Vec<f64>> = Vec::new();
        let (model, epochs) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &problem,
            health,
            |epoch| {
                if epoch + c.finetune_epochs == c.epochs && c.finetune_epochs > 0 {
                    if self.progress {
                        println!(
                            "epochs {}-{}: fine-tuning the pruned network (gates frozen)",
                            epoch + 1,
                            c.epochs
                        );
                    }
                    problem.freeze();
                }
            },
            |step, info| {
                if problem.is_frozen() {
                    // Gates and multipliers no longer move: their last values, the new loss.
                    let mut row = steps.last().cloned().unwrap_or_default();
                    if row.len() >= 2 {
                        row[0] = step as f64;
                        row[1] = info.values.loss;
                        steps.push(row);
                    }
                    return;
                }
                let (_, v, strict) = &info.values.constraints[0];
                let strict = strict.as_ref().expect("strict violation is set");
                if strict.iter().all(|&g| g <= 0.0) {
                    decay_start.fire(step + 1);
                }
                let lambda = info
                    .set
                    .get(density)
                    .expect("registered")
                    .formulation()
                    .multiplier()
                    .expect("Lagrangian")
                    .to_vec();
                let mut row = vec![step as f64, info.values.loss];
                for k in 0..targets.len() {
                    row.push(v[k] + targets[k]);
                    row.push(strict[k] + targets[k]);
                    row.push(lambda[k]);
                }
                steps.push(row);
            },
            |eval, test| {
                let (_, dens) = global_density(eval);
                let dens: f32 = dens.into_scalar().elem();
                (accuracy(eval, test), dens as f64)
            },
        )?;
        let names: Vec<String> = if c.per_layer {
            (0..layers).map(|l| format!("layer{l}")).collect()
        } else {
            vec!["global".into()]
        };
        write_metrics(c, &names, &steps)?;

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
        let layers_json: Vec<serde_json::Value> = per_layer
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::json!({"layer": i, "gated_params": l.gated_params,
                    "kept": l.kept as f64, "density": l.density as f32})
            })
            .collect();
        let last = epochs.last();
        let summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(), "target_density": c.target_density,
            "per_layer_constraints": c.per_layer, "dual": format!("{dual:?}"),
            "fixed_penalty": c.fixed_penalty, "seed": c.seed, "epochs": c.epochs, "finetune_epochs": c.finetune_epochs, "dense": false,
            "optimizer": c.optimizer.optimizer,
            "gate_lr_schedule": if c.constant_gate_lr { "constant" } else { "cosine" },
            "final": {"test_accuracy": last.map(|e| e.test_accuracy), "density": last.map(|e| e.density)},
            "layers": layers_json,
        });
        self.write_model(&eval, export, &summary)?;
        Ok(PruneReport {
            test_accuracy: last.map_or(f64::NAN, |e| e.test_accuracy),
            density: last.map_or(f64::NAN, |e| e.density),
            epochs,
            layers: per_layer,
            summary,
            files: vec![
                "metrics.csv",
                "epochs.csv",
                "density.png",
                "model.mpk",
                "model.safetensors",
                "model.tthr",
                "summary.json",
            ],
        })
    }
}

/// `metrics.csv` (per step: loss, then per constraint entry its expected density, true
/// density and multiplier) and its plot, `density.png`.
fn write_metrics(c: &PruneConfig, names: &[String], steps: &[Vec<f64>]) -> anyhow::Result<()> {
    let mut header: Vec<String> = vec!["step".into(), "loss".into()];
    for n in names {
        header.extend([
            format!("{n}_expected_density"),
            format!("{n}_density"),
            format!("{n}_multiplier"),
        ]);
    }
    write_atomic(&c.out.join("metrics.csv"), csv(&header, steps).as_bytes())?;
    let series = |col: usize, label: String| Series {
        label,
        points: steps.iter().map(|r| (r[0], r[col])).collect(),
    };
    let mut dens = Vec::new();
    let mut mult = Vec::new();
    for (k, n) in names.iter().enumerate() {
        dens.push(series(
            3 + 3 * k,
            format!("{n} density (deterministic gates)"),
        ));
        dens.push(series(2 + 3 * k, format!("{n} expected density")));
        mult.push(series(4 + 3 * k, format!("{n} multiplier")));
    }
    dens.push(Series {
        label: format!("target {}", c.target_density),
        points: vec![
            (0.0, c.target_density),
            (steps.len() as f64, c.target_density),
        ],
    });
    line_chart(
        &c.out.join("density.png"),
        &[
            Panel {
                title: "Density".into(),
                x_label: "step".into(),
                y_label: "fraction of parameters kept".into(),
                series: dens,
            },
            Panel {
                title: "Lagrange multipliers".into(),
                x_label: "step".into(),
                y_label: "lambda".into(),
                series: mult,
            },
        ],
    )?;
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
            target_density: 0.0,
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
    }
}
