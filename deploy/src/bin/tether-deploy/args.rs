//! The command line: `tether-deploy`'s flags (clap), and their conversion into the
//! library's kernel and precision choices.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tether_deploy::KernelChoice;
use tether_deploy::cli::MNIST_NORMALIZE;

#[derive(Parser)]
#[command(
    version,
    about = "Run, inspect and time tether models (.tthr); import and export ONNX"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kernels {
    /// Sparse where the weights are sparse enough to gain (measured break-even).
    Auto,
    /// Dense everywhere.
    Dense,
    /// Sparse everywhere.
    Sparse,
}

impl From<Kernels> for KernelChoice {
    fn from(k: Kernels) -> Self {
        match k {
            Kernels::Auto => KernelChoice::Auto,
            Kernels::Dense => KernelChoice::Dense,
            Kernels::Sparse => KernelChoice::Sparse,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Layers, shapes, densities, bytes and the plan's activation memory.
    Inspect {
        /// Model file.
        model: PathBuf,
        /// A device description (TOML: name, flash, ram, latency, clock): says whether
        /// the model fits each budget it sets, and exits with status 3 when one is not met.
        #[arg(long, value_name = "FILE")]
        board: Option<PathBuf>,
    },
    /// Runs the model on inputs and prints each prediction (argmax) and its scores.
    ///
    /// A sample whose scores hold a NaN has no prediction (printed as such, and counted
    /// wrong in the accuracy); an input sample holding NaN or an infinity is warned about
    /// (see `--reject-non-finite`). Every `--kernels` choice computes the same outputs on
    /// such inputs.
    ///
    /// A mesh model (an EMAN, see `tether-train mesh`) takes a mesh file instead (`.off`,
    /// `.obj`, `.ply`, `.gii`) and predicts a class per vertex; `--vertex-labels` (one
    /// integer per line) reports the accuracy, `--predictions` writes them.
    ///
    /// Inputs: a file of little-endian f32 (`.f32`, `.bin`) or of numbers separated by
    /// spaces, commas or newlines (anything else), one or more samples back to back; or
    /// `--idx` images (u8 IDX, e.g. MNIST's t10k-images-idx3-ubyte), normalised with
    /// `--normalize`, and optionally `--labels` to report the accuracy.
    ///
    /// A model of several inputs takes each as `--input NAME=FILE` (the ONNX graph's input
    /// names, or `input0`, `input1`, ...; `.npy` files are read too); every output of a model
    /// of several outputs is printed, or written to `--outputs DIR` as `NAME.npy`.
    Run {
        /// Model file.
        model: PathBuf,
        /// Input file (f32 or text).
        #[arg(
            required_unless_present_any = ["idx", "named_inputs"],
            conflicts_with = "idx"
        )]
        input: Option<PathBuf>,
        /// An input by name, `NAME=FILE` (repeat for each input).
        #[arg(long = "input", value_name = "NAME=FILE", value_parser = parse_named_input, conflicts_with = "idx")]
        named_inputs: Vec<(String, PathBuf)>,
        /// Write every output to DIR/NAME.npy (one row per sample) instead of printing.
        #[arg(long, value_name = "DIR")]
        outputs: Option<PathBuf>,
        /// IDX image file instead of an input file.
        #[arg(long)]
        idx: Option<PathBuf>,
        /// IDX label file (with --idx): print the accuracy.
        #[arg(long, requires = "idx")]
        labels: Option<PathBuf>,
        /// Pixel normalisation of --idx images: (p / 255 - mean) / std, given as two
        /// numbers (`--normalize 0.5 0.25`; a negative mean as is: `--normalize -1 2`).
        #[arg(
            long,
            num_args = 2,
            value_names = ["MEAN", "STD"],
            allow_negative_numbers = true,
            default_values_t = MNIST_NORMALIZE
        )]
        normalize: Vec<f32>,
        /// At most this many samples.
        #[arg(long)]
        limit: Option<usize>,
        /// Kernel selection.
        #[arg(long, value_enum, default_value_t = Kernels::Auto)]
        kernels: Kernels,
        /// Print every sample's scores, not only the prediction.
        #[arg(long)]
        scores: bool,
        /// Refuse inputs holding NaN or an infinity (an error naming the first such
        /// sample) instead of warning and running them: their scores are NaN, no
        /// prediction.
        #[arg(long)]
        reject_non_finite: bool,
        /// Mesh models: a file of one label per vertex (one integer per line; a longer
        /// file, e.g. both hemispheres, is read from `--label-offset` on).
        #[arg(long)]
        vertex_labels: Option<PathBuf>,
        /// Mesh models: the first line of `--vertex-labels` to read.
        #[arg(long, default_value_t = 0)]
        label_offset: usize,
        /// Mesh models: write each vertex's predicted class here, one per line.
        #[arg(long)]
        predictions: Option<PathBuf>,
        /// Mesh models: drop vertices no face uses (refused by default).
        #[arg(long)]
        drop_isolated: bool,
        /// Mesh models: the arithmetic (f64: the network's exact value, slower; default
        /// f32).
        #[arg(long, value_enum)]
        precision: Option<MeshPrecision>,
    },
    /// Converts an ONNX model to a tether model (weights stored dense or CSR by their
    /// measured sparsity).
    #[cfg(feature = "onnx")]
    Import {
        /// ONNX model.
        model: PathBuf,
        /// Output tether model.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Converts a tether model to ONNX (opset 13, batch axis `N`).
    #[cfg(feature = "onnx")]
    Export {
        /// Tether model.
        model: PathBuf,
        /// Output ONNX model.
        #[arg(short, long)]
        output: PathBuf,
        /// Write CSR weights sparse, as ONNX Constant nodes with a sparse_value (smaller;
        /// onnxruntime reads them and onnx.checker's full check passes, tract 0.23 does not
        /// read them). By default every weight is a dense initializer.
        #[arg(long)]
        sparse_initializers: bool,
        /// No symbolic batch axis: the shapes as they are (for models imported from ONNX
        /// with static shapes).
        #[arg(long)]
        no_batch_axis: bool,
    },
    /// Latency of one inference, dense vs sparse vs auto kernels, single thread.
    Bench {
        /// Model file.
        model: PathBuf,
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        batch: Vec<usize>,
        /// Trials per batch size (each runs every kernel choice once, ~10 ms each).
        #[arg(long, default_value_t = 15)]
        trials: usize,
        /// Mesh models: the mesh to time the model on (geometry included), in f32 and
        /// in f64.
        #[arg(long)]
        mesh: Option<PathBuf>,
        /// Time each step of the automatic plan (op, kernel, shapes, fused ops) and sum
        /// the times by kind of op, instead of comparing the kernel choices.
        #[arg(long)]
        per_node: bool,
    },
}

/// `--precision` of a mesh model.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MeshPrecision {
    /// Single precision (the default).
    F32,
    /// Double precision throughout.
    F64,
}

impl From<MeshPrecision> for tether_deploy::mesh::Precision {
    fn from(p: MeshPrecision) -> Self {
        match p {
            MeshPrecision::F32 => Self::F32,
            MeshPrecision::F64 => Self::F64,
        }
    }
}

/// `NAME=FILE` of `run --input`.
fn parse_named_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("{s:?} is not NAME=FILE")),
    }
}
