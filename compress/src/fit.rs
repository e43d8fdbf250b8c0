//! Fitting a SIREN to an image: COIN's plain fit, and L0onie's fit under a bit budget.
//!
//! Both run the project's one training loop ([`tether_train::trainer::fit`]) on a
//! full-batch problem: every step sees every pixel, as in COIN.
//!
//! - **COIN** (Dupont et al. 2021): minimise the MSE with Adam (lr 2e-4 in the paper),
//!   keep the weights of the best PSNR seen.
//! - **L0onie** (Ramirez & Gallego-Posada 2022): a gate on every weight, and
//!   ```text
//!   min  E_z[ MSE(f(x; theta * z)) ]   s.t.   bits(model) / budget - 1 <= 0
//!   ```
//!   The multiplier is driven by the *true* size of the file the deterministic gates
//!   would produce (the encoder is run on the folded weights every step; the strict
//!   violation of the proxy-constraint pattern), the model by a differentiable estimate:
//!   per layer `16 E[L0] + n H(E[L0] / n)` bits, values plus the entropy of the sparsity
//!   pattern that the Rice code approaches, plus the fixed bits (header, biases). The kept
//!   weights are the best deterministic PSNR among steps whose file fits the budget.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, Param};
use burn::optim::AdamConfig;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tether_models::l0::{GateMode, HardConcreteConfig};
use tether_models::siren::{GatedSiren, MaskedSiren, Siren};
use tether_train::constrained::{
    CmpState, ConstrainedOptimizer, ConstrainedProblem, ConstraintId, ConstraintKind,
    ConstraintSet, ConstraintState, DualOptimizer, FormulationConfig, MultiplierConfig,
    UpdateScheme,
};
use tether_train::constrained::{adopt_checkpoint_ids, load_checkpoint, save_checkpoint_with};
use tether_train::optim::TwoGroups;
use tether_train::resume::{Interrupt, Position, RUN_FILE, RunState};
use tether_train::trainer::{
    Checkpoints, FitOptions, StepInfo, StepsStop, fit_resumable, progress_bar,
};

use crate::error::CompressError;
use crate::format::CompressedImage;
use crate::grid::coordinates;
use crate::image::Image;
use crate::weights::{Architecture, SirenWeights};

/// How long and how fast to fit.
#[derive(Clone, Debug)]
pub struct FitSettings {
    /// Full-batch steps.
    pub steps: usize,
    /// Adam learning rate of the weights (COIN: 2e-4).
    pub lr: f64,
    /// Show a progress bar (step, PSNR, bpp).
    pub progress: bool,
    /// Checkpoints, the interrupt and resuming; `None`: a fit that runs to its end.
    pub checkpoint: Option<Checkpointing>,
}

/// Where and how often a fit checkpoints, what stops it, and whether it continues from
/// the checkpoint already there. A resumed fit ends bit for bit where the uninterrupted
/// one ends (on CPU): the model, Adam's moments, the multiplier, the log and the best
/// weights so far are stored exactly, and each step's gate noise comes from a stream
/// seeded by (seed, step).
#[derive(Clone, Debug)]
pub struct Checkpointing {
    /// The checkpoint folder (written atomically: temporary folder, then rename).
    pub dir: PathBuf,
    /// Steps between checkpoints (0: only when interrupted).
    pub every: usize,
    /// Raised, the fit stops after the step under way, checkpoints and returns
    /// [`CompressError::Interrupted`].
    pub interrupt: Interrupt,
    /// Continue from the checkpoint in this folder (`dir`, or one written elsewhere).
    pub resume: Option<PathBuf>,
    /// The settings a resumed fit must share, stored in the checkpoint.
    pub key: serde_json::Value,
}

/// L0onie's extra knobs.
#[derive(Clone, Debug)]
pub struct L0onieSettings {
    /// Adam learning rate of the gate locations.
    pub gate_lr: f64,
    /// The multiplier's update rule.
    pub dual: DualOptimizer,
    /// Initial probability that a gate is dropped: small, because a SIREN is sensitive to
    /// the scale of its weights and gates start mostly open.
    pub init_drop_rate: f64,
    /// Spread of the initial gate locations.
    pub init_spread: f64,
    /// Evaluate the deterministic network (for the best-weights choice) every this many
    /// steps once its file fits.
    pub eval_every: usize,
    /// Sample the gates while pruning (hard-concrete noise, as L0onie); `false` trains
    /// through the deterministic test-time gates instead (no noise; a gate clipped to 0
    /// gets no task gradient and stays shut).
    pub sample_gates: bool,
    /// Bits per stored weight: 16 = f16 (COIN's format), fewer = uniform quantisation with
    /// a per-layer scale (fine-tuned quantisation-aware).
    pub value_bits: u8,
    /// Fraction of the steps spent pruning; the rest fine-tunes the weights with the mask
    /// frozen (no gate noise, and the file size cannot change).
    pub prune_fraction: f64,
}

/// One logged point of a fit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitPoint {
    /// Step.
    pub step: usize,
    /// PSNR (dB, float, before 8-bit rounding) of the training forward pass.
    pub psnr: f64,
    /// Bits per pixel of the file the current network would make.
    pub bpp: f64,
}

/// What a fit returns.
#[derive(Clone, Debug)]
pub struct Fitted {
    /// The kept weights (not yet rounded to f16).
    pub weights: SirenWeights,
    /// Its float PSNR on the image at fit time.
    pub psnr: f64,
    /// The step it was taken at.
    pub step: usize,
    /// The log (every step).
    pub history: Vec<FitPoint>,
    /// Weights removed by magnitude because the gates had not brought the file under the
    /// budget by the end of the pruning phase (0 when the constraint did its job).
    pub magnitude_pruned: usize,
}

/// The image as tensors: coordinates `[n, 2]` and RGB in `[0, 1]`, `[n, 3]`.
pub struct Target<B: Backend> {
    coords: Tensor<B, 2>,
    values: Tensor<B, 2>,
}

impl<B: Backend> Clone for Target<B> {
    fn clone(&self) -> Self {
        Self {
            coords: self.coords.clone(),
            values: self.values.clone(),
        }
    }
}

impl<B: Backend> Target<B> {
    /// `image` on `device`.
    pub fn new(image: &Image, device: &B::Device) -> Self {
        let n = image.pixels();
        let coords = coordinates(image.width, image.height, 0..image.height);
        Self {
            coords: Tensor::from_data(TensorData::new(coords, [n, 2]), device),
            values: Tensor::from_data(TensorData::new(image.to_unit(), [n, 3]), device),
        }
    }

    fn mse(&self, prediction: Tensor<B, 2>) -> Tensor<B, 1> {
        (prediction - self.values.clone()).square().mean()
    }
}

fn psnr_of(mse: f64) -> f64 {
    -10.0 * mse.log10()
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// The training loop's progress bar, shown when `show`.
fn bar(steps: usize, show: bool, label: &str) -> ProgressBar {
    progress_bar(steps, show.then_some(label))
}

/// Full-batch MSE of `forward(model, coordinates)`.
struct MseProblem<F>(F);

impl<B, M, F> ConstrainedProblem<B, M> for MseProblem<F>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M, Tensor<B, 2>) -> Tensor<B, 2>,
{
    type Input = Target<B>;

    fn compute_cmp_state(&self, model: &M, t: &Target<B>) -> CmpState<B> {
        CmpState::new(t.mse((self.0)(model, t.coords.clone())))
    }
}

fn training_error(e: impl std::fmt::Display) -> CompressError {
    CompressError::Training(e.to_string())
}

/// The phase a checkpoint was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    /// COIN's fit.
    Coin,
    /// L0onie's pruning under the budget.
    Prune,
    /// L0onie's fine-tuning with the mask frozen.
    FineTune,
}

/// A fit's state beside its model, optimizer and multipliers.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FitState {
    phase: Phase,
    history: Vec<FitPoint>,
    /// The best PSNR so far and its step (the weights are [`BEST_FILE`]).
    best: Option<(f64, usize)>,
    /// L0onie's fine-tuning: what the pruning phase handed over (its start network is
    /// [`START_FILE`]).
    pruned: Option<PruneOutcome>,
}

/// What L0onie's pruning phase hands to the fine-tuning.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct PruneOutcome {
    psnr: f64,
    step: usize,
    magnitude_pruned: usize,
}

const BEST_FILE: &str = "best.bin";
const START_FILE: &str = "start.bin";

/// A checkpoint read back: where to go on from.
struct Restored {
    step: usize,
    state: FitState,
}

fn record_bytes<B: Backend, M: Module<B>>(model: M) -> Result<Vec<u8>, CompressError> {
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(model.into_record(), ())
        .map_err(|e| CompressError::Training(format!("cannot record a checkpoint: {e}")))
}

fn load_record_file<B: Backend, M: Module<B>>(
    fresh: M,
    dir: &Path,
    file: &str,
    device: &B::Device,
) -> Result<M, CompressError> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(|e| CompressError::io(&path, e))?;
    let record = BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes, device)
        .map_err(|e| CompressError::Corrupt(format!("checkpoint {}: {e}", path.display())))?;
    Ok(fresh.load_record(record))
}

/// Reads the fit state of the checkpoint `ck` resumes from, if it does.
fn restored(ck: Option<&Checkpointing>) -> Result<Option<Restored>, CompressError> {
    let Some(dir) = ck.and_then(|c| c.resume.as_ref()) else {
        return Ok(None);
    };
    let ck = ck.expect("a resume folder implies checkpoints");
    let run = RunState::read(dir, "encode")
        .map_err(|e| CompressError::Invalid(format!("--resume: {e}")))?;
    run.check_config(&ck.key, dir)
        .map_err(|e| CompressError::Invalid(e.to_string()))?;
    let state: FitState = serde_json::from_value(run.task)
        .map_err(|e| CompressError::Corrupt(format!("checkpoint {}: {e}", dir.display())))?;
    Ok(Some(Restored {
        step: run.position.global_step,
        state,
    }))
}

/// Writes a checkpoint of a fit phase at `step`: the constrained core's files, the state,
/// the best weights so far and `extra` files.
#[allow(clippy::too_many_arguments)]
fn save_fit<B, M, O>(
    ck: &Checkpointing,
    step: usize,
    model: &M,
    opt: &ConstrainedOptimizer<O>,
    set: &ConstraintSet<B>,
    state: FitState,
    best: Option<Vec<u8>>,
    extra: &[(&str, &[u8])],
) -> Result<(), CompressError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: burn::optim::Optimizer<M, B>,
{
    let run = RunState::file_bytes("encode", ck.key.clone(), Position::at_step(step), &state)
        .map_err(training_error)?;
    let mut files: Vec<(&str, &[u8])> = vec![(RUN_FILE, &run)];
    if let Some(best) = &best {
        files.push((BEST_FILE, best));
    }
    files.extend_from_slice(extra);
    save_checkpoint_with(&ck.dir, step as u64, model, opt, set, &files).map_err(training_error)
}

/// Steps `range` (global step indices) of the training loop on the full-batch `target`,
/// checkpointed and resumable ([`fit_resumable`]): `save(model, opt, set, step)` writes a
/// checkpoint at `ck`'s boundaries and when the interrupt stops the fit, which then
/// returns [`CompressError::Interrupted`].
#[allow(clippy::too_many_arguments)]
fn run_steps<B, M, O, P>(
    model: M,
    opt: &mut ConstrainedOptimizer<O>,
    set: &mut ConstraintSet<B>,
    problem: &P,
    target: &Target<B>,
    range: std::ops::Range<usize>,
    seed: u64,
    ck: Option<&Checkpointing>,
    on_step: impl FnMut(usize, StepInfo<'_, B, M>),
    save: impl Fn(&M, &ConstrainedOptimizer<O>, &ConstraintSet<B>, usize) -> Result<(), CompressError>,
) -> Result<M, CompressError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: burn::optim::Optimizer<M, B>,
    P: ConstrainedProblem<B, M, Input = Target<B>>,
{
    let checkpoints = ck.map(|c| Checkpoints {
        every: c.every,
        interrupt: &c.interrupt,
        dir: &c.dir,
    });
    fit_resumable(
        model,
        opt,
        set,
        problem,
        range,
        seed,
        &FitOptions::new(0, None),
        checkpoints,
        |_| target.clone(),
        on_step,
        save,
    )
    .map_err(|stop| match stop {
        StepsStop::Train(e) => training_error(e),
        StepsStop::Save(e) => e,
        StepsStop::Interrupted(i) => CompressError::Interrupted(i),
    })
}

/// The best-PSNR model of a fit (PSNR, step, weights) and the fit's log.
type KeptBest<M> = ((f64, usize, M), Vec<FitPoint>);

/// Adam on the full-batch MSE over the global steps `steps`, keeping the best-PSNR model
/// (COIN's recipe), logged at file rate `bpp` after `history`. With `ck` it checkpoints as
/// `phase` (`pruned` and `extra` go into each checkpoint), and `resume` (the step and best
/// PSNR of a checkpoint of this phase) continues from the one in `ck.resume`.
#[allow(clippy::too_many_arguments)]
fn fit_keep_best<B, M>(
    model: M,
    forward: impl Fn(&M, Tensor<B, 2>) -> Tensor<B, 2>,
    target: &Target<B>,
    steps: std::ops::Range<usize>,
    lr: f64,
    bpp: f64,
    bar: &ProgressBar,
    history: Vec<FitPoint>,
    seed: u64,
    ck: Option<&Checkpointing>,
    phase: Phase,
    resume: Option<(usize, Option<(f64, usize)>)>,
    pruned: Option<PruneOutcome>,
    extra: &[(&str, &[u8])],
) -> Result<KeptBest<M>, CompressError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let device = target.coords.device();
    let mut set = ConstraintSet::<B>::new(&device);
    let mut opt =
        ConstrainedOptimizer::new(AdamConfig::new().init(), lr, UpdateScheme::Simultaneous);
    let best: RefCell<Option<(f64, usize, M)>> = RefCell::new(None);
    let (model, from) = match (resume, ck) {
        (
            Some((step, kept)),
            Some(Checkpointing {
                resume: Some(dir), ..
            }),
        ) => {
            if let Some((psnr, at)) = kept {
                let weights = load_record_file(model.clone(), dir, BEST_FILE, &device)?;
                *best.borrow_mut() = Some((psnr, at, weights));
            }
            let (model, _) =
                load_checkpoint(dir, model, &mut opt, &mut set).map_err(training_error)?;
            bar.set_position(step as u64);
            (model, step)
        }
        _ => (model, steps.start),
    };
    let history = RefCell::new(history);
    let save = |model: &M, opt: &ConstrainedOptimizer<_>, set: &ConstraintSet<B>, step| {
        let best = best.borrow();
        let state = FitState {
            phase,
            history: history.borrow().clone(),
            best: best.as_ref().map(|(p, s, _)| (*p, *s)),
            pruned,
        };
        let weights = best
            .as_ref()
            .map(|(_, _, m)| record_bytes(m.clone()))
            .transpose()?;
        let c = ck.expect("saving implies checkpoints");
        save_fit(c, step, model, opt, set, state, weights, extra)
    };
    run_steps(
        model,
        &mut opt,
        &mut set,
        &MseProblem(forward),
        target,
        from..steps.end,
        seed,
        ck,
        |step, info| {
            let psnr = psnr_of(info.values.loss);
            let mut best = best.borrow_mut();
            if best.as_ref().is_none_or(|(p, _, _)| psnr > *p) {
                *best = Some((psnr, step, info.model.clone()));
            }
            history.borrow_mut().push(FitPoint { step, psnr, bpp });
            bar.inc(1);
            if info.step % 25 == 0 {
                let p = best.as_ref().map_or(psnr, |b| b.0);
                bar.set_message(format!("PSNR {p:.2} dB, {bpp:.4} bpp"));
            }
        },
        save,
    )?;
    let best = best.into_inner().expect("at least one step");
    Ok((best, history.into_inner()))
}

/// COIN: fits `arch` to `image` and keeps the best-PSNR weights.
///
/// # Errors
/// Zero steps, a non-positive learning rate, a training failure (a NaN loss), a
/// checkpoint that cannot be written or read, or [`CompressError::Interrupted`].
pub fn fit_coin<B: AutodiffBackend>(
    image: &Image,
    arch: Architecture,
    settings: &FitSettings,
    seed: u64,
    device: &B::Device,
) -> Result<Fitted, CompressError> {
    check(settings)?;
    B::seed(device, seed);
    let model = arch.config().init::<B>(device);
    let target = Target::<B>::new(image, device);
    let bytes = crate::format::dense_file_bytes(&arch, image.width, image.height);
    let bpp = CompressedImage::bpp(bytes, image.pixels());
    let bar = bar(settings.steps, settings.progress, "coin");
    let ck = settings.checkpoint.as_ref();
    let (history, resume) = match restored(ck)? {
        Some(r) if r.state.phase == Phase::Coin => (r.state.history, Some((r.step, r.state.best))),
        Some(r) => {
            return Err(CompressError::Invalid(format!(
                "--resume: the checkpoint is of a {:?} phase, not of a COIN fit",
                r.state.phase
            )));
        }
        None => (Vec::with_capacity(settings.steps), None),
    };
    let ((psnr, step, model), history) = fit_keep_best(
        model,
        |m: &Siren<B>, x| m.forward(x),
        &target,
        0..settings.steps,
        settings.lr,
        bpp,
        &bar,
        history,
        seed,
        ck,
        Phase::Coin,
        resume,
        None,
        &[],
    )?;
    bar.finish();
    Ok(Fitted {
        weights: SirenWeights::from_siren(&model.valid(), arch),
        psnr,
        step,
        history,
        magnitude_pruned: 0,
    })
}

fn check(settings: &FitSettings) -> Result<(), CompressError> {
    if settings.steps == 0 {
        return Err(CompressError::Invalid("--steps must be at least 1".into()));
    }
    if !(settings.lr.is_finite() && settings.lr > 0.0) {
        return Err(CompressError::Invalid(format!(
            "--lr must be a positive number, got {}",
            settings.lr
        )));
    }
    Ok(())
}

/// The same network with every parameter a fresh leaf of the autodiff graph: a folded
/// network's weights are products (weight x gate) whose gradients would flow back to the
/// gated network's parameters, not to these.
fn leaves<B: AutodiffBackend>(mut siren: Siren<B>) -> Siren<B> {
    for layer in &mut siren.layers {
        layer.weight = Param::from_tensor(layer.weight.val().detach());
        layer.bias = layer
            .bias
            .take()
            .map(|b| Param::from_tensor(b.val().detach()));
    }
    siren
}

/// The binary entropy `H(p)` in bits, `p` clamped away from 0 and 1 (differentiable).
fn binary_entropy<B: Backend>(p: Tensor<B, 1>) -> Tensor<B, 1> {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    let q = p.clone().neg().add_scalar(1.0);
    (p.clone() * p.log() + q.clone() * q.log()).neg() / std::f64::consts::LN_2
}

struct L0onieProblem {
    bits: ConstraintId,
    value_bits: u8,
    mode: GateMode,
    arch: Architecture,
    width: usize,
    height: usize,
    budget_bits: f64,
    fixed_bits: f64,
}

impl L0onieProblem {
    /// The real size in bits of the file the deterministic gates would make.
    fn file_bits<B: Backend>(&self, model: &GatedSiren<B>) -> Result<usize, CompressError> {
        let weights = SirenWeights::from_siren(&model.fold(), self.arch);
        let file = CompressedImage {
            width: self.width,
            height: self.height,
            value_bits: self.value_bits,
            weights,
        };
        Ok(file.encode()?.len() * 8)
    }
}

impl<B: AutodiffBackend> ConstrainedProblem<B, GatedSiren<B>> for L0onieProblem {
    type Input = Target<B>;

    fn compute_cmp_state(&self, model: &GatedSiren<B>, t: &Target<B>) -> CmpState<B> {
        let loss = t.mse(model.forward(t.coords.clone(), self.mode));
        let proxy = model
            .layer_gates()
            .into_iter()
            .map(|l| {
                let n = l.gated as f64;
                l.expected.clone().mul_scalar(f64::from(self.value_bits))
                    + binary_entropy(l.expected.div_scalar(n)).mul_scalar(n)
            })
            .reduce(|a, b| a + b)
            .expect("at least one layer")
            .add_scalar(self.fixed_bits);
        // Encoding cannot fail for a network of the problem's own architecture; were it to,
        // an infinite size makes the step an error in the training loop.
        let strict = self
            .file_bits(&model.valid())
            .map_or(f64::INFINITY, |b| b as f64);
        let device = proxy.device();
        let strict = Tensor::<B, 1>::from_data(
            TensorData::new(vec![(strict / self.budget_bits - 1.0) as f32], [1]),
            &device,
        );
        let violation = proxy.div_scalar(self.budget_bits).sub_scalar(1.0);
        CmpState::new(loss).with(
            self.bits,
            ConstraintState::new(violation).with_strict_violation(strict),
        )
    }
}

/// L0onie: fits the gated `arch` to `image` with its file held to `budget_bits`.
///
/// # Errors
/// Invalid settings, or a training failure (a NaN loss).
pub fn fit_l0onie<B: AutodiffBackend>(
    image: &Image,
    arch: Architecture,
    budget_bits: usize,
    settings: &FitSettings,
    l0: &L0onieSettings,
    seed: u64,
    device: &B::Device,
) -> Result<Fitted, CompressError> {
    check(settings)?;
    if !(l0.gate_lr.is_finite() && l0.gate_lr > 0.0) || l0.eval_every == 0 {
        return Err(CompressError::Invalid(
            "--gate-lr must be > 0 and the evaluation interval >= 1".into(),
        ));
    }
    if !(l0.prune_fraction > 0.0 && l0.prune_fraction <= 1.0) {
        return Err(CompressError::Invalid(format!(
            "the pruning fraction must lie in (0, 1], got {}",
            l0.prune_fraction
        )));
    }
    let prune_steps =
        ((settings.steps as f64 * l0.prune_fraction).round() as usize).clamp(1, settings.steps);
    l0.dual.validate().map_err(training_error)?;
    B::seed(device, seed);
    let gates = HardConcreteConfig::new()
        .with_init_drop_rate(l0.init_drop_rate)
        .with_init_spread(l0.init_spread);
    let model = arch.config().init_gated::<B>(&gates, device);
    let ck = settings.checkpoint.as_ref();
    let restored = restored(ck)?;
    // A pruning checkpoint's parameter ids, before the gates' group is keyed by them.
    let model = match (&restored, ck.and_then(|c| c.resume.as_ref())) {
        (Some(r), Some(dir)) if r.state.phase == Phase::Prune => {
            adopt_checkpoint_ids(dir, model).map_err(training_error)?
        }
        _ => model,
    };
    let target = Target::<B>::new(image, device);
    let target_inner = Target::<B::InnerBackend>::new(image, device);
    let mut set = ConstraintSet::<B>::new(device);
    let multiplier = MultiplierConfig::new(l0.dual.clone()).with_restart_on_feasible(true);
    let bits = set
        .add(
            "file bits",
            ConstraintKind::Inequality,
            1,
            FormulationConfig::Lagrangian(multiplier),
        )
        .map_err(training_error)?;
    let fixed_bits =
        crate::format::fixed_bits(&arch, image.width, image.height, l0.value_bits) as f64;
    let problem = L0onieProblem {
        bits,
        value_bits: l0.value_bits,
        mode: if l0.sample_gates {
            GateMode::Sample
        } else {
            GateMode::Deterministic
        },
        arch,
        width: image.width,
        height: image.height,
        budget_bits: budget_bits as f64,
        fixed_bits,
    };
    let primal = TwoGroups::new(
        AdamConfig::new().init(),
        AdamConfig::new().with_beta_1(0.0).init(),
        model.gate_ids(),
        l0.gate_lr / settings.lr,
    );
    let mut opt = ConstrainedOptimizer::new(primal, settings.lr, UpdateScheme::Simultaneous);
    let pixels = image.pixels() as f64;
    let bar = bar(settings.steps, settings.progress, "l0onie");
    let last = prune_steps - 1;
    // 1. Pruning under the budget (skipped when resuming the fine-tuning).
    let (start, psnr, step, magnitude_pruned, history, resume_tune) = match restored {
        Some(r) if r.state.phase == Phase::FineTune => {
            let dir = ck
                .and_then(|c| c.resume.as_ref())
                .expect("restored implies a resume folder");
            let pruned = r.state.pruned.ok_or_else(|| {
                CompressError::Corrupt(format!(
                    "checkpoint {}: a fine-tuning checkpoint without the pruning's outcome",
                    dir.display()
                ))
            })?;
            let start = load_record_file(arch.config().init::<B>(device), dir, START_FILE, device)?;
            (
                start,
                pruned.psnr,
                pruned.step,
                pruned.magnitude_pruned,
                r.state.history,
                Some((r.step, r.state.best)),
            )
        }
        Some(r) if r.state.phase != Phase::Prune => {
            return Err(CompressError::Invalid(format!(
                "--resume: the checkpoint is of a {:?} phase, not of an L0onie fit",
                r.state.phase
            )));
        }
        restored => {
            let dir = ck.and_then(|c| c.resume.as_ref());
            let best: RefCell<Option<(f64, usize, GatedSiren<B>)>> = RefCell::new(None);
            let (model, from, history) = match (&restored, dir) {
                (Some(r), Some(dir)) => {
                    if let Some((psnr, at)) = r.state.best {
                        let weights = load_record_file(model.clone(), dir, BEST_FILE, device)?;
                        *best.borrow_mut() = Some((psnr, at, weights));
                    }
                    let (model, _) =
                        load_checkpoint(dir, model, &mut opt, &mut set).map_err(training_error)?;
                    bar.set_position(r.step as u64);
                    (model, r.step, r.state.history.clone())
                }
                _ => (model, 0, Vec::with_capacity(settings.steps)),
            };
            let history = RefCell::new(history);
            let save = |model: &GatedSiren<B>,
                        opt: &ConstrainedOptimizer<_>,
                        set: &ConstraintSet<B>,
                        step| {
                let best = best.borrow();
                let state = FitState {
                    phase: Phase::Prune,
                    history: history.borrow().clone(),
                    best: best.as_ref().map(|(p, s, _)| (*p, *s)),
                    pruned: None,
                };
                let weights = best
                    .as_ref()
                    .map(|(_, _, m)| record_bytes(m.clone()))
                    .transpose()?;
                let c = ck.expect("saving implies checkpoints");
                save_fit(c, step, model, opt, set, state, weights, &[])
            };
            let final_model = run_steps(
                model,
                &mut opt,
                &mut set,
                &problem,
                &target,
                from..prune_steps,
                seed,
                ck,
                |step, info| {
                    let strict = info.values.constraints[0]
                        .2
                        .as_ref()
                        .expect("strict is set")[0];
                    let file_bits = (strict + 1.0) * budget_bits as f64;
                    let bpp = file_bits / pixels;
                    history.borrow_mut().push(FitPoint {
                        step,
                        psnr: psnr_of(info.values.loss),
                        bpp,
                    });
                    let mut best = best.borrow_mut();
                    if strict <= 0.0 && (step % l0.eval_every == 0 || step == last) {
                        let inner = info.model.valid();
                        let mse = scalar(target_inner.mse(
                            inner.forward(target_inner.coords.clone(), GateMode::Deterministic),
                        ));
                        let psnr = psnr_of(mse);
                        if best.as_ref().is_none_or(|(p, _, _)| psnr > *p) {
                            *best = Some((psnr, step, info.model.clone()));
                        }
                    }
                    bar.inc(1);
                    if step % 25 == 0 {
                        let kept = best.as_ref().map_or_else(
                            || "none fits yet".to_string(),
                            |b| format!("{:.2} dB", b.0),
                        );
                        bar.set_message(format!(
                            "PSNR {:.2} dB (sampled), {bpp:.4} bpp, best kept {kept}",
                            psnr_of(info.values.loss)
                        ));
                    }
                },
                save,
            )?;
            let history = history.into_inner();
            // The network the fine-tuning starts from: the best that fit the budget or,
            // when the gates never got the file under it, the last one with its smallest
            // weights removed until it fits (reported in `Fitted::magnitude_pruned`).
            match best.into_inner() {
                Some((psnr, step, model)) => (leaves(model.fold()), psnr, step, 0, history, None),
                None => {
                    let last_weights = SirenWeights::from_siren(&final_model.valid().fold(), arch);
                    let fitted = prune_to_fit(
                        &last_weights,
                        image.width,
                        image.height,
                        l0.value_bits,
                        budget_bits,
                    )?;
                    let removed = last_weights.nonzero_weights() - fitted.nonzero_weights();
                    let siren = fitted.to_siren::<B>(device);
                    let mse = scalar(
                        target_inner.mse(siren.valid().forward(target_inner.coords.clone())),
                    );
                    (siren, psnr_of(mse), last, removed, history, None)
                }
            }
        }
    };
    let start_weights = SirenWeights::from_siren(&start.valid(), arch);
    let done = |weights, psnr, step, history| Fitted {
        weights,
        psnr,
        step,
        history,
        magnitude_pruned,
    };
    if prune_steps == settings.steps {
        bar.finish();
        return Ok(done(start_weights, psnr, step, history));
    }
    // 2. Fine-tune with the mask frozen, the zeros of the stored (quantised) weights
    //    included: a kept weight can only stay or round to zero, so the file cannot grow.
    let file = CompressedImage {
        width: image.width,
        height: image.height,
        value_bits: l0.value_bits,
        weights: start_weights.clone(),
    };
    let bits = file.encode()?.len() * 8;
    let stored_zeros = file.stored().to_siren::<B>(device);
    let start_bytes = match ck {
        Some(_) => record_bytes(start.clone())?,
        None => Vec::new(),
    };
    let mut masked = MaskedSiren::from_zeros(stored_zeros);
    masked.siren = start;
    let value_bits = l0.value_bits;
    let ((tuned_psnr, tuned_step, tuned), history) = fit_keep_best(
        masked,
        |m: &MaskedSiren<B>, x| masked_forward(m, x, value_bits),
        &target,
        prune_steps..settings.steps,
        settings.lr,
        bits as f64 / pixels,
        &bar,
        history,
        seed,
        ck,
        Phase::FineTune,
        resume_tune,
        Some(PruneOutcome {
            psnr,
            step,
            magnitude_pruned,
        }),
        &[(START_FILE, &start_bytes)],
    )?;
    bar.finish();
    Ok(if tuned_psnr > psnr {
        let weights = SirenWeights::from_siren(&tuned.valid().fold(), arch);
        done(weights, tuned_psnr, tuned_step, history)
    } else {
        done(start_weights, psnr, step, history)
    })
}

/// A masked SIREN's forward pass with its weights fake-quantised to `bits` (16: none):
/// `w + (Q(w) - w).detach()`, the straight-through estimator (Bengio et al. 2013), with
/// `Q` the file's quantiser (one scale per layer, `max |w| / (2^(bits-1) - 1)`), so the
/// fine-tuning sees the rounding the file will apply and its gradients pass through.
fn masked_forward<B: Backend>(m: &MaskedSiren<B>, x: Tensor<B, 2>, bits: u8) -> Tensor<B, 2> {
    if bits >= 16 {
        return m.forward(x);
    }
    let qmax = f64::from((1u32 << (bits - 1)) - 1);
    m.siren.forward_mapped(x, |k, w| {
        let w = w * m.masks[k].clone();
        let scale = w
            .clone()
            .abs()
            .max()
            .detach()
            .div_scalar(qmax)
            .clamp_min(1e-12);
        let q = (w.clone() / scale.clone().unsqueeze()).round() * scale.unsqueeze();
        w.clone() + (q - w).detach()
    })
}

/// `weights` with its smallest-magnitude weights set to zero, as few as needed for the
/// file of a `width x height` image (values of `value_bits` bits) to fit in `budget_bits`.
///
/// # Errors
/// Not even the network with no weights at all fits.
pub fn prune_to_fit(
    weights: &SirenWeights,
    width: usize,
    height: usize,
    value_bits: u8,
    budget_bits: usize,
) -> Result<SirenWeights, CompressError> {
    let mut order: Vec<(f32, usize, usize)> = weights
        .layers
        .iter()
        .enumerate()
        .flat_map(|(l, layer)| {
            layer
                .weight
                .iter()
                .enumerate()
                .filter(|&(_, &w)| w != 0.0)
                .map(move |(i, &w)| (w.abs(), l, i))
        })
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let without = |k: usize| -> Result<(SirenWeights, bool), CompressError> {
        let mut w = weights.clone();
        for &(_, l, i) in &order[..k] {
            w.layers[l].weight[i] = 0.0;
        }
        let file = CompressedImage {
            width,
            height,
            value_bits,
            weights: w,
        };
        let fits = file.encode()?.len() * 8 <= budget_bits;
        Ok((file.weights, fits))
    };
    if !without(order.len())?.1 {
        return Err(CompressError::BudgetTooSmall(format!(
            "{budget_bits} bits cannot hold even the biases of this network; raise --bpp"
        )));
    }
    // The file size only shrinks as weights go (fewer values; the mask code is chosen
    // per layer as the cheapest), so the smallest k that fits is found by bisection.
    let (mut lo, mut hi) = (0, order.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if without(mid)?.1 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(without(lo)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn prune_to_fit_removes_the_smallest_weights_and_no_more() {
        let _rng = crate::rng_lock();
        let device = Default::default();
        let arch = Architecture::new(3, 16);
        let weights =
            SirenWeights::from_siren(&arch.config().init::<Flex>(&device), arch).rounded_to_f16();
        // The weights survive the trip through burn unchanged.
        assert_eq!(
            SirenWeights::from_siren(&weights.to_siren::<Flex>(&device), arch),
            weights
        );
        let (w, h) = (64, 64);
        let full = CompressedImage {
            width: w,
            height: h,
            value_bits: 16,
            weights: weights.clone(),
        };
        let budget = full.encode().unwrap().len() * 8 * 6 / 10;
        let pruned = prune_to_fit(&weights, w, h, 16, budget).unwrap();
        let bytes = |weights: &SirenWeights| {
            CompressedImage {
                width: w,
                height: h,
                value_bits: 16,
                weights: weights.clone(),
            }
            .encode()
            .unwrap()
            .len()
        };
        assert!(bytes(&pruned) * 8 <= budget);
        // Every kept weight is at least as large as every removed one.
        let (mut kept_min, mut removed_max) = (f32::INFINITY, 0.0f32);
        for (a, b) in weights.layers.iter().zip(&pruned.layers) {
            for (&x, &y) in a.weight.iter().zip(&b.weight) {
                if y == 0.0 {
                    removed_max = removed_max.max(x.abs());
                } else {
                    kept_min = kept_min.min(x.abs());
                }
            }
        }
        assert!(removed_max <= kept_min);
        // One weight fewer removed would not fit: the smallest removed weight restored.
        let mut one_back = pruned.clone();
        'outer: for (l, (a, b)) in weights.layers.iter().zip(&pruned.layers).enumerate() {
            for (i, (&x, &y)) in a.weight.iter().zip(&b.weight).enumerate() {
                if y == 0.0 && x != 0.0 && x.abs() == removed_max {
                    one_back.layers[l].weight[i] = x;
                    break 'outer;
                }
            }
        }
        assert!(bytes(&one_back) * 8 > budget);
        let err = prune_to_fit(&weights, w, h, 16, 100).unwrap_err();
        assert!(matches!(err, CompressError::BudgetTooSmall(_)), "{err}");
    }
}
