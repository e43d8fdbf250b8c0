//! Tests of the constrained-optimization library, mirroring its modules.

mod checkpoint;
mod convergence;
mod dual;
mod errors;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData, backend::AutodiffBackend, backend::Backend};

use super::*;

pub(super) type B = Autodiff<Flex>;

/// A free vector of parameters: the primal variable of the toy problems.
#[derive(Module, Debug)]
pub(super) struct Point<B: Backend> {
    pub x: Param<Tensor<B, 1>>,
}

impl<B: Backend> Point<B> {
    pub fn new(init: &[f64], device: &B::Device) -> Self {
        Self {
            x: Param::from_tensor(vec_tensor(init, device)),
        }
    }
}

pub(super) fn vec_tensor<BB: Backend>(v: &[f64], device: &BB::Device) -> Tensor<BB, 1> {
    let data: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [v.len()]), device)
}

pub(super) fn host<BB: Backend>(t: &Tensor<BB, 1>) -> Vec<f64> {
    tensor_to_f64(t)
}

pub(super) fn bits<BB: Backend>(t: &Tensor<BB, 1>) -> Vec<u32> {
    t.to_data()
        .into_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

pub(super) fn ga(lr: f64) -> MultiplierConfig {
    MultiplierConfig::new(DualOptimizer::gradient_ascent(lr))
}

pub(super) fn nupi(cfg: NuPiConfig) -> MultiplierConfig {
    MultiplierConfig::new(DualOptimizer::NuPi(cfg))
}

/// A state with a zero loss and the given observations (for dual-only tests).
pub(super) fn state_of<B: AutodiffBackend>(
    device: &B::Device,
    obs: Vec<(ConstraintId, ConstraintState<B>)>,
) -> CmpState<B> {
    let mut s = CmpState::new(Tensor::zeros([1], device));
    s.observed = obs;
    s
}

/// Instantiates backend-generic tests (`fn name<B: AutodiffBackend>()`) for every compiled
/// backend. The CUDA instances are ignored by default (CI has no GPU) and run by
/// `scripts/gpu-check` with `--include-ignored`. The wgpu instances run wherever the
/// feature is on: Mesa's software Vulkan (lavapipe) needs no GPU.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod flex {
            $(#[test]
            fn $name() {
                super::$name::<burn::backend::Autodiff<burn::backend::Flex>>();
            })*
        }
        #[cfg(feature = "ndarray")]
        mod ndarray {
            $(#[test]
            fn $name() {
                super::$name::<burn::backend::Autodiff<burn::backend::NdArray>>();
            })*
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $(#[test]
            #[ignore = "needs an NVIDIA GPU: run by scripts/gpu-check"]
            fn $name() {
                super::$name::<burn::backend::Autodiff<burn::backend::Cuda>>();
            })*
        }
        #[cfg(feature = "wgpu")]
        mod wgpu {
            $(#[test]
            fn $name() {
                super::$name::<burn::backend::Autodiff<burn::backend::Wgpu>>();
            })*
        }
    };
}
pub(crate) use backend_tests;
