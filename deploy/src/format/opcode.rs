//! Opcodes (the `opcode` byte of an op entry).

/// `y = W x + b` over the last axis; params: weight, bias (or NONE).
pub const LINEAR: u8 = 1;
/// 2-D convolution; params (version 2): weight `[oc, ic/group, kh, kw]`, bias, stride
/// h, stride w, pads top, left, bottom, right, dilation (h | w << 16), group.
pub const CONV2D: u8 = 2;
/// Max pooling; params (version 2): kernel h, kernel w, stride h, stride w, pads top,
/// left, bottom, right, dilation (h | w << 16), flags (1: ceil mode).
pub const MAX_POOL2D: u8 = 3;
/// Average pooling; params as max pooling (flags 2: count the padding).
pub const AVG_POOL2D: u8 = 4;
/// To rank 1.
pub const FLATTEN: u8 = 5;
/// `max(x, 0)`.
pub const RELU: u8 = 6;
/// `sin(w0 x)`; params: w0 as f32 bits.
pub const SINE: u8 = 7;
/// Softmax; params: first and end axis (0, 0: the last axis).
pub const SOFTMAX: u8 = 8;
/// Element-wise sum, broadcasting.
pub const ADD: u8 = 9;
/// Element-wise product, broadcasting.
pub const MUL: u8 = 10;
/// Element-wise difference, broadcasting.
pub const SUB: u8 = 11;
/// Element-wise quotient, broadcasting.
pub const DIV: u8 = 12;
/// An element-wise function; params: function id, alpha and beta as f32 bits.
pub const UNARY: u8 = 13;
/// Matrix product of two values (numpy `matmul`).
pub const MATMUL: u8 = 14;
/// Axis permutation; the rank byte and params 0..rank: the permutation.
pub const TRANSPOSE: u8 = 15;
/// Concatenation of 2 to 4 values; params: axis.
pub const CONCAT: u8 = 16;
/// Same data, new shape; the rank byte and params 0..rank: the shape.
pub const RESHAPE: u8 = 17;
/// A constant value: a tensor; params: tensor.
pub const CONST: u8 = 18;
/// A further model input; params: input index (1, 2, ...), then the shape (rank byte).
pub const INPUT: u8 = 19;
/// A mesh model's per-vertex input features, computed from the mesh (input value 0
/// holds each vertex's position `[3]`); params: kind (0 RelTan, 1 XYZ), then RelTan:
/// power count `n <= 6`, `n` powers, degree power and constant at params 8, 9; XYZ:
/// mean x, y, z and scale. All reals as f32 bits.
pub const MESH_FEATURES: u8 = 20;
/// EMAN attention convolution over the mesh's 1-rings; params: key weight, value
/// weight, query kernel, self-interaction kernel, bias, heads, output order.
pub const EMAN_CONV: u8 = 21;
/// Gate nonlinearity of `[channels, 2m + 1]` features.
pub const GATE: u8 = 22;
/// The scalar (order-0) component of `[channels, 2m + 1]` features.
pub const SCALARS: u8 = 23;
/// A further element-wise binary op, broadcasting; params: function id (see
/// [`super::Binary::encode`]).
pub const BINARY: u8 = 24;
/// A reduction over a set of axes, which keep extent 1; params: kind (0 mean, 1 sum,
/// 2 max, 3 min), the axes as a bit mask (bit `i`: axis `i` of the sample).
pub const REDUCE: u8 = 25;
/// Padding of every axis of a sample; the rank byte, params 0..4: the elements added
/// before each axis, 4..8: after, 8: mode (0 constant, 1 reflect, 2 edge), 9: the
/// constant as f32 bits.
pub const PAD: u8 = 26;
/// Resizing (ONNX `Resize`/`Upsample`) of every axis of a sample by nearest-neighbour or
/// (multi)linear interpolation; the rank byte, params 0..4: the output shape, 4..8: each
/// axis's scale as f32 bits (0: the ratio of the output to the input extent), 8: mode
/// (`mode | coordinate transformation << 8 | nearest rounding << 16`).
pub const RESIZE: u8 = 27;
/// 2-D transposed convolution (ONNX `ConvTranspose`); params: weight `[ic, oc/group, kh,
/// kw]`, bias, stride `h | w << 16`, pads top, left, bottom, right, dilation `h | w << 16`,
/// group, output padding `h | w << 16`.
pub const CONV_TRANSPOSE2D: u8 = 28;
/// Element-wise selection `c != 0 ? a : b` of three broadcasting values (ONNX `Where`).
pub const WHERE: u8 = 29;
/// A further model output: a copy of its input; params: output index (1, 2, ...).
pub const OUTPUT: u8 = 30;
