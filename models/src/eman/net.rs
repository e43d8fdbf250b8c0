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
    /// root-mean-square distance to it, rounded to f32 (what the deploy format stores, so
    /// an exported network computes from the same inputs).
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
            mean: mean.map(|m| f64::from(m as f32)),
            scale: f64::from(ms.sqrt().max(1e-30) as f32),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tether_deploy::mesh::GeometryOptions;

    type B = burn::backend::NdArray<f64>;

    /// A bumpy torus (`n x m` grid), so the tests run without any fetched data.
    fn torus(n: usize, m: usize) -> Mesh {
        let tau = std::f64::consts::TAU;
        let mut p = Vec::new();
        for i in 0..n {
            for j in 0..m {
                let (u, v) = (tau * i as f64 / n as f64, tau * j as f64 / m as f64);
                let r = 0.5 + 0.1 * (3.0 * u).sin() * (2.0 * v).cos();
                p.push([
                    (2.0 + r * v.cos()) * u.cos(),
                    (2.0 + r * v.cos()) * u.sin(),
                    r * v.sin(),
                ]);
            }
        }
        let id = |i: usize, j: usize| ((i % n) * m + j % m) as u32;
        let mut f = Vec::new();
        for i in 0..n {
            for j in 0..m {
                f.push([id(i, j), id(i + 1, j), id(i + 1, j + 1)]);
                f.push([id(i, j), id(i + 1, j + 1), id(i, j + 1)]);
            }
        }
        Mesh::new(p, f).unwrap()
    }

    fn run(
        net: &EmanNet<B>,
        input: &EmanInput,
        mesh: &Mesh,
        gauge: Option<Vec<f64>>,
    ) -> (Vec<f64>, Vec<f64>) {
        let device = Default::default();
        let g = MeshGeometry::new(
            mesh,
            &GeometryOptions {
                gauge_offsets: gauge,
            },
        )
        .unwrap();
        let graph = EmanGraph::<B>::new(&g, 2, &device);
        let x = input.features::<B>(mesh, &g, &device).unwrap();
        let h = net.features(x.clone(), &graph);
        let [v, c, d] = h.dims();
        let flat = |t: Tensor<B, 2>| t.into_data().to_vec::<f64>().unwrap();
        (flat(net.forward(x, &graph)), flat(h.reshape([v, c * d])))
    }

    #[test]
    fn rotation_and_gauge_equivariance_on_a_torus() {
        let mesh = torus(24, 12);
        let input = EmanInput::RelTan(RelTanOptions::default());
        let device = Default::default();
        let net = EmanNetConfig::new(1, 1, 3)
            .with_channels(4)
            .with_blocks(1)
            .init::<B>(&device);
        let (base, feats) = run(&net, &input, &mesh, None);
        let (c, s) = (0.6f64.cos(), 0.6f64.sin());
        let turned = mesh
            .map_positions(|p| [c * p[0] - s * p[2], p[1], s * p[0] + c * p[2]])
            .unwrap();
        let (out, _) = run(&net, &input, &turned, None);
        let diff = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        assert!(
            diff(&base, &out) < 1e-9,
            "rotation: {:e}",
            diff(&base, &out)
        );
        let gamma: Vec<f64> = (0..mesh.vertex_count())
            .map(|i| 0.1 + 0.9 * i as f64)
            .collect();
        let (out, moved) = run(&net, &input, &mesh, Some(gamma.clone()));
        assert!(diff(&base, &out) < 1e-9, "gauge: {:e}", diff(&base, &out));
        // Order-n parts turn by -n gamma; the scalars stay.
        let width = feats.len() / mesh.vertex_count();
        for (p, g) in gamma.iter().enumerate() {
            for ch in 0..width / 5 {
                let at = p * width + ch * 5;
                assert!((moved[at] - feats[at]).abs() < 1e-9);
                for n in 1..=2 {
                    let a = -(n as f64) * g;
                    let (x, y) = (feats[at + 2 * n - 1], feats[at + 2 * n]);
                    assert!((moved[at + 2 * n - 1] - (a.cos() * x - a.sin() * y)).abs() < 1e-9);
                    assert!((moved[at + 2 * n] - (a.sin() * x + a.cos() * y)).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn the_gate_is_equivariant_and_the_self_kernel_commutes_with_rotations() {
        use crate::eman::kernel::{SelfKernelConfig, gate};
        use burn::tensor::TensorData;
        let device = Default::default();
        let x: Vec<f64> = (0..2 * 3 * 5)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
            .collect();
        let turn = |x: &[f64], a: f64| {
            let mut y = x.to_vec();
            for ch in y.chunks_exact_mut(5) {
                for n in 1..=2 {
                    let (c, s) = ((n as f64 * a).cos(), (n as f64 * a).sin());
                    let (p, q) = (ch[2 * n - 1], ch[2 * n]);
                    ch[2 * n - 1] = c * p - s * q;
                    ch[2 * n] = s * p + c * q;
                }
            }
            y
        };
        let t = |v: Vec<f64>| Tensor::<B, 3>::from_data(TensorData::new(v, [2, 3, 5]), &device);
        let k = SelfKernelConfig::new(3, 2, 3, 2).init::<B>(&device);
        let gate_fn = |x: Tensor<B, 3>| gate(x);
        let kernel_fn = |x: Tensor<B, 3>| k.forward(x);
        let maps: [&dyn Fn(Tensor<B, 3>) -> Tensor<B, 3>; 2] = [&gate_fn, &kernel_fn];
        for f in maps {
            let a: Vec<f64> = f(t(turn(&x, 0.7))).into_data().to_vec().unwrap();
            let b = turn(&f(t(x.clone())).into_data().to_vec::<f64>().unwrap(), 0.7);
            assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-12));
        }
    }
}
