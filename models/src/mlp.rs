//! A ReLU multi-layer perceptron.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Tensor, backend::Backend};

/// Layer widths, input first: `[784, 300, 100, 10]` is LeNet-300-100.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Widths of the input, hidden and output layers (at least two entries).
    pub widths: Vec<usize>,
}

impl MlpConfig {
    /// Builds the network.
    ///
    /// # Panics
    /// When fewer than two widths are given or a width is zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        check_widths(&self.widths);
        let layers = self
            .widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Mlp {
            layers,
            activation: Relu::new(),
        }
    }
}

/// Panics with a message naming `widths` unless there are at least two, all non-zero.
pub(crate) fn check_widths(widths: &[usize]) {
    assert!(
        widths.len() >= 2 && widths.iter().all(|&w| w > 0),
        "an MLP needs at least two non-zero widths, got {widths:?}"
    );
}

/// Linear layers with ReLU between them (none after the last).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// The linear layers.
    pub layers: Vec<Linear<B>>,
    activation: Relu,
}

impl<B: Backend> Mlp<B> {
    /// An MLP from existing layers (e.g. gated layers folded after pruning).
    ///
    /// # Panics
    /// When `layers` is empty.
    pub fn from_layers(layers: Vec<Linear<B>>) -> Self {
        assert!(!layers.is_empty(), "an MLP needs at least one layer");
        Self {
            layers,
            activation: Relu::new(),
        }
    }

    /// Logits for a batch.
    ///
    /// # Shapes
    /// - input: `[batch, widths[0]]`
    /// - output: `[batch, widths.last()]`
    pub fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.activation.forward(x);
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn shapes_follow_the_widths() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![4, 8, 3]).init::<Flex>(&device);
        let y = mlp.forward(Tensor::zeros([5, 4], &device));
        assert_eq!(y.dims(), [5, 3]);
    }

    #[test]
    #[should_panic(expected = "an MLP needs at least two non-zero widths, got [4]")]
    fn rejects_a_single_width() {
        MlpConfig::new(vec![4]).init::<Flex>(&Default::default());
    }
}
