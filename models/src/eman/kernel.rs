//! The equivariant pieces an EMAN layer is made of.
//!
//! **Why one dense matrix is the whole kernel space.** A kernel from order `n` to order
//! `m` features at angle `theta` must satisfy `K(theta - g) = rho_m(-g) K(theta) rho_n(g)`
//! (GEM-CNN, de Haan et al. 2021, eq. 3). Writing order-`n` features as complex numbers
//! `z` (so `rho_n(g) z = e^{ing} z`), every real-linear map is `z -> a z + b conj(z)`, and
//! the constraint's solutions are exactly `a = alpha e^{i(m-n) theta}`,
//! `b = beta e^{i(m+n) theta}` (GEM-CNN's Table 1, all four real parameters for `n, m >= 1`,
//! two when one side is a scalar, one for scalar to scalar). These are precisely
//! `K(theta) = rho_m(theta) A rho_n(-theta)` for an unconstrained real matrix `A`: turn the
//! (transported) neighbour features into the edge's frame, apply any linear map across
//! channels and orders, turn the result back by `theta`. So a layer is a gather, two
//! per-edge rotations ([`super::graph::EdgeRotation`]) and one dense matmul, with the full
//! kernel space of every order pair (no band limit).
//!
//! **Self-interaction** (no angle): `A = rho_m(-g) A rho_n(g)` for all `g` leaves complex
//! multiplication for `n = m` and nothing between different orders ([`SelfKernel`]).
//!
//! **Nonlinearity**: EMAN and GEM-CNN use the "regular" nonlinearity (sample the features
//! as a function on `N` angles, ReLU, transform back), which is exactly equivariant only
//! to rotations by multiples of `2 pi / N`. Here a gate (Weiler et al. 2018): scalars go
//! through ReLU and each channel's order-`n >= 1` parts are scaled by the sigmoid of the
//! channel's scalar, which is exactly equivariant to every gauge change, so the
//! equivariance tests can hold to float rounding.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::activation::relu;
use burn::tensor::{Tensor, backend::Backend};

/// Width of a feature of order `order`: one scalar and two components per order.
pub fn width(order: usize) -> usize {
    2 * order + 1
}

/// The gate nonlinearity: `s -> relu(s)`, `z_n -> sigmoid(s) z_n` per channel.
pub fn gate<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [_, _, d] = x.dims();
    let s = x.clone().narrow(2, 0, 1);
    if d == 1 {
        return relu(s);
    }
    let rest = x.narrow(2, 1, d - 1) * exact_sigmoid(s.clone());
    Tensor::cat(vec![relu(s), rest], 2)
}

/// `1 / (1 + exp(-s))` as `exp(min(s, 0)) / (1 + exp(-|s|))`: no exponent is positive, so
/// nothing overflows (nor does its gradient), and every op is computed in the backend's own
/// precision. burn's `sigmoid` falls back to a version that rounds through f32 on backends
/// without a native one (ndarray), which would cap the f64 checks (equivariance, deploy
/// parity) at about 1e-8.
fn exact_sigmoid<B: Backend, const D: usize>(s: Tensor<B, D>) -> Tensor<B, D> {
    let numerator = relu(s.clone().neg()).neg().exp();
    let denominator = s.abs().neg().exp().add_scalar(1.0);
    numerator / denominator
}

/// Configuration of a [`SelfKernel`].
#[derive(Config, Debug)]
pub struct SelfKernelConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Input rotation order.
    pub order_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Output rotation order.
    pub order_out: usize,
}

/// The equivariant map between a vertex's own features: a real matrix on scalars, a
/// complex one (`re`, `im` parts) on each order both sides have; zero between orders.
#[derive(Module, Debug)]
pub struct SelfKernel<B: Backend> {
    pub(crate) scalar: Param<Tensor<B, 2>>,
    pub(crate) re: Vec<Param<Tensor<B, 2>>>,
    pub(crate) im: Vec<Param<Tensor<B, 2>>>,
    pub(crate) order_out: usize,
}

impl SelfKernelConfig {
    /// Initialises the weights `U(-1/sqrt(c_in), 1/sqrt(c_in))`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SelfKernel<B> {
        let bound = 1.0 / (self.channels_in as f64).sqrt();
        let init = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let shape = [self.channels_in, self.channels_out];
        let shared = self.order_in.min(self.order_out);
        SelfKernel {
            scalar: init.init(shape, device),
            re: (0..shared).map(|_| init.init(shape, device)).collect(),
            im: (0..shared).map(|_| init.init(shape, device)).collect(),
            order_out: self.order_out,
        }
    }
}

impl<B: Backend> SelfKernel<B> {
    /// `[V, C_in, 2 M_in + 1] -> [V, C_out, 2 M_out + 1]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [v, _, _] = x.dims();
        let c_out = self.scalar.dims()[1];
        let comp = |k: usize| x.clone().narrow(2, k, 1).squeeze_dim::<2>(2);
        let mut parts = vec![comp(0).matmul(self.scalar.val()).unsqueeze_dim::<3>(2)];
        for n in 1..=self.order_out {
            if let (Some(wr), Some(wi)) = (self.re.get(n - 1), self.im.get(n - 1)) {
                let (re, im) = (comp(2 * n - 1), comp(2 * n));
                let out_re = re.clone().matmul(wr.val()) - im.clone().matmul(wi.val());
                let out_im = re.matmul(wi.val()) + im.matmul(wr.val());
                parts.push(out_re.unsqueeze_dim(2));
                parts.push(out_im.unsqueeze_dim(2));
            } else {
                let zeros = Tensor::zeros([v, c_out, 2], &x.device());
                parts.push(zeros);
            }
        }
        Tensor::cat(parts, 2)
    }
}
