//! The execution plan: built once per model and largest batch, it lays every activation
//! out in one arena (a value's buffer is reused once its last reader has run), sizes the
//! scratch space (im2col patches, transposed batches), picks each layer's kernel and
//! converts weights where the stored form is not the one that runs. `run` then allocates
//! nothing.

mod arena;
mod build;
mod layer;
mod options;
mod profile;
mod run;
mod step;

pub use build::Plan;
pub use layer::LayerReport;
pub use options::{
    KernelChoice, PlanOptions, SPARSE_BREAK_EVEN_CHAIN, SPARSE_BREAK_EVEN_CONV,
    SPARSE_BREAK_EVEN_GEMM, SPARSE_BREAK_EVEN_GEMV,
};
pub use profile::StepReport;
