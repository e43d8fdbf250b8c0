//! The convolutional networks that `examples/train_vs_torch.rs` times against PyTorch
//! (`scripts/bench-train-vs-torch.py` builds the same ones), gated and ungated: LeNet-5 and
//! the small ResNet (the built-ins) and a MobileNet-style network (Howard et al. 2017:
//! depthwise 3x3 + pointwise 1x1 blocks), whose depthwise convolutions the built-ins lack.
//! `tests/timed_networks.rs` checks that one step of each trains every parameter.

use burn::module::{Module, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::avg_pool2d;
use tether_models::conv;
use tether_models::gated::{GatedNetwork, LayerGates};
use tether_models::l0::{
    GateMode, GateStructure, GatedConv2d, GatedConv2dConfig, GatedLinear, GatedLinearConfig,
};

/// `(channels_in, channels_out, stride)` of the depthwise-separable blocks after a
/// 3x3 stem (1 -> 32) on 28x28 images: 28x28, 28x28, 14x14, 14x14, 7x7.
pub const MOBILE_BLOCKS: [(usize, usize, usize); 5] = [
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
];

/// The stem's output channels.
pub const MOBILE_STEM: usize = 32;

fn plain_conv<B: Backend>(
    i: usize,
    o: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let p = k / 2;
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

fn gated_conv<B: Backend>(
    i: usize,
    o: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &B::Device,
) -> GatedConv2d<B> {
    GatedConv2dConfig::new(i, o, k, GateStructure::Weight)
        .with_stride(stride)
        .with_padding(k / 2)
        .with_groups(groups)
        .init(device)
}

/// Global average pooling of a `[batch, c, 7, 7]` map to `[batch, c]`.
fn head<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, c, h, w] = x.dims();
    avg_pool2d(x, [h, w], [h, w], [0, 0], true, false).reshape([b, c])
}

/// The MobileNet-style network without gates.
#[derive(Module, Debug)]
pub struct MobileNet<B: Backend> {
    stem: Conv2d<B>,
    /// Per block: the depthwise 3x3, the pointwise 1x1.
    blocks: Vec<(Conv2d<B>, Conv2d<B>)>,
    fc: Linear<B>,
    activation: Relu,
}

impl<B: Backend> MobileNet<B> {
    /// Builds it with burn's default initialisation.
    pub fn new(device: &B::Device) -> Self {
        Self {
            stem: plain_conv(1, MOBILE_STEM, 3, 1, 1, device),
            blocks: MOBILE_BLOCKS
                .iter()
                .map(|&(i, o, s)| {
                    (
                        plain_conv(i, i, 3, s, i, device),
                        plain_conv(i, o, 1, 1, 1, device),
                    )
                })
                .collect(),
            fc: LinearConfig::new(MOBILE_BLOCKS[4].1, 10).init(device),
            activation: Relu::new(),
        }
    }

    /// Logits `[batch, 10]` of flattened 28x28 images `[batch, 784]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let mut x = conv::forward_relu(&self.stem, x.reshape([b, 1, 28, 28]));
        for (dw, pw) in &self.blocks {
            x = conv::forward_relu(pw, conv::forward_relu(dw, x));
        }
        self.fc.forward(head(x))
    }
}

/// The MobileNet-style network with a gate on every weight.
#[derive(Module, Debug)]
pub struct GatedMobileNet<B: Backend> {
    stem: GatedConv2d<B>,
    blocks: Vec<(GatedConv2d<B>, GatedConv2d<B>)>,
    fc: GatedLinear<B>,
    activation: Relu,
}

impl<B: Backend> GatedMobileNet<B> {
    /// Builds it (the weights initialised as burn's `Conv2d` and `Linear`).
    pub fn new(device: &B::Device) -> Self {
        Self {
            stem: gated_conv(1, MOBILE_STEM, 3, 1, 1, device),
            blocks: MOBILE_BLOCKS
                .iter()
                .map(|&(i, o, s)| {
                    (
                        gated_conv(i, i, 3, s, i, device),
                        gated_conv(i, o, 1, 1, 1, device),
                    )
                })
                .collect(),
            fc: GatedLinearConfig::new(MOBILE_BLOCKS[4].1, 10, GateStructure::Weight).init(device),
            activation: Relu::new(),
        }
    }

    /// The same network without gates, freshly initialised (the ungated twin).
    pub fn ungated(device: &B::Device) -> MobileNet<B> {
        MobileNet::new(device)
    }

    fn convs(&self) -> Vec<&GatedConv2d<B>> {
        std::iter::once(&self.stem)
            .chain(self.blocks.iter().flat_map(|(d, p)| [d, p]))
            .collect()
    }
}

impl<B: Backend> GatedNetwork<B> for GatedMobileNet<B> {
    fn forward_gated(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let mut x = self.stem.forward_relu(x.reshape([b, 1, 28, 28]), mode);
        for (dw, pw) in &self.blocks {
            x = pw.forward_relu(dw.forward_relu(x, mode), mode);
        }
        self.fc.forward(head(x), mode)
    }
    fn layer_gates(&self) -> Vec<LayerGates<B>> {
        let mut out: Vec<_> = self.convs().iter().map(|c| c.layer_gates()).collect();
        out.push(self.fc.layer_gates());
        out
    }
    fn gate_ids(&self) -> Vec<ParamId> {
        let mut out: Vec<_> = self.convs().iter().map(|c| c.gates.log_alpha.id).collect();
        out.push(self.fc.gates.log_alpha.id);
        out
    }
}
