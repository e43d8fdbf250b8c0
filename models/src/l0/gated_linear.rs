//! A linear layer whose weights (unstructured), 1x4 blocks of weights, or output units
//! (structured) are multiplied by hard-concrete gates.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

use super::{GateMode, HardConcrete, HardConcreteConfig, folded_param};

/// What one gate switches off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GateStructure {
    /// One gate per weight: unstructured sparsity (bias left ungated).
    Weight,
    /// One gate per output unit: the unit's weights and bias go together, so a closed
    /// gate removes the unit (and the matching input column of the next layer).
    OutputUnit,
    /// One gate per 4 consecutive inputs of an output unit (a 1x4 block of the `[out, in]`
    /// weight, aligned at multiples of 4): the sparsity comes in blocks whose 4
    /// activations a batch-1 kernel reads with one plain load instead of 4 gathers
    /// (tether-deploy's `kernels::block`: 6x dense at 90% on 300x784, against 2.4x for
    /// scattered nonzeros). Needs `d_input` a multiple of 4; convolutions gate per weight.
    Block1x4,
}

/// Inputs per [`GateStructure::Block1x4`] block.
pub const BLOCK_INPUTS: usize = 4;

/// Configuration of a [`GatedLinear`].
#[derive(Config, Debug)]
pub struct GatedLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// What a gate switches off.
    pub structure: GateStructure,
    /// The gates' hyper-parameters.
    #[config(default = "HardConcreteConfig::new()")]
    pub gates: HardConcreteConfig,
}

impl GatedLinearConfig {
    /// Builds the layer (weights initialised as burn's `Linear`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> GatedLinear<B> {
        let n_gates = match self.structure {
            GateStructure::Weight => self.d_input * self.d_output,
            GateStructure::OutputUnit => self.d_output,
            GateStructure::Block1x4 => {
                assert!(
                    self.d_input.is_multiple_of(BLOCK_INPUTS),
                    "1x4 block gates need a multiple of 4 inputs, got {}",
                    self.d_input
                );
                self.d_input / BLOCK_INPUTS * self.d_output
            }
        };
        GatedLinear {
            linear: LinearConfig::new(self.d_input, self.d_output).init(device),
            gates: self.gates.init(n_gates, device),
            structure: self.structure,
        }
    }
}

/// `y = x (W * z) + b` (per weight) or `y = (x W + b) * z` (per output unit).
#[derive(Module, Debug)]
pub struct GatedLinear<B: Backend> {
    /// The underlying dense layer.
    pub linear: Linear<B>,
    /// The gates.
    pub gates: HardConcrete<B>,
    #[module(skip)]
    structure: GateStructure,
}

impl<B: Backend> GatedLinear<B> {
    /// What a gate switches off.
    pub fn structure(&self) -> GateStructure {
        self.structure
    }

    fn dims(&self) -> [usize; 2] {
        self.linear.weight.dims()
    }

    /// Gates as a `[d_input, d_output]` factor of the weight (per-weight and block gates).
    fn weight_factor(&self, z: Tensor<B, 1>) -> Tensor<B, 2> {
        let [d_in, d_out] = self.dims();
        match self.structure {
            GateStructure::Block1x4 => z
                .reshape([d_in / BLOCK_INPUTS, 1, d_out])
                .repeat_dim(1, BLOCK_INPUTS)
                .reshape([d_in, d_out]),
            _ => z.reshape([d_in, d_out]),
        }
    }

    /// # Shapes
    /// - input `[batch, d_input]`, output `[batch, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let z = self.gates.gates(mode);
        match self.structure {
            GateStructure::Weight | GateStructure::Block1x4 => {
                let w = self.linear.weight.val() * self.weight_factor(z);
                let y = x.matmul(w);
                match &self.linear.bias {
                    Some(b) => y + b.val().unsqueeze_dim(0),
                    None => y,
                }
            }
            GateStructure::OutputUnit => self.linear.forward(x) * z.unsqueeze_dim(0),
        }
    }

    /// Parameters that the gates control, per gate.
    fn params_per_gate(&self) -> usize {
        match self.structure {
            GateStructure::Weight => 1,
            GateStructure::Block1x4 => BLOCK_INPUTS,
            GateStructure::OutputUnit => self.dims()[0] + usize::from(self.linear.bias.is_some()),
        }
    }

    /// Parameters under the gates, expected active (differentiable) and active with
    /// deterministic gates.
    pub fn layer_gates(&self) -> crate::gated::LayerGates<B> {
        self.gates.layer_gates(self.params_per_gate())
    }

    /// The equivalent plain `Linear` with the deterministic gates multiplied in. Its
    /// parameters are leaves, trainable when this layer's are (fine-tuning the folded
    /// network trains its weights), with this layer's parameter ids.
    pub fn fold(&self) -> Linear<B> {
        let z = self.gates.gates(GateMode::Deterministic);
        let mut linear = self.linear.clone();
        match self.structure {
            GateStructure::Weight | GateStructure::Block1x4 => {
                let w = self.linear.weight.val() * self.weight_factor(z);
                linear.weight = folded_param(&self.linear.weight, w);
            }
            GateStructure::OutputUnit => {
                let w = self.linear.weight.val() * z.clone().unsqueeze_dim(0);
                linear.weight = folded_param(&self.linear.weight, w);
                linear.bias = self
                    .linear
                    .bias
                    .as_ref()
                    .map(|b| folded_param(b, b.val() * z));
            }
        }
        linear
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests read results back to check them"
)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::Param;
    use burn::tensor::{Distribution, TensorData};

    type B = Flex;

    fn layer(structure: GateStructure, log_alpha: Vec<f32>) -> GatedLinear<B> {
        let device = Default::default();
        let mut l = GatedLinearConfig::new(3, 4, structure).init::<B>(&device);
        let n = log_alpha.len();
        l.gates.log_alpha =
            Param::from_tensor(Tensor::from_data(TensorData::new(log_alpha, [n]), &device));
        l
    }

    fn max_diff(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn folded_layer_matches_the_deterministic_forward() {
        let device = Default::default();
        let x = Tensor::<B, 2>::random([5, 3], Distribution::Normal(0.0, 1.0), &device);
        let alphas: Vec<f32> = (0..12)
            .map(|i| if i % 3 == 0 { -10.0 } else { 3.0 })
            .collect();
        for (structure, a) in [
            (GateStructure::Weight, alphas),
            (GateStructure::OutputUnit, vec![-10.0, 3.0, 3.0, -10.0]),
        ] {
            let l = layer(structure, a);
            let gated = l.forward(x.clone(), GateMode::Deterministic);
            let folded = l.fold().forward(x.clone());
            assert!(max_diff(gated, folded) < 1e-6, "{structure:?}");
        }
    }

    #[test]
    fn a_closed_unit_outputs_exactly_zero_and_counts_its_bias() {
        let device = Default::default();
        let l = layer(GateStructure::OutputUnit, vec![-10.0, 3.0, 3.0, -10.0]);
        let y = l.forward(
            Tensor::random([7, 3], Distribution::Normal(0.0, 1.0), &device),
            GateMode::Deterministic,
        );
        let y = y.into_data().into_vec::<f32>().unwrap();
        assert!(
            y.chunks(4)
                .all(|row| row[0] == 0.0 && row[3] == 0.0 && row[1] != 0.0)
        );
        assert_eq!(l.layer_gates().gated, 4 * (3 + 1));
        assert_eq!(l.layer_gates().active.into_scalar(), 2.0 * 4.0);
    }

    #[test]
    fn block_gates_switch_aligned_groups_of_four_inputs() {
        let device = Default::default();
        // 8 inputs, 3 outputs: 2 x 3 block gates; close (block 0, output 1) and
        // (block 1, output 2).
        let mut l = GatedLinearConfig::new(8, 3, GateStructure::Block1x4).init::<B>(&device);
        let alphas = vec![3.0, -10.0, 3.0, 3.0, 3.0, -10.0];
        l.gates.log_alpha =
            Param::from_tensor(Tensor::from_data(TensorData::new(alphas, [6]), &device));
        assert_eq!(l.layer_gates().gated, 24);
        assert_eq!(l.layer_gates().active.into_scalar(), 16.0);
        let w = l.fold().weight.val().into_data().into_vec::<f32>().unwrap(); // [in, out]
        for i in 0..8 {
            for o in 0..3 {
                let closed = (i < 4 && o == 1) || (i >= 4 && o == 2);
                assert_eq!(w[i * 3 + o] == 0.0, closed, "input {i}, output {o}");
            }
        }
        let x = Tensor::<B, 2>::random([5, 8], Distribution::Normal(0.0, 1.0), &device);
        let gated = l.forward(x.clone(), GateMode::Deterministic);
        assert!(max_diff(gated, l.fold().forward(x)) < 1e-6);
    }

    #[test]
    fn unstructured_counts_weights() {
        let alphas: Vec<f32> = (0..12).map(|i| if i < 5 { -10.0 } else { 3.0 }).collect();
        let l = layer(GateStructure::Weight, alphas);
        assert_eq!(l.layer_gates().gated, 12);
        assert_eq!(l.layer_gates().active.into_scalar(), 7.0);
        let expected = l.layer_gates().expected.into_scalar();
        assert!(expected > 6.9 && expected < 7.0, "{expected}");
    }
}
