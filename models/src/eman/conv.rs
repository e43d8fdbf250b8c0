//! The EMAN attention convolution (Basu et al., TMLR 2022, §4 and Algorithm 1).
//!
//! For a vertex `p` and each neighbour `q`, the neighbour's features are transported into
//! `p`'s frame (angle `g_{q->p}`) and turned into the edge's frame (`-theta_pq`); a key
//! kernel and a value kernel (each `rho(theta) A rho(-theta)`, see [`super::kernel`]) map
//! them to `p`'s output type. The query is an equivariant self-interaction of `p`'s own
//! features. Per head, the score `<query_p, key_pq> / sqrt(d)` is an inner product of two
//! features of the same type at `p`, hence gauge invariant; softmax over the neighbours
//! weighs the values:
//!
//! ```text
//! out_p = sum_q softmax_q(<Q x_p, K(theta_pq) rho(g_qp) x_q> / sqrt(d)) V(theta_pq) rho(g_qp) x_q
//!         + S x_p + b
//! ```
//!
//! with `S` a self-interaction kernel and `b` a bias on the scalars (a bias on order
//! `n >= 1` would break equivariance). This is the reference's `EmanAttConv` (whose
//! softmax is rescaled by the degree and then mean-aggregated, the same sum).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, backend::Backend};

use super::graph::EmanGraph;
use super::kernel::{SelfKernel, SelfKernelConfig, width};

/// Configuration of an [`EmanConv`].
#[derive(Config, Debug)]
pub struct EmanConvConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Input rotation order.
    pub order_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Output rotation order.
    pub order_out: usize,
    /// Attention heads (must divide `channels_out`).
    #[config(default = 2)]
    pub heads: usize,
}

/// One EMAN attention convolution.
#[derive(Module, Debug)]
pub struct EmanConv<B: Backend> {
    pub(crate) key: Linear<B>,
    pub(crate) value: Linear<B>,
    pub(crate) query: SelfKernel<B>,
    pub(crate) self_interaction: SelfKernel<B>,
    pub(crate) bias: Param<Tensor<B, 1>>,
    pub(crate) heads: usize,
    pub(crate) channels_out: usize,
    pub(crate) order_out: usize,
}

impl EmanConvConfig {
    /// Initialises the layer: kernels `A` with burn's default (Kaiming-uniform) init,
    /// self-interactions `U(-1/sqrt(c), 1/sqrt(c))`, bias zero.
    ///
    /// # Panics
    /// If `heads` is zero or does not divide `channels_out`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EmanConv<B> {
        assert!(
            self.heads > 0 && self.channels_out.is_multiple_of(self.heads),
            "EmanConv: {} heads do not divide {} channels",
            self.heads,
            self.channels_out
        );
        let d_in = self.channels_in * width(self.order_in);
        let d_out = self.channels_out * width(self.order_out);
        let kernel = || LinearConfig::new(d_in, d_out).with_bias(false).init(device);
        let self_kernel = SelfKernelConfig::new(
            self.channels_in,
            self.order_in,
            self.channels_out,
            self.order_out,
        );
        EmanConv {
            key: kernel(),
            value: kernel(),
            query: self_kernel.init(device),
            self_interaction: self_kernel.init(device),
            bias: Initializer::Zeros.init([self.channels_out], device),
            heads: self.heads,
            channels_out: self.channels_out,
            order_out: self.order_out,
        }
    }
}

impl<B: Backend> EmanConv<B> {
    /// `[V, C_in, 2 M_in + 1] -> [V, C_out, 2 M_out + 1]` on the mesh `graph`.
    pub fn forward(&self, x: Tensor<B, 3>, graph: &EmanGraph<B>) -> Tensor<B, 3> {
        let [v, c_in, d_in] = x.dims();
        let (k, h) = (graph.slots, self.heads);
        let (c_out, d_out) = (self.channels_out, width(self.order_out));

        let gathered = x
            .clone()
            .reshape([v, c_in * d_in])
            .select(0, graph.neighbours.clone());
        let inward = graph.inward.apply(gathered, c_in, d_in);
        // Keys and values side by side: one rotation back to the vertex's frame for both.
        let kv = Tensor::cat(
            vec![self.key.forward(inward.clone()), self.value.forward(inward)],
            1,
        );
        let kv = graph.outward.apply(kv, 2 * c_out, d_out);
        let key = kv.clone().narrow(1, 0, c_out * d_out);
        let value = kv.narrow(1, c_out * d_out, c_out * d_out);

        // Scores per (edge, head): the query copied to its vertex's edges, multiplied
        // in place and summed per head; flat 2-D passes (see `EdgeRotation` for why).
        let per_head = c_out / h * d_out;
        let query = self
            .query
            .forward(x.clone())
            .reshape([v, c_out * d_out])
            .select(0, graph.centres.clone());
        let scores =
            (key * query).reshape([v * k * h, per_head]).sum_dim(1) / (per_head as f64).sqrt();
        let scores = scores.reshape([v, k, h]) + graph.slot_bias.clone().reshape([v, k, 1]);
        let attention = softmax(scores, 1).reshape([v * k * h, 1]);
        let message = (value.reshape([v * k * h, per_head]) * attention)
            .reshape([v, k, c_out * d_out])
            .sum_dim(1)
            .reshape([v, c_out, d_out]);

        let mut bias = vec![self.bias.val().reshape([1, c_out, 1])];
        if d_out > 1 {
            bias.push(Tensor::zeros([1, c_out, d_out - 1], &x.device()));
        }
        message + self.self_interaction.forward(x) + Tensor::cat(bias, 2)
    }
}
