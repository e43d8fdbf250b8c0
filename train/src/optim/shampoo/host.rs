//! Where Shampoo's step runs: on a backend that computes in this process's memory the
//! host kernels ([`super::host_step`]) read the tensors' values directly; elsewhere the
//! step stays in tensor ops on the device.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Whether `B` computes in this process's memory, where the host kernels read tensors
/// without a device transfer (burn-flex: without a copy).
pub(super) fn on_host<B: Backend>(device: &B::Device) -> bool {
    matches!(B::name(device).as_str(), "flex" | "ndarray")
}

/// The tensor's values as f32 (no copy for a uniquely held f32 flex tensor).
pub(super) fn host_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}
