//! The bytes of a written `model.tthr` as a function of each gated layer's kept weights:
//! the flash a pruned model takes on a device.
//!
//! The writer (`tether_deploy::ModelBuilder::smallest`) stores each weight in the smaller
//! of dense f32 (4 bytes a weight) and CSR (4 bytes a value, 2 a column index, 4 a row
//! pointer: `6 nnz + 4 (rows + 1)`; CSR only up to 65536 columns), and pads every tensor's
//! data to 16 bytes. Everything else in the file (tables, biases, ungated tensors) does not
//! move while the gates do, so the file is
//!
//! ```text
//! size(nnz) = fixed + sum_l pad16(min(4 n_l, 6 nnz_l + 4 (rows_l + 1)))
//! ```
//!
//! exactly, with `fixed` read off one export of the network. The strict size (what the
//! dual step sees) puts the deterministic gates' counts in `nnz_l`; the differentiable
//! surrogate (what the gates see) puts the expected counts `E[L0]`, with the CSR slope (6
//! bytes a weight) as its gradient in every layer: a layer still stored dense saves
//! nothing per weight until it crosses the CSR break-even, but it has to be pushed there
//! (the proxy-constraint pattern of Cotter et al., as the density constraint uses it).

use anyhow::Context;
use burn::tensor::{Tensor, backend::Backend};

/// One gated layer's weight as the writer stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerShape {
    /// Weights (gated parameters).
    pub numel: usize,
    /// Rows of the stored matrix (output units or channels).
    pub rows: usize,
}

impl LayerShape {
    fn cols(&self) -> usize {
        self.numel / self.rows.max(1)
    }

    /// Bytes of the dense f32 weight.
    pub fn dense_bytes(&self) -> usize {
        4 * self.numel
    }

    /// Bytes of the weight as CSR with `nnz` nonzeros, `None` where the format cannot hold
    /// it as CSR (over 65536 columns).
    pub fn csr_bytes(&self, nnz: usize) -> Option<usize> {
        (self.cols() <= 1 << 16).then(|| 6 * nnz + 4 * (self.rows + 1))
    }

    /// Bytes the writer spends on this weight with `nnz` nonzeros, padding included.
    pub fn stored_bytes(&self, nnz: usize) -> usize {
        let raw = match self.csr_bytes(nnz) {
            Some(csr) if csr < self.dense_bytes() => csr,
            _ => self.dense_bytes(),
        };
        pad16(raw)
    }
}

fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// The file size of one network as a function of its gated layers' nonzeros.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashModel {
    /// Bytes that do not depend on the gates.
    pub fixed: usize,
    /// The gated layers, in the order of `GatedNetwork::layer_gates`.
    pub layers: Vec<LayerShape>,
}

impl FlashModel {
    /// Reads the model from one export of the network: `tthr` (its bytes) holds the gated
    /// layers' weights in order, `gated[l]` parameters each. Each gated layer is matched to
    /// the next weight tensor (rank >= 2) of that many elements; the rest of the file is
    /// the fixed part.
    ///
    /// # Errors
    /// `tthr` does not parse, or a gated layer has no weight of its size in the file.
    pub fn from_export(tthr: &[u8], gated: &[usize]) -> anyhow::Result<Self> {
        let aligned = tether_deploy::AlignedBytes::from_slice(tthr);
        let model =
            tether_deploy::Model::parse(&aligned).context("reading the network's export")?;
        let mut layers = Vec::with_capacity(gated.len());
        let mut gated_bytes = 0;
        let mut next = 0;
        for (l, &n) in gated.iter().enumerate() {
            let found = model.tensors[next..]
                .iter()
                .position(|t| t.dims.as_slice().len() >= 2 && t.dims.numel() == n)
                .with_context(|| {
                    format!(
                        "gated layer {l} ({n} weights) has no weight tensor of that size in \
                         the exported network"
                    )
                })?;
            let t = &model.tensors[next + found];
            next += found + 1;
            let shape = LayerShape {
                numel: n,
                rows: t.dims.as_slice()[0],
            };
            gated_bytes += pad16(t.bytes());
            layers.push(shape);
        }
        Ok(Self {
            fixed: tthr.len() - gated_bytes,
            layers,
        })
    }

    /// The exact file size with `nnz[l]` nonzeros in gated layer `l`.
    pub fn size(&self, nnz: &[usize]) -> usize {
        self.fixed
            + self
                .layers
                .iter()
                .zip(nnz)
                .map(|(l, &n)| l.stored_bytes(n))
                .sum::<usize>()
    }

    /// The smallest file the network can be written as (every gated weight pruned: the
    /// tables, biases and row pointers remain): a budget below it cannot be met.
    pub fn min_size(&self) -> usize {
        self.size(&vec![0; self.layers.len()])
    }

    /// The file with every gated weight kept.
    pub fn full_size(&self) -> usize {
        let full: Vec<usize> = self.layers.iter().map(|l| l.numel).collect();
        self.size(&full)
    }

    /// The size as a device tensor of shape `[1]` from per-layer nonzero counts (each
    /// `[1]`): exact when the counts are integers (the deterministic gates), no host read.
    pub fn size_tensor<B: Backend>(&self, nnz: &[Tensor<B, 1>]) -> Tensor<B, 1> {
        let mut total: Option<Tensor<B, 1>> = None;
        for (l, n) in self.layers.iter().zip(nnz) {
            let bytes = match l.csr_bytes(0) {
                Some(ptrs) => n
                    .clone()
                    .mul_scalar(6.0)
                    .add_scalar(ptrs as f64)
                    .clamp_max(l.dense_bytes() as f64),
                None => n.zeros_like().add_scalar(l.dense_bytes() as f64),
            };
            let padded = bytes.div_scalar(16.0).ceil().mul_scalar(16.0);
            total = Some(match total {
                Some(t) => t + padded,
                None => padded,
            });
        }
        let total = total.expect("at least one gated layer");
        total.add_scalar(self.fixed as f64)
    }

    /// The differentiable surrogate of the size from expected counts (each `[1]`): its
    /// value is [`FlashModel::size_tensor`] at the expected counts, its gradient 6 bytes
    /// per expected weight in every layer (CSR's slope; see the module docs).
    pub fn expected_size_tensor<B: Backend>(&self, expected: &[Tensor<B, 1>]) -> Tensor<B, 1> {
        let value = self.size_tensor(expected);
        let slope = expected
            .iter()
            .map(|e| e.clone().mul_scalar(6.0))
            .reduce(|a, b| a + b)
            .expect("at least one gated layer");
        // value (no gradient) + slope - slope (no gradient): the value, with the slope's
        // gradient.
        value.detach() + slope.clone() - slope.detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData as Data;
    use tether_deploy::{ModelBuilder, OpSpec};

    type B = Flex;

    /// A 2-layer MLP written by the real writer, with `keep[l]` nonzeros in layer l.
    fn mlp(dims: &[usize], keep: &[usize]) -> Vec<u8> {
        let mut b = ModelBuilder::new(&[dims[0]]);
        let mut x = b.input();
        for (l, w) in dims.windows(2).enumerate() {
            let (i, o) = (w[0], w[1]);
            let values: Vec<f32> = (0..i * o)
                .map(|k| if k < keep[l] { 0.5 + k as f32 } else { 0.0 })
                .collect();
            let weight = b.smallest(&[o, i], &values);
            let bias = b.dense(&[o], &vec![0.1; o]);
            x = b.op(
                OpSpec::Linear {
                    weight,
                    bias: Some(bias),
                },
                &[x],
            );
            if l + 2 < dims.len() {
                x = b.op(OpSpec::Relu, &[x]);
            }
        }
        b.finish(x).unwrap()
    }

    #[test]
    fn predicts_the_writers_size_exactly_at_every_density() {
        let dims = [50, 30, 7];
        let gated = [1500, 210];
        let model = FlashModel::from_export(&mlp(&dims, &gated), &gated).unwrap();
        assert_eq!(
            model.layers[0],
            LayerShape {
                numel: 1500,
                rows: 30
            }
        );
        for keep in [
            [1500, 210],
            [1000, 140],
            [700, 3],
            [100, 0],
            [0, 0],
            [1, 209],
        ] {
            let written = mlp(&dims, &keep).len();
            assert_eq!(model.size(&keep), written, "keep {keep:?}");
        }
        assert_eq!(model.full_size(), mlp(&dims, &gated).len());
        assert_eq!(model.min_size(), mlp(&dims, &[0, 0]).len());
        // The model read from a sparse export predicts the same sizes.
        let from_sparse = FlashModel::from_export(&mlp(&dims, &[10, 5]), &gated).unwrap();
        assert_eq!(from_sparse, model);
    }

    #[test]
    fn the_tensor_forms_agree_with_the_exact_size_and_carry_the_csr_slope() {
        use burn::backend::Autodiff;
        type A = Autodiff<B>;
        let dims = [50, 30, 7];
        let gated = [1500, 210];
        let model = FlashModel::from_export(&mlp(&dims, &gated), &gated).unwrap();
        let device = Default::default();
        for keep in [[1500usize, 210usize], [400, 100], [0, 0]] {
            let t: Vec<Tensor<B, 1>> = keep
                .iter()
                .map(|&k| Tensor::from_data(Data::from([k as f32]), &device))
                .collect();
            let s: f32 = model.size_tensor(&t).into_scalar();
            assert_eq!(s as usize, model.size(&keep));
        }
        let e: Vec<Tensor<A, 1>> = [900.0f32, 150.0]
            .iter()
            .map(|&k| Tensor::from_data(Data::from([k]), &device).require_grad())
            .collect();
        let surrogate = model.expected_size_tensor(&e);
        let value: f32 = surrogate.clone().into_scalar();
        assert_eq!(value as usize, model.size(&[900, 150]));
        let grads = surrogate.backward();
        for t in &e {
            let g: f32 = t.grad(&grads).unwrap().into_scalar();
            assert_eq!(g, 6.0);
        }
    }

    #[test]
    fn a_layer_without_its_weight_in_the_file_is_an_error() {
        let bytes = mlp(&[50, 30, 7], &[1500, 210]);
        let e = FlashModel::from_export(&bytes, &[1500, 999]).unwrap_err();
        assert!(e.to_string().contains("gated layer 1 (999 weights)"), "{e}");
    }
}
