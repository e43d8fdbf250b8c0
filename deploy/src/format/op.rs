//! Validated ops and the graph's nodes.

use super::dims::Dims;
use super::functions::{Binary, Reduce, Unary};
use super::geometry::{ConvGeom, ConvTransposeGeom, PadGeom, PoolGeom};
use super::layout::MAX_RANK;
use super::resize::ResizeGeom;

/// How [`Op::MeshFeatures`] computes a vertex's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MeshFeatures {
    /// Relative tangential features, one order-1 feature per power: `[count, 3]`.
    RelTan {
        /// Relative powers (`powers[..count]`).
        powers: [f32; MAX_RELTAN_POWERS],
        /// How many.
        count: usize,
        /// Degree normalisation power.
        degree_power: f32,
        /// Normalisation constant.
        constant: f32,
    },
    /// Standardised coordinates `(x - mean) / scale` as three scalars: `[3, 1]`.
    Xyz {
        /// Subtracted from each coordinate.
        mean: [f32; 3],
        /// Divides each coordinate.
        scale: f32,
    },
}

/// The most RelTan powers a [`MeshFeatures::RelTan`] op carries.
pub const MAX_RELTAN_POWERS: usize = 6;

/// A validated op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `y = W x + b` over the last axis, `W` of shape `[out, in]` (leading axes are
    /// independent rows).
    Linear {
        /// Weight tensor index.
        weight: usize,
        /// Bias tensor index.
        bias: Option<usize>,
    },
    /// 2-D convolution of `[.., c, h, w]`.
    Conv2d {
        /// Weight tensor index, `[oc, ic / group, kh, kw]`.
        weight: usize,
        /// Bias tensor index, `[oc]`.
        bias: Option<usize>,
        /// Strides, padding, dilation, groups.
        geom: ConvGeom,
    },
    /// Max pooling of `[.., c, h, w]`.
    MaxPool2d(PoolGeom),
    /// Average pooling of `[.., c, h, w]`.
    AvgPool2d(PoolGeom),
    /// To rank 1.
    Flatten,
    /// `max(x, 0)`.
    Relu,
    /// `sin(w0 x)` (SIREN).
    Sine {
        /// Frequency factor.
        w0: f32,
    },
    /// Softmax over the axes `axis..end` taken together (ONNX before opset 13 flattens the
    /// axes from `axis` on; opset 13 takes one axis: `end = axis + 1`).
    Softmax {
        /// First axis.
        axis: usize,
        /// One past the last axis.
        end: usize,
    },
    /// Element-wise `a op b`, broadcasting as numpy does within a sample; a constant
    /// operand is shared by every sample of the batch.
    Binary(Binary),
    /// An element-wise function.
    Unary(Unary),
    /// Matrix product of two values, as numpy's `matmul` within a sample.
    MatMul,
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose {
        /// The permutation (`perm[..rank]`).
        perm: [usize; MAX_RANK],
        /// Rank of the input.
        rank: usize,
    },
    /// Concatenation along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Same elements, another shape.
    Reshape(Dims),
    /// A constant: a tensor of the model, the same for every sample.
    Const {
        /// Tensor index.
        tensor: usize,
    },
    /// A mesh model's input features (see [`MeshFeatures`]); its input is value 0, each
    /// vertex's position.
    MeshFeatures(MeshFeatures),
    /// EMAN attention convolution (`tether_models::eman`): per vertex `[c_in, 2 m_in + 1]`
    /// to `[c_out, 2 m_out + 1]`, reading the 1-ring. Run by `mesh::MeshPlan`.
    EmanConv {
        /// Key kernel `A_k`, `[c_out (2 m_out + 1), c_in (2 m_in + 1)]`.
        key: usize,
        /// Value kernel `A_v`, same shape.
        value: usize,
        /// Query self-kernel, `[1 + 2 s, c_in, c_out]` (`s = min(m_in, m_out)`): the scalar
        /// matrix, then the real and imaginary matrices of each shared order.
        query: usize,
        /// Self-interaction kernel, same layout.
        self_kernel: usize,
        /// Bias of the scalar outputs, `[c_out]`.
        bias: usize,
        /// Attention heads.
        heads: usize,
        /// Output rotation order `m_out`.
        order_out: usize,
    },
    /// Gate nonlinearity of `[c, 2m + 1]`: ReLU on scalars, the rest scaled by the
    /// sigmoid of their channel's scalar.
    Gate,
    /// `[c, 2m + 1] -> [c]`: the order-0 components.
    Scalars,
    /// A reduction over the axes in the mask `axes` (bit `i`: axis `i`), which keep
    /// extent 1.
    Reduce {
        /// Mean, sum, max or min.
        kind: Reduce,
        /// Bit mask of the reduced axes.
        axes: u8,
    },
    /// Padding of every axis (ONNX `Pad` without the batch axis).
    Pad(PadGeom),
    /// Resizing of every axis (nearest or linear; ONNX `Resize`).
    Resize(ResizeGeom),
    /// 2-D transposed convolution of `[.., c, h, w]`.
    ConvTranspose2d {
        /// Weight tensor index, `[ic, oc / group, kh, kw]`.
        weight: usize,
        /// Bias tensor index, `[oc]`.
        bias: Option<usize>,
        /// Strides, cropping, dilation, groups, output padding.
        geom: ConvTransposeGeom,
    },
    /// `c != 0 ? a : b` element-wise, the three broadcasting (ONNX `Where`; booleans are
    /// 0 and 1).
    Where,
    /// A further output of the model (the header's output is output 0): a copy of its
    /// input.
    Output {
        /// Output index (1, 2, ...).
        index: usize,
    },
    /// A further input of the model (input 0 is value 0).
    Input {
        /// Input index (1, 2, ...).
        index: usize,
        /// Per-sample shape.
        shape: Dims,
    },
}

impl Op {
    /// A short name (for reports and errors).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool2d(_) => "maxpool2d",
            Op::AvgPool2d(_) => "avgpool2d",
            Op::Flatten => "flatten",
            Op::Relu => "relu",
            Op::Sine { .. } => "sine",
            Op::Softmax { .. } => "softmax",
            Op::Binary(Binary::Add) => "add",
            Op::Binary(Binary::Sub) => "sub",
            Op::Binary(Binary::Mul) => "mul",
            Op::Binary(Binary::Div) => "div",
            Op::Binary(Binary::Pow) => "pow",
            Op::Binary(Binary::Max) => "max",
            Op::Binary(Binary::Min) => "min",
            Op::Binary(Binary::PRelu) => "prelu",
            Op::Binary(Binary::Equal) => "equal",
            Op::Binary(Binary::Greater) => "greater",
            Op::Binary(Binary::Less) => "less",
            Op::Binary(Binary::GreaterOrEqual) => "greater_eq",
            Op::Binary(Binary::LessOrEqual) => "less_eq",
            Op::Resize(_) => "resize",
            Op::ConvTranspose2d { .. } => "deconv2d",
            Op::Where => "where",
            Op::Output { .. } => "output",
            Op::Reduce { .. } => "reduce",
            Op::Pad(_) => "pad",
            Op::Unary(_) => "unary",
            Op::MatMul => "matmul",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Reshape(_) => "reshape",
            Op::Const { .. } => "const",
            Op::Input { .. } => "input",
            Op::MeshFeatures(_) => "mesh_features",
            Op::EmanConv { .. } => "eman_conv",
            Op::Gate => "gate",
            Op::Scalars => "scalars",
        }
    }
}

/// Most inputs of one op.
pub const MAX_INPUTS: usize = 4;

/// One node of the graph: an op, the values it reads and the value it defines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    /// The op.
    pub op: Op,
    /// Input value ids (`inputs[..n_inputs]`).
    pub inputs: [usize; MAX_INPUTS],
    /// Number of inputs.
    pub n_inputs: usize,
    /// Output value id.
    pub output: usize,
}

impl Node {
    /// The input value ids.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs[..self.n_inputs]
    }
}
