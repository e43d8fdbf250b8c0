//! Encoding an image end to end: choose the network for the budget, fit it (COIN,
//! L0onie or Cool-chic), write the file, and decode that file with `tether-deploy` to
//! report the PSNR a reader will actually see.

use burn::tensor::backend::AutodiffBackend;

use crate::arch::{coin_architecture, l0onie_architecture};
use crate::coolchic::fit::{CoolChicSettings, FittedCoolChic, fit_coolchic};
use crate::error::CompressError;
use crate::fit::{FitSettings, Fitted, L0onieSettings, fit_coin, fit_l0onie};
use crate::format::CompressedImage;
use crate::image::{Image, psnr};
use crate::render::decode_file;
use crate::weights::Architecture;

/// How the network is chosen and fitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// COIN: the largest dense SIREN of COIN's family that fits the budget.
    Coin,
    /// L0onie: an over-parameterised SIREN pruned by L0 gates under the budget constraint.
    L0onie,
    /// Cool-chic: latent grids, an auto-regressive entropy model and a small synthesis
    /// network, the file's size a constraint ([`crate::coolchic`]).
    #[value(name = "coolchic")]
    CoolChic,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Coin => "coin",
            Self::L0onie => "l0onie",
            Self::CoolChic => "coolchic",
        })
    }
}

/// Everything an encoding needs besides the image.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// COIN or L0onie.
    pub method: Method,
    /// Target bits per pixel of the whole file.
    pub bpp: f64,
    /// Steps, learning rate, progress.
    pub fit: FitSettings,
    /// L0onie's gates and multiplier.
    pub l0onie: L0onieSettings,
    /// L0onie's starting network has about this many times COIN's weights.
    pub overparam: f64,
    /// Bits per stored weight value: 16 (f16, COIN's format) or, for L0onie, 2 to 15
    /// (quantised, fine-tuned quantisation-aware).
    pub value_bits: u8,
    /// Cool-chic's learning rate, phases and step search.
    pub coolchic: CoolChicSettings,
    /// Seed of the initialisation and the gates' noise.
    pub seed: u64,
}

/// What was fitted: a SIREN (COIN, L0onie) or a Cool-chic model.
#[derive(Clone, Debug)]
pub enum Fit {
    /// COIN or L0onie.
    Siren {
        /// The network fitted (for L0onie, before pruning).
        arch: Architecture,
        /// The fit (its log, the step the weights were kept at).
        fitted: Fitted,
    },
    /// Cool-chic.
    CoolChic(Box<FittedCoolChic>),
}

/// An encoded image.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The file.
    pub bytes: Vec<u8>,
    /// The file decoded by `tether-deploy`.
    pub decoded: Image,
    /// PSNR of `decoded` against the input (dB, 8-bit).
    pub psnr: f64,
    /// Bits per pixel of the file, everything included.
    pub bpp: f64,
    /// COIN's convention: stored parameters (nonzero weights and biases) x 16 / pixels
    /// (Cool-chic: network parameters and nonzero latents x 16 / pixels).
    pub coin_bpp: f64,
    /// Nonzero weights in the file (Cool-chic: nonzero network weights).
    pub nonzero_weights: usize,
    /// The fit.
    pub fit: Fit,
}

impl Encoded {
    /// SIREN: hidden layers; Cool-chic: hidden layers of the ARM and the synthesis.
    pub fn layers(&self) -> usize {
        match &self.fit {
            Fit::Siren { arch, .. } => arch.layers,
            Fit::CoolChic(c) => {
                let a = &c.file.header.arch;
                a.arm_hidden.len() + a.synth_hidden.len()
            }
        }
    }

    /// The widest hidden layer.
    pub fn width(&self) -> usize {
        match &self.fit {
            Fit::Siren { arch, .. } => arch.width,
            Fit::CoolChic(c) => {
                let a = &c.file.header.arch;
                a.arm_hidden
                    .iter()
                    .chain(&a.synth_hidden)
                    .copied()
                    .max()
                    .unwrap_or(0)
            }
        }
    }

    /// The step the kept model was taken at.
    pub fn kept_step(&self) -> usize {
        match &self.fit {
            Fit::Siren { fitted, .. } => fitted.step,
            Fit::CoolChic(c) => c.step,
        }
    }

    /// Weights (L0onie) or latents (Cool-chic) removed by magnitude after the fit because
    /// the constraint had not met the budget (0 normally).
    pub fn magnitude_pruned(&self) -> usize {
        match &self.fit {
            Fit::Siren { fitted, .. } => fitted.magnitude_pruned,
            Fit::CoolChic(c) => c.dropped_latents,
        }
    }

    /// The fit's log.
    pub fn history(&self) -> &[crate::fit::FitPoint] {
        match &self.fit {
            Fit::Siren { fitted, .. } => &fitted.history,
            Fit::CoolChic(c) => &c.history,
        }
    }
}

/// Cool-chic's encoding (see [`encode`]).
fn encode_coolchic<B: AutodiffBackend>(
    image: &Image,
    options: &EncodeOptions,
    device: &B::Device,
) -> Result<Encoded, CompressError> {
    if options
        .fit
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.resume.is_some())
    {
        return Err(CompressError::Invalid(
            "Cool-chic fits do not checkpoint yet: --resume is for COIN and L0onie".into(),
        ));
    }
    let budget = budget_bits(options.bpp, image);
    let arch = crate::coolchic::arch_for(budget, image.width, image.height)?;
    let fitted = fit_coolchic::<B>(
        image,
        &arch,
        budget,
        &options.fit,
        &options.coolchic,
        options.seed,
        device,
    )?;
    let bytes = fitted.bytes.clone();
    let decoded = decode_file(&bytes)?;
    if decoded != fitted.decoded {
        return Err(CompressError::Invalid(
            "internal error: the file decodes to another image than the encoder's".into(),
        ));
    }
    let psnr = psnr(image, &decoded)?;
    let pixels = image.pixels();
    let count = |t: &[tether_deploy::coolchic::file::QTensor]| {
        let all: usize = t.iter().map(|q| q.codes.len()).sum();
        let nz: usize = t
            .iter()
            .map(|q| q.codes.iter().filter(|&&c| c != 0).count())
            .sum();
        (all, nz)
    };
    let (arm, arm_nz) = count(&fitted.file.arm);
    let (syn, syn_nz) = count(&fitted.file.synthesis);
    let nonzero_latents: usize = fitted
        .file
        .latents
        .iter()
        .map(|l| l.iter().filter(|&&v| v != 0).count())
        .sum();
    Ok(Encoded {
        bpp: CompressedImage::bpp(bytes.len(), pixels),
        coin_bpp: ((arm + syn + nonzero_latents) * 16) as f64 / pixels as f64,
        nonzero_weights: arm_nz + syn_nz,
        bytes,
        decoded,
        psnr,
        fit: Fit::CoolChic(Box::new(fitted)),
    })
}

/// The budget in bits of `bpp` on `image`.
pub fn budget_bits(bpp: f64, image: &Image) -> usize {
    (bpp * image.pixels() as f64).floor() as usize
}

/// Encodes `image` under `options.bpp` (see the module documentation).
///
/// # Errors
/// A budget too small for any network, invalid settings, a failed fit, or (a bug) a file
/// over budget.
pub fn encode<B: AutodiffBackend>(
    image: &Image,
    options: &EncodeOptions,
    device: &B::Device,
) -> Result<Encoded, CompressError> {
    let (w, h) = (image.width, image.height);
    if options.method == Method::CoolChic {
        return encode_coolchic::<B>(image, options, device);
    }
    let budget = budget_bits(options.bpp, image);
    if !(2..=16).contains(&options.value_bits)
        || (options.method == Method::Coin && options.value_bits != 16)
    {
        return Err(CompressError::Invalid(format!(
            "--value-bits must be 16 for COIN (its format is f16) and 2 to 16 for L0onie, got {}",
            options.value_bits
        )));
    }
    let (arch, fitted) = match options.method {
        Method::Coin => {
            let arch = coin_architecture(options.bpp, w, h)?;
            (
                arch,
                fit_coin::<B>(image, arch, &options.fit, options.seed, device)?,
            )
        }
        Method::L0onie => {
            let arch =
                l0onie_architecture(options.bpp, w, h, options.overparam, options.value_bits)?;
            let fitted = fit_l0onie::<B>(
                image,
                arch,
                budget,
                &options.fit,
                &options.l0onie,
                options.seed,
                device,
            )?;
            (arch, fitted)
        }
        Method::CoolChic => unreachable!("handled above"),
    };
    let file = CompressedImage {
        width: w,
        height: h,
        value_bits: options.value_bits,
        weights: fitted.weights.clone(),
    };
    let stored = file.stored();
    let bytes = file.encode()?;
    if bytes.len() * 8 > budget {
        return Err(CompressError::Invalid(format!(
            "internal error: the file has {} bits, over the budget of {budget}",
            bytes.len() * 8
        )));
    }
    let decoded = decode_file(&bytes)?;
    let psnr = psnr(image, &decoded)?;
    let pixels = image.pixels();
    Ok(Encoded {
        bpp: CompressedImage::bpp(bytes.len(), pixels),
        coin_bpp: (stored.stored_params() * 16) as f64 / pixels as f64,
        nonzero_weights: stored.nonzero_weights(),
        bytes,
        decoded,
        psnr,
        fit: Fit::Siren { arch, fitted },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::{FitSettings, L0onieSettings};
    use burn::backend::{Autodiff, Flex};
    use tether_train::constrained::{DualOptimizer, NuPiConfig};

    type B = Autodiff<Flex>;

    /// A smooth synthetic 48x32 image (gradients and a soft disc): something a small
    /// SIREN can fit in a few hundred steps.
    fn test_image() -> Image {
        let (w, h) = (48, 32);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let d = ((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt();
                let disc = 1.0 / (1.0 + (40.0 * (d - 0.25)).exp());
                rgb.push((255.0 * fx) as u8);
                rgb.push((255.0 * disc) as u8);
                rgb.push((255.0 * (1.0 - fy)) as u8);
            }
        }
        Image::new(w, h, rgb).unwrap()
    }

    fn mean_colour(image: &Image) -> Image {
        let mut sum = [0u64; 3];
        for (i, &v) in image.rgb.iter().enumerate() {
            sum[i % 3] += u64::from(v);
        }
        let n = image.pixels() as u64;
        let px = sum.map(|s| ((s + n / 2) / n) as u8);
        Image::new(image.width, image.height, px.repeat(image.pixels())).unwrap()
    }

    fn options(method: Method, bpp: f64, steps: usize) -> EncodeOptions {
        EncodeOptions {
            method,
            bpp,
            fit: FitSettings {
                steps,
                lr: 1e-3,
                progress: false,
                checkpoint: None,
            },
            value_bits: 16,
            l0onie: L0onieSettings {
                value_bits: 16,
                gate_lr: 0.05,
                dual: DualOptimizer::NuPi(NuPiConfig::new(0.01).with_kp(2.0)),
                init_drop_rate: 0.05,
                init_spread: 0.5,
                eval_every: 10,
                sample_gates: true,
                prune_fraction: 0.5,
            },
            overparam: 1.3,
            coolchic: crate::coolchic::fit::CoolChicSettings {
                lr: 1e-2,
                round_lr: 0.05,
                learn_upsampling: false,
                noise_fraction: 0.8,
                temperature: (0.3, 0.1),
                kumaraswamy: (2.0, 1.0),
                dual: crate::coolchic::dual::RateDualConfig::default(),
                eval_every: 10,
                weight_exponent: 8,
                search_at: 0.5,
            },
            seed: 0,
        }
    }

    #[test]
    fn decoding_the_file_gives_the_reported_psnr_and_the_budget_holds() {
        let _rng = crate::rng_lock();
        let image = test_image();
        let device = Default::default();
        for method in [Method::Coin, Method::L0onie] {
            let target = 2.0;
            let out = encode::<B>(&image, &options(method, target, 300), &device).unwrap();
            // The file, decoded afresh, is the image the encoder reported on.
            let decoded = crate::render::decode_file(&out.bytes).unwrap();
            assert_eq!(decoded, out.decoded);
            let psnr = crate::image::psnr(&image, &decoded).unwrap();
            assert_eq!(psnr, out.psnr, "{method}");
            // The budget is met, counting every byte of the file.
            assert!(
                out.bytes.len() * 8 <= budget_bits(target, &image),
                "{method}"
            );
            assert_eq!(
                out.bpp,
                (out.bytes.len() * 8) as f64 / image.pixels() as f64
            );
            // It learned the image: far better than its mean colour.
            let baseline = crate::image::psnr(&image, &mean_colour(&image)).unwrap();
            assert!(
                out.psnr > baseline + 5.0,
                "{method}: {} vs {baseline} dB",
                out.psnr
            );
            // The decoded PSNR matches the float PSNR at fit time up to f16 and 8-bit
            // rounding.
            let Fit::Siren { fitted, .. } = &out.fit else {
                panic!("a SIREN method")
            };
            assert!((out.psnr - fitted.psnr).abs() < 1.0, "{method}");
        }
    }

    #[test]
    fn l0onie_uses_its_budget() {
        let _rng = crate::rng_lock();
        let image = test_image();
        let device = Default::default();
        let target = 2.0;
        let out = encode::<B>(&image, &options(Method::L0onie, target, 300), &device).unwrap();
        assert!(
            out.bpp <= target && out.bpp >= 0.9 * target,
            "{} bpp",
            out.bpp
        );
        // It started over the budget: the constraint, not the architecture, got it there.
        let Fit::Siren { arch, .. } = &out.fit else {
            panic!("L0onie fits a SIREN")
        };
        let dense = crate::format::dense_file_bytes(arch, image.width, image.height);
        assert!(dense * 8 > budget_bits(target, &image));
    }

    #[test]
    fn coolchic_files_decode_to_the_encoders_image_under_budget() {
        let _rng = crate::rng_lock();
        let image = test_image();
        let device = Default::default();
        let target = 1.5;
        let out = encode::<B>(&image, &options(Method::CoolChic, target, 300), &device).unwrap();
        // The decoder (tether_deploy::coolchic, no_std) gives the encoder's image bit for bit.
        let decoded = crate::render::decode_file(&out.bytes).unwrap();
        assert_eq!(decoded, out.decoded);
        assert_eq!(crate::image::psnr(&image, &decoded).unwrap(), out.psnr);
        // Under the budget, counting every byte.
        let budget = budget_bits(target, &image);
        let bits = out.bytes.len() * 8;
        assert!(bits <= budget, "{bits} of {budget}");
        assert_eq!(
            out.magnitude_pruned(),
            0,
            "the constraint met the budget by itself"
        );
        let baseline = crate::image::psnr(&image, &mean_colour(&image)).unwrap();
        assert!(out.psnr > baseline + 5.0, "{} vs {baseline} dB", out.psnr);
        // In the rounding phase the rate the fit descends is the real file's (all-zero
        // levels at their 1-bit flag: counted at the ARM's rate they made it 2-4x off).
        let Fit::CoolChic(c) = &out.fit else {
            panic!("a Cool-chic fit")
        };
        let (real, est) = (
            c.history.last().unwrap().bpp,
            *c.estimated_bpp.last().unwrap(),
        );
        assert!(
            (est / real - 1.0).abs() < 0.05,
            "estimate {est} bpp, file {real}"
        );
        // Truncated and damaged files are errors, not panics or other images.
        for cut in [0, 1, 3, out.bytes.len() / 2, out.bytes.len() - 1] {
            assert!(
                crate::render::decode_file(&out.bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for i in (0..out.bytes.len()).step_by(7) {
            let mut bad = out.bytes.clone();
            bad[i] ^= 0x04;
            assert!(crate::render::decode_file(&bad).is_err(), "byte {i}");
        }
    }

    /// With learned upsampling filters (format version 3): the file holds nonzero filters,
    /// decodes to the encoder's image bit for bit and is under the budget.
    #[test]
    fn learned_upsampling_files_decode_to_the_encoders_image_under_budget() {
        let _rng = crate::rng_lock();
        let image = test_image();
        let target = 1.5;
        // 400 steps: the filters learn in the rounding phase only, and at 200 steps that
        // phase is too short to move them off zero (the file then holds none).
        let mut o = options(Method::CoolChic, target, 400);
        o.coolchic.learn_upsampling = true;
        let out = encode::<B>(&image, &o, &Default::default()).unwrap();
        let file = tether_deploy::coolchic::decode(&out.bytes).unwrap();
        assert!(file.upsampling.codes.iter().any(|&c| c != 0));
        let decoded = crate::render::decode_file(&out.bytes).unwrap();
        assert_eq!(decoded, out.decoded);
        assert_eq!(crate::image::psnr(&image, &decoded).unwrap(), out.psnr);
        assert!(out.bytes.len() * 8 <= budget_bits(target, &image));
    }

    /// Issue 27's "within 3% of the budget". The 300-step fit of this 48x32 image at 1.5
    /// bpp ended at 88% of the budget with the constrained core's additive nuPI (56% with
    /// Adam's epsilon at burn's default 1e-5); with the log-domain controller
    /// (`coolchic::dual`) and the switch to rounding no longer forcing an over-budget file
    /// under by its weights' steps alone, it ends at or above 97%.
    #[test]
    fn coolchic_files_use_the_budget_within_three_percent() {
        let _rng = crate::rng_lock();
        let image = test_image();
        let target = 1.5;
        let out = encode::<B>(
            &image,
            &options(Method::CoolChic, target, 300),
            &Default::default(),
        )
        .unwrap();
        let budget = budget_bits(target, &image);
        let bits = out.bytes.len() * 8;
        assert!(bits as f64 >= 0.97 * budget as f64, "{bits} of {budget}");
    }

    #[test]
    fn a_budget_too_small_for_any_network_is_a_clear_error() {
        let _rng = crate::rng_lock();
        let image = test_image();
        let device = Default::default();
        let err = encode::<B>(&image, &options(Method::Coin, 0.01, 10), &device).unwrap_err();
        assert!(matches!(err, CompressError::BudgetTooSmall(_)), "{err}");
        assert!(err.to_string().contains("raise --bpp"), "{err}");
    }
}
