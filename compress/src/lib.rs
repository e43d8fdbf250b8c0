//! # tether-compress
//!
//! COIN / L0onie image compression: fit a SIREN to an image under a bit budget and write
//! its weights. Builds on `tether_train::constrained` for the bit-budget constraint and on
//! `tether_deploy` for decoding (so a device can decode).
//!
//! - [`codec`]: encode end to end (choose, fit, write, decode to report the real PSNR).
//! - [`coolchic`]: Cool-chic (latent grids, an auto-regressive entropy model, a small
//!   synthesis; its file and decoder are `tether_deploy::coolchic`), fitted under the
//!   budget as a constraint.
//! - [`arch`]: which network a budget buys (COIN's family; L0onie's over-parameterised start).
//! - [`fit`]: COIN's fit (best PSNR kept) and L0onie's (file size as a constraint, then
//!   fine-tuning with the sparsity pattern frozen), on the project's one training loop.
//! - [`format`](mod@format) (spec: `compress/FORMAT.md`) and [`bitstream`]: the file, its Rice-coded
//!   sparsity patterns, and its validation.
//! - [`weights`]: the network as plain numbers, and as a `tether-deploy` model.
//! - [`render`]: decoding through `tether-deploy`; [`grid`]: the coordinates.
//! - [`image`]: loading, downscaling, PSNR; [`classic`]: the JPEG, WebP and AVIF baselines;
//!   [`rd`] and [`baselines`]: rate-distortion curves, published ones, and their plot.
//! - [`tasks`]: the `tether-compress` commands (encode, decode, eval) as functions with
//!   typed configs, which the binary calls.
#![warn(missing_docs)]

pub mod arch;
pub mod baselines;
pub mod bitstream;
pub mod classic;
pub mod codec;
pub mod coolchic;
pub mod error;
pub mod fit;
pub mod format;
pub mod grid;
pub mod image;
pub mod rd;
pub mod render;
pub mod tasks;
pub mod weights;

pub use error::CompressError;
pub use image::Image;

/// Tests that draw from burn's process-wide random generator (network initialisation,
/// gate sampling) hold this lock: a seeded encode on one test thread was perturbed by
/// another test's draws on a parallel thread (COIN's 300-step fit then ended at 14.7 dB
/// instead of above 15.2, once in a workspace run).
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
