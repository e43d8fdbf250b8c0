//! A SIREN's weights as plain numbers: what the file stores and the decoder runs, with no
//! burn in sight (a device decodes without a training framework).

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use half::f16;
use tether_deploy::{AlignedBytes, ModelBuilder, OpSpec};
use tether_models::siren::{Siren, SirenConfig};

use crate::error::CompressError;

/// Coordinates in (row, column).
pub const D_INPUT: usize = 2;
/// RGB out.
pub const D_OUTPUT: usize = 3;

/// Weight density at or below which decoding stores a layer CSR and runs the sparse
/// kernel (measured by `cargo bench -p tether-compress --bench decode`, BENCHMARKS.md).
pub const SPARSE_DECODE_DENSITY: f64 = 0.2;

/// A SIREN's shape and frequencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Architecture {
    /// Sine layers (the linear output layer not counted; COIN's `num_layers`).
    pub layers: usize,
    /// Units per sine layer.
    pub width: usize,
    /// First layer's frequency.
    pub w0_initial: f32,
    /// Hidden layers' frequency.
    pub w0: f32,
}

impl Architecture {
    /// `layers x width` with SIREN's frequencies (30, 30).
    pub fn new(layers: usize, width: usize) -> Self {
        Self {
            layers,
            width,
            w0_initial: 30.0,
            w0: 30.0,
        }
    }

    /// The matching burn configuration.
    pub fn config(&self) -> SirenConfig {
        SirenConfig::new(self.layers, self.width)
            .with_d_input(D_INPUT)
            .with_d_output(D_OUTPUT)
            .with_w0(f64::from(self.w0))
            .with_w0_initial(f64::from(self.w0_initial))
    }

    /// `(inputs, outputs)` of each linear layer, the output layer last.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        self.config().layer_dims()
    }

    /// Weights and biases.
    pub fn params(&self) -> usize {
        self.config().params()
    }
}

/// One linear layer: `y = W x + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    /// Inputs.
    pub d_in: usize,
    /// Outputs.
    pub d_out: usize,
    /// `[d_out, d_in]`, row-major (PyTorch's layout).
    pub weight: Vec<f32>,
    /// `[d_out]`.
    pub bias: Vec<f32>,
}

/// All of a SIREN's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct SirenWeights {
    /// Shape and frequencies.
    pub arch: Architecture,
    /// Linear layers, the output layer last.
    pub layers: Vec<LayerWeights>,
}

fn host<B: Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data converts to f32")
}

impl SirenWeights {
    /// The weights of a burn SIREN of shape `arch`.
    pub fn from_siren<B: Backend>(siren: &Siren<B>, arch: Architecture) -> Self {
        let layers = siren
            .layers
            .iter()
            .map(|l| {
                let [d_in, d_out] = l.weight.dims();
                LayerWeights {
                    d_in,
                    d_out,
                    weight: host(l.weight.val().transpose()),
                    bias: l
                        .bias
                        .as_ref()
                        .map_or_else(|| vec![0.0; d_out], |b| host(b.val())),
                }
            })
            .collect();
        Self { arch, layers }
    }

    /// A burn SIREN holding these weights (e.g. to fine-tune them).
    pub fn to_siren<B: Backend>(&self, device: &B::Device) -> Siren<B> {
        let mut siren = self.arch.config().init::<B>(device);
        for (layer, w) in siren.layers.iter_mut().zip(&self.layers) {
            let weight = Tensor::<B, 2>::from_data(
                TensorData::new(w.weight.clone(), [w.d_out, w.d_in]),
                device,
            )
            .transpose();
            layer.weight = Param::from_tensor(weight);
            layer.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(w.bias.clone(), [w.d_out]),
                device,
            )));
        }
        siren
    }

    /// Every value rounded to f16 and back: exactly what the file stores.
    pub fn rounded_to_f16(&self) -> Self {
        let r = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        Self {
            arch: self.arch,
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    weight: r(&l.weight),
                    bias: r(&l.bias),
                    ..*l
                })
                .collect(),
        }
    }

    /// Nonzero weights (biases not counted).
    pub fn nonzero_weights(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.iter().filter(|&&w| w != 0.0).count())
            .sum()
    }

    /// Nonzero weights plus biases: COIN's parameter count (what its bpp convention,
    /// `params x 16 / pixels`, counts).
    pub fn stored_params(&self) -> usize {
        self.nonzero_weights() + self.layers.iter().map(|l| l.d_out).sum::<usize>()
    }

    /// A `tether-deploy` model of these weights: `[2] -> [3]`, sine layers and a linear
    /// output. Layers at or below [`SPARSE_DECODE_DENSITY`] are stored CSR (and run by the
    /// sparse kernel), the others dense.
    ///
    /// # Errors
    /// The runtime refuses the model (it cannot for weights made by this crate).
    pub fn to_deploy(&self) -> Result<AlignedBytes, CompressError> {
        self.to_deploy_with(SPARSE_DECODE_DENSITY)
    }

    /// [`SirenWeights::to_deploy`] with layers at or below `sparse_density` stored CSR.
    ///
    /// # Errors
    /// As [`SirenWeights::to_deploy`].
    pub fn to_deploy_with(&self, sparse_density: f64) -> Result<AlignedBytes, CompressError> {
        let mut b = ModelBuilder::new(&[D_INPUT]);
        let mut x = b.input();
        let last = self.layers.len() - 1;
        for (k, l) in self.layers.iter().enumerate() {
            let nnz = l.weight.iter().filter(|&&w| w != 0.0).count();
            let dims = [l.d_out, l.d_in];
            let w = if nnz as f64 <= sparse_density * l.weight.len() as f64 {
                b.csr(&dims, &l.weight)
            } else {
                b.dense(&dims, &l.weight)
            };
            let bias = b.dense(&[l.d_out], &l.bias);
            x = b.op(
                OpSpec::Linear {
                    weight: w,
                    bias: Some(bias),
                },
                &[x],
            );
            if k < last {
                let w0 = if k == 0 {
                    self.arch.w0_initial
                } else {
                    self.arch.w0
                };
                x = b.op(OpSpec::Sine { w0 }, &[x]);
            }
        }
        let bytes = b
            .finish(x)
            .map_err(|e| CompressError::Invalid(format!("deploy model: {e}")))?;
        Ok(AlignedBytes::from_slice(&bytes))
    }
}
