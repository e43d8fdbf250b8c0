//! 2-D convolution for training: every network in this crate calls [`conv2d`] (and
//! [`forward`] for burn's `Conv2d` module) instead of burn's, so that on the CPU backend
//! (`Autodiff<Flex>`, with the `flex` feature) the forward and the backward go through
//! im2col + GEMM with the batch folded into the GEMM's N dimension (`gemm_conv`), one
//! GEMM per sample for 1x1 layers (`pointwise`), or a direct kernel for depthwise layers
//! (`depthwise`, `grid`), registered as one autodiff operation. burn 0.21's default backward (a transposed convolution for the input
//! gradient, a convolution by `dY` for the weight gradient) made LeNet-5's training step
//! 1.9x PyTorch's (issue 33).
//!
//! Every other backend (CUDA, wgpu, ndarray, Flex without autodiff) keeps burn's
//! operation: the dispatch is a type test (`Any`), not a trait bound, so the networks
//! stay generic over `B: Backend`. [`set_enabled`] switches the fast path off (the
//! benchmarks' "before" column).

#[cfg(feature = "flex")]
mod depthwise;
#[cfg(feature = "flex")]
mod flex_op;
#[cfg(feature = "flex")]
mod gemm_conv;
mod geometry;
#[cfg(feature = "flex")]
mod grid;
#[cfg(feature = "flex")]
mod im2col;
#[cfg(feature = "flex")]
mod pointwise;
#[cfg(all(test, feature = "flex"))]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::ops::{ConvOptions, PaddedConvOptions};

pub use geometry::Geometry;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the CPU convolution on or off for the whole process (on by default; off means
/// burn's `conv2d` everywhere). For benchmarks and tests that compare the two.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether [`conv2d`] takes the CPU path where it can.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `conv2d(x, weight, bias)` as burn's `burn::tensor::module::conv2d`, through this
/// module's kernels on `Autodiff<Flex>` (f32).
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
) -> Tensor<B, 4> {
    let options = options.into();
    #[cfg(feature = "flex")]
    let (x, options) = match options.padding_end {
        // Asymmetric padding: pad explicitly (as burn does), then convolve unpadded.
        Some(end) if enabled() => {
            let [top, left] = options.options.padding;
            let x = x.pad((left, end[1], top, end[0]), PadMode::Constant(0.0));
            let o = &options.options;
            (
                x,
                ConvOptions::new(o.stride, [0, 0], o.dilation, o.groups).into(),
            )
        }
        _ => (x, options),
    };
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match options.padding_end {
        Some(_) => (x, weight, bias),
        None => match flex(x, weight, bias, &options.options) {
            Ok(y) => return y,
            Err(args) => args,
        },
    };
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// Burn's `Conv2d::forward` through [`conv2d`]. `Same` padding (whose amounts burn keeps
/// private) takes burn's module as it is.
pub fn forward<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let (start, end) = match conv.padding {
        PaddingConfig2d::Valid => ([0, 0], [0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ([top, left], [bottom, right]),
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let options =
        PaddedConvOptions::asymmetric(conv.stride, start, end, conv.dilation, conv.groups);
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

type Args<B> = (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>);

/// `Ok(y)` when `B` is `Autodiff<Flex>` and the op applies; the arguments back otherwise.
#[cfg(feature = "flex")]
fn flex<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: &ConvOptions<2>,
) -> Result<Tensor<B, 4>, Args<B>> {
    use flex_op::AdFlex;
    use std::any::Any;

    if !enabled() || std::any::TypeId::of::<B>() != std::any::TypeId::of::<AdFlex>() {
        return Err((x, weight, bias));
    }
    let args: Box<dyn Any> = Box::new((x, weight, bias));
    let (x, weight, bias) = *args
        .downcast::<Args<AdFlex>>()
        .expect("B is Autodiff<Flex> (same TypeId)");
    let back = |args: Args<AdFlex>| -> Args<B> {
        *(Box::new(args) as Box<dyn Any>)
            .downcast::<Args<B>>()
            .expect("B is Autodiff<Flex> (same TypeId)")
    };
    let geo = match Geometry::new(x.dims(), weight.dims(), options) {
        Ok(geo) if flex_op::supports(&x, &weight) => geo,
        // Burn's operation reports an invalid geometry its own way.
        _ => return Err(back((x, weight, bias))),
    };
    let y: Box<dyn Any> = Box::new(flex_op::conv2d(geo, x, weight, bias));
    Ok(*y
        .downcast::<Tensor<B, 4>>()
        .expect("B is Autodiff<Flex> (same TypeId)"))
}
