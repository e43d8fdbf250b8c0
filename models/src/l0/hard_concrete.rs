//! The hard-concrete distribution and a vector of gates drawn from it.
//!
//! With `u ~ U(0, 1)`, temperature `beta`, stretch interval `(gamma, zeta)` and location
//! `log_alpha` (Louizos et al. 2018, Eqs. 9-13):
//!
//! ```text
//! s     = sigmoid((log u - log(1 - u) + log_alpha) / beta)        (binary concrete)
//! s_bar = s * (zeta - gamma) + gamma                                (stretch)
//! z     = min(1, max(0, s_bar))                                     (hard clip)
//! P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))        (expected L0, Eq. 12)
//! z_test = min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))   (Eq. 13)
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};

use crate::host::{self, Residency, residency};

/// Whether gates are sampled (training) or deterministic (evaluation, deployment).
///
/// Passed explicitly to every gated forward pass: no hidden train/eval state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateMode {
    /// Draw each gate from its hard-concrete distribution (training).
    Sample,
    /// Use the deterministic test-time gate (Eq. 13).
    Deterministic,
    /// The deterministic gate with no gradient to the gate parameters: the pruned network
    /// as it will be folded, for fine-tuning its weights with the sparsity pattern fixed.
    Frozen,
}

/// Hyper-parameters of hard-concrete gates. Defaults are the paper's.
#[derive(Config, Debug)]
pub struct HardConcreteConfig {
    /// Temperature `beta` of the binary concrete.
    #[config(default = 0.6666666666666666)]
    pub beta: f64,
    /// Lower end `gamma < 0` of the stretch interval.
    #[config(default = -0.1)]
    pub gamma: f64,
    /// Upper end `zeta > 1` of the stretch interval.
    #[config(default = 1.1)]
    pub zeta: f64,
    /// Initial probability that a gate is dropped, as in the reference code
    /// (`log_alpha ~ N(log(1 - p) - log(p), init_spread^2)`).
    #[config(default = 0.5)]
    pub init_drop_rate: f64,
    /// Standard deviation of the initial gate locations. The reference code uses 0.01:
    /// all gates start alike, so under a density constraint they cross the test-time
    /// threshold together and the true density falls as a step the multiplier cannot
    /// regulate (it overshoots below the target). Spread locations make the true density
    /// a smooth function of the mean location.
    #[config(default = 0.01)]
    pub init_spread: f64,
}

impl HardConcreteConfig {
    /// `len` gates.
    ///
    /// # Panics
    /// When a hyper-parameter is outside its domain (the message names it and its value).
    pub fn init<B: Backend>(&self, len: usize, device: &B::Device) -> HardConcrete<B> {
        assert!(
            self.beta > 0.0 && self.beta.is_finite(),
            "hard-concrete beta must be finite and > 0, got {}",
            self.beta
        );
        assert!(
            self.gamma < 0.0,
            "hard-concrete gamma must be < 0, got {}",
            self.gamma
        );
        assert!(
            self.zeta > 1.0 && self.zeta.is_finite(),
            "hard-concrete zeta must be finite and > 1, got {}",
            self.zeta
        );
        assert!(
            self.init_drop_rate > 0.0 && self.init_drop_rate < 1.0,
            "hard-concrete init_drop_rate must lie in (0, 1), got {}",
            self.init_drop_rate
        );
        assert!(
            self.init_spread >= 0.0 && self.init_spread.is_finite(),
            "hard-concrete init_spread must be finite and >= 0, got {}",
            self.init_spread
        );
        let p = self.init_drop_rate;
        let mean = (1.0 - p).ln() - p.ln();
        HardConcrete {
            log_alpha: Param::from_tensor(Tensor::random(
                [len],
                Distribution::Normal(mean, self.init_spread),
                device,
            )),
            beta: self.beta,
            gamma: self.gamma,
            zeta: self.zeta,
        }
    }
}

/// A vector of hard-concrete gates with learnable locations `log_alpha`.
#[derive(Module, Debug)]
pub struct HardConcrete<B: Backend> {
    /// Gate locations `log alpha`, one per gate.
    pub log_alpha: Param<Tensor<B, 1>>,
    beta: f64,
    gamma: f64,
    zeta: f64,
}

impl<B: Backend> HardConcrete<B> {
    /// Number of gates.
    pub fn len(&self) -> usize {
        self.log_alpha.dims()[0]
    }

    /// Whether there are no gates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gate values `z`, sampled or deterministic.
    ///
    /// Where the backend's tensors live in host memory ([`Residency::Host`]: flex,
    /// ndarray) computed in one pass on the host (`fused`): the noise, the stretch, the
    /// clip and the derivative `dz / d log_alpha` together, instead of a dozen element-wise
    /// tensor ops and their backward passes. Under autodiff the result is
    /// `log_alpha * dz + (z - log_alpha * dz)` with the bracket a constant: two tensor ops
    /// forward and one backward, derivative `dz` exactly, value `z` up to one rounding
    /// (and exactly 0 or 1 where the gate is clipped, since `dz` is 0 there).
    ///
    /// On a device backend ([`Residency::Device`]: cuda, wgpu) the same math as tensor
    /// ops (`device`), with the noise from the device's generator: the host pass would be
    /// a round trip through host memory, a synchronisation, per call.
    pub fn gates(&self, mode: GateMode) -> Tensor<B, 1> {
        let log_alpha = self.log_alpha.val();
        let device = log_alpha.device();
        if residency::<B>(&device) == Residency::Device {
            let log_alpha = match mode {
                GateMode::Frozen => log_alpha.detach(),
                _ => log_alpha,
            };
            return match mode {
                GateMode::Sample => {
                    let noise = device::logistic_noise::<B>(self.len(), &device);
                    device::sample_with_noise(log_alpha, noise, &self.params())
                }
                GateMode::Deterministic | GateMode::Frozen => {
                    device::deterministic(log_alpha, &self.params())
                }
            };
        }
        let locations = host::read(log_alpha.clone());
        let computed = match mode {
            GateMode::Sample => {
                // The noise stream is seeded from the backend's generator, so `B::seed`
                // still makes a run reproducible (or from the thread's own, `noise`, which
                // data-parallel replicas on threads need).
                let seed = fused::seed_from_uniforms(&super::noise::uniforms::<B>(3, &device));
                fused::sample(&locations, &self.params(), seed)
            }
            GateMode::Deterministic | GateMode::Frozen => {
                fused::deterministic(&locations, &self.params())
            }
        };
        if mode == GateMode::Frozen || !log_alpha.is_require_grad() {
            return Tensor::from_data(computed.value, &device);
        }
        let (offset, dz) = fused::linearised(computed, &locations);
        log_alpha * Tensor::<B, 1>::from_data(dz, &device)
            + Tensor::<B, 1>::from_data(offset, &device)
    }

    fn params(&self) -> fused::HardConcreteParams {
        fused::HardConcreteParams {
            beta: self.beta,
            gamma: self.gamma,
            zeta: self.zeta,
        }
    }

    /// `P(z_j != 0)` for every gate: the expected L0 norm per gate (Eq. 12), differentiable
    /// in `log_alpha`.
    pub fn prob_nonzero(&self) -> Tensor<B, 1> {
        let shift = self.beta * (-self.gamma / self.zeta).ln();
        sigmoid(self.log_alpha.val().sub_scalar(shift))
    }

    /// The expected number of non-zero gates, computed in one host pass with its gradient
    /// (as for sampled gates), or as tensor ops on a device backend.
    pub fn expected_l0(&self) -> Tensor<B, 1> {
        let log_alpha = self.log_alpha.val();
        if residency::<B>(&log_alpha.device()) == Residency::Device {
            return device::expected_l0(log_alpha, &self.params());
        }
        let locations = host::read(log_alpha.clone());
        self.expected_l0_at(log_alpha, &locations)
    }

    /// [`Self::expected_l0`] from a host copy of the locations already made.
    fn expected_l0_at(&self, log_alpha: Tensor<B, 1>, locations: &TensorData) -> Tensor<B, 1> {
        let device = log_alpha.device();
        let expected = fused::expected_l0(locations, &self.params());
        let total = Tensor::<B, 1>::from_data(TensorData::new(vec![expected.value], [1]), &device);
        if !log_alpha.is_require_grad() {
            return total;
        }
        let dp = Tensor::<B, 1>::from_data(expected.derivative, &device);
        total + ((log_alpha.clone() - log_alpha.detach()) * dp).sum()
    }

    /// The counts of a layer in which each gate controls `params_per_gate` parameters: one
    /// host copy of the locations serves both the expected and the true count (on a
    /// device backend, tensor ops and no copy).
    pub fn layer_gates(&self, params_per_gate: usize) -> crate::gated::LayerGates<B> {
        let k = params_per_gate as f64;
        let log_alpha = self.log_alpha.val();
        if residency::<B>(&log_alpha.device()) == Residency::Device {
            return crate::gated::LayerGates {
                gated: self.len() * params_per_gate,
                expected: device::expected_l0(log_alpha.clone(), &self.params()).mul_scalar(k),
                active: device::count_open(log_alpha, &self.params()).mul_scalar(k),
            };
        }
        let locations = host::read(log_alpha.clone());
        let active = self.count_at(&locations, &log_alpha.device());
        crate::gated::LayerGates {
            gated: self.len() * params_per_gate,
            expected: self.expected_l0_at(log_alpha, &locations).mul_scalar(k),
            active: active.mul_scalar(k),
        }
    }

    /// The number of deterministic gates that are exactly non-zero (the true L0 of the
    /// deployed model), counted with the same computation as the deterministic gates (on
    /// the host or the device, as they are), so that it is the folded model's count
    /// exactly.
    pub fn count_nonzero(&self) -> Tensor<B, 1> {
        let log_alpha = self.log_alpha.val();
        if residency::<B>(&log_alpha.device()) == Residency::Device {
            return device::count_open(log_alpha, &self.params());
        }
        self.count_at(&host::read(log_alpha.clone()), &log_alpha.device())
    }

    fn count_at(&self, locations: &TensorData, device: &B::Device) -> Tensor<B, 1> {
        let count = fused::count_open(locations, &self.params());
        Tensor::from_data(TensorData::new(vec![count as f64], [1]), device)
    }
}

mod device;
mod fast_math;
mod fused;

#[cfg(test)]
mod tests;
