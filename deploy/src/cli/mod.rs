//! What the `tether-deploy` command line does, as a library (feature `std`): reading models
//! (a tether model, or an `.onnx` file imported) and inputs in their formats (little-endian
//! f32 or text files, IDX images and labels, mesh files), running them with each prediction
//! printed, timing them, inspecting them, and converting to and from ONNX. The binary
//! parses its flags into the configs here and calls one function per subcommand:
//! [`inspect`], [`run`], [`bench()`], and with the `onnx` feature `import` and `export`.
//!
//! Reports go to the writer given (the CLI's stdout), warnings to a second one (its
//! stderr); errors name the file or the option at fault (as flags: `--limit`).
//!
//! ```no_run
//! use tether_deploy::cli::{RunConfig, run};
//!
//! let config = RunConfig {
//!     idx: Some("t10k-images-idx3-ubyte".into()),
//!     labels: Some("t10k-labels-idx1-ubyte".into()),
//!     ..RunConfig::new("model.tthr")
//! };
//! run(&config, &mut std::io::stdout(), &mut std::io::stderr())?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod bench;
pub mod board;
mod classify;
mod config;
#[cfg(feature = "onnx")]
mod convert;
mod files;
mod host;
mod inputs;
mod inspect;
mod mesh;
mod npy;
mod per_node;
mod run;
mod scores;
mod tensors;
pub mod units;

pub use bench::{PlanTimer, bench, latency};
pub use classify::{MAX_WARNINGS, run_classifier};
pub use config::{BenchConfig, MNIST_NORMALIZE, RunConfig};
#[cfg(feature = "onnx")]
pub use config::{ExportConfig, ImportConfig};
#[cfg(feature = "onnx")]
pub use convert::{export, import};
pub use files::{load_model, load_onnx, parse_model, write_atomic};
pub use host::{HOST_PLAN_BYTES, host_plan_options};
pub use inputs::{non_finite_samples, read_idx_images, read_idx_labels, read_input};
pub use inspect::{device_ram, inspect, inspect_for};
pub use mesh::{MeshRun, bench_mesh, is_mesh_model, read_mesh, run_mesh};
pub use per_node::{StepTime, print_step_times, step_times};
pub use run::run;
pub use scores::{argmax, prediction};
