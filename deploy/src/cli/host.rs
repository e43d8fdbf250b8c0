//! What a host plans with that a device does not: a larger memory bound.

use crate::plan::{KernelChoice, PlanOptions};

/// The most a plan may allocate on a host (the CLI): 4 GiB, the format's own bound on a
/// tensor. The library's default (256 MiB) suits embedded hosts; resnet18 at batch 32
/// needs about 330 MB of activations and scratch.
pub const HOST_PLAN_BYTES: usize = if usize::BITS >= 64 {
    (4u64 << 30) as usize
} else {
    usize::MAX
};

/// Plan options for batches of up to `batch` samples with `kernels`, bounded by
/// [`HOST_PLAN_BYTES`].
pub fn host_plan_options(batch: usize, kernels: KernelChoice) -> PlanOptions {
    PlanOptions {
        batch,
        kernels,
        max_bytes: HOST_PLAN_BYTES,
        expand_csr: true,
        vector_kernels: true,
    }
}
