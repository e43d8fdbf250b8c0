//! # tether-train
//!
//! Train small neural networks under explicit constraints, with burn.
//!
//! - [`constrained`]: the constrained-optimization library (Lagrangian, augmented
//!   Lagrangian and quadratic-penalty formulations; dense and indexed multipliers;
//!   gradient ascent and nuPI; simultaneous, alternating and extragradient updates;
//!   bit-exact checkpoints).
//! - [`tasks`]: problems built on it (pruning, fairness, GANGs, the Iris SVM reference
//!   problem, ...) and [`tasks::prune_run`], the whole pruning job behind
//!   `tether-train prune` as a library call.
//! - [`optim`]: Shampoo (single-device and data-parallel), `--optimizer` selection, and
//!   optimizer combinators (separate learning rates for L0 gates).
//! - [`data`]: loaders for the registry datasets fetched by `scripts/fetch-data`.
//! - [`resume`]: checkpoints of a command's run, `--resume`, and the interrupt that
//!   writes one on SIGINT/SIGTERM.
//! - [`transient`]: overshoot and settling time of a controlled quantity.
//! - [`parallel`]: data parallelism across processes (`mpirun -np N`, feature `mpi`):
//!   sharded batches, gradients all-reduced once per step.
//! - [`device`]: `--device flex|ndarray|cuda`, shared by every command.
//! - [`denormals`]: the flush-to-zero guard the training loop and every command hold
//!   (subnormal floats slow x86 arithmetic by an order of magnitude).
//!
//! # Feature flags
//! - `flex` (default): burn's pure-Rust CPU backend.
//! - `ndarray`: burn's ndarray CPU backend.
//! - `cuda`: burn's CUDA backend (builds without a GPU; runs where a driver is present).
//! - `flex-simd` (default): burn-flex's SIMD kernels (element-wise ops about 2x faster).
//! - `flex-rayon`: burn-flex's multi-threaded kernels (opt-in).
//! - `mpi`: data parallelism across processes over MPI (needs an MPI library and libclang
//!   to build).
#![warn(missing_docs)]
// Every host read of a tensor goes through `tether_models::host::read`, which counts it
// (clippy.toml lists the methods; Cargo.toml allows them outside the library).
#![warn(clippy::disallowed_methods)]

pub mod constrained;
#[allow(
    clippy::disallowed_methods,
    reason = "data loading: host batches, read back only by the own-data set's checks"
)]
pub mod data;
pub mod denormals;
pub mod device;
pub mod io;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted (Shampoo's root work)"
)]
pub mod optim;
#[allow(
    clippy::disallowed_methods,
    reason = "MPI data parallelism is host-staged by design: each step's all-reduce reads the gradients back"
)]
pub mod parallel;
pub mod plot;
pub mod reference;
pub mod resume;
pub mod tasks;
pub mod trainer;
pub mod transient;
