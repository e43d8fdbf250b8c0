//! 2-D convolution for training: every network in this crate calls [`conv2d`] (and
//! [`forward`] for burn's `Conv2d` module) instead of burn's, so that on the CPU backend
//! (`Autodiff<Flex>`, with the `flex` feature) the forward and the backward go through
//! im2col + GEMM with the batch folded into the GEMM's N dimension (`gemm_conv`), one
//! GEMM per sample for 1x1 layers (`pointwise`), or a direct kernel for depthwise layers
//! (`depthwise`, `grid`), registered as one autodiff operation. burn 0.21's default
//! backward (a transposed convolution for the input gradient, a convolution by `dY` for
//! the weight gradient) made LeNet-5's training step 1.9x PyTorch's (issue 33).
//!
//! The ReLU that follows a convolution, and a residual block's add and ReLU, run in the
//! same operation ([`conv2d_relu`], [`conv2d_add_relu`]; `epilogue`), and max pooling
//! has a kernel of its own ([`max_pool2d`]; `max_pool`): burn-flex's element-wise passes
//! and its 3-D pooling kernel were a large part of what remained of a step.
//!
//! On a CPU with AVX-512F the forward of one-group convolutions on large maps (and 1x1
//! ones) runs tether-deploy's implicit-GEMM inference kernel instead of im2col
//! (`implicit`). The kernels' own loops run compiled for AVX-512 or AVX2 where the CPU has
//! them (`simd`); the implicit and depthwise kernels split the batch over rayon's threads
//! (`parts`); `timing` (with `flex`) profiles them by layer and pass.
//!
//! Every other backend (CUDA, wgpu, ndarray, Flex without autodiff) keeps burn's
//! operations: the dispatch is a type test (`Any`), not a trait bound, so the networks
//! stay generic over `B: Backend`. [`set_enabled`] switches the fast path off (the
//! benchmarks' "before" column).

#[cfg(feature = "flex")]
mod depthwise;
#[cfg(feature = "flex")]
mod epilogue;
#[cfg(feature = "flex")]
mod flex_op;
#[cfg(all(test, feature = "flex"))]
mod fused_tests;
#[cfg(feature = "flex")]
mod gemm_conv;
mod geometry;
#[cfg(feature = "flex")]
mod grid;
#[cfg(feature = "flex")]
mod im2col;
#[cfg(feature = "flex")]
mod implicit;
#[cfg(feature = "flex")]
mod input_grad;
#[cfg(feature = "flex")]
mod max_pool;
#[cfg(feature = "flex")]
mod parts;
#[cfg(feature = "flex")]
mod pointwise;
#[cfg(feature = "flex")]
mod simd;
#[cfg(all(test, feature = "flex"))]
mod tests;
#[cfg(feature = "flex")]
pub mod timing;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::ops::{ConvOptions, PaddedConvOptions};

pub use geometry::Geometry;

static ENABLED: AtomicBool = AtomicBool::new(true);
static IMPLICIT: AtomicBool = AtomicBool::new(true);

/// Turns the CPU convolution on or off for the whole process (on by default; off means
/// burn's `conv2d` everywhere). For benchmarks and tests that compare the two.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Turns the implicit-GEMM forward (tether-deploy's AVX-512 kernel, for one-group
/// convolutions) on or off (on by default; off means im2col and faer's product, the
/// kernels before it). For benchmarks that compare the two in one binary.
pub fn set_implicit_enabled(on: bool) {
    IMPLICIT.store(on, Ordering::Relaxed);
}

/// Whether the implicit-GEMM forward runs where it applies.
pub fn implicit_enabled() -> bool {
    IMPLICIT.load(Ordering::Relaxed)
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
    conv2d_then(x, weight, bias, options, None, false)
}

/// `relu(conv2d(x, weight, bias))`, the ReLU applied as the convolution writes its output
/// on `Autodiff<Flex>` (no pass, allocation or gradient pass of its own).
pub fn conv2d_relu<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
) -> Tensor<B, 4> {
    conv2d_then(x, weight, bias, options, None, true)
}

/// `relu(conv2d(x, weight, bias) + residual)`, a residual block's end (He et al. 2016), in
/// the convolution's output pass on `Autodiff<Flex>`. `residual` has the output's shape.
pub fn conv2d_add_relu<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
    residual: Tensor<B, 4>,
) -> Tensor<B, 4> {
    conv2d_then(x, weight, bias, options, Some(residual), true)
}

/// `act(conv2d(x, weight, bias) + residual)`: the CPU path's fused operation, or burn's
/// convolution followed by burn's add and ReLU.
fn conv2d_then<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: impl Into<PaddedConvOptions<2>>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
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
    let (x, weight, bias, residual) = match options.padding_end {
        Some(_) => (x, weight, bias, residual),
        None => match flex(x, weight, bias, residual, relu, &options.options) {
            Ok(y) => return y,
            Err(args) => args,
        },
    };
    then_burn(
        burn::tensor::module::conv2d(x, weight, bias, options),
        residual,
        relu,
    )
}

/// `act(y + residual)` by burn's tensor operations (the path of the backends and layers
/// the fused operation does not serve).
pub(crate) fn then_burn<B: Backend>(
    y: Tensor<B, 4>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// Burn's `Conv2d::forward` through [`conv2d`]. `Same` padding (whose amounts burn keeps
/// private) takes burn's module as it is.
pub fn forward<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    module_then(conv, x, None, false)
}

/// `relu(conv.forward(x))` through [`conv2d_relu`].
pub fn forward_relu<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    module_then(conv, x, None, true)
}

/// `relu(conv.forward(x) + residual)` through [`conv2d_add_relu`].
pub fn forward_add_relu<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    residual: Tensor<B, 4>,
) -> Tensor<B, 4> {
    module_then(conv, x, Some(residual), true)
}

fn module_then<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let (start, end) = match conv.padding {
        PaddingConfig2d::Valid => ([0, 0], [0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ([top, left], [bottom, right]),
        PaddingConfig2d::Same => return then_burn(conv.forward(x), residual, relu),
    };
    let options =
        PaddedConvOptions::asymmetric(conv.stride, start, end, conv.dilation, conv.groups);
    let bias = conv.bias.as_ref().map(|b| b.val());
    conv2d_then(x, conv.weight.val(), bias, options, residual, relu)
}

/// `y = ep(conv(x, w) + b)` of a convolution that is neither depthwise nor pointwise:
/// tether-deploy's implicit-GEMM kernel where it runs (one group, AVX-512F; `implicit`),
/// im2col and faer's product otherwise (`gemm_conv`).
#[cfg(feature = "flex")]
#[inline(always)]
fn dense_forward(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    ep: epilogue::Epilogue<'_>,
) -> Vec<f32> {
    if implicit::applies(geo) && implicit_enabled() {
        implicit::forward(geo, x, w, b, ep)
    } else {
        gemm_conv::forward(geo, x, w, b, ep)
    }
}

/// Input, weight, bias, residual.
type Args<B> = (
    Tensor<B, 4>,
    Tensor<B, 4>,
    Option<Tensor<B, 1>>,
    Option<Tensor<B, 4>>,
);

/// `v` as a `T` when it is one (`B` is `Autodiff<Flex>` and `T` the same type with it);
/// `v` back otherwise.
#[cfg(feature = "flex")]
fn cast<S: 'static, T: 'static>(v: S) -> Result<T, S> {
    use std::any::Any;
    let any: Box<dyn Any> = Box::new(v);
    any.downcast::<T>()
        .map(|t| *t)
        .map_err(|any| *any.downcast::<S>().expect("the value put in"))
}

/// `Ok(y)` when `B` is `Autodiff<Flex>` and the op applies; the arguments back otherwise.
#[cfg(feature = "flex")]
fn flex<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
    options: &ConvOptions<2>,
) -> Result<Tensor<B, 4>, Args<B>> {
    use flex_op::AdFlex;

    let args = (x, weight, bias, residual);
    if !enabled() {
        return Err(args);
    }
    let (x, weight, bias, residual) = cast::<Args<B>, Args<AdFlex>>(args)?;
    let geo = match Geometry::new(x.dims(), weight.dims(), options) {
        Ok(geo) if flex_op::supports(&x, &weight, residual.as_ref(), &geo) => geo,
        // Burn's operation reports an invalid geometry its own way (and broadcasts a
        // residual of another shape).
        _ => {
            let back = cast::<Args<AdFlex>, Args<B>>((x, weight, bias, residual));
            return Err(back.expect("B is Autodiff<Flex>"));
        }
    };
    let y = flex_op::conv2d(geo, x, weight, bias, residual, relu);
    Ok(cast(y).expect("B is Autodiff<Flex>"))
}

/// Burn's `max_pool2d(x, kernel, stride, [0, 0], [1, 1], false)` (no padding, no
/// dilation, floor), through a direct kernel with one-byte argmaxes on `Autodiff<Flex>`
/// (`max_pool`).
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match cast::<Tensor<B, 4>, Tensor<flex_op::AdFlex, 4>>(x) {
        Ok(x) => {
            if enabled()
                && let Some(y) = max_pool::max_pool2d(&x, kernel, stride)
            {
                return cast(y).expect("B is Autodiff<Flex>");
            }
            cast(x).expect("B is Autodiff<Flex>")
        }
        Err(x) => x,
    };
    burn::tensor::module::max_pool2d(x, kernel, stride, [0, 0], [1, 1], false)
}
