//! Encoding an image end to end: choose the network for the budget, fit it (COIN or
//! L0onie), write the file, and decode that file with `tether-deploy` to report the PSNR a
//! reader will actually see.

use burn::tensor::backend::AutodiffBackend;

use crate::arch::{coin_architecture, l0onie_architecture};
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
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Coin => "coin",
            Self::L0onie => "l0onie",
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
    /// Seed of the initialisation and the gates' noise.
    pub seed: u64,
}

/// An encoded image.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The file.
    pub bytes: Vec<u8>,
    /// The network fitted (for L0onie, before pruning).
    pub arch: Architecture,
    /// The file decoded by `tether-deploy`.
    pub decoded: Image,
    /// PSNR of `decoded` against the input (dB, 8-bit).
    pub psnr: f64,
    /// Bits per pixel of the file, everything included.
    pub bpp: f64,
    /// COIN's convention: stored parameters (nonzero weights and biases) x 16 / pixels.
    pub coin_bpp: f64,
    /// The fit (its log, the step the weights were kept at).
    pub fitted: Fitted,
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
    let budget = budget_bits(options.bpp, image);
    let (arch, fitted) = match options.method {
        Method::Coin => {
            let arch = coin_architecture(options.bpp, w, h)?;
            (
                arch,
                fit_coin::<B>(image, arch, &options.fit, options.seed, device)?,
            )
        }
        Method::L0onie => {
            let arch = l0onie_architecture(options.bpp, w, h, options.overparam)?;
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
    };
    let file = CompressedImage {
        width: w,
        height: h,
        weights: fitted.weights.rounded_to_f16(),
    };
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
        coin_bpp: (file.weights.stored_params() * 16) as f64 / pixels as f64,
        bytes,
        arch,
        decoded,
        psnr,
        fitted,
    })
}
