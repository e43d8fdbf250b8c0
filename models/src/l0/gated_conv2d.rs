//! A 2-D convolution whose weights (unstructured) or output channels (structured) are
//! multiplied by hard-concrete gates.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, backend::Backend};

use crate::conv::{conv2d, conv2d_add_relu, conv2d_relu, then_burn};

use super::{GateMode, GateStructure, HardConcrete, HardConcreteConfig, folded_param};

/// Configuration of a [`GatedConv2d`] (square kernel, equal stride and padding per axis).
#[derive(Config, Debug)]
pub struct GatedConv2dConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Kernel side.
    pub kernel: usize,
    /// What a gate switches off ([`GateStructure::OutputUnit`] = a whole output channel).
    pub structure: GateStructure,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on each side.
    #[config(default = 0)]
    pub padding: usize,
    /// Groups (`channels_in` for a depthwise convolution, as MobileNet's).
    #[config(default = 1)]
    pub groups: usize,
    /// The gates' hyper-parameters.
    #[config(default = "HardConcreteConfig::new()")]
    pub gates: HardConcreteConfig,
}

impl GatedConv2dConfig {
    /// Builds the layer (weights initialised as burn's `Conv2d`).
    ///
    /// # Panics
    /// When a size or the stride is zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GatedConv2d<B> {
        assert!(
            self.channels_in > 0 && self.channels_out > 0 && self.kernel > 0 && self.stride > 0,
            "a gated conv needs non-zero channels, kernel and stride, got {self:?}"
        );
        assert!(
            self.groups > 0
                && self.channels_in.is_multiple_of(self.groups)
                && self.channels_out.is_multiple_of(self.groups),
            "a gated conv's groups must divide its channels, got {self:?}"
        );
        let conv = Conv2dConfig::new([self.channels_in, self.channels_out], [self.kernel; 2])
            .with_stride([self.stride; 2])
            .with_groups(self.groups)
            .with_padding(PaddingConfig2d::Explicit(
                self.padding,
                self.padding,
                self.padding,
                self.padding,
            ))
            .init(device);
        let n_gates = match self.structure {
            // A convolution's 1x4 blocks would cut across kernel windows: per weight.
            GateStructure::Weight | GateStructure::Block1x4 => {
                self.channels_out * (self.channels_in / self.groups) * self.kernel * self.kernel
            }
            GateStructure::OutputUnit => self.channels_out,
        };
        GatedConv2d {
            conv,
            gates: self.gates.init(n_gates, device),
            structure: self.structure,
            stride: self.stride,
            padding: self.padding,
            groups: self.groups,
        }
    }
}

/// `y = conv(x, W * z) + b` (per weight) or `y = (conv(x, W) + b) * z_c` (per channel).
#[derive(Module, Debug)]
pub struct GatedConv2d<B: Backend> {
    /// The underlying convolution (its weights and bias).
    pub conv: Conv2d<B>,
    /// The gates.
    pub gates: HardConcrete<B>,
    #[module(skip)]
    structure: GateStructure,
    stride: usize,
    padding: usize,
    groups: usize,
}

impl<B: Backend> GatedConv2d<B> {
    /// What a gate switches off.
    pub fn structure(&self) -> GateStructure {
        self.structure
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], self.groups)
    }

    fn gated_weight(&self, z: Tensor<B, 1>) -> Tensor<B, 4> {
        let w = self.conv.weight.val();
        match self.structure {
            GateStructure::Weight | GateStructure::Block1x4 => w.clone() * z.reshape(w.dims()),
            GateStructure::OutputUnit => {
                let c = z.dims()[0];
                w * z.reshape([c, 1, 1, 1])
            }
        }
    }

    /// # Shapes
    /// - input `[batch, channels_in, h, w]`, output `[batch, channels_out, h', w']`
    pub fn forward(&self, x: Tensor<B, 4>, mode: GateMode) -> Tensor<B, 4> {
        self.forward_then(x, mode, None, false)
    }

    /// `relu(self.forward(x, mode))`, the ReLU in the convolution's output pass
    /// ([`conv2d_relu`]) where the gates sit on the weights.
    pub fn forward_relu(&self, x: Tensor<B, 4>, mode: GateMode) -> Tensor<B, 4> {
        self.forward_then(x, mode, None, true)
    }

    /// `relu(self.forward(x, mode) + residual)`, in the convolution's output pass
    /// ([`conv2d_add_relu`]) where the gates sit on the weights.
    pub fn forward_add_relu(
        &self,
        x: Tensor<B, 4>,
        residual: Tensor<B, 4>,
        mode: GateMode,
    ) -> Tensor<B, 4> {
        self.forward_then(x, mode, Some(residual), true)
    }

    /// `act(conv + residual)`: a residual always comes with the ReLU (a block's end).
    fn forward_then(
        &self,
        x: Tensor<B, 4>,
        mode: GateMode,
        residual: Option<Tensor<B, 4>>,
        relu: bool,
    ) -> Tensor<B, 4> {
        let z = self.gates.gates(mode);
        let bias = self.conv.bias.as_ref().map(|b| b.val());
        if self.structure == GateStructure::OutputUnit {
            // The channel gates scale the output after the bias: applied here, then the
            // residual and the ReLU as burn's operations.
            let c = z.dims()[0];
            let y =
                conv2d(x, self.conv.weight.val(), bias, self.options()) * z.reshape([1, c, 1, 1]);
            return then_burn(y, residual, relu);
        }
        let w = self.gated_weight(z);
        match residual {
            Some(r) => conv2d_add_relu(x, w, bias, self.options(), r),
            None if relu => conv2d_relu(x, w, bias, self.options()),
            None => conv2d(x, w, bias, self.options()),
        }
    }

    fn params_per_gate(&self) -> usize {
        let [_, c_in, k1, k2] = self.conv.weight.dims();
        match self.structure {
            GateStructure::Weight | GateStructure::Block1x4 => 1,
            GateStructure::OutputUnit => c_in * k1 * k2 + usize::from(self.conv.bias.is_some()),
        }
    }

    /// Parameters under the gates, expected active (differentiable) and active with
    /// deterministic gates.
    pub fn layer_gates(&self) -> crate::gated::LayerGates<B> {
        self.gates.layer_gates(self.params_per_gate())
    }

    /// The equivalent plain `Conv2d` with the deterministic gates multiplied in. Its
    /// parameters are leaves, trainable when this layer's are, with this layer's ids.
    pub fn fold(&self) -> Conv2d<B> {
        let z = self.gates.gates(GateMode::Deterministic);
        let mut conv = self.conv.clone();
        conv.weight = folded_param(&self.conv.weight, self.gated_weight(z.clone()));
        if self.structure == GateStructure::OutputUnit {
            conv.bias = self
                .conv
                .bias
                .as_ref()
                .map(|b| folded_param(b, b.val() * z));
        }
        conv
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

    #[test]
    fn folded_conv_matches_the_deterministic_forward_and_closed_channels_are_zero() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        for structure in [GateStructure::Weight, GateStructure::OutputUnit] {
            let mut l = GatedConv2dConfig::new(3, 4, 3, structure)
                .with_padding(1)
                .init::<B>(&device);
            let n = l.gates.len();
            let alphas: Vec<f32> = (0..n)
                .map(|i| if i % 4 == 1 { -10.0 } else { 3.0 })
                .collect();
            l.gates.log_alpha =
                Param::from_tensor(Tensor::from_data(TensorData::new(alphas, [n]), &device));
            let gated = l.forward(x.clone(), GateMode::Deterministic);
            assert_eq!(gated.dims(), [2, 4, 8, 8]);
            let folded = l.fold().forward(x.clone());
            let diff: f32 = (gated.clone() - folded).abs().max().into_scalar();
            assert!(diff < 1e-5, "{structure:?}: {diff}");
            if structure == GateStructure::OutputUnit {
                let channel1: f32 = gated.narrow(1, 1, 1).abs().max().into_scalar();
                assert_eq!(channel1, 0.0);
                assert_eq!(l.layer_gates().gated, 4 * (3 * 9 + 1));
                assert_eq!(l.layer_gates().active.into_scalar(), 3.0 * 28.0);
            } else {
                assert_eq!(l.layer_gates().gated, 4 * 3 * 9);
                assert_eq!(
                    l.layer_gates().active.into_scalar(),
                    (4 * 3 * 9 - 27) as f32
                );
            }
        }
    }
}
