//! A ReLU MLP whose layers are [`GatedLinear`]: LeNet-300-100 with L0 gates is
//! `GatedMlpConfig::new(vec![784, 300, 100, 10], GateStructure::Weight)`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::Relu;
use burn::tensor::{Tensor, backend::Backend};

use crate::l0::{GateMode, GateStructure, GatedLinear, GatedLinearConfig, HardConcreteConfig};
use crate::mlp::Mlp;

/// Layer widths (input first) and the gate structure.
#[derive(Config, Debug)]
pub struct GatedMlpConfig {
    /// Widths of the input, hidden and output layers (at least two entries).
    pub widths: Vec<usize>,
    /// What a gate switches off. With [`GateStructure::OutputUnit`] the output layer stays
    /// ungated in effect (its units are the classes) but is gated per weight instead.
    pub structure: GateStructure,
    /// The gates' hyper-parameters.
    #[config(default = "HardConcreteConfig::new()")]
    pub gates: HardConcreteConfig,
}

impl GatedMlpConfig {
    /// Builds the network.
    ///
    /// # Panics
    /// When fewer than two widths are given or a width is zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GatedMlp<B> {
        crate::mlp::check_widths(&self.widths);
        let last = self.widths.len() - 2;
        let layers = self
            .widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                // Removing an output unit of the last layer would remove a class.
                let structure = if i == last && self.structure == GateStructure::OutputUnit {
                    GateStructure::Weight
                } else {
                    self.structure
                };
                GatedLinearConfig::new(w[0], w[1], structure)
                    .with_gates(self.gates.clone())
                    .init(device)
            })
            .collect();
        GatedMlp {
            layers,
            activation: Relu::new(),
        }
    }
}

/// Gated linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct GatedMlp<B: Backend> {
    /// The gated layers.
    pub layers: Vec<GatedLinear<B>>,
    activation: Relu,
}

impl<B: Backend> GatedMlp<B> {
    /// Logits for a batch.
    ///
    /// # Shapes
    /// - input: `[batch, widths[0]]`, output: `[batch, widths.last()]`
    pub fn forward(&self, mut x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, mode);
            if i < last {
                x = self.activation.forward(x);
            }
        }
        x
    }

    /// The plain MLP with the deterministic gates folded into its weights.
    pub fn fold(&self) -> Mlp<B> {
        Mlp::from_layers(self.layers.iter().map(GatedLinear::fold).collect())
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
    use burn::tensor::Distribution;

    #[test]
    fn folding_preserves_the_deterministic_function() {
        let device = Default::default();
        for structure in [GateStructure::Weight, GateStructure::OutputUnit] {
            let net = GatedMlpConfig::new(vec![6, 5, 4, 3], structure).init::<Flex>(&device);
            let x = Tensor::<Flex, 2>::random([8, 6], Distribution::Normal(0.0, 1.0), &device);
            let a = net.forward(x.clone(), GateMode::Deterministic);
            let b = net.fold().forward(x);
            let diff: f32 = (a - b).abs().max().into_scalar();
            assert!(diff < 1e-5, "{structure:?}: {diff}");
            assert_eq!(net.layers[2].structure(), GateStructure::Weight);
        }
    }
}
