//! What a plain (ungated) image classifier offers the training tasks: logits for a batch of
//! flattened images. The dense baselines of the pruning benchmark train through it.

use burn::tensor::{Tensor, backend::Backend};

use crate::lenet5::Lenet5;
use crate::mlp::Mlp;
use crate::resnet::Resnet;

/// A classifier of flattened images.
pub trait Classifier<B: Backend> {
    /// Logits `[batch, classes]` for flattened images `[batch, pixels]`.
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

impl<B: Backend> Classifier<B> for Mlp<B> {
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

impl<B: Backend> Classifier<B> for Lenet5<B> {
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

impl<B: Backend> Classifier<B> for Resnet<B> {
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }
}
