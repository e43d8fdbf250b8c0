//! # tether-deploy
//!
//! A `no_std` + `alloc` inference runtime for small (pruned) networks, from a laptop CPU
//! down to a Cortex-M microcontroller.
//!
//! - [`format`]: the model format (spec: `deploy/FORMAT.md`): versioned, little-endian,
//!   aligned, checksummed; weights are read zero-copy from a byte slice (flash on a device).
//!   [`Model::parse`] validates every offset, length, shape and op: hostile bytes are an
//!   [`Error`], never a panic or an out-of-bounds read.
//! - [`write`](mod@write): [`ModelBuilder`], which writes the format (used by
//!   `tether-models`' export).
//! - [`plan`]: a [`Plan`] built once per model and batch size: the activation arena sized
//!   and laid out at load (buffers reused by liveness), the kernel of each layer (dense or
//!   sparse) chosen by its density; no allocation per inference.
//! - [`kernels`]: dense (the `gemm` crate, an AVX-512 micro-kernel for batches and an
//!   AVX-512 GEMV for single samples where the CPU has them, or a portable fallback) and the project's own sparse kernels (CSR weights
//!   times dense activations: CSR, SELL-8 and 1x4 blocks; a direct sparse convolution),
//!   conv via im2col otherwise, pooling, activations, broadcasting and layout ops.
//! - [`mesh`]: triangle meshes (validated), the geometry of equivariant mesh attention
//!   networks (EMAN) in `no_std`, [`mesh::MeshPlan`] that runs an exported EMAN on a mesh,
//!   and (feature `std`) OFF, OBJ, PLY and GIFTI readers.
//! - `onnx` (feature `onnx`): ONNX import and export, and the backend node-test runner.
//! - `cli` (feature `std`): what the `tether-deploy` CLI does (read models and inputs, run,
//!   bench, inspect, import, export), as functions the binary calls.
//!
//! # Feature flags
//! - `std` (default): file I/O, the `tether-deploy` CLI and its library (`cli`), run-time
//!   instruction-set dispatch.
//! - `gemm` (default): dense layers through the `gemm` crate.
//! - `onnx` (default): ONNX import/export (`onnx-protobuf`, `protobuf` 3.4.0).
//!
//! ```
//! use tether_deploy::{ModelBuilder, Model, Plan, PlanOptions, OpSpec, AlignedBytes};
//! // y = relu(W x + b) with W = [[1, -1]], b = [0.5]
//! let mut b = ModelBuilder::new(&[2]);
//! let w = b.dense(&[1, 2], &[1.0, -1.0]);
//! let bias = b.dense(&[1], &[0.5]);
//! let h = b.op(OpSpec::Linear { weight: w, bias: Some(bias) }, &[b.input()]);
//! let y = b.op(OpSpec::Relu, &[h]);
//! let bytes = AlignedBytes::from_slice(&b.finish(y).unwrap());
//! let model = Model::parse(&bytes).unwrap();
//! let mut plan = Plan::new(model, &PlanOptions::default()).unwrap();
//! assert_eq!(plan.run(&[3.0, 1.0]).unwrap(), &[2.5]);
//! ```
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod aligned;
#[cfg(feature = "std")]
pub mod cli;
pub mod compact;
pub mod coolchic;
#[cfg(target_os = "linux")]
pub mod cpu_time;
mod error;
pub mod format;
pub mod kernels;
pub mod mesh;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod plan;
pub mod write;

#[cfg(test)]
mod load_tests;

pub use aligned::{Align16, AlignedBytes};
pub use error::Error;
pub use format::{Dims, MeshFeatures, Model, Op, TensorData};
pub use plan::{KernelChoice, Plan, PlanOptions};
pub use write::{ModelBuilder, OpSpec, TensorId, ValueId, rebuild};

/// The runtime's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
