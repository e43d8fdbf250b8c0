//! The hard-concrete computations as tensor ops, for backends whose tensors live on a
//! device ([`crate::host::Residency::Device`]): the same math as `fused` (Louizos et al.
//! 2018, Eqs. 9-13), with no host read. Autodiff differentiates it; the clip's backward
//! is zero outside `(0, 1)` as in the fused derivative.
//!
//! The noise is drawn from the backend's generator (`Tensor::random`), so `B::seed` makes a
//! run reproducible as on the host path; the two paths draw different noise streams.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Distribution, Tensor, backend::Backend};

use super::fused::HardConcreteParams;

/// Uniform draws are clipped to `[2^-24, 1 - 2^-24]` (both exact in `f32`), as the fused
/// path's `u` is: `ln(u) - ln(1 - u)` stays finite (|noise| <= 16.7).
const U_EDGE: f64 = 1.0 / (1u64 << 24) as f64;

/// Logistic noise `ln u - ln(1 - u)`, `u ~ U(0, 1)` from the backend's generator.
pub(super) fn logistic_noise<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 1> {
    let u = Tensor::<B, 1>::random([n], Distribution::Default, device).clamp(U_EDGE, 1.0 - U_EDGE);
    u.clone().log() - u.neg().add_scalar(1.0).log()
}

/// Sampled gates for given logistic `noise` (Eqs. 9-11):
/// `min(1, max(0, sigmoid((noise + log_alpha) / beta) * (zeta - gamma) + gamma))`.
pub(super) fn sample_with_noise<B: Backend>(
    log_alpha: Tensor<B, 1>,
    noise: Tensor<B, 1>,
    p: &HardConcreteParams,
) -> Tensor<B, 1> {
    let s = sigmoid((log_alpha + noise).div_scalar(p.beta));
    stretch_and_clip(s, p)
}

/// Deterministic gates (Eq. 13): `min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) +
/// gamma))`.
pub(super) fn deterministic<B: Backend>(
    log_alpha: Tensor<B, 1>,
    p: &HardConcreteParams,
) -> Tensor<B, 1> {
    stretch_and_clip(sigmoid(log_alpha), p)
}

fn stretch_and_clip<B: Backend>(s: Tensor<B, 1>, p: &HardConcreteParams) -> Tensor<B, 1> {
    s.mul_scalar(p.zeta - p.gamma)
        .add_scalar(p.gamma)
        .clamp(0.0, 1.0)
}

/// `sum_j sigmoid(log_alpha_j - beta log(-gamma / zeta))` (Eq. 12), shape `[1]`.
pub(super) fn expected_l0<B: Backend>(
    log_alpha: Tensor<B, 1>,
    p: &HardConcreteParams,
) -> Tensor<B, 1> {
    let shift = p.beta * (-p.gamma / p.zeta).ln();
    sigmoid(log_alpha.sub_scalar(shift)).sum()
}

/// How many deterministic gates are non-zero, shape `[1]`, no gradient: the same
/// comparison the folded weights see (a gate is zero exactly when its stretched value is
/// `<= 0`).
pub(super) fn count_open<B: Backend>(
    log_alpha: Tensor<B, 1>,
    p: &HardConcreteParams,
) -> Tensor<B, 1> {
    deterministic(log_alpha.detach(), p)
        .greater_elem(0.0)
        .float()
        .sum()
}
