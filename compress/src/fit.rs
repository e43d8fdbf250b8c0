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

use burn::module::{AutodiffModule, Param};
use burn::optim::AdamConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use tether_models::l0::{GateMode, HardConcreteConfig};
use tether_models::siren::{GatedSiren, MaskedSiren, Siren};
use tether_train::constrained::{
    CmpState, ConstrainedOptimizer, ConstrainedProblem, ConstraintId, ConstraintKind,
    ConstraintSet, ConstraintState, DualOptimizer, FormulationConfig, MultiplierConfig,
    UpdateScheme,
};
use tether_train::optim::TwoGroups;
use tether_train::trainer::{FitOptions, fit};

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
#[derive(Clone, Copy, Debug)]
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

fn bar(steps: usize, show: bool, label: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
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

/// Adam on the full-batch MSE for `steps` steps, keeping the best-PSNR model (COIN's
/// recipe). Steps are logged from `first_step` on, at file rate `bpp`.
#[allow(clippy::too_many_arguments)]
fn fit_keep_best<B, M>(
    model: M,
    forward: impl Fn(&M, Tensor<B, 2>) -> Tensor<B, 2>,
    target: &Target<B>,
    steps: usize,
    lr: f64,
    first_step: usize,
    bpp: f64,
    bar: &ProgressBar,
    history: &mut Vec<FitPoint>,
) -> Result<(f64, usize, M), CompressError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut set = ConstraintSet::<B>::new(&target.coords.device());
    let mut opt =
        ConstrainedOptimizer::new(AdamConfig::new().init(), lr, UpdateScheme::Simultaneous);
    let mut best: Option<(f64, usize, M)> = None;
    fit(
        model,
        &mut opt,
        &mut set,
        &MseProblem(forward),
        &FitOptions::new(steps, None),
        |_| target.clone(),
        |info| {
            let psnr = psnr_of(info.values.loss);
            let step = first_step + info.step;
            if best.as_ref().is_none_or(|(p, _, _)| psnr > *p) {
                best = Some((psnr, step, info.model.clone()));
            }
            history.push(FitPoint { step, psnr, bpp });
            bar.inc(1);
            if info.step % 25 == 0 {
                let p = best.as_ref().map_or(psnr, |b| b.0);
                bar.set_message(format!("PSNR {p:.2} dB, {bpp:.4} bpp"));
            }
        },
    )
    .map_err(training_error)?;
    Ok(best.expect("at least one step"))
}

/// COIN: fits `arch` to `image` and keeps the best-PSNR weights.
///
/// # Errors
/// Zero steps, a non-positive learning rate, or a training failure (a NaN loss).
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
    let mut history = Vec::with_capacity(settings.steps);
    let (psnr, step, model) = fit_keep_best(
        model,
        |m: &Siren<B>, x| m.forward(x),
        &target,
        settings.steps,
        settings.lr,
        0,
        bpp,
        &bar,
        &mut history,
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
    let mut best: Option<(f64, usize, GatedSiren<B>)> = None;
    let mut history = Vec::with_capacity(settings.steps);
    let last = prune_steps - 1;
    let final_model = fit(
        model,
        &mut opt,
        &mut set,
        &problem,
        &FitOptions::new(prune_steps, None),
        |_| target.clone(),
        |info| {
            let strict = info.values.constraints[0]
                .2
                .as_ref()
                .expect("strict is set")[0];
            let file_bits = (strict + 1.0) * budget_bits as f64;
            let bpp = file_bits / pixels;
            history.push(FitPoint {
                step: info.step,
                psnr: psnr_of(info.values.loss),
                bpp,
            });
            if strict <= 0.0 && (info.step % l0.eval_every == 0 || info.step == last) {
                let inner = info.model.valid();
                let mse = scalar(
                    target_inner
                        .mse(inner.forward(target_inner.coords.clone(), GateMode::Deterministic)),
                );
                let psnr = psnr_of(mse);
                if best.as_ref().is_none_or(|(p, _, _)| psnr > *p) {
                    best = Some((psnr, info.step, info.model.clone()));
                }
            }
            bar.inc(1);
            if info.step % 25 == 0 {
                let kept = best
                    .as_ref()
                    .map_or_else(|| "none fits yet".to_string(), |b| format!("{:.2} dB", b.0));
                bar.set_message(format!(
                    "PSNR {:.2} dB (sampled), {bpp:.4} bpp, best kept {kept}",
                    psnr_of(info.values.loss)
                ));
            }
        },
    )
    .map_err(training_error)?;
    // The network the fine-tuning starts from: the best that fit the budget or, when the
    // gates never got the file under it, the last one with its smallest weights removed
    // until it fits (reported in `Fitted::magnitude_pruned`).
    let (start, psnr, step, magnitude_pruned) = match best {
        Some((psnr, step, model)) => (leaves(model.fold()), psnr, step, 0),
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
            let mse = scalar(target_inner.mse(siren.valid().forward(target_inner.coords.clone())));
            (siren, psnr_of(mse), last, removed)
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
    // Fine-tune with the mask frozen, the zeros of the stored (quantised) weights
    // included: a kept weight can only stay or round to zero, so the file cannot grow.
    let file = CompressedImage {
        width: image.width,
        height: image.height,
        value_bits: l0.value_bits,
        weights: start_weights.clone(),
    };
    let bits = file.encode()?.len() * 8;
    let stored_zeros = file.stored().to_siren::<B>(device);
    let mut masked = MaskedSiren::from_zeros(stored_zeros);
    masked.siren = start;
    let value_bits = l0.value_bits;
    let (tuned_psnr, tuned_step, tuned) = fit_keep_best(
        masked,
        |m: &MaskedSiren<B>, x| masked_forward(m, x, value_bits),
        &target,
        settings.steps - prune_steps,
        settings.lr,
        prune_steps,
        bits as f64 / pixels,
        &bar,
        &mut history,
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
