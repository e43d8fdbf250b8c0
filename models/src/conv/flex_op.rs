//! The convolution as one custom autodiff operation on `Autodiff<Flex>`: the forward and
//! all three gradients from [`super::gemm_conv`] (or [`super::depthwise`],
//! [`super::pointwise`]), instead of
//! burn 0.21's default backward, which computes the input gradient as a transposed
//! convolution and the weight gradient as a convolution of `x` by `dY` (a 24x24 "kernel"
//! on LeNet-5's first layer) and, with groups, one such convolution per group. A residual
//! and a ReLU ([`super::epilogue`]) may end it: the ReLU's gradient mask is applied to
//! `dY` in place, and the residual's gradient is that `dY`, shared.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::epilogue::{self, Epilogue};
use super::geometry::Geometry;
use super::simd::vectorized;
use super::timing::{self, Pass};
use super::{dense_forward, depthwise, gemm_conv, input_grad, pointwise};

/// The autodiff backend this operation serves.
pub type AdFlex = Autodiff<Flex>;

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("the convolution's tensors are made contiguous f32 before use")
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn forward(
    geo: &Geometry,
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    residual: Option<&FlexTensor>,
    relu: bool,
) -> FlexTensor {
    let (x, w, b) = (slice(x), slice(w), b.map(slice));
    let ep = Epilogue {
        residual: residual.map(slice),
        relu,
    };
    let y = timing::time(
        || timing::conv_name(geo),
        Pass::Forward,
        || {
            vectorized(
                #[inline(always)]
                || {
                    if geo.is_depthwise() {
                        depthwise::forward(geo, x, w, b, ep)
                    } else if pointwise::applies(geo) {
                        pointwise::forward(geo, x, w, b, ep)
                    } else {
                        dense_forward(geo, x, w, b, ep)
                    }
                },
            )
        },
    );
    tensor(y, vec![geo.batch, geo.c_out, geo.oh, geo.ow])
}

/// The state kept for the backward pass: the (contiguous) input and weight, the output
/// when a ReLU ends the operation (its gradient's mask), and which optional parents
/// follow `x` and `w` in the parent list (bias, then residual).
#[derive(Clone, Debug)]
struct Saved {
    geo: Geometry,
    x: FlexTensor,
    w: FlexTensor,
    relu_out: Option<FlexTensor>,
    bias: bool,
}

/// Registers the gradients of the parents that need one.
fn backward<const N: usize>(ops: Ops<Saved, N>, grads: &mut Gradients) {
    let mut dy = grads.consume::<Flex>(&ops.node).to_contiguous();
    let Saved {
        geo,
        x,
        w,
        relu_out,
        bias,
    } = ops.state;
    let name = || timing::conv_name(&geo);
    if let Some(y) = relu_out {
        // In place when dY is not shared (a copy otherwise).
        timing::time(name, Pass::Mask, || {
            vectorized(
                #[inline(always)]
                || epilogue::mask(dy.storage_mut::<f32>(), slice(&y)),
            )
        });
    }
    let [node_x, node_w] = [&ops.parents[0], &ops.parents[1]];
    let node_b = if bias { ops.parents.get(2) } else { None };
    let node_r = ops.parents.get(2 + usize::from(bias));
    let (dyv, xv, wv) = (slice(&dy), slice(&x), slice(&w));
    let (want_dx, want_dw) = (node_x.is_some(), node_w.is_some());
    let (dx, dw) = if timing::enabled() {
        // Each gradient alone, so that each is timed alone.
        let (dx, _) = timing::time(name, Pass::InputGrad, || {
            gradients(&geo, xv, wv, dyv, want_dx, false)
        });
        let (_, dw) = timing::time(name, Pass::WeightGrad, || {
            gradients(&geo, xv, wv, dyv, false, want_dw)
        });
        (dx, dw)
    } else {
        gradients(&geo, xv, wv, dyv, want_dx, want_dw)
    };
    if let (Some(node), Some(dx)) = (node_x, dx) {
        grads.register::<Flex>(node.id, tensor(dx, vec![geo.batch, geo.c_in, geo.h, geo.w]));
    }
    if let (Some(node), Some(dw)) = (node_w, dw) {
        let shape = vec![geo.c_out, geo.cin_g(), geo.kh, geo.kw];
        grads.register::<Flex>(node.id, tensor(dw, shape));
    }
    if let Some(Some(node)) = node_b {
        let db = timing::time(name, Pass::BiasGrad, || {
            vectorized(
                #[inline(always)]
                || gemm_conv::bias_grad(&geo, dyv),
            )
        });
        grads.register::<Flex>(node.id, tensor(db, vec![geo.c_out]));
    }
    if let Some(Some(node)) = node_r {
        // The residual's gradient is dY itself (shared, not copied).
        grads.register::<Flex>(node.id, dy);
    }
}

/// `(dx, dw)`, each when asked for, through the kernel that serves `geo`.
fn gradients(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if !want_dx && !want_dw {
        return (None, None);
    }
    vectorized(
        #[inline(always)]
        || gradients_here(geo, x, w, dy, want_dx, want_dw),
    )
}

/// [`gradients`]' body, inlined into its vectorized caller.
#[inline(always)]
fn gradients_here(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if geo.is_depthwise() {
        depthwise::backward(geo, x, w, dy, want_dx, want_dw)
    } else if pointwise::applies(geo) {
        pointwise::backward(geo, x, w, dy, want_dx, want_dw)
    } else {
        // "Same" stride-1 layers: dX as a convolution of dY (no col2im; the ResNet's step
        // in CPU time 148.6 against 163.4 ms ungated, 164.8 against 166.1 gated, one run
        // on a loaded machine, BENCHMARKS.md issue 33); the others through the columns.
        let direct = want_dx
            .then(|| input_grad::input_grad(geo, w, dy))
            .flatten();
        let want_cols = want_dx && direct.is_none();
        let (dx, dw) = gemm_conv::backward(geo, x, w, dy, want_cols, want_dw);
        (direct.or(dx), dw)
    }
}

/// The operation, with `N` parents: `x`, `w`, then the bias and the residual when present.
#[derive(Debug)]
struct Conv<const N: usize>;

impl<const N: usize> Backward<Flex, N> for Conv<N> {
    type State = Saved;
    fn backward(self, ops: Ops<Saved, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward(ops, grads);
    }
}

/// Records the operation on `parents` (or not, when none needs a gradient).
fn record<const N: usize>(
    parents: [&FloatTensor<AdFlex>; N],
    saved: impl FnOnce() -> Saved,
    y: FlexTensor,
) -> FloatTensor<AdFlex> {
    match Conv::<N>
        .prepare::<NoCheckpointing>(parents.map(|t| t.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(saved(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Whether this operation handles these tensors (f32, a residual of the output's shape;
/// anything else takes burn's path).
pub fn supports(
    x: &Tensor<AdFlex, 4>,
    w: &Tensor<AdFlex, 4>,
    residual: Option<&Tensor<AdFlex, 4>>,
    geo: &Geometry,
) -> bool {
    let r_fits = residual.is_none_or(|r| {
        r.dtype() == DType::F32 && r.dims() == [geo.batch, geo.c_out, geo.oh, geo.ow]
    });
    x.dtype() == DType::F32 && w.dtype() == DType::F32 && r_fits
}

/// `act(conv2d(x, w, b) + residual)` with this module's kernels, for a valid `geo` and a
/// residual of the output's shape (checked by the caller); `act` is a ReLU when `relu`.
pub fn conv2d(
    geo: Geometry,
    x: Tensor<AdFlex, 4>,
    w: Tensor<AdFlex, 4>,
    b: Option<Tensor<AdFlex, 1>>,
    residual: Option<Tensor<AdFlex, 4>>,
    relu: bool,
) -> Tensor<AdFlex, 4> {
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let b = b.map(|b| b.into_primitive().tensor());
    let r = residual.map(|r| r.into_primitive().tensor());
    let (xp, wp) = (x.primitive.to_contiguous(), w.primitive.to_contiguous());
    let bp = b.as_ref().map(|b| b.primitive.to_contiguous());
    let rp = r.as_ref().map(|r| r.primitive.to_contiguous());
    let y = forward(&geo, &xp, &wp, bp.as_ref(), rp.as_ref(), relu);
    let saved = || Saved {
        geo,
        x: xp.clone(),
        w: wp.clone(),
        relu_out: relu.then(|| y.clone()),
        bias: b.is_some(),
    };
    let out = match (&b, &r) {
        (None, None) => record([&x, &w], saved, y.clone()),
        (Some(b), None) => record([&x, &w, b], saved, y.clone()),
        (None, Some(r)) => record([&x, &w, r], saved, y.clone()),
        (Some(b), Some(r)) => record([&x, &w, b, r], saved, y.clone()),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
