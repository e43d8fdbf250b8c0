//! Fitting a Cool-chic model to an image under a bit budget, and writing its file.
//!
//! ```text
//! min  MSE(synthesis(upsample(Q(y))), image)   s.t.   bits(file) / budget - 1 <= 0
//! ```
//! on the project's training loop: the model descends the Lagrangian
//! `MSE + lambda sg(MSE) (R(y) + R_0) / budget`, where `R(y)` is the ARM's differentiable
//! rate of the (noisy or rounded) latents, `R_0` the measured bits of everything else
//! (header, weights, checksum) and `sg(MSE)` the current MSE held constant; the multiplier
//! `lambda` ([`super::dual`], a PI controller in the log domain) follows the *true* size
//! of the file the current model makes, written every step by the decoder's own encoder
//! (the strict-violation pattern of L0onie's fit). `lambda` is the rate-distortion
//! trade-off that the papers sweep by hand.
//!
//! Phases (C3, Kim et al. 2024, Sec. 3.1, as Cool-chic 3 runs them): soft-rounding with
//! Kumaraswamy noise for the first `noise_fraction` of the steps, its temperature
//! annealed 0.3 -> 0.1 and the noise 2 -> 1, the learning rate cosine-decayed from `lr`;
//! then rounding with a straight-through gradient at `lr * round_lr`, cosine-decayed. The
//! rate estimate then tracks the real file's (measured: 1.08-1.11x in the soft phase,
//! 0.99x in the rounding phase at 0.15 bpp; plain uniform noise was 2.5x under, and the
//! multiplier driven by the real size collapsed the latents). Every `eval_every` steps, a
//! file that fits the budget is decoded and the best PSNR kept.
//!
//! Each network tensor's quantisation step (`2^-e`) is searched greedily three times
//! (`choose_steps`): at `search_at` of the soft phase, to minimise the fit's own
//! `ln MSE + lambda bits / budget` (the papers' post-training weight quantisation, with
//! the constraint's multiplier), so that the rest of the soft phase gives the bits it
//! frees to the latents; at the switch to rounding and at the end, to minimise the MSE
//! among files within the budget. Last, [`super::refine`] spends what is left under the
//! budget on single-latent moves, priced exactly ([`super::local`]).

use std::cell::{Cell, RefCell};

use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use tether_deploy::coolchic::file::QTensor;
use tether_deploy::coolchic::{Arch, CoolChic, Header, Mlp, encode, synthesis};
use tether_train::constrained::{
    CmpState, ConstrainedOptimizer, ConstrainedProblem, ConstraintSet, UpdateScheme,
};
use tether_train::trainer::{FitOptions, StepsStop, fit_resumable, progress_bar};

use super::dual::{RateDual, RateDualConfig};
use super::model::{CoolChicNet, Geometry, Quant, to_dense};
use super::refine::{Candidate, Refined, spend_budget, trim_to_budget};
use crate::error::CompressError;
use crate::fit::{FitPoint, FitSettings};
use crate::image::{Image, mse, psnr_from_mse};

/// Adam's `beta_2` for the whole fit (see its use for why not burn's 0.999).
pub const ADAM_BETA_2: f32 = 0.99;

/// Cool-chic's knobs besides the step count.
#[derive(Clone, Debug)]
pub struct CoolChicSettings {
    /// Adam learning rate at the start of the soft-rounding phase (Cool-chic, C3: 1e-2),
    /// decayed to 0 over the phase by a cosine (C3, Sec. 3.1).
    pub lr: f64,
    /// The rounding phase's learning rate as a share of `lr` (also cosine-decayed).
    pub round_lr: f64,
    /// Learn the upsampling pre-filters (in the rounding phase, [`CoolChicNet::forward`]);
    /// otherwise they stay zero (the fixed bilinear upsampling). Measured: +0.24 dB at
    /// equal rate on 4 Kodak images at 192x128 with 1000 steps (7 of 8 points better),
    /// but the 48x32 images of 300 steps lost 1-5 dB and the budget (the filters' codes
    /// grow after the last step search), so it is off by default.
    pub learn_upsampling: bool,
    /// Fraction of the steps with soft-rounding and noise (the rest rounds).
    pub noise_fraction: f64,
    /// Soft-round temperature at the start and end of the first phase, linear between
    /// (C3 and Cool-chic 3: 0.3 to 0.1).
    pub temperature: (f64, f64),
    /// The Kumaraswamy noise shape at the start and end of the first phase (Cool-chic 3:
    /// 2 to 1, i.e. from concentrated towards uniform).
    pub kumaraswamy: (f64, f64),
    /// The rate multiplier's controller.
    pub dual: RateDualConfig,
    /// Decode the file (for the best-PSNR choice) every this many steps.
    pub eval_every: usize,
    /// The networks' quantisation step `2^-e` at the start of the fit.
    pub weight_exponent: u32,
    /// The share of the soft phase after which the networks' steps are first searched
    /// (by the fit's own rate-distortion trade-off), so that the rest of the soft phase,
    /// at a learning rate the latents still move at, spends the bits the search frees.
    pub search_at: f64,
}

impl CoolChicSettings {
    /// The quantiser and learning rate of `step` of `total`, the first `noise_steps` of
    /// them soft-rounding.
    pub fn schedule(&self, step: usize, noise_steps: usize, total: usize) -> (Quant, f64) {
        let cosine = |t: usize, n: usize| {
            0.5 * (1.0 + (std::f64::consts::PI * t as f64 / n.max(1) as f64).cos())
        };
        if step < noise_steps {
            let f = step as f64 / (noise_steps.max(2) - 1) as f64;
            let lerp = |(a, b): (f64, f64)| a + (b - a) * f;
            (
                Quant::SoftRound {
                    temperature: lerp(self.temperature),
                    noise: lerp(self.kumaraswamy),
                },
                self.lr * cosine(step, noise_steps),
            )
        } else {
            (
                Quant::Round,
                self.lr * self.round_lr * cosine(step - noise_steps, total - noise_steps),
            )
        }
    }
}

/// A fitted, written image.
#[derive(Clone, Debug)]
pub struct FittedCoolChic {
    /// What the file holds.
    pub file: CoolChic,
    /// The file.
    pub bytes: Vec<u8>,
    /// The file decoded by `tether_deploy::coolchic`.
    pub decoded: Image,
    /// Its PSNR (dB).
    pub psnr: f64,
    /// The step the model was kept at.
    pub step: usize,
    /// Per step: the training forward pass's PSNR and the real file's bpp.
    pub history: Vec<FitPoint>,
    /// Per step: the bpp the training pass estimates (the latents' rate under the ARM plus
    /// the measured rest of the file), to compare with the real file's in `history`.
    pub estimated_bpp: Vec<f64>,
    /// Per step: the rate multiplier the step descended with.
    pub lambdas: Vec<f64>,
    /// The multiplier at the end (the rate-distortion trade-off found).
    pub multiplier: f64,
    /// Latents set to zero after the fit because no file fitted the budget (0 normally).
    pub dropped_latents: usize,
    /// The greedy refinements that spent the bits left under the budget.
    pub refined: Refined,
    /// The searches of the networks' steps during the fit.
    pub searches: Vec<StepSearch>,
}

/// A search of the networks' quantisation steps during the fit, and the file's size
/// before and after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSearch {
    /// The step it ran at.
    pub step: usize,
    /// The multiplier it traded bits at (0: the lowest error within the budget).
    pub lambda: f64,
    /// The file's bits with the steps before the search.
    pub bits_before: usize,
    /// The file's bits with the steps it chose.
    pub bits_after: usize,
}

/// PSNR of an MSE of values in `[0, 1]`.
fn unit_psnr(mse: f64) -> f64 {
    -10.0 * mse.log10()
}

fn training_error(e: impl std::fmt::Display) -> CompressError {
    CompressError::Training(e.to_string())
}

fn tensors(mlp: &Mlp, exponents: &[u32]) -> Vec<QTensor> {
    mlp.layers
        .iter()
        .flat_map(|l| [&l.weight, &l.bias])
        .zip(exponents)
        .map(|(v, &e)| QTensor::quantise(v, e))
        .collect()
}

/// Float networks (runtime layout) of a model, ARM then synthesis.
#[derive(Clone, Debug)]
struct Networks {
    arm: Mlp,
    synth: Mlp,
    /// The upsampling pre-filters (the file's order).
    ups: Vec<f32>,
}

impl Networks {
    fn of<B: burn::tensor::backend::Backend>(net: &CoolChicNet<B>) -> Self {
        Self {
            arm: to_dense(&net.arm),
            synth: to_dense(&net.synth),
            ups: net.upsampling(),
        }
    }

    /// The file of these networks with `exponents` (the ARM's tensors, the synthesis',
    /// then the upsampling filters').
    fn file(&self, header: &Header, exponents: &[u32], latents: Vec<Vec<i32>>) -> CoolChic {
        let na = 2 * self.arm.layers.len();
        let ns = 2 * self.synth.layers.len();
        CoolChic {
            header: header.clone(),
            arm: tensors(&self.arm, &exponents[..na]),
            synthesis: tensors(&self.synth, &exponents[na..na + ns]),
            latents,
            upsampling: QTensor::quantise(&self.ups, exponents[na + ns]),
        }
    }
}

fn coded(file: &CoolChic) -> Result<Vec<u8>, CompressError> {
    encode(file).map_err(|e| CompressError::Invalid(format!("internal error: {e}")))
}

fn decoded(file: &CoolChic) -> Result<Image, CompressError> {
    let rgb = synthesis::render(file).map_err(|e| CompressError::Invalid(format!("{e}")))?;
    Image::new(file.header.width, file.header.height, rgb)
}

struct Problem<B: AutodiffBackend> {
    geometry: Geometry<B>,
    target: Tensor<B, 2>,
    header: Header,
    budget: f64,
    /// The networks' step exponents the file is measured with (per tensor).
    exponents: RefCell<Vec<u32>>,
    quant: Cell<Quant>,
    /// The file of the model last observed, and its bits.
    last: RefCell<Option<(CoolChic, usize)>>,
    /// The rate multiplier of the step under way.
    lambda: Cell<f64>,
    /// The last observation: the training pass's MSE, the real file's bits (infinite if
    /// it could not be written) and the training pass's estimate of them.
    observed: Cell<(f64, f64, f64)>,
}

impl<B: AutodiffBackend> Problem<B> {
    /// The file `net` makes (weights at the fit's step) and the bits of its non-latent part.
    fn measure(&self, net: &CoolChicNet<B>) -> Result<(CoolChic, usize, usize), CompressError> {
        let nets = Networks::of(net);
        let exps = self.exponents.borrow().clone();
        let latents = net.latent_codes();
        let empty: Vec<Vec<i32>> = latents.iter().map(|l| vec![0; l.len()]).collect();
        let overhead = coded(&nets.file(&self.header, &exps, empty))?.len() * 8;
        let file = nets.file(&self.header, &exps, latents);
        let bits = coded(&file)?.len() * 8;
        Ok((file, bits, overhead))
    }
}

impl<B: AutodiffBackend> ConstrainedProblem<B, CoolChicNet<B>> for Problem<B> {
    type Input = ();

    fn compute_cmp_state(&self, model: &CoolChicNet<B>, _: &()) -> CmpState<B> {
        // Encoding cannot fail for the model's own shape; were it to, an infinite size
        // makes the step an error in the training loop.
        let (real, overhead, steps) = match self.measure(model) {
            Ok((file, bits, overhead)) => {
                // The steps the file's tensors actually got (coarser where a weight is
                // too large for the codes at the asked step).
                let e = |t: &[QTensor]| t.iter().map(|q| q.exponent).collect::<Vec<_>>();
                let steps = (e(&file.arm), e(&file.synthesis), file.upsampling.exponent);
                *self.last.borrow_mut() = Some((file, bits));
                (bits as f64, overhead as f64, Some(steps))
            }
            Err(_) => (f64::INFINITY, 0.0, None),
        };
        let f = model.forward(
            &self.geometry,
            self.quant.get(),
            steps
                .as_ref()
                .map(|(a, s, u)| (a.as_slice(), s.as_slice(), *u)),
        );
        let mse = (f.rgb - self.target.clone()).square().mean();
        let device = mse.device();
        // Levels the file codes as all-zero cost their flag, counted in `overhead`.
        let coded: Vec<f32> = model
            .latent_codes()
            .iter()
            .map(|l| f32::from(u8::from(l.iter().any(|&v| v != 0))))
            .collect();
        let n = coded.len();
        let mask = Tensor::<B, 1>::from_data(TensorData::new(coded, [n]), &device);
        let estimate = (f.level_bits * mask).sum().add_scalar(overhead);
        let mse_now = mse.clone().detach();
        // One host read for the log and the controller.
        let values: Vec<f32> = Tensor::cat(vec![mse_now.clone(), estimate.clone().detach()], 0)
            .into_data()
            .to_vec()
            .unwrap_or_else(|_| vec![f32::NAN; 2]);
        self.observed
            .set((f64::from(values[0]), real, f64::from(values[1])));
        let rate = estimate
            .div_scalar(self.budget)
            .mul(mse_now)
            .mul_scalar(self.lambda.get());
        CmpState::new(mse + rate)
    }
}

/// The best file kept so far.
struct Kept<B: AutodiffBackend> {
    psnr: f64,
    step: usize,
    net: CoolChicNet<B>,
}

/// Fits `arch` to `image` under `budget_bits` and writes the file.
///
/// # Errors
/// Invalid settings, a failed fit, or a budget no file of `arch` fits.
pub fn fit_coolchic<B: AutodiffBackend>(
    image: &Image,
    arch: &Arch,
    budget_bits: usize,
    settings: &FitSettings,
    cc: &CoolChicSettings,
    seed: u64,
    device: &B::Device,
) -> Result<FittedCoolChic, CompressError> {
    if settings.steps == 0 || cc.eval_every == 0 {
        return Err(CompressError::Invalid(
            "--steps and the evaluation interval must be at least 1".into(),
        ));
    }
    if !(cc.lr.is_finite()
        && cc.lr > 0.0
        && (0.0..=1.0).contains(&cc.noise_fraction)
        && (0.0..=1.0).contains(&cc.search_at))
    {
        return Err(CompressError::Invalid(format!(
            "the learning rate must be > 0, the noise fraction and the first step search's \
             share of it in [0, 1], got {}, {} and {}",
            cc.lr, cc.noise_fraction, cc.search_at
        )));
    }
    let positive = |(a, b): (f64, f64)| a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0;
    if !(positive(cc.temperature)
        && positive(cc.kumaraswamy)
        && cc.kumaraswamy.0 >= 1.0
        && cc.kumaraswamy.1 >= 1.0
        && cc.round_lr.is_finite()
        && cc.round_lr >= 0.0)
    {
        return Err(CompressError::Invalid(format!(
            "soft-round temperatures must be > 0, Kumaraswamy shapes >= 1 and the rounding \
             phase's learning-rate share >= 0, got {:?}, {:?} and {}",
            cc.temperature, cc.kumaraswamy, cc.round_lr
        )));
    }
    cc.dual.validate().map_err(CompressError::Invalid)?;
    B::seed(device, seed);
    let (w, h) = (image.width, image.height);
    let header = Header {
        width: w,
        height: h,
        arch: arch.clone(),
    };
    let mut net = CoolChicNet::<B>::new(w, h, arch, device);
    if !cc.learn_upsampling {
        net.ups.clear();
    }
    // The multiplier is the controller's (see `super::dual`), so the set holds no
    // constraint: the Lagrangian is the problem's loss.
    let mut set = ConstraintSet::<B>::new(device);
    let mut dual = RateDual::new(cc.dual.clone());
    let problem = Problem {
        geometry: Geometry::new(w, h, arch, device),
        target: Tensor::from_data(TensorData::new(image.to_unit(), [w * h, 3]), device),
        header: header.clone(),
        budget: budget_bits as f64,
        exponents: RefCell::new(vec![
            cc.weight_exponent;
            2 * (arch.arm_hidden.len()
                + arch.synth_hidden.len()
                + 2)
                + 1
        ]),
        quant: Cell::new(Quant::Noise),
        last: RefCell::new(None),
        lambda: Cell::new(dual.lambda()),
        observed: Cell::new((f64::NAN, f64::INFINITY, f64::NAN)),
    };
    // Adam's epsilon far under the latents' gradients: the MSE's gradient per latent times
    // the soft-round's slope at integers (1e-3 at T = 0.1) fell under burn's default 1e-5,
    // Adam stopped being scale-free and the latents stopped growing (kodim03 at 0.3 bpp,
    // 600 steps: 70% of the budget with 1e-5, 97% with 1e-10).
    // Adam's second moments forget in about 100 steps (beta_2 = 0.99, not 0.999): after
    // a phase of large rate gradients (the multiplier high, early in the fit) the latents
    // whose MSE gradients are far smaller stood still for the ~1000 steps that 0.999
    // remembers them (kodim03 at 0.15 bpp: 0.08 -> 0.12 bpp in 1000 steps at a multiplier
    // of 0.001; with 0.99, 24.75 against 23.66 dB at the same budget use).
    let adam = AdamConfig::new()
        .with_epsilon(1e-10)
        .with_beta_2(ADAM_BETA_2);
    let mut opt = ConstrainedOptimizer::new(adam.init(), cc.lr, UpdateScheme::Simultaneous);
    let noise_steps = (settings.steps as f64 * cc.noise_fraction).round() as usize;
    let bar = progress_bar(settings.steps, settings.progress.then_some("coolchic"));
    let pixels = image.pixels() as f64;
    let history = RefCell::new(Vec::with_capacity(settings.steps));
    let kept: RefCell<Option<Kept<B>>> = RefCell::new(None);
    let mut error: Option<CompressError> = None;
    let mut model = net;
    let total = settings.steps;
    let last_step = total - 1;
    let est_bpp = RefCell::new(Vec::with_capacity(total));
    let lambdas = RefCell::new(Vec::with_capacity(total));
    let search_step = (noise_steps as f64 * cc.search_at).round() as usize;
    let mut searches = Vec::new();
    for step in 0..total {
        let rounding = step >= noise_steps;
        let switch = step == noise_steps && step > 0;
        let early = step == search_step && step > 0 && step < noise_steps;
        if switch || early {
            // The networks' steps chosen at the switch to rounding: the best decoded image
            // within the budget, so the rounding phase holds the budget with the steps the
            // file will (mostly) have. The cap is the file's size now where that is over
            // the budget: the controller holds the size about the budget, and a file a
            // little over it, forced under by the steps alone, got coarse steps for its
            // first tensors and lost 4% of the budget for good (the 48x32 test image at
            // 1.5 bpp: 1.51 -> 1.44 bpp at the switch).
            //
            // The first search comes earlier, in the soft phase, and trades bits against
            // error at the fit's own multiplier: coarser steps for the ARM cost no error
            // and free bits (kodim02 at 0.6 bpp: 98.8% -> 94.7% of the budget at the
            // switch), which the rounding phase, at its small learning rate, could not
            // give to the latents; the soft phase's rest does.
            let net = model.valid();
            let nets = Networks::of(&net);
            let exps = problem.exponents.borrow().clone();
            let latents = net.latent_codes();
            let now = coded(&nets.file(&header, &exps, latents.clone()))?.len() * 8;
            let lambda = if early { dual.lambda() } else { 0.0 };
            let (exps, (_, bytes, _, _)) = choose_steps(
                &nets,
                &header,
                exps,
                latents,
                image,
                budget_bits.max(now),
                lambda,
            )?;
            searches.push(StepSearch {
                step,
                lambda,
                bits_before: now,
                bits_after: bytes.len() * 8,
            });
            *problem.exponents.borrow_mut() = exps;
        }
        let (quant, lr) = cc.schedule(step, noise_steps, total);
        problem.quant.set(quant);
        problem.lambda.set(dual.lambda());
        opt.set_lr(lr);
        model = fit_resumable(
            model,
            &mut opt,
            &mut set,
            &problem,
            step..step + 1,
            seed,
            &FitOptions::new(0, None),
            None,
            |_| (),
            |step, info| {
                let (mse_now, file_bits, estimate) = problem.observed.get();
                dual.observe(file_bits, budget_bits as f64);
                lambdas.borrow_mut().push(problem.lambda.get());
                est_bpp.borrow_mut().push(estimate / pixels);
                history.borrow_mut().push(FitPoint {
                    step,
                    psnr: unit_psnr(mse_now),
                    bpp: file_bits / pixels,
                });
                let strict = file_bits - budget_bits as f64;
                bar.inc(1);
                // The rounding phase's files are the candidates: every one that fits is
                // decoded (the size moves step to step, and a file evaluated only every
                // `eval_every` steps missed those closest to the budget).
                if strict <= 0.0 && (rounding || step % cc.eval_every == 0 || step == last_step) {
                    let last = problem.last.borrow();
                    let Some((file, _)) = last.as_ref() else {
                        return;
                    };
                    match decoded(file).and_then(|d| mse(image, &d)) {
                        Ok(m) => {
                            let psnr = psnr_from_mse(m);
                            let mut kept = kept.borrow_mut();
                            if kept.as_ref().is_none_or(|k| psnr > k.psnr) {
                                *kept = Some(Kept {
                                    psnr,
                                    step,
                                    net: info.model.clone(),
                                });
                            }
                        }
                        Err(e) => error = Some(e),
                    }
                }
                if step % 25 == 0 {
                    let best = kept
                        .borrow()
                        .as_ref()
                        .map_or_else(|| "none fits yet".into(), |k| format!("{:.2} dB", k.psnr));
                    bar.set_message(format!(
                        "PSNR {:.2} dB (training), {:.4} bpp (estimate {:.4}), lambda {:.3}, \
                         best kept {best}",
                        unit_psnr(mse_now),
                        file_bits / pixels,
                        estimate / pixels,
                        problem.lambda.get(),
                    ));
                }
            },
            |_, _, _, _| Ok::<(), CompressError>(()),
        )
        .map_err(|stop| match stop {
            StepsStop::Train(e) => training_error(e),
            StepsStop::Save(e) => e,
            StepsStop::Interrupted(i) => CompressError::Interrupted(i),
        })?;
    }
    bar.finish();
    if let Some(e) = error {
        return Err(e);
    }
    let multiplier = dual.lambda();
    let write = |f: &CoolChic| -> Result<(Vec<u8>, f64), CompressError> {
        let bytes = coded(f)?;
        let m = mse(image, &decoded(f)?)?;
        Ok((bytes, m))
    };
    // The last model, when its file is over the budget: trimmed under it by the latent
    // moves that cost the least error per bit saved. (A fit whose rounding phase stays a
    // little over the budget otherwise keeps a soft-phase file: kodim02 at 0.6 bpp, 1000
    // steps, 102% of the budget through the rounding phase at 31.1 dB, kept step 270 at
    // 29.0 dB.)
    let last_net = model.valid();
    let (net_ad, step, dropped) = match kept.into_inner() {
        Some(k) => (k.net, k.step, None),
        None => (model, settings.steps - 1, Some(())),
    };
    let exps = problem.exponents.borrow().clone();
    let trimmed = {
        let nets = Networks::of(&last_net);
        let latents = last_net.latent_codes();
        let now = coded(&nets.file(&header, &exps, latents.clone()))?.len() * 8;
        if now > budget_bits {
            let (_, (file, bytes, _, m)) =
                choose_steps(&nets, &header, exps.clone(), latents, image, now, 0.0)?;
            trim_to_budget(
                Candidate {
                    file,
                    bytes,
                    mse: m,
                },
                &image.rgb,
                budget_bits,
                write,
            )?
        } else {
            None
        }
    };
    let net = net_ad.valid();
    let nets = Networks::of(&net);
    let mut latents = net.latent_codes();
    let mut dropped_latents = 0;
    if dropped.is_some() {
        (latents, dropped_latents) = drop_latents(
            &nets,
            &header,
            &exps,
            latents,
            &net.latent_values(),
            budget_bits,
        )?;
    }
    // Bits under the budget are free: the final steps maximise the PSNR within it.
    let (_, (file, bytes, _, m)) =
        choose_steps(&nets, &header, exps, latents, image, budget_bits, 0.0)?;
    // What is still under the budget goes to the latents that lower the error most per bit.
    let (mut best, mut refined) = spend_budget(
        Candidate {
            file,
            bytes,
            mse: m,
        },
        &image.rgb,
        budget_bits,
        write,
    )?;
    let mut step = step;
    if let Some((c, moved)) = trimmed {
        let (c, r) = spend_budget(c, &image.rgb, budget_bits, write)?;
        if c.mse < best.mse {
            (best, refined, step, dropped_latents) = (c, r, settings.steps - 1, 0);
            refined.trimmed = moved;
        }
    }
    let Candidate {
        file,
        bytes,
        mse: m,
    } = best;
    let decoded_image = decoded(&file)?;
    if bytes.len() * 8 > budget_bits {
        return Err(CompressError::Invalid(format!(
            "internal error: the file has {} bits, over the budget of {budget_bits}",
            bytes.len() * 8
        )));
    }
    Ok(FittedCoolChic {
        file,
        bytes,
        decoded: decoded_image,
        psnr: psnr_from_mse(m),
        step,
        history: history.into_inner(),
        estimated_bpp: est_bpp.into_inner(),
        lambdas: lambdas.into_inner(),
        multiplier,
        dropped_latents,
        refined,
        searches,
    })
}

/// The latents with the fewest nonzero ones of smallest magnitude set to zero so that the
/// file fits `budget_bits` (by bisection on how many; the file shrinks, give or take the
/// ARM's contexts, as latents go, and the result is checked).
fn drop_latents(
    nets: &Networks,
    header: &Header,
    exps: &[u32],
    latents: Vec<Vec<i32>>,
    values: &[Vec<f32>],
    budget_bits: usize,
) -> Result<(Vec<Vec<i32>>, usize), CompressError> {
    let mut order: Vec<(f32, usize, usize)> = latents
        .iter()
        .enumerate()
        .flat_map(|(l, level)| {
            level
                .iter()
                .enumerate()
                .filter(|&(_, &v)| v != 0)
                .map(move |(i, _)| (values[l][i].abs(), l, i))
        })
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let without = |k: usize| -> Result<(Vec<Vec<i32>>, bool), CompressError> {
        let mut l = latents.clone();
        for &(_, lv, i) in &order[..k] {
            l[lv][i] = 0;
        }
        let fits = coded(&nets.file(header, exps, l.clone()))?.len() * 8 <= budget_bits;
        Ok((l, fits))
    };
    if !without(order.len())?.1 {
        return Err(CompressError::BudgetTooSmall(format!(
            "{budget_bits} bits cannot hold this Cool-chic network even with no latents; \
             raise --bpp"
        )));
    }
    let (mut lo, mut hi) = (0, order.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if without(mid)?.1 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // The bisection assumed a monotone size; step on until it truly fits.
    let mut k = lo;
    loop {
        let (l, fits) = without(k)?;
        if fits {
            return Ok((l, k));
        }
        k += 1;
    }
}

/// A file, its bytes, its decoding and the decoding's MSE.
type Written = (CoolChic, Vec<u8>, Image, f64);

/// Each network tensor's step exponent, chosen greedily in turn (one pass, exponents 2 to
/// 12) to minimise `ln MSE + lambda bits / budget` among files within the budget (over
/// the budget: the smallest file), and the file they make.
fn choose_steps(
    nets: &Networks,
    header: &Header,
    mut exps: Vec<u32>,
    latents: Vec<Vec<i32>>,
    image: &Image,
    budget_bits: usize,
    lambda: f64,
) -> Result<(Vec<u32>, Written), CompressError> {
    let write = |exps: &[u32]| -> Result<Written, CompressError> {
        let file = nets.file(header, exps, latents.clone());
        let bytes = coded(&file)?;
        let d = decoded(&file)?;
        let m = mse(image, &d)?;
        Ok((file, bytes, d, m))
    };
    let cost = |w: &Written| {
        let bits = w.1.len() * 8;
        if bits > budget_bits {
            1e9 + bits as f64
        } else {
            // `ln MSE + lambda R / budget`: the fit's own objective (`super::dual`).
            // Ties (lambda = 0) go to the smaller file.
            w.3.max(1e-12).ln() + lambda.max(1e-12) * bits as f64 / budget_bits as f64
        }
    };
    let mut best = write(&exps)?;
    let mut best_cost = cost(&best);
    for t in 0..exps.len() {
        for e in 2..=12 {
            if e == exps[t] {
                continue;
            }
            let mut trial = exps.clone();
            trial[t] = e;
            let w = write(&trial)?;
            let c = cost(&w);
            if c < best_cost {
                best_cost = c;
                best = w;
                exps = trial;
            }
        }
    }
    Ok((exps, best))
}

/// What other modules' tests need from the fit.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The file of `net` with its networks at the step `2^-8` and its latents rounded.
    pub(crate) fn networks_file<B: burn::tensor::backend::Backend>(
        net: &CoolChicNet<B>,
        header: &Header,
    ) -> CoolChic {
        let nets = Networks::of(net);
        let n = 2 * (nets.arm.layers.len() + nets.synth.layers.len()) + 1;
        nets.file(header, &vec![8; n], net.latent_codes())
    }
}
