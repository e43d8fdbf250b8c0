//! # tether-compress
//!
//! COIN / L0onie image compression: fit a SIREN to an image under a bit budget and write
//! its weights. The codec arrives with the compression issue; it builds on
//! `tether_train::constrained` for the bit-budget constraint and on `tether_deploy` for
//! decoding.
#![warn(missing_docs)]
