//! The convolution as one custom autodiff operation on `Autodiff<Flex>`: the forward and
//! all three gradients from [`super::gemm_conv`] (or [`super::depthwise`],
//! [`super::pointwise`]), instead of
//! burn 0.21's default backward, which computes the input gradient as a transposed
//! convolution and the weight gradient as a convolution of `x` by `dY` (a 24x24 "kernel"
//! on LeNet-5's first layer) and, with groups, one such convolution per group.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::geometry::Geometry;
use super::{depthwise, gemm_conv, pointwise};

/// The autodiff backend this operation serves.
pub type AdFlex = Autodiff<Flex>;

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("the convolution's tensors are made contiguous f32 before use")
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn forward(geo: &Geometry, x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>) -> FlexTensor {
    let (x, w, b) = (slice(x), slice(w), b.map(slice));
    let y = if geo.is_depthwise() {
        depthwise::forward(geo, x, w, b)
    } else if pointwise::applies(geo) {
        pointwise::forward(geo, x, w, b)
    } else {
        gemm_conv::forward(geo, x, w, b)
    };
    tensor(y, vec![geo.batch, geo.c_out, geo.oh, geo.ow])
}

/// The state kept for the backward pass: the (contiguous) input and weight.
#[derive(Clone, Debug)]
struct Saved {
    geo: Geometry,
    x: FlexTensor,
    w: FlexTensor,
}

/// Registers the gradients of the parents that need one.
fn backward<const N: usize>(ops: Ops<Saved, N>, grads: &mut Gradients) {
    let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
    let Saved { geo, x, w } = ops.state;
    let [node_x, node_w] = [&ops.parents[0], &ops.parents[1]];
    let (dyv, xv, wv) = (slice(&dy), slice(&x), slice(&w));
    let (dx, dw) = if geo.is_depthwise() {
        depthwise::backward(&geo, xv, wv, dyv, node_x.is_some(), node_w.is_some())
    } else if pointwise::applies(&geo) {
        pointwise::backward(&geo, xv, wv, dyv, node_x.is_some(), node_w.is_some())
    } else {
        gemm_conv::backward(&geo, xv, wv, dyv, node_x.is_some(), node_w.is_some())
    };
    if let (Some(node), Some(dx)) = (node_x, dx) {
        grads.register::<Flex>(node.id, tensor(dx, vec![geo.batch, geo.c_in, geo.h, geo.w]));
    }
    if let (Some(node), Some(dw)) = (node_w, dw) {
        let shape = vec![geo.c_out, geo.cin_g(), geo.kh, geo.kw];
        grads.register::<Flex>(node.id, tensor(dw, shape));
    }
    if let Some(Some(node)) = ops.parents.get(2) {
        grads.register::<Flex>(
            node.id,
            tensor(gemm_conv::bias_grad(&geo, dyv), vec![geo.c_out]),
        );
    }
}

#[derive(Debug)]
struct ConvWithBias;
#[derive(Debug)]
struct ConvNoBias;

impl Backward<Flex, 3> for ConvWithBias {
    type State = Saved;
    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward(ops, grads);
    }
}

impl Backward<Flex, 2> for ConvNoBias {
    type State = Saved;
    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward(ops, grads);
    }
}

/// Whether this operation handles these tensors (f32; other dtypes take burn's path).
pub fn supports(x: &Tensor<AdFlex, 4>, w: &Tensor<AdFlex, 4>) -> bool {
    x.dtype() == DType::F32 && w.dtype() == DType::F32
}

/// `conv2d(x, w, b)` with this module's kernels, for a valid `geo`.
pub fn conv2d(
    geo: Geometry,
    x: Tensor<AdFlex, 4>,
    w: Tensor<AdFlex, 4>,
    b: Option<Tensor<AdFlex, 1>>,
) -> Tensor<AdFlex, 4> {
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let b = b.map(|b| b.into_primitive().tensor());
    let (xp, wp) = (x.primitive.to_contiguous(), w.primitive.to_contiguous());
    let bp = b.as_ref().map(|b| b.primitive.to_contiguous());
    let y = forward(&geo, &xp, &wp, bp.as_ref());
    let saved = || Saved {
        geo,
        x: xp.clone(),
        w: wp.clone(),
    };
    let out = match b {
        Some(b) => match ConvWithBias
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(saved(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        None => match ConvNoBias
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(saved(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
