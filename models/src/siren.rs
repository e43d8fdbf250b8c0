//! SIREN (Sitzmann et al. 2020, "Implicit Neural Representations with Periodic Activation
//! Functions"), as COIN uses it (Dupont et al. 2021, "COIN: COmpression with Implicit
//! Neural representations"): pixel coordinates in, RGB out.
//!
//! ```text
//! h_1     = sin(w0_initial * (W_1 x + b_1))
//! h_{k+1} = sin(w0 * (W_{k+1} h_k + b_{k+1}))       k = 1 .. layers-1
//! y       = W_out h_layers + b_out                     (linear output)
//! ```
//!
//! Initialisation (SIREN Sec. 3.2, as COIN's code does it, biases included): the first
//! layer's weights and biases `U(-1/n, 1/n)`, every later layer's `U(-c, c)` with
//! `c = sqrt(6/n) / w0`, `n` the layer's input width. With `w0 = 30` this keeps the
//! pre-activations of every layer distributed as `arcsine`-like at init, which is what
//! makes deep sine networks trainable.
//!
//! [`GatedSiren`] is the L0onie variant (Ramirez & Gallego-Posada 2022): the same network
//! with a hard-concrete gate on every weight (biases ungated), so a bit budget can be
//! imposed as a constraint on the expected number of nonzero weights.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

use crate::gated::LayerGates;
use crate::l0::{GateMode, GateStructure, GatedLinear, GatedLinearConfig, HardConcreteConfig};

/// The shape of a SIREN: `layers` sine layers of `width` units between a `d_input`-D
/// coordinate and a `d_output`-D value.
#[derive(Config, Debug, PartialEq)]
pub struct SirenConfig {
    /// Sine layers (COIN's `num_layers`: the first layer counts, the linear output does not).
    pub layers: usize,
    /// Units per sine layer.
    pub width: usize,
    /// Coordinate dimensions.
    #[config(default = 2)]
    pub d_input: usize,
    /// Output channels.
    #[config(default = 3)]
    pub d_output: usize,
    /// Frequency of the hidden layers' sines.
    #[config(default = 30.0)]
    pub w0: f64,
    /// Frequency of the first layer's sine.
    #[config(default = 30.0)]
    pub w0_initial: f64,
}

impl SirenConfig {
    /// `(inputs, outputs)` of every linear layer, the output layer last.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![(self.d_input, self.width)];
        dims.extend((1..self.layers).map(|_| (self.width, self.width)));
        dims.push((self.width, self.d_output));
        dims
    }

    /// Weights and biases in total.
    pub fn params(&self) -> usize {
        self.layer_dims().iter().map(|&(i, o)| i * o + o).sum()
    }

    /// Weights only (what the L0onie gates act on).
    pub fn weights(&self) -> usize {
        self.layer_dims().iter().map(|&(i, o)| i * o).sum()
    }

    /// The sine frequency after layer `k` (`None` for the linear output layer).
    pub fn frequency(&self, k: usize) -> Option<f64> {
        match k {
            0 => Some(self.w0_initial),
            k if k < self.layers => Some(self.w0),
            _ => None,
        }
    }

    fn check(&self) {
        assert!(
            self.layers >= 1 && self.width >= 1 && self.d_input >= 1 && self.d_output >= 1,
            "a SIREN needs at least one layer, unit, input and output: {self:?}"
        );
        assert!(
            self.w0 > 0.0 && self.w0_initial > 0.0,
            "SIREN frequencies must be > 0: {self:?}"
        );
    }

    fn linear<B: Backend>(&self, k: usize, device: &B::Device) -> Linear<B> {
        let (d_in, d_out) = self.layer_dims()[k];
        let c = if k == 0 {
            1.0 / d_in as f64
        } else {
            (6.0 / d_in as f64).sqrt() / self.w0
        };
        LinearConfig::new(d_in, d_out)
            .with_initializer(Initializer::Uniform { min: -c, max: c })
            .init(device)
    }

    /// Builds the network with SIREN's initialisation.
    ///
    /// # Panics
    /// A zero size or a non-positive frequency (the message shows the configuration).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Siren<B> {
        self.check();
        Siren {
            layers: (0..=self.layers).map(|k| self.linear(k, device)).collect(),
            w0: self.w0,
            w0_initial: self.w0_initial,
        }
    }

    /// Builds the gated (L0onie) network: SIREN's initialisation, a gate on every weight.
    ///
    /// # Panics
    /// As [`SirenConfig::init`], or gate hyper-parameters outside their domain.
    pub fn init_gated<B: Backend>(
        &self,
        gates: &HardConcreteConfig,
        device: &B::Device,
    ) -> GatedSiren<B> {
        self.check();
        let layers = self
            .layer_dims()
            .iter()
            .enumerate()
            .map(|(k, &(i, o))| {
                let mut layer = GatedLinearConfig::new(i, o, GateStructure::Weight)
                    .with_gates(gates.clone())
                    .init(device);
                layer.linear = self.linear(k, device);
                layer
            })
            .collect();
        GatedSiren {
            layers,
            w0: self.w0,
            w0_initial: self.w0_initial,
        }
    }
}

/// A SIREN: sine layers and a linear output (see the module documentation).
#[derive(Module, Debug)]
pub struct Siren<B: Backend> {
    /// The sine layers, then the output layer.
    pub layers: Vec<Linear<B>>,
    w0: f64,
    w0_initial: f64,
}

impl<B: Backend> Siren<B> {
    /// # Shapes
    /// - coordinates `[n, d_input]`, values `[n, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward_mapped(x, |_, w| w)
    }

    /// The forward pass with each layer's weight (`[d_in, d_out]`) replaced by
    /// `weight(k, w)` for layer `k`: a fixed mask, fake quantisation, or both.
    pub fn forward_mapped(
        &self,
        x: Tensor<B, 2>,
        weight: impl Fn(usize, Tensor<B, 2>) -> Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (k, layer) in self.layers.iter().enumerate() {
            h = h.matmul(weight(k, layer.weight.val()));
            if let Some(b) = &layer.bias {
                h = h + b.val().unsqueeze_dim(0);
            }
            if k < last {
                let w0 = if k == 0 { self.w0_initial } else { self.w0 };
                h = h.mul_scalar(w0).sin();
            }
        }
        h
    }

    /// The frequencies `(w0_initial, w0)`.
    pub fn frequencies(&self) -> (f64, f64) {
        (self.w0_initial, self.w0)
    }
}

/// A SIREN with a hard-concrete gate on every weight (L0onie).
#[derive(Module, Debug)]
pub struct GatedSiren<B: Backend> {
    /// The gated sine layers, then the gated output layer.
    pub layers: Vec<GatedLinear<B>>,
    w0: f64,
    w0_initial: f64,
}

impl<B: Backend> GatedSiren<B> {
    /// # Shapes
    /// - coordinates `[n, d_input]`, values `[n, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (k, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h, mode);
            if k < last {
                let w0 = if k == 0 { self.w0_initial } else { self.w0 };
                h = h.mul_scalar(w0).sin();
            }
        }
        h
    }

    /// Gate counts per layer, in order.
    pub fn layer_gates(&self) -> Vec<LayerGates<B>> {
        self.layers.iter().map(|l| l.layer_gates()).collect()
    }

    /// The plain SIREN with the deterministic gates multiplied into the weights.
    pub fn fold(&self) -> Siren<B> {
        Siren {
            layers: self.layers.iter().map(|l| l.fold()).collect(),
            w0: self.w0,
            w0_initial: self.w0_initial,
        }
    }

    /// The ids of the gate-location parameters (for their own learning rate).
    pub fn gate_ids(&self) -> Vec<burn::module::ParamId> {
        self.layers.iter().map(|l| l.gates.log_alpha.id).collect()
    }
}

/// A SIREN whose weights are multiplied by fixed 0/1 masks: an L0onie network after its
/// gates are frozen, fine-tuned with its zeros kept zero (a pruned weight gets no gradient).
#[derive(Module, Debug)]
pub struct MaskedSiren<B: Backend> {
    /// The network (pruned entries keep whatever value they had).
    pub siren: Siren<B>,
    /// One mask per layer, shaped like its weight (`[d_in, d_out]`); constants.
    pub masks: Vec<Tensor<B, 2>>,
}

impl<B: Backend> MaskedSiren<B> {
    /// Masks where `siren`'s weights are nonzero (a folded L0onie network).
    pub fn from_zeros(siren: Siren<B>) -> Self {
        let masks = siren
            .layers
            .iter()
            .map(|l| l.weight.val().not_equal_elem(0.0).float())
            .collect();
        Self { siren, masks }
    }

    /// # Shapes
    /// - coordinates `[n, d_input]`, values `[n, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.siren
            .forward_mapped(x, |k, w| w * self.masks[k].clone())
    }

    /// The plain SIREN with the masks' zeros written into its weights (leaves, trainable
    /// when this network's are).
    pub fn fold(&self) -> Siren<B> {
        let mut siren = self.siren.clone();
        for (layer, mask) in siren.layers.iter_mut().zip(&self.masks) {
            layer.weight =
                crate::l0::folded_param(&layer.weight, layer.weight.val() * mask.clone());
        }
        siren
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    type B = Flex;

    #[test]
    fn parameter_counts_match_coins_published_architectures() {
        // COIN's Kodak architectures (768x512 = 393216 pixels, 16 bits a parameter), as
        // published rounded: 5x20 -> 0.074 bpp, 5x30 -> 0.160, 10x28 -> 0.307, 10x40 ->
        // 0.611. (coin.json's unrounded figures are 0.3-1% above these counts: 0.0736 vs
        // 0.07361 for 5x20 but 0.3043 vs 0.3074 for 10x28; COIN's own count is not stated.)
        let c = SirenConfig::new(5, 20);
        assert_eq!(c.params(), 2 * 20 + 20 + 4 * (20 * 20 + 20) + 20 * 3 + 3);
        for (layers, width, published) in [
            (5, 20, 0.074),
            (5, 30, 0.160),
            (10, 28, 0.307),
            (10, 40, 0.611),
        ] {
            let bpp = SirenConfig::new(layers, width).params() as f64 * 16.0 / 393_216.0;
            assert!(
                (bpp - published).abs() / published < 0.011,
                "{layers}x{width}: {bpp}"
            );
        }
    }

    #[test]
    fn initialisation_follows_siren() {
        let device = Default::default();
        let c = SirenConfig::new(3, 64);
        let s = c.init::<B>(&device);
        let bound = |k: usize| -> f32 {
            let w = s.layers[k].weight.val();
            w.abs().max().into_scalar()
        };
        assert!(bound(0) <= 1.0 / 2.0 && bound(0) > 0.4);
        let c1 = ((6.0f64 / 64.0).sqrt() / 30.0) as f32;
        assert!(
            bound(1) <= c1 && bound(1) > 0.9 * c1,
            "{} vs {c1}",
            bound(1)
        );
        assert!(bound(3) <= c1);
    }

    #[test]
    fn forward_is_sine_layers_then_linear() {
        let device = Default::default();
        let c = SirenConfig::new(2, 4);
        let s = c.init::<B>(&device);
        let x = Tensor::<B, 2>::random([5, 2], Distribution::Uniform(-1.0, 1.0), &device);
        let l = &s.layers;
        let h = (l[0].forward(x.clone()) * 30.0).sin();
        let h = (l[1].forward(h) * 30.0).sin();
        let y = l[2].forward(h);
        let diff: f32 = (y - s.forward(x)).abs().max().into_scalar();
        assert!(diff < 1e-6);
    }

    #[test]
    fn gated_siren_folds_to_its_deterministic_forward() {
        let device = Default::default();
        let c = SirenConfig::new(2, 8);
        let g = c.init_gated::<B>(&HardConcreteConfig::new().with_init_spread(2.0), &device);
        let x = Tensor::<B, 2>::random([7, 2], Distribution::Uniform(-1.0, 1.0), &device);
        let a = g.forward(x.clone(), GateMode::Deterministic);
        let b = g.fold().forward(x);
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
        let gated: usize = g.layer_gates().iter().map(|l| l.gated).sum();
        assert_eq!(gated, c.weights());
    }

    #[test]
    fn masked_siren_keeps_its_zeros_and_matches_its_fold() {
        let device = Default::default();
        let c = SirenConfig::new(2, 8);
        let g = c.init_gated::<B>(&HardConcreteConfig::new().with_init_spread(3.0), &device);
        let folded = g.fold();
        let zeros = |s: &Siren<B>| -> usize {
            s.layers
                .iter()
                .map(|l| {
                    let v = l.weight.val().into_data().into_vec::<f32>().unwrap();
                    v.iter().filter(|&&w| w == 0.0).count()
                })
                .sum()
        };
        let before = zeros(&folded);
        assert!(before > 0, "some gates start closed");
        let m = MaskedSiren::from_zeros(folded);
        let x = Tensor::<B, 2>::random([6, 2], Distribution::Uniform(-1.0, 1.0), &device);
        let diff: f32 = (m.forward(x.clone()) - m.fold().forward(x))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-6);
        assert_eq!(zeros(&m.fold()), before);
    }
}
