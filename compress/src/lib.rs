//! # tether-compress
//!
//! COIN / L0onie image compression: fit a SIREN to an image under a bit budget and write
//! its weights. Builds on `tether_train::constrained` for the bit-budget constraint and on
//! `tether_deploy` for decoding (so a device can decode).
#![warn(missing_docs)]

pub mod arch;
pub mod baselines;
pub mod bitstream;
pub mod codec;
pub mod error;
pub mod fit;
pub mod format;
pub mod grid;
pub mod image;
pub mod jpeg;
pub mod rd;
pub mod render;
pub mod weights;

pub use error::CompressError;
pub use image::Image;
