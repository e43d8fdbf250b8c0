//! A small ResNet for 28x28 single-channel images: the pruning benchmark's network for the
//! harder dataset (Fashion-MNIST; the controlled-sparsity paper uses WideResNet-28-10 on
//! CIFAR-10, which no registry here carries).
//!
//! ```text
//! stem   conv 3x3 (1 -> w), ReLU                                     28x28
//! block  [conv 3x3 (w -> w), ReLU, conv 3x3] + x, ReLU                28x28
//! block  [conv 3x3 /2 (w -> 2w), ReLU, conv 3x3] + conv 1x1 /2 x, ReLU 14x14
//! block  [conv 3x3 /2 (2w -> 4w), ReLU, conv 3x3] + conv 1x1 /2 x, ReLU 7x7
//! head   average pool 7x7, fc (4w -> 10)
//! ```
//!
//! He et al. 2016's basic blocks without batch normalisation: at this depth (seven
//! convolutions on the longest path) Adam trains it without, and every layer then folds
//! and exports as it is (no statistics to fold, no train/eval switch). With `w = 16`:
//! 77,418 parameters.

use burn::config::Config;
use burn::module::{Initializer, Module, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::module::avg_pool2d;
use burn::tensor::{Tensor, backend::Backend};

use crate::conv;
use crate::gated::{GatedNetwork, LayerGates};
use crate::l0::{
    GateMode, GateStructure, GatedConv2d, GatedConv2dConfig, GatedLinear, GatedLinearConfig,
    HardConcreteConfig,
};

/// `(channels_in, channels_out, stride)` of the three blocks for stem width `w`.
fn blocks(w: usize) -> [(usize, usize, usize); 3] {
    [(w, w, 1), (w, 2 * w, 2), (2 * w, 4 * w, 2)]
}

/// He et al. 2015's normal initialisation (`std = sqrt(2 / fan_in)`), zero bias. Without
/// batch normalisation burn's default (PyTorch's, `std = 1 / sqrt(3 fan_in)`) shrinks the
/// signal about six-fold per convolution and ReLU; He's keeps its scale (Fashion-MNIST,
/// one epoch: 72.7% test accuracy with the default, see BENCHMARKS.md for He's).
fn he_init<B: Backend>(mut conv: Conv2d<B>) -> Conv2d<B> {
    let [o, i, k1, k2] = conv.weight.dims();
    let device = conv.weight.device();
    conv.weight = Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: false,
    }
    .init_with(
        [o, i, k1, k2],
        Some(i * k1 * k2),
        Some(o * k1 * k2),
        &device,
    );
    conv.bias = conv.bias.map(|_| Initializer::Zeros.init([o], &device));
    conv
}

/// Side of the last feature map (28 halved twice).
const LAST_SIDE: usize = 7;

/// Gated small ResNet.
#[derive(Config, Debug)]
pub struct GatedResnetConfig {
    /// What a gate switches off (per weight, or per output channel; the output layer is
    /// always gated per weight).
    pub structure: GateStructure,
    /// Channels of the stem and the first block (doubled at each later block).
    #[config(default = 16)]
    pub width: usize,
    /// The gates' hyper-parameters.
    #[config(default = "HardConcreteConfig::new()")]
    pub gates: HardConcreteConfig,
}

impl GatedResnetConfig {
    /// Builds the network (28x28 single-channel inputs).
    ///
    /// # Panics
    /// When `width` is zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GatedResnet<B> {
        assert!(self.width > 0, "a ResNet needs a width >= 1");
        let conv = |i, o, k, stride, padding| {
            let mut c: GatedConv2d<B> = GatedConv2dConfig::new(i, o, k, self.structure)
                .with_stride(stride)
                .with_padding(padding)
                .with_gates(self.gates.clone())
                .init(device);
            c.conv = he_init(c.conv);
            c
        };
        GatedResnet {
            stem: conv(1, self.width, 3, 1, 1),
            blocks: blocks(self.width)
                .into_iter()
                .map(|(i, o, s)| GatedBlock {
                    conv1: conv(i, o, 3, s, 1),
                    conv2: conv(o, o, 3, 1, 1),
                    shortcut: (i != o || s != 1).then(|| conv(i, o, 1, s, 0)),
                })
                .collect(),
            fc: GatedLinearConfig::new(4 * self.width, 10, GateStructure::Weight)
                .with_gates(self.gates.clone())
                .init(device),
            activation: Relu::new(),
        }
    }
}

/// A residual block of gated convolutions.
#[derive(Module, Debug)]
pub struct GatedBlock<B: Backend> {
    /// First convolution of the residual branch (strided in downsampling blocks).
    pub conv1: GatedConv2d<B>,
    /// Second convolution of the residual branch.
    pub conv2: GatedConv2d<B>,
    /// 1x1 projection of the skip path where the shape changes.
    pub shortcut: Option<GatedConv2d<B>>,
}

/// See the module documentation.
#[derive(Module, Debug)]
pub struct GatedResnet<B: Backend> {
    /// First convolution.
    pub stem: GatedConv2d<B>,
    /// The residual blocks.
    pub blocks: Vec<GatedBlock<B>>,
    /// Output layer.
    pub fc: GatedLinear<B>,
    activation: Relu,
}

impl<B: Backend> GatedResnet<B> {
    /// # Shapes
    /// - input `[batch, 784]` (flattened 28x28), output `[batch, 10]`
    pub fn forward(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let mut x = self.stem.forward_relu(x.reshape([b, 1, 28, 28]), mode);
        for block in &self.blocks {
            let h = block.conv1.forward_relu(x.clone(), mode);
            let skip = match &block.shortcut {
                Some(s) => s.forward(x, mode),
                None => x,
            };
            x = block.conv2.forward_add_relu(h, skip, mode);
        }
        self.fc.forward(head(x), mode)
    }

    /// The plain ResNet with the deterministic gates folded in.
    pub fn fold(&self) -> Resnet<B> {
        Resnet {
            stem: self.stem.fold(),
            blocks: self
                .blocks
                .iter()
                .map(|b| Block {
                    conv1: b.conv1.fold(),
                    conv2: b.conv2.fold(),
                    shortcut: b.shortcut.as_ref().map(|s| s.fold()),
                })
                .collect(),
            fc: self.fc.fold(),
            activation: Relu::new(),
        }
    }

    /// The gated convolutions in forward order (stem; per block conv1, conv2, shortcut).
    fn convs(&self) -> Vec<&GatedConv2d<B>> {
        let mut out = vec![&self.stem];
        for b in &self.blocks {
            out.extend([&b.conv1, &b.conv2]);
            out.extend(b.shortcut.as_ref());
        }
        out
    }
}

/// Global average pooling of the last `[batch, c, 7, 7]` map, flattened to `[batch, c]`.
fn head<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, c, _, _] = x.dims();
    avg_pool2d(
        x,
        [LAST_SIDE, LAST_SIDE],
        [LAST_SIDE, LAST_SIDE],
        [0, 0],
        true,
        false,
    )
    .reshape([b, c])
}

impl<B: Backend> GatedNetwork<B> for GatedResnet<B> {
    fn forward_gated(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        self.forward(x, mode)
    }
    fn layer_gates(&self) -> Vec<LayerGates<B>> {
        let mut out: Vec<LayerGates<B>> = self.convs().iter().map(|c| c.layer_gates()).collect();
        out.push(self.fc.layer_gates());
        out
    }
    fn gate_ids(&self) -> Vec<ParamId> {
        let mut out: Vec<ParamId> = self.convs().iter().map(|c| c.gates.log_alpha.id).collect();
        out.push(self.fc.gates.log_alpha.id);
        out
    }
}

/// Plain small ResNet (the dense baseline, and the folded pruned network).
#[derive(Config, Debug)]
pub struct ResnetConfig {
    /// Channels of the stem and the first block (doubled at each later block).
    #[config(default = 16)]
    pub width: usize,
}

impl ResnetConfig {
    /// Builds the network (He-initialised convolutions, as the gated network's).
    ///
    /// # Panics
    /// When `width` is zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Resnet<B> {
        assert!(self.width > 0, "a ResNet needs a width >= 1");
        let conv = |i, o, k, s: usize, p| {
            he_init(
                Conv2dConfig::new([i, o], [k, k])
                    .with_stride([s, s])
                    .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                    .init(device),
            )
        };
        Resnet {
            stem: conv(1, self.width, 3, 1, 1),
            blocks: blocks(self.width)
                .into_iter()
                .map(|(i, o, s)| Block {
                    conv1: conv(i, o, 3, s, 1),
                    conv2: conv(o, o, 3, 1, 1),
                    shortcut: (i != o || s != 1).then(|| conv(i, o, 1, s, 0)),
                })
                .collect(),
            fc: LinearConfig::new(4 * self.width, 10).init(device),
            activation: Relu::new(),
        }
    }
}

/// A residual block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// First convolution of the residual branch.
    pub conv1: Conv2d<B>,
    /// Second convolution of the residual branch.
    pub conv2: Conv2d<B>,
    /// 1x1 projection of the skip path where the shape changes.
    pub shortcut: Option<Conv2d<B>>,
}

/// Small ResNet without gates.
#[derive(Module, Debug)]
pub struct Resnet<B: Backend> {
    /// First convolution.
    pub stem: Conv2d<B>,
    /// The residual blocks.
    pub blocks: Vec<Block<B>>,
    /// Output layer.
    pub fc: Linear<B>,
    activation: Relu,
}

impl<B: Backend> Resnet<B> {
    /// # Shapes
    /// - input `[batch, 784]`, output `[batch, 10]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let mut x = conv::forward_relu(&self.stem, x.reshape([b, 1, 28, 28]));
        for block in &self.blocks {
            let h = conv::forward_relu(&block.conv1, x.clone());
            let skip = match &block.shortcut {
                Some(s) => conv::forward(s, x),
                None => x,
            };
            x = conv::forward_add_relu(&block.conv2, h, skip);
        }
        self.fc.forward(head(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_parameter_count_and_folding() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([3, 784], Distribution::Normal(0.0, 1.0), &device);
        for structure in [GateStructure::Weight, GateStructure::OutputUnit] {
            let net = GatedResnetConfig::new(structure).init::<Flex>(&device);
            let y = net.forward(x.clone(), GateMode::Deterministic);
            assert_eq!(y.dims(), [3, 10]);
            let diff: f32 = (y - net.fold().forward(x.clone()))
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-4, "{structure:?}: {diff}");
            assert_eq!(net.fold().num_params(), 77_418);
            // stem, 3 blocks x 2 convs, 2 shortcuts, fc.
            assert_eq!(net.layer_gates().len(), 10);
            assert_eq!(net.gate_ids().len(), 10);
        }
        assert_eq!(
            ResnetConfig::new().init::<Flex>(&device).num_params(),
            77_418
        );
    }
}
