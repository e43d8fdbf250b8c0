//! A Cool-chic decoder (Ladune et al. 2023, "COOL-CHIC: Coordinate-based Low Complexity
//! Hierarchical Image Codec"; Leguay et al. 2023, "Low-complexity overfitted neural image
//! codec"), `no_std` + `alloc`, and the encoder half of its bitstream.
//!
//! An image is stored as a pyramid of quantised latent grids (level `l` is
//! `ceil(H / 2^l) x ceil(W / 2^l)`, one value per position), the weights of a small
//! auto-regressive model (ARM) that predicts each latent's Laplace distribution from its
//! already-decoded causal neighbours, and a small synthesis network. Decoding:
//! 1. read the quantised network weights ([`mod@file`]);
//! 2. entropy-decode each level in raster order, the ARM giving every latent's
//!    distribution ([`laplace`], [`rans`]);
//! 3. upsample every level to full resolution (a learned pre-filter, then bilinear,
//!    [`synthesis`]) and run the
//!    synthesis network on each pixel's `L` values to get its RGB.
//!
//! Determinism: the ARM's output decides the entropy decoder's tables, so a single bit of
//! difference between encoder and decoder desynchronises the stream. Both run the *same*
//! code ([`file::encode`] calls the ARM of this module on the quantised latents and
//! weights), in `f32` in a fixed order, with [`laplace::exp_poly`] (plain `f32` operations;
//! format version 2) or `libm`'s software `expf` (version 1), so on every IEEE-754 machine
//! (host or Cortex-M) the tables match bit for bit.

pub mod file;
pub mod lanes;
pub mod laplace;
pub mod mlp;
pub mod rans;
pub mod synthesis;

pub use file::{CoolChic, Header, decode, decode_with_limit, encode};
pub use mlp::{Dense, Mlp};

use core::fmt;

/// The causal neighbourhood of the ARM, nearest first: `(dy, dx)` of already-decoded
/// positions (rows above, then to the left). A file uses the first `context` of them.
pub const CONTEXT: [(i32, i32); 12] = [
    (0, -1),
    (-1, 0),
    (-1, -1),
    (-1, 1),
    (0, -2),
    (-2, 0),
    (-1, -2),
    (-1, 2),
    (-2, -1),
    (-2, 1),
    (-2, -2),
    (-2, 2),
];

/// Latents are integers in `-LATENT_MAX..=LATENT_MAX`.
pub const LATENT_MAX: i32 = 63;
/// Network weights are integers in `-WEIGHT_MAX..=WEIGHT_MAX` times a power-of-two step
/// (wide enough that ARM weights of magnitude 4 keep a step of 2^-8: the ARM's
/// probabilities are sensitive to its weights).
pub const WEIGHT_MAX: i32 = 1023;
/// Most latent levels.
pub const MAX_LEVELS: usize = 8;
/// Most hidden layers of either network.
pub const MAX_HIDDEN: usize = 4;
/// Widest hidden layer.
pub const MAX_WIDTH: usize = 128;
/// Largest image side.
pub const MAX_SIDE: usize = 1 << 15;
/// Most pixels of an image (4096 x 4096) the format holds and [`decode`] accepts: a
/// forged header of `MAX_SIDE x MAX_SIDE` with every latent level flagged all-zero (one bit
/// each) is a file of a few dozen bytes that would otherwise have the decoder allocate
/// about 5 GB of latents and 34 GB of upsampled planes. A decoder with less memory (a
/// microcontroller, a fuzzer) sets its own, smaller limit
/// ([`file::decode_with_limit`]).
pub const MAX_PIXELS: usize = 1 << 24;

/// Why a file cannot be decoded (or, for [`CodecError::Model`], encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The file ends early.
    Truncated,
    /// Not a Cool-chic file (its first bytes).
    BadMagic,
    /// A format version this decoder does not read.
    UnsupportedVersion(u8),
    /// The CRC-32 does not match.
    BadChecksum,
    /// A header field out of range, or a stream that does not decode.
    Corrupt(&'static str),
    /// An image larger than the decoder was allowed to allocate for (checked on the
    /// header, before any allocation the size drives).
    TooLarge {
        /// The header's `width * height`.
        pixels: usize,
        /// The limit it passes.
        limit: usize,
    },
    /// The encoder was given something it cannot code (a bug in the caller).
    Model(&'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("the file is truncated"),
            Self::BadMagic => f.write_str("not a Cool-chic file (bad magic bytes)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported Cool-chic format version {v}"),
            Self::BadChecksum => f.write_str("the checksum does not match (a corrupt file)"),
            Self::Corrupt(what) => write!(f, "corrupt file: {what}"),
            Self::TooLarge { pixels, limit } => write!(
                f,
                "the image has {pixels} pixels, over the decoder's limit of {limit}"
            ),
            Self::Model(what) => write!(f, "cannot encode: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CodecError {}

/// The shape of a file's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arch {
    /// Latent levels (the first at full resolution, each next one half as wide and tall).
    pub levels: usize,
    /// Causal neighbours the ARM sees (the first of [`CONTEXT`]).
    pub context: usize,
    /// Hidden widths of the ARM (outputs: location and log-scale).
    pub arm_hidden: alloc::vec::Vec<usize>,
    /// Hidden widths of the synthesis (inputs: one per level; outputs: RGB).
    pub synth_hidden: alloc::vec::Vec<usize>,
}

impl Arch {
    /// `(rows, columns)` of level `l` of a `width x height` image.
    pub fn level_size(width: usize, height: usize, l: usize) -> (usize, usize) {
        (height.div_ceil(1 << l), width.div_ceil(1 << l))
    }

    /// Checks every field against the format's limits.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), CodecError> {
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            return Err(CodecError::Corrupt("the number of latent levels"));
        }
        if !(1..=CONTEXT.len()).contains(&self.context) {
            return Err(CodecError::Corrupt("the ARM's context size"));
        }
        for h in [&self.arm_hidden, &self.synth_hidden] {
            if h.len() > MAX_HIDDEN || h.iter().any(|&w| !(1..=MAX_WIDTH).contains(&w)) {
                return Err(CodecError::Corrupt("a hidden layer's width"));
            }
        }
        Ok(())
    }

    /// A zero ARM of this shape.
    pub fn arm(&self) -> Mlp {
        Mlp::zeros(self.context, &self.arm_hidden, 2)
    }

    /// A zero synthesis of this shape.
    pub fn synthesis(&self) -> Mlp {
        Mlp::zeros(self.levels, &self.synth_hidden, 3)
    }

    /// Numbers of the upsampling pre-filters: `[k1, k2]` for each level but the first
    /// ([`synthesis::prefilter`]).
    pub fn upsampling_len(&self) -> usize {
        2 * (self.levels - 1)
    }

    /// Decoding cost per pixel in multiply-accumulates: the ARM once per latent (about
    /// 4/3 latents per pixel over the pyramid), the synthesis once per pixel, the
    /// bilinear upsampling (4 per level per pixel) and the pre-filters (6 per latent of
    /// the levels from 1 up, rows and columns; none where a file's filter is zero).
    pub fn macs_per_pixel(&self, width: usize, height: usize) -> f64 {
        let latents: usize = (0..self.levels)
            .map(|l| {
                let (h, w) = Self::level_size(width, height, l);
                h * w
            })
            .sum();
        let px = (width * height) as f64;
        let coarse = latents - width * height;
        (latents * self.arm().macs()) as f64 / px
            + self.synthesis().macs() as f64
            + 4.0 * self.levels as f64
            + 6.0 * coarse as f64 / px
    }
}

/// The ARM's context of position `(y, x)` of a `rows x cols` grid (zeros outside), into
/// `out` (`context` values).
pub fn context_of(grid: &[f32], rows: usize, cols: usize, y: usize, x: usize, out: &mut [f32]) {
    for (o, &(dy, dx)) in out.iter_mut().zip(CONTEXT.iter()) {
        let (yy, xx) = (y as i64 + i64::from(dy), x as i64 + i64::from(dx));
        *o = if yy >= 0 && xx >= 0 && (yy as usize) < rows && (xx as usize) < cols {
            grid[yy as usize * cols + xx as usize]
        } else {
            0.0
        };
    }
}

/// The Laplace the ARM's output `(mu, log b)` stands for, with the tables of the files
/// [`encode`] writes ([`LatentModel::with_cdf`] for another version's).
pub fn latent_distribution(out: &[f32]) -> laplace::Laplace {
    LatentModel::new().distribution(out)
}

/// [`latent_distribution`] with its clamp's bounds computed once (they cost two `logf`s,
/// a third of the per-latent work outside the ARM when computed every time).
#[derive(Clone, Copy, Debug)]
pub struct LatentModel {
    log_min: f32,
    log_max: f32,
    cdf: laplace::Cdf,
}

impl LatentModel {
    /// The bounds of the ARM's log-scale output; the current format's tables.
    pub fn new() -> Self {
        Self::with_cdf(laplace::Cdf::Poly)
    }

    /// [`LatentModel::new`] with the tables of `cdf` (`b = e^(log b)` by the same
    /// exponential: `libm::expf` or [`laplace::exp_poly`]).
    pub fn with_cdf(cdf: laplace::Cdf) -> Self {
        Self {
            log_min: libm::logf(laplace::MIN_SCALE),
            log_max: libm::logf(laplace::MAX_SCALE),
            cdf,
        }
    }

    /// The Laplace the ARM's output `(mu, log b)` stands for.
    pub fn distribution(&self, out: &[f32]) -> laplace::Laplace {
        let log_b = out[1].clamp(self.log_min, self.log_max);
        let b = match self.cdf {
            laplace::Cdf::Libm => libm::expf(log_b),
            laplace::Cdf::Poly => laplace::exp_poly(log_b),
        };
        laplace::Laplace::with_cdf(out[0], b, LATENT_MAX, self.cdf)
    }
}

impl Default for LatentModel {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
