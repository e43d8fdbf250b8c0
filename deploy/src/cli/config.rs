//! The settings of each command, one struct per subcommand (the CLI's flags, typed).

use std::path::PathBuf;
use std::string::String;
use std::vec::Vec;

use crate::mesh::Precision;
use crate::plan::KernelChoice;

/// MNIST's pixel mean and standard deviation, the default normalisation of IDX images.
pub const MNIST_NORMALIZE: [f32; 2] = [0.1307, 0.3081];

/// The settings of [`run`](super::run) (the flags of `tether-deploy run`).
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The model: a tether model, or an `.onnx` file imported.
    pub model: PathBuf,
    /// The input file (f32 or text), or a mesh model's mesh file.
    pub input: Option<PathBuf>,
    /// IDX images instead of an input file.
    pub idx: Option<PathBuf>,
    /// IDX labels (with `idx`): report the accuracy.
    pub labels: Option<PathBuf>,
    /// Pixel normalisation of `idx` images, mean and standard deviation:
    /// `(p / 255 - mean) / std`.
    pub normalize: [f32; 2],
    /// At most this many samples.
    pub limit: Option<usize>,
    /// Kernel selection.
    pub kernels: KernelChoice,
    /// Print every sample's scores, not only the prediction.
    pub scores: bool,
    /// Refuse inputs holding NaN or an infinity instead of warning and running them.
    pub reject_non_finite: bool,
    /// Mesh models: a file of one label per vertex.
    pub vertex_labels: Option<PathBuf>,
    /// Mesh models: the first line of `vertex_labels` to read.
    pub label_offset: usize,
    /// Mesh models: write each vertex's predicted class here.
    pub predictions: Option<PathBuf>,
    /// Mesh models: drop vertices no face uses.
    pub drop_isolated: bool,
    /// Mesh models: the arithmetic (f32 when `None`).
    pub precision: Option<Precision>,
    /// Inputs by name (`--input NAME=FILE`): the graph's names for an ONNX model,
    /// `input0`, `input1`, ... for any.
    pub named_inputs: Vec<(String, PathBuf)>,
    /// Write every output to `DIR/NAME.npy` instead of printing predictions.
    pub outputs: Option<PathBuf>,
}

impl RunConfig {
    /// `model` with the CLI's defaults and no input yet.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            input: None,
            idx: None,
            labels: None,
            normalize: MNIST_NORMALIZE,
            limit: None,
            kernels: KernelChoice::Auto,
            scores: false,
            reject_non_finite: false,
            vertex_labels: None,
            label_offset: 0,
            predictions: None,
            drop_isolated: false,
            precision: None,
            named_inputs: Vec::new(),
            outputs: None,
        }
    }
}

/// The settings of [`bench`](super::bench()) (the flags of `tether-deploy bench`).
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The model: a tether model, or an `.onnx` file imported.
    pub model: PathBuf,
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Trials per batch size (each runs every kernel choice once, ~10 ms each).
    pub trials: usize,
    /// Mesh models: the mesh to time the model on.
    pub mesh: Option<PathBuf>,
    /// Time every step of the automatic plan instead, and sum the times by kind of op
    /// ([`step_times`](super::step_times)).
    pub per_node: bool,
}

/// The settings of [`import`](super::import) (`tether-deploy import`).
#[cfg(feature = "onnx")]
#[derive(Clone, Debug)]
pub struct ImportConfig {
    /// The ONNX model.
    pub model: PathBuf,
    /// The tether model to write.
    pub output: PathBuf,
}

/// The settings of [`export`](super::export) (`tether-deploy export`).
#[cfg(feature = "onnx")]
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The tether model (or an ONNX file, imported first).
    pub model: PathBuf,
    /// The ONNX model to write.
    pub output: PathBuf,
    /// Write CSR weights sparse, as Constant nodes with a sparse_value.
    pub sparse_initializers: bool,
    /// No symbolic batch axis: the shapes as they are.
    pub no_batch_axis: bool,
}
