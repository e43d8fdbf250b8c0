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
//!
//! The files: `config` (the settings), `job` (one run's data and checkpoint state),
//! `samples`, `epochs` (the epoch loop every method goes through), the methods `l0`,
//! `magnitude` and `dense`, `budgets` (latency and RAM measured on the export), `outputs`,
//! `metrics_csv` and `report`.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Context;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use tether_models::export::graph_to_safetensors;
use tether_models::graph::{GraphNet, GraphNetConfig, NormSites};
use tether_models::l0::{GateStructure, HardConcreteConfig};
use tether_models::lenet5::Lenet5Config;
use tether_models::mlp::MlpConfig;
use tether_models::resnet::ResnetConfig;
use tether_models::to_deploy::{Storage, lenet5_to_deploy, mlp_to_deploy, resnet_to_deploy};

use self::config::NORM_CALIBRATION_SAMPLES;
use self::job::{Job, Resumed, read_resume};
use self::outputs::{cut_closed_units, save_record};
use self::samples::Samples;
use crate::constrained::adopt_checkpoint_ids;
use crate::data::mnist::{ImageSet, Split};
use crate::io::{check_output_dir, write_atomic};

mod budgets;
mod config;
mod dense;
mod epochs;
mod job;
mod l0;
mod magnitude;
mod metrics_csv;
mod outputs;
mod report;
mod samples;
#[cfg(test)]
mod tests;

pub use crate::resume::RunControl;
pub use config::{
    BatchNormMode, DualUpdate, Method, Model, ModelSpec, PruneConfig, Structure, TRAIN_EVAL_SAMPLES,
};
pub use report::{EpochResult, LayerResult, PruneReport};

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
/// As [`run`]; [`Interrupted`](crate::resume::Interrupted) (downcast the error) when the interrupt stopped it.
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
