//! The EMAN network (Basu et al., TMLR 2022, §5: an attention layer lifting the input
//! features, residual blocks of two attention layers, invariant scalars into a per-vertex
//! head), and the inputs it is fed.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use tether_deploy::mesh::{Mesh, MeshError, MeshGeometry, RelTanOptions};

use super::conv::{EmanConv, EmanConvConfig};
use super::graph::EmanGraph;
use super::kernel::{gate, width};

/// What the network sees at each vertex.
#[derive(Clone, Debug, PartialEq)]
pub enum EmanInput {
    /// Relative tangential features (EMAN eq. 6), one order-1 feature per relative
    /// power: invariant to translation, rotation and scale, equivariant to gauge.
    RelTan(RelTanOptions),
    /// Raw vertex coordinates as three scalars, standardised by constants (`(x - mean) /
    /// scale`, fitted on the training mesh): the non-equivariant baseline.
    Xyz {
        /// Subtracted from each coordinate.
        mean: [f64; 3],
        /// Divides each coordinate.
        scale: f64,
    },
}

impl EmanInput {
    /// Input channels.
    pub fn channels(&self) -> usize {
        match self {
            EmanInput::RelTan(o) => o.powers.len(),
            EmanInput::Xyz { .. } => 3,
        }
    }

    /// Input rotation order.
    pub fn order(&self) -> usize {
        match self {
            EmanInput::RelTan(_) => 1,
            EmanInput::Xyz { .. } => 0,
        }
    }

    /// The `[V, channels, 2 order + 1]` input of `mesh`.
    pub fn features<B: Backend>(
        &self,
        mesh: &Mesh,
        geometry: &MeshGeometry,
        device: &B::Device,
    ) -> Result<Tensor<B, 3>, MeshError> {
        let v = mesh.vertex_count();
        let (c, d) = (self.channels(), width(self.order()));
        let mut data = vec![0.0f64; v * c * d];
        match self {
            EmanInput::RelTan(options) => {
                let r = geometry.reltan(options)?;
                for p in 0..v {
                    for k in 0..c {
                        let at = (p * c + k) * d;
                        data[at + 1] = r[(p * c + k) * 2];
                        data[at + 2] = r[(p * c + k) * 2 + 1];
                    }
                }
            }
            EmanInput::Xyz { mean, scale } => {
                for (p, x) in mesh.positions().iter().enumerate() {
                    for k in 0..3 {
                        data[p * 3 + k] = (x[k] - mean[k]) / scale;
                    }
                }
            }
        }
        Ok(Tensor::from_data(TensorData::new(data, [v, c, d]), device))
    }

    /// The standardisation of [`EmanInput::Xyz`] fitted on `mesh`: its centroid and the
    /// root-mean-square distance to it.
    pub fn xyz_fitted(mesh: &Mesh) -> Self {
        let n = mesh.vertex_count() as f64;
        let mut mean = [0.0; 3];
        for p in mesh.positions() {
            for k in 0..3 {
                mean[k] += p[k] / n;
            }
        }
        let ms = mesh
            .positions()
            .iter()
            .map(|p| (0..3).map(|k| (p[k] - mean[k]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / n;
        EmanInput::Xyz {
            mean,
            scale: ms.sqrt().max(f64::MIN_POSITIVE),
        }
    }
}

/// The network's shape.
#[derive(Config, Debug)]
pub struct EmanNetConfig {
    /// Input channels ([`EmanInput::channels`]).
    pub input_channels: usize,
    /// Input rotation order ([`EmanInput::order`]).
    pub input_order: usize,
    /// Outputs per vertex (classes).
    pub outputs: usize,
    /// Channels of the hidden features.
    #[config(default = 16)]
    pub channels: usize,
    /// Largest rotation order of the hidden features (GEM-CNN and EMAN use 2).
    #[config(default = 2)]
    pub order: usize,
    /// Residual blocks (two attention layers each).
    #[config(default = 2)]
    pub blocks: usize,
    /// Attention heads per layer.
    #[config(default = 2)]
    pub heads: usize,
}

/// A residual block: `x + conv_b(gate(conv_a(gate(x))))`.
#[derive(Module, Debug)]
pub struct EmanBlock<B: Backend> {
    pub(crate) a: EmanConv<B>,
    pub(crate) b: EmanConv<B>,
}

/// The EMAN network.
#[derive(Module, Debug)]
pub struct EmanNet<B: Backend> {
    pub(crate) lift: EmanConv<B>,
    pub(crate) blocks: Vec<EmanBlock<B>>,
    pub(crate) head: Linear<B>,
}

impl EmanNetConfig {
    /// Initialises the network.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EmanNet<B> {
        let hidden = || {
            EmanConvConfig::new(self.channels, self.order, self.channels, self.order)
                .with_heads(self.heads)
                .init(device)
        };
        EmanNet {
            lift: EmanConvConfig::new(
                self.input_channels,
                self.input_order,
                self.channels,
                self.order,
            )
            .with_heads(self.heads)
            .init(device),
            blocks: (0..self.blocks)
                .map(|_| EmanBlock {
                    a: hidden(),
                    b: hidden(),
                })
                .collect(),
            head: LinearConfig::new(self.channels, self.outputs).init(device),
        }
    }
}

impl<B: Backend> EmanNet<B> {
    /// The last hidden features `[V, channels, 2 order + 1]` (after the final gate):
    /// gauge-equivariant, invariant scalars in component 0.
    pub fn features(&self, x: Tensor<B, 3>, graph: &EmanGraph<B>) -> Tensor<B, 3> {
        let mut h = self.lift.forward(x, graph);
        for block in &self.blocks {
            let inner = block.a.forward(gate(h.clone()), graph);
            h = h + block.b.forward(gate(inner), graph);
        }
        gate(h)
    }

    /// Per-vertex outputs `[V, outputs]` from the invariant scalars.
    pub fn forward(&self, x: Tensor<B, 3>, graph: &EmanGraph<B>) -> Tensor<B, 2> {
        let h = self.features(x, graph);
        let [v, c, _] = h.dims();
        self.head.forward(h.narrow(2, 0, 1).reshape([v, c]))
    }
}
