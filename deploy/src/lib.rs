//! # tether-deploy
//!
//! tether's `no_std` + `alloc` inference runtime. This crate is the bottom of the
//! workspace: it does not depend on burn and builds for bare-metal targets
//! (`cargo build -p tether-deploy --no-default-features --target thumbv7em-none-eabihf`).
//! The model format, kernels and plan arrive with the deploy issue; until then the crate
//! holds only what the layers above already need.
//!
//! # Feature flags
//! - `std` (default): file I/O, the CLI and benchmarks.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

/// Version of the runtime, embedded in the model files it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
