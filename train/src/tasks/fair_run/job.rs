//! The three phases of a fair-pruning run in order: the dense model, pruning, and the
//! fine-tuning under the group constraints, each measured per group on both splits.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use tether_models::graph::{GraphNet, GraphNetConfig};
use tether_models::l0::HardConcreteConfig;
use tether_models::mlp::MlpConfig;
use tether_models::to_deploy::{Storage, mlp_to_deploy};

use crate::constrained::{
    ConstraintKind, ConstraintSet, FormulationConfig, MultiplierConfig, load_checkpoint,
    save_checkpoint_with,
};
use crate::data::groups;
use crate::resume::{
    Position, RUN_FILE, RunControl, RunState, checkpoint_dir, open_checkpoint, remove_checkpoint,
    settings_key,
};
use crate::tasks::budget::flash::FlashModel;
use crate::tasks::budget::latency::{LATENCY_TRIALS, LatencyModel};
use crate::tasks::budget::units::Bytes;
use crate::tasks::budget::units::Seconds;
use crate::tasks::fair::{FairProblem, GroupMetrics, GroupedSet, ReplayBuffer};

use super::data::FairData;
use super::outputs::{Measured, max, write_outputs};
use super::schedule::{Candidate, PRUNING_SHUFFLE, Phase, Resumable, primal_optimizer, run_epochs};
use super::{FairConfig, FairDataset, FairMethod, FairReport};

/// Samples per evaluation batch.
const EVAL_BATCH: usize = 1000;

/// The dense model and what choosing it measured.
struct Dense<B: AutodiffBackend> {
    model: GraphNet<B>,
    /// Validation loss after each dense epoch (empty without a held-out set).
    val_losses: Vec<f64>,
    /// The epoch kept (1-based).
    kept_epoch: usize,
}

/// The checkpoint's files beside the constrained core's: the dense model, the masks and
/// the best iterate so far (burn records: the masks are constants, in no record).
const DENSE_FILE: &str = "dense.bin";
const MASKS_FILE: &str = "masks.bin";
const BEST_FILE: &str = "best.bin";
/// The fine-tuning's per-step log so far (JSON).
const LOG_FILE: &str = "log.json";

/// A fine-tuning checkpoint to continue from.
pub(super) struct Resumed {
    dir: PathBuf,
    position: Position,
    state: FairState,
}

/// What a fine-tuning checkpoint holds beyond the model, optimizer and multipliers: what
/// the earlier phases measured, and the fine-tuning's log, checks, best iterate and
/// replay buffer.
#[derive(Serialize, Deserialize)]
struct FairState {
    val_losses: Vec<f64>,
    kept_epoch: usize,
    dense_secs: f64,
    ft_secs: f64,
    pruned: [GroupMetrics; 2],
    checks_log: Vec<Vec<f64>>,
    epoch_log: Vec<Vec<f64>>,
    best: Option<BestSoFar>,
    buffer: ReplayBuffer,
}

/// The best iterate's measurements (its weights are [`BEST_FILE`]).
#[derive(Clone, Copy, Serialize, Deserialize)]
struct BestSoFar {
    feasible: bool,
    accuracy: f64,
    worst: f64,
    at: f64,
}

/// Reads and checks `--resume`'s checkpoint (before any data is read).
pub(super) fn read_resume(config: &FairConfig) -> anyhow::Result<Option<Resumed>> {
    let Some(path) = &config.resume else {
        return Ok(None);
    };
    let (dir, run) = open_checkpoint(path, "fair-prune", &settings_key(config)?)?;
    let state: FairState = serde_json::from_value(run.task)
        .with_context(|| format!("corrupt checkpoint {}", dir.display()))?;
    Ok(Some(Resumed {
        dir,
        position: run.position,
        state,
    }))
}

/// The sparsity a flash budget asks for.
struct FlashFit {
    budget: usize,
    /// The smallest sparsity at or above the requested one whose file fits.
    sparsity: f64,
    /// The file's size at that sparsity (exact).
    predicted: usize,
    /// The file's size at the requested sparsity.
    at_user_sparsity: usize,
    model: FlashModel,
    numels: Vec<usize>,
}

impl FlashFit {
    /// The file's size at `sparsity` (exact).
    fn size_at(&self, sparsity: f64) -> usize {
        self.model.size(&kept_at(&self.numels, sparsity))
    }
}

/// The smallest sparsity `>= from` (in steps of 1e-4) at which the network exported as
/// `export`, its pruned layers (`hidden` weights each) pruned by magnitude
/// ([`GraphNet::prune_magnitude`]'s counts: `round(s n)` removed per layer), is written in
/// at most `budget` bytes.
fn flash_sparsity(
    export: &[u8],
    hidden: Vec<usize>,
    budget: usize,
    from: f64,
) -> anyhow::Result<FlashFit> {
    let model = FlashModel::from_export(export, &hidden)?;
    let min = model.min_size();
    anyhow::ensure!(
        budget >= min,
        "--max-flash {}: this network cannot be written in under {min} bytes ({}: its output \
         layer, biases, other ops and the row pointers of its pruned layers); give at least \
         that",
        Bytes(budget as u64),
        Bytes(min as u64)
    );
    let size = |s: f64| model.size(&kept_at(&hidden, s));
    let sparsity = smallest_sparsity(from, |s| size(s) <= budget).with_context(|| {
        format!(
            "--max-flash {}: only a network with every hidden weight pruned fits",
            Bytes(budget as u64)
        )
    })?;
    Ok(FlashFit {
        budget,
        sparsity,
        predicted: size(sparsity),
        at_user_sparsity: size(from),
        model,
        numels: hidden,
    })
}

/// Weights of each pruned layer (every Linear/Conv layer but the last), in graph order.
fn pruned_numels<B: Backend>(net: &GraphNet<B>) -> Vec<usize> {
    layer_dims(net)
        .iter()
        .take(net.layers.len().saturating_sub(1))
        .map(|d| d.iter().product())
        .collect()
}

/// Kept weights per pruned layer at `sparsity`: [`GraphNet::prune_magnitude`]'s counts,
/// `round(s n)` removed from each.
fn kept_at(numels: &[usize], sparsity: f64) -> Vec<usize> {
    numels
        .iter()
        .map(|&n| n - ((sparsity * n as f64).round() as usize).min(n))
        .collect()
}

/// The smallest sparsity `>= from`, in steps of 1e-4 and below 1, at which `fits`.
fn smallest_sparsity(from: f64, fits: impl Fn(f64) -> bool) -> Option<f64> {
    let steps = ((1.0 - from) / 1e-4).ceil() as usize;
    (0..=steps)
        .map(|k| (from + k as f64 * 1e-4).min(1.0))
        .take_while(|&s| s < 1.0)
        .find(|&s| fits(s))
}

/// The sparsity a latency budget asks for, and the fitted model that predicted it.
struct LatencyFit {
    budget: f64,
    sparsity: f64,
    model: LatencyModel,
    numels: Vec<usize>,
}

impl LatencyFit {
    /// The predicted seconds per inference at `sparsity`.
    fn predicted(&self, sparsity: f64) -> f64 {
        self.model.latency(&kept_at(&self.numels, sparsity))
    }
}

/// The smallest sparsity `>= from` at which the network exported as `export`, its pruned
/// layers (`numels` weights each) pruned by magnitude, is predicted to run one inference
/// of `batch` samples in at most `budget` seconds: the deploy kernels are timed on the
/// export, each pruned layer at several densities ([`LatencyModel::measure`], as `prune
/// --max-latency` does).
fn latency_sparsity(
    export: &[u8],
    numels: Vec<usize>,
    budget: f64,
    from: f64,
    batch: usize,
    progress: bool,
) -> anyhow::Result<LatencyFit> {
    if progress {
        println!(
            "timing the deploy kernels for the latency model ({} pruned layers, batch {batch})",
            numels.len()
        );
    }
    let model = LatencyModel::measure(export, &numels, batch, LATENCY_TRIALS)?;
    let min = model.min_latency();
    anyhow::ensure!(
        budget >= min,
        "--max-latency {}: this network takes at least {} per inference on this host (batch \
         {batch}) with every hidden weight pruned (its output layer and other ops); give at \
         least that",
        Seconds(budget),
        Seconds(min)
    );
    let fits = |s: f64| model.latency(&kept_at(&numels, s)) <= budget;
    let sparsity = smallest_sparsity(from, fits).with_context(|| {
        format!(
            "--max-latency {}: only a network with every hidden weight pruned is predicted to \
             fit",
            Seconds(budget)
        )
    })?;
    Ok(LatencyFit {
        budget,
        sparsity,
        model,
        numels,
    })
}

fn record_bytes<B: Backend, M: Module<B>>(model: M) -> anyhow::Result<Vec<u8>> {
    Ok(BinBytesRecorder::<FullPrecisionSettings>::default().record(model.into_record(), ())?)
}

fn load_bytes<B: Backend, M: Module<B>>(
    fresh: M,
    dir: &std::path::Path,
    file: &str,
    device: &B::Device,
) -> anyhow::Result<M> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let record = BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes, device)
        .with_context(|| format!("corrupt checkpoint file {}", path.display()))?;
    Ok(fresh.load_record(record))
}

/// The masks' values ([`GraphNet::mask_values`]), little-endian f32.
fn mask_bytes<B: Backend>(net: &GraphNet<B>) -> Vec<u8> {
    net.mask_values()
        .into_iter()
        .flat_map(f32::to_le_bytes)
        .collect()
}

/// `net` with the masks of [`mask_bytes`]' bytes.
fn with_mask_bytes<B: Backend>(net: GraphNet<B>, bytes: &[u8]) -> anyhow::Result<GraphNet<B>> {
    anyhow::ensure!(
        bytes.len().is_multiple_of(4),
        "corrupt checkpoint: {MASKS_FILE} has {} bytes, not whole f32 values",
        bytes.len()
    );
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    net.with_mask_values(&values)
        .map_err(|e| anyhow::anyhow!("corrupt checkpoint: {MASKS_FILE}: {e}"))
}

/// Imports the user's ONNX network (its leading axis as the batch axis) into tether's
/// model bytes.
///
/// # Errors
/// The importer's, naming the file.
pub(super) fn import(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use tether_deploy::onnx::{BatchAxis, ImportOptions, import_file_with};
    import_file_with(
        path,
        &ImportOptions {
            batch_axis: BatchAxis::Leading,
        },
    )
    .with_context(|| format!("importing {}", path.display()))
}

/// The per-sample input shape of tether model bytes.
pub(super) fn input_shape(bytes: &[u8]) -> anyhow::Result<Vec<usize>> {
    let aligned = tether_deploy::AlignedBytes::from_slice(bytes);
    let model = tether_deploy::Model::parse(&aligned)?;
    Ok(model.input_shape().as_slice().to_vec())
}

/// A network from tether model bytes, without gates (the job prunes by magnitude).
fn graph_net<B: Backend>(bytes: &[u8], device: &B::Device) -> anyhow::Result<GraphNet<B>> {
    let config = GraphNetConfig {
        structure: None,
        gates: HardConcreteConfig::new(),
    };
    Ok(GraphNet::from_model_bytes(bytes, &config, device)?)
}

/// Every Linear/Conv layer's weight shape, in graph order.
fn layer_dims<B: Backend>(net: &GraphNet<B>) -> Vec<Vec<usize>> {
    net.layers
        .iter()
        .map(|l| match (&l.linear, &l.conv) {
            (Some(w), _) => w.dims().to_vec(),
            (_, Some(w)) => w.dims().to_vec(),
            _ => Vec::new(),
        })
        .collect()
}

/// The network of this run, freshly initialised: the user's (`graph`), or the built-in
/// MLP of `widths` (burn's initialisation, written as a graph: one model path), checked
/// against the data's sample size and classes.
fn fresh_net<B: AutodiffBackend>(
    graph: Option<&[u8]>,
    widths: &[usize],
    (dim, classes): (usize, usize),
    device: &B::Device,
) -> anyhow::Result<GraphNet<B>> {
    let net = match graph {
        Some(bytes) => graph_net(bytes, device)?,
        None => {
            let mlp = MlpConfig::new(widths.to_vec()).init::<B>(device);
            graph_net(&mlp_to_deploy(&mlp, Storage::Dense)?, device)?
        }
    };
    let (inputs, outputs): (usize, usize) = (
        net.input_shape().iter().product(),
        net.output_shape().iter().product(),
    );
    anyhow::ensure!(
        inputs == dim,
        "the network takes {inputs} values per sample ({:?}), the data has {dim}",
        net.input_shape(),
    );
    anyhow::ensure!(
        classes <= outputs,
        "the data has {classes} classes but the network outputs {outputs} scores per sample"
    );
    anyhow::ensure!(
        net.layers.len() >= 2,
        "the network has {} Linear/Conv layer(s); fair pruning prunes all but the last, so \
         it needs at least 2",
        net.layers.len()
    );
    Ok(net)
}

/// The network in `path` (a `dense.tthr` or a pruned `model.tthr` of an earlier run),
/// checked to have the layers of `like`, this run's network.
fn load_net<B: Backend>(
    like: &GraphNet<B>,
    path: &std::path::Path,
    device: &B::Device,
) -> anyhow::Result<GraphNet<B>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let net =
        graph_net::<B>(&bytes, device).with_context(|| format!("loading {}", path.display()))?;
    let (got, want) = (layer_dims(&net), layer_dims(like));
    anyhow::ensure!(
        got == want && net.input_shape() == like.input_shape(),
        "{} holds a network with input {:?} and layers {got:?}; this run's has input {:?} and \
         layers {want:?} (another dataset, --hidden or --model?)",
        path.display(),
        net.input_shape(),
        like.input_shape()
    );
    Ok(net)
}

/// Trains, prunes and fine-tunes on `data`, and writes every output. With `resume` the
/// dense and pruning phases are restored from the checkpoint, and the fine-tuning goes on
/// from where it stopped.
pub(super) fn train<B: AutodiffBackend>(
    c: &FairConfig,
    data: FairData,
    graph: Option<Vec<u8>>,
    device: &B::Device,
    control: &RunControl,
    resume: Option<Resumed>,
) -> anyhow::Result<FairReport> {
    let progress = control.progress;
    B::seed(device, c.seed);
    let g = data.groups.len();
    let train = GroupedSet::<B>::new(
        data.train.0,
        data.dim,
        &data.train.1,
        data.groups.train.clone(),
        device,
    );
    let test = GroupedSet::<B::InnerBackend>::new(
        data.test.0,
        data.dim,
        &data.test.1,
        data.groups.test.clone(),
        device,
    );
    let train_eval = train.clone().inner();
    let widths = match c.dataset {
        _ if c.own.data.is_some() => {
            [vec![data.dim], c.hidden.clone(), vec![data.classes]].concat()
        }
        FairDataset::Adult => [vec![data.dim], c.hidden.clone(), vec![data.classes]].concat(),
        _ => vec![784, 300, 100, 10],
    };
    let fresh = fresh_net::<B>(graph.as_deref(), &widths, (data.dim, data.classes), device)?;
    if progress {
        let source = match (&c.own.data, &c.model) {
            (Some(d), _) => d.display().to_string(),
            (None, _) => format!("{:?}", c.dataset),
        };
        let network = match &c.model {
            Some(m) => format!(
                "{} ({} Linear/Conv layers)",
                m.display(),
                fresh.layers.len()
            ),
            None => format!("MLP {widths:?}"),
        };
        println!(
            "{source}: {} training samples, {} groups ({} samples in none), {network}",
            train.len(),
            g,
            data.groups
                .train
                .iter()
                .filter(|&&i| i == groups::NO_GROUP)
                .count()
        );
    }
    // A flash budget sets the sparsity (checked now, before any training), from the
    // network's export (written once for both budgets' models).
    let export = if c.max_flash.is_some() || c.max_latency.is_some() {
        fresh.valid().to_deploy()?
    } else {
        Vec::new()
    };
    let flash = match c.max_flash {
        Some(Bytes(max)) => Some(flash_sparsity(
            &export,
            pruned_numels(&fresh),
            max as usize,
            c.sparsity,
        )?),
        None => None,
    };
    // A latency budget too, from the same starting sparsity; the larger of the two wins.
    let latency = match c.max_latency {
        Some(Seconds(max)) => Some(latency_sparsity(
            &export,
            pruned_numels(&fresh),
            max,
            c.sparsity,
            c.latency_batch,
            progress,
        )?),
        None => None,
    };
    // A RAM budget: unstructured pruning cannot lower it, so the network fits or not now.
    if let Some(Bytes(max)) = c.max_ram {
        let tthr = fresh.valid().to_deploy()?;
        let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
        let ram =
            tether_deploy::cli::device_ram(&tether_deploy::Model::parse(&aligned)?, c.ram_batch)?;
        anyhow::ensure!(
            ram <= max as usize,
            "--max-ram {}: this network needs {} of RAM at batch {} whatever its weights \
             (magnitude pruning removes single weights, which leaves every activation as \
             wide); narrow it first (`tether-train prune --structure unit --max-ram`)",
            Bytes(max),
            Bytes(ram as u64),
            c.ram_batch
        );
    }
    let user = c;
    let effective = FairConfig {
        sparsity: [
            Some(c.sparsity),
            flash.as_ref().map(|f| f.sparsity),
            latency.as_ref().map(|l| l.sparsity),
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max),
        ..c.clone()
    };
    let c = &effective;
    if let (Some(l), true) = (&latency, progress) {
        println!(
            "latency budget {}: sparsity {:.4} (predicted {}; the unpruned network: {})",
            Seconds(l.budget),
            l.sparsity,
            Seconds(l.predicted(l.sparsity)),
            Seconds(l.model.dense)
        );
    }
    if let (Some(f), true) = (&flash, progress) {
        println!(
            "flash budget {}: sparsity {:.4} (the file {} bytes; the network at --sparsity {}: {} bytes)",
            Bytes(f.budget as u64),
            f.sparsity,
            f.predicted,
            user.sparsity,
            f.at_user_sparsity
        );
    }
    let dense_epochs = c.dense_epochs();
    let epochs = c.fine_tune_epochs();
    let label = |l: &'static str| progress.then_some(l);

    // 1. The dense model: the epoch with the lowest validation loss (or the last).
    let started = Instant::now();
    let val = (!data.val.1.is_empty()).then(|| {
        let n = data.val.1.len();
        GroupedSet::<B::InnerBackend>::new(
            data.val.0,
            data.dim,
            &data.val.1,
            vec![groups::NO_GROUP; n],
            device,
        )
    });
    let dense = match (&resume, &c.dense_from) {
        (Some(r), _) => Dense {
            model: load_bytes(fresh, &r.dir, DENSE_FILE, device)?,
            val_losses: r.state.val_losses.clone(),
            kept_epoch: r.state.kept_epoch,
        },
        (None, Some(dir)) => Dense {
            model: load_net(&fresh, &dir.join("dense.tthr"), device)?,
            val_losses: Vec::new(),
            kept_epoch: dense_epochs,
        },
        (None, None) => {
            let phase = Phase {
                epochs: dense_epochs,
                decay: false,
                label: label("dense"),
                checks: usize::from(val.is_some()),
                shuffle_from: 0,
            };
            train_dense(c, fresh, &train, val.as_ref(), &phase, device, progress)?
        }
    };
    crate::io::write_atomic(&c.out.join("dense.tthr"), &dense.model.valid().to_deploy()?)
        .with_context(|| format!("writing {}", c.out.join("dense.tthr").display()))?;
    let dense_secs = resume
        .as_ref()
        .map_or(started.elapsed().as_secs_f64(), |r| r.state.dense_secs);
    let dense_bytes = record_bytes(dense.model.valid())?;
    let dense_eval = dense.model.valid();
    let dense_train = GroupMetrics::measure(&dense_eval, &train_eval, g, EVAL_BATCH);
    let dense_test = GroupMetrics::measure(&dense_eval, &test, g, EVAL_BATCH);
    if progress {
        println!(
            "dense: train accuracy {:.4}, test accuracy {:.4}",
            dense_train.accuracy, dense_test.accuracy
        );
    }

    // 2. Pruning: by magnitude (in one shot or gradually), or the zeros of an L0-pruned
    //    model.
    let ramp = |e: usize| {
        let p = c.prune_epochs as f64;
        c.sparsity * (1.0 - (1.0 - (e as f64 + 1.0) / p).powi(3))
    };
    let masked = match &c.pruned_from {
        // The masks from the checkpoint; the weights come with the fine-tuning's.
        _ if resume.is_some() => {
            let r = resume.as_ref().expect("resumed");
            let bytes = std::fs::read(r.dir.join(MASKS_FILE))
                .with_context(|| format!("reading {}", r.dir.join(MASKS_FILE).display()))?;
            with_mask_bytes(dense.model, &bytes)?
        }
        None if c.prune_epochs > 0 => {
            let mut set = ConstraintSet::<B>::new(device);
            let mut primal = primal_optimizer(c, c.ft_lr)?;
            let phase = Phase {
                epochs: c.prune_epochs,
                decay: false,
                label: label("prune"),
                checks: 0,
                shuffle_from: PRUNING_SHUFFLE,
            };
            run_epochs(
                dense.model.prune_magnitude(0.0),
                &train,
                c,
                &mut primal,
                &mut set,
                &FairProblem::unconstrained(),
                &phase,
                &mut Vec::new(),
                |e, m: GraphNet<B>| m.prune_magnitude(ramp(e)),
                |_, _| {},
                None,
            )?
        }
        None => dense.model.prune_magnitude(c.sparsity),
        Some(dir) => load_net(&dense.model, &dir.join("model.tthr"), device)?.mask_zeros(),
    };
    let pruned_eval = masked.valid();
    let (pruned_train, pruned_test) = match &resume {
        Some(r) => (r.state.pruned[0].clone(), r.state.pruned[1].clone()),
        None => (
            GroupMetrics::measure(&pruned_eval, &train_eval, g, EVAL_BATCH),
            GroupMetrics::measure(&pruned_eval, &test, g, EVAL_BATCH),
        ),
    };
    let masks = mask_bytes(&masked);
    if progress {
        println!(
            "pruned to density {:.4} ({:.4} with the output layer): train accuracy {:.4}, test accuracy {:.4}",
            masked.masked_density(),
            masked.masked_total_density(),
            pruned_train.accuracy,
            pruned_test.accuracy
        );
    }

    // 3. Fine-tuning.
    let dual = c.dual_optimizer();
    let mut set = ConstraintSet::<B>::new(device);
    let problem = match c.method {
        FairMethod::Naive => FairProblem::unconstrained(),
        FairMethod::EqualLoss => {
            let id = set.add(
                "equal-loss",
                ConstraintKind::Equality,
                g,
                FormulationConfig::Lagrangian(MultiplierConfig::new(dual.clone()).indexed()),
            )?;
            FairProblem::equalized_loss(id).with_group(crate::parallel::group())
        }
        FairMethod::Ceag => {
            let id = set.add(
                "excess-accuracy-gap",
                ConstraintKind::Inequality,
                g,
                FormulationConfig::Lagrangian(MultiplierConfig::new(dual.clone()).indexed()),
            )?;
            FairProblem::excess_accuracy_gap(id, dense_train.clone(), c.epsilon, c.buffer)
                .with_margin(c.margin)
                .with_detached_overall(!c.keep_overall_gradient)
                .with_group(crate::parallel::group())
        }
    };
    let mut primal = primal_optimizer(c, c.ft_lr)?;
    let mut log = Vec::new();
    let started = Instant::now();
    let ft_secs_before = resume.as_ref().map_or(0.0, |r| r.state.ft_secs);
    // CEAG keeps the best iterate among `checks_per_epoch` evaluations on the training
    // set: the last-evaluated iterate whose groups all meet the bound with the best
    // accuracy, else the one with the smallest worst gap (the best-iterate rule that goes
    // with the proxy-constraint pattern, Cotter et al. 2019). The baselines keep their
    // last iterate (and so does CEAG with 0 checks per epoch).
    let select = c.method == FairMethod::Ceag && c.checks_per_epoch > 0;
    let best: RefCell<Option<Candidate<GraphNet<B::InnerBackend>>>> = RefCell::new(None);
    let checks_log: RefCell<Vec<Vec<f64>>> = RefCell::new(Vec::new());
    let epoch_log: RefCell<Vec<Vec<f64>>> = RefCell::new(Vec::new());
    let mut masked = masked;
    let mut start = Position::default();
    if let Some(r) = &resume {
        if progress {
            println!(
                "resuming the fine-tuning from {}: epoch {}, step {} of it",
                r.dir.display(),
                r.position.epoch + 1,
                r.position.step_in_epoch
            );
        }
        problem.set_buffer(r.state.buffer.clone());
        *checks_log.borrow_mut() = r.state.checks_log.clone();
        *epoch_log.borrow_mut() = r.state.epoch_log.clone();
        if let Some(b) = r.state.best {
            *best.borrow_mut() = Some(Candidate {
                feasible: b.feasible,
                accuracy: b.accuracy,
                worst: b.worst,
                at: b.at,
                model: load_bytes(masked.valid(), &r.dir, BEST_FILE, device)?,
            });
        }
        let (model, _) = load_checkpoint(&r.dir, masked, &mut primal.opt, &mut set)?;
        masked = model;
        start = r.position;
        let saved_log: Vec<Vec<f64>> = serde_json::from_slice(
            &std::fs::read(r.dir.join(LOG_FILE))
                .with_context(|| format!("reading {}", r.dir.join(LOG_FILE).display()))?,
        )
        .with_context(|| format!("corrupt checkpoint file {}", r.dir.join(LOG_FILE).display()))?;
        log = saved_log;
    }
    let checkpoint = checkpoint_dir(&c.out);
    let save = |model: &GraphNet<B>,
                opt: &crate::constrained::ConstrainedOptimizer<_>,
                set: &ConstraintSet<B>,
                position: Position,
                log: &[Vec<f64>]|
     -> anyhow::Result<()> {
        let best = best.borrow();
        let state = FairState {
            val_losses: dense.val_losses.clone(),
            kept_epoch: dense.kept_epoch,
            dense_secs,
            ft_secs: ft_secs_before + started.elapsed().as_secs_f64(),
            pruned: [pruned_train.clone(), pruned_test.clone()],
            checks_log: checks_log.borrow().clone(),
            epoch_log: epoch_log.borrow().clone(),
            best: best.as_ref().map(|b| BestSoFar {
                feasible: b.feasible,
                accuracy: b.accuracy,
                worst: b.worst,
                at: b.at,
            }),
            buffer: problem.buffer(),
        };
        let run = RunState::file_bytes("fair-prune", settings_key(user)?, position, &state)?;
        let log = serde_json::to_vec(log)?;
        let best_bytes = match best.as_ref() {
            Some(b) => record_bytes(b.model.clone())?,
            None => Vec::new(),
        };
        let mut files: Vec<(&str, &[u8])> = vec![
            (RUN_FILE, &run),
            (LOG_FILE, &log),
            (DENSE_FILE, &dense_bytes),
            (MASKS_FILE, &masks),
        ];
        if best.is_some() {
            files.push((BEST_FILE, &best_bytes));
        }
        save_checkpoint_with(
            &checkpoint,
            position.global_step as u64,
            model,
            opt,
            set,
            &files,
        )?;
        Ok(())
    };
    let phase = Phase {
        epochs,
        decay: !c.constant_lr,
        label: label("fine-tune"),
        // Every method is measured at least at each epoch's end (the accuracy curves); CEAG
        // keeps the best of its checks.
        checks: if select { c.checks_per_epoch } else { 1 },
        shuffle_from: 0,
    };
    let resumable = Resumable {
        start,
        interrupt: control.interrupt.clone(),
        every: c.checkpoint_every,
        checkpoint: checkpoint.clone(),
        save: &save,
    };
    let tuned = run_epochs(
        masked,
        &train,
        c,
        &mut primal,
        &mut set,
        &problem,
        &phase,
        &mut log,
        |_, m| m,
        |at, model| {
            let m = model.valid();
            let metrics = GroupMetrics::measure(&m, &train_eval, g, EVAL_BATCH);
            if at.fract() == 0.0 {
                let test = GroupMetrics::measure(&m, &test, g, EVAL_BATCH);
                epoch_log
                    .borrow_mut()
                    .push(vec![at, metrics.accuracy, test.accuracy]);
            }
            if !select {
                return;
            }
            let worst = max(&dense_train.excess_gaps(&metrics));
            checks_log
                .borrow_mut()
                .push(vec![at, metrics.accuracy, worst]);
            let candidate = Candidate {
                feasible: worst <= c.epsilon,
                accuracy: metrics.accuracy,
                worst,
                at,
                model: m,
            };
            let mut best = best.borrow_mut();
            if best.as_ref().is_none_or(|b| candidate.beats(b)) {
                *best = Some(candidate);
            }
        },
        Some(&resumable),
    )?;
    let ft_secs = ft_secs_before + started.elapsed().as_secs_f64();
    let checks_log = checks_log.into_inner();
    let epoch_log = epoch_log.into_inner();
    let last_train = GroupMetrics::measure(&tuned.valid(), &train_eval, g, EVAL_BATCH);
    let last_worst = max(&dense_train.excess_gaps(&last_train));
    let (eval, selected_at) = match best.into_inner() {
        Some(b) => (b.model, b.at),
        None => (tuned.valid(), epochs as f64),
    };
    if select && progress {
        println!(
            "kept the iterate at epoch {selected_at:.2} of {epochs} (last iterate: worst train gap {last_worst:+.4})"
        );
    }
    let final_train = GroupMetrics::measure(&eval, &train_eval, g, EVAL_BATCH);
    let final_test = GroupMetrics::measure(&eval, &test, g, EVAL_BATCH);
    let multipliers = set
        .constraints()
        .first()
        .and_then(|k| k.formulation().multiplier().map(|m| m.to_vec()))
        .unwrap_or_else(|| vec![0.0; g]);

    // 4. Outputs.
    let report = write_outputs(
        c,
        &Measured {
            groups: &data.groups,
            validation_samples: data.val.1.len(),
            dense: [&dense_train, &dense_test],
            pruned: [&pruned_train, &pruned_test],
            fine_tuned: [&final_train, &final_test],
            multipliers: &multipliers,
            buffer: problem.buffer(),
            log: &log,
            checks: select.then_some(&checks_log[..]),
            epoch_log: &epoch_log,
            dense_epochs,
            epochs,
            val_losses: &dense.val_losses,
            dense_kept_epoch: dense.kept_epoch,
            selected_at,
            last_worst,
            seconds: [dense_secs, ft_secs],
            flash_budget: flash.as_ref().map(|f| (f.budget, f.size_at(c.sparsity))),
            latency_budget: latency
                .as_ref()
                .map(|l| (l.budget, l.predicted(c.sparsity), c.latency_batch)),
            ram_budget: c.max_ram.map(|Bytes(b)| (b as usize, c.ram_batch)),
        },
        &eval,
    )?;
    // Every output is written: nothing is left to resume.
    remove_checkpoint(&c.out)?;
    Ok(report)
}

/// Trains the dense model from `fresh`, keeping the epoch of lowest loss on `val` when
/// there is one (early stopping), else the last.
fn train_dense<B: AutodiffBackend>(
    c: &FairConfig,
    fresh: GraphNet<B>,
    train: &GroupedSet<B>,
    val: Option<&GroupedSet<B::InnerBackend>>,
    phase: &Phase<'_>,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<Dense<B>> {
    let mut set = ConstraintSet::<B>::new(device);
    let mut primal = primal_optimizer(c, c.lr)?;
    let mut val_losses: Vec<f64> = Vec::new();
    // (epoch, validation loss, model) of the best epoch so far.
    let mut kept: Option<(usize, f64, GraphNet<B>)> = None;
    let last = run_epochs(
        fresh,
        train,
        c,
        &mut primal,
        &mut set,
        &FairProblem::unconstrained(),
        phase,
        &mut Vec::new(),
        |_, m| m,
        |_, model: &GraphNet<B>| {
            let Some(val) = val else { return };
            let loss = GroupMetrics::measure(&model.valid(), val, 0, EVAL_BATCH).loss;
            val_losses.push(loss);
            if kept.as_ref().is_none_or(|(_, best, _)| loss < *best) {
                kept = Some((val_losses.len(), loss, model.clone()));
            }
        },
        None,
    )?;
    Ok(match kept {
        Some((epoch, loss, model)) => {
            if progress {
                println!(
                    "dense: kept epoch {epoch} of {} (validation loss {loss:.4}; by epoch: {})",
                    phase.epochs,
                    val_losses
                        .iter()
                        .map(|l| format!("{l:.4}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Dense {
                model,
                val_losses,
                kept_epoch: epoch,
            }
        }
        None => Dense {
            model: last,
            val_losses,
            kept_epoch: phase.epochs,
        },
    })
}
