//! A trainable network made from a `tether-deploy` model graph: the one model path.
//!
//! An ONNX file the deploy importer accepts (a user's PyTorch export) becomes a
//! `tether-deploy` [`Model`]; [`GraphNet`] interprets that graph with burn tensor ops,
//! generic over the backend, its Linear and Conv weights (and biases) trainable
//! parameters loaded from the model's tensors, each weight under hard-concrete gates
//! (per weight, per output unit or channel, or 1x4 blocks, as the built-in gated layers).
//! Everything else (constants, BatchNorm folded into a scale and shift by the importer)
//! is a frozen parameter. [`GraphNet::to_deploy`] folds the deterministic gates into the
//! weights and writes the same graph back ([`tether_deploy::rebuild`]), so a pruned model
//! leaves as it came in, op for op, and exports to ONNX through `tether-deploy`.
//!
//! Values are carried flattened, `[batch, numel]` (a constant `[1, numel]`), and reshaped
//! to the rank an op needs: per-sample shapes are known when the net is built, so no
//! shape is computed per step.

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{PadMode as BurnPad, PaddedConvOptions};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use tether_deploy::format::{Binary, PadMode, Reduce, Unary};
use tether_deploy::{AlignedBytes, Model, Op};

use crate::gated::{GatedNetwork, LayerGates};
use crate::l0::{BLOCK_INPUTS, GateMode, GateStructure, HardConcrete, HardConcreteConfig};

/// Why a graph cannot be trained.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError(pub String);

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GraphError {}

fn err<T>(msg: impl Into<String>) -> Result<T, GraphError> {
    Err(GraphError(msg.into()))
}

/// How the net's weights are gated.
#[derive(Clone, Debug)]
pub struct GraphNetConfig {
    /// What a gate switches off; `None` trains the weights without gates (the dense
    /// baseline, or fine-tuning).
    pub structure: Option<GateStructure>,
    /// The gates' hyper-parameters.
    pub gates: HardConcreteConfig,
}

/// One Linear or Conv layer of the graph: its weight (and bias) as parameters, with its
/// gates.
#[derive(Module, Debug)]
pub struct GraphLayer<B: Backend> {
    /// A linear layer's weight, `[out, in]` (PyTorch's and tether-deploy's layout).
    pub linear: Option<Param<Tensor<B, 2>>>,
    /// A convolution's weight, `[oc, ic / groups, kh, kw]`.
    pub conv: Option<Param<Tensor<B, 4>>>,
    /// The bias, `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The gates (none when the net is trained dense).
    pub gates: Option<HardConcrete<B>>,
    /// A fixed 0/1 mask over the weight, flattened row-major (magnitude pruning: see
    /// [`crate::graph_masks`]); a constant, in no record, and it stops the masked
    /// weights' gradient.
    pub mask: Option<Tensor<B, 1>>,
    #[module(skip)]
    structure: GateStructure,
}

/// A node of the interpreted graph.
#[derive(Clone, Debug)]
struct GraphNode {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
    /// The layer of a Linear or Conv node, the constant of a Const node.
    slot: usize,
}

/// The graph and shapes, fixed when the net is built.
#[derive(Clone, Debug)]
struct Graph {
    /// The deploy model's bytes, for [`GraphNet::to_deploy`].
    bytes: Vec<u8>,
    nodes: Vec<GraphNode>,
    /// Per-sample shape of every value.
    shapes: Vec<Vec<usize>>,
    output: usize,
    /// Per layer: the weight tensor and the bias tensor of the deploy model.
    tensors: Vec<(usize, Option<usize>)>,
}

/// A trainable, gateable network interpreting a `tether-deploy` model graph.
#[derive(Module, Debug)]
pub struct GraphNet<B: Backend> {
    /// The Linear and Conv layers, in graph order.
    pub layers: Vec<GraphLayer<B>>,
    /// The graph's constants (flattened), frozen.
    pub consts: Vec<Param<Tensor<B, 1>>>,
    #[module(skip)]
    graph: Graph,
}

fn numel(d: &[usize]) -> usize {
    d.iter().product()
}

/// `d` left-padded with 1s to rank `r`.
fn pad_rank(d: &[usize], r: usize) -> Vec<usize> {
    let mut v = vec![1; r - d.len()];
    v.extend_from_slice(d);
    v
}

impl<B: Backend> GraphNet<B> {
    /// Builds the net from tether model bytes (as `tether_deploy::onnx::import_file`
    /// writes them).
    ///
    /// # Errors
    /// A model that does not parse, or one with an op the net cannot train (a product of
    /// two runtime values, a further input, mesh ops, average pooling with dilation or
    /// asymmetric padding that excludes the pad).
    pub fn from_model_bytes(
        bytes: &[u8],
        config: &GraphNetConfig,
        device: &B::Device,
    ) -> Result<Self, GraphError> {
        let aligned = AlignedBytes::from_slice(bytes);
        let model =
            Model::parse(&aligned).map_err(|e| GraphError(format!("not a tether model: {e}")))?;
        if model.inputs.len() != 1 {
            return err(format!(
                "the model has {} inputs; training takes one",
                model.inputs.len()
            ));
        }
        let dense = |i: usize| model.tensors[i].to_dense();
        let (mut layers, mut consts, mut nodes, mut tensors) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, node) in model.nodes.iter().enumerate() {
            let mut slot = 0;
            match node.op {
                Op::Linear { weight, bias } | Op::Conv2d { weight, bias, .. } => {
                    let wd = model.tensors[weight].dims.as_slice().to_vec();
                    let w = dense(weight);
                    let is_conv = matches!(node.op, Op::Conv2d { .. });
                    let (linear, conv) = if is_conv {
                        let t = Tensor::<B, 1>::from_data(TensorData::new(w, [numel(&wd)]), device)
                            .reshape([wd[0], wd[1], wd[2], wd[3]]);
                        (None, Some(Param::from_tensor(t)))
                    } else {
                        let t = Tensor::<B, 1>::from_data(TensorData::new(w, [numel(&wd)]), device)
                            .reshape([wd[0], wd[1]]);
                        (Some(Param::from_tensor(t)), None)
                    };
                    let b = bias.map(|b| {
                        let v = dense(b);
                        let n = v.len();
                        Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), device))
                    });
                    // Convolutions' 1x4 blocks would cut across kernel windows; a linear
                    // layer's need a multiple of 4 inputs: both gate per weight instead.
                    let structure = match config.structure {
                        Some(GateStructure::Block1x4)
                            if is_conv || !wd[1].is_multiple_of(BLOCK_INPUTS) =>
                        {
                            GateStructure::Weight
                        }
                        Some(s) => s,
                        None => GateStructure::Weight,
                    };
                    let n_gates = match structure {
                        GateStructure::Weight => numel(&wd),
                        GateStructure::OutputUnit => wd[0],
                        GateStructure::Block1x4 => numel(&wd) / BLOCK_INPUTS,
                    };
                    let gates = config.structure.map(|_| config.gates.init(n_gates, device));
                    slot = layers.len();
                    layers.push(GraphLayer {
                        linear,
                        conv,
                        bias: b,
                        gates,
                        mask: None,
                        structure,
                    });
                    tensors.push((weight, bias));
                }
                Op::Const { tensor } => {
                    let v = dense(tensor);
                    let n = v.len();
                    slot = consts.len();
                    consts.push(
                        Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), device))
                            .set_require_grad(false),
                    );
                }
                Op::AvgPool2d(g)
                    if g.dilation != [1, 1]
                        || (!g.count_pad && (g.pads[0] != g.pads[2] || g.pads[1] != g.pads[3])) =>
                {
                    return err(format!(
                        "op {k} (average pooling): dilation or asymmetric padding that \
                         excludes the pad cannot be trained"
                    ));
                }
                Op::MaxPool2d(g)
                    if g.ceil && (g.pads[0] != g.pads[2] || g.pads[1] != g.pads[3]) =>
                {
                    return err(format!(
                        "op {k} (max pooling): ceil mode with asymmetric padding cannot be trained"
                    ));
                }
                Op::MatMul => {
                    return err(format!(
                        "op {k}: a matrix product of two computed values cannot be trained \
                         (a constant weight is a linear layer)"
                    ));
                }
                Op::Input { .. }
                | Op::MeshFeatures(_)
                | Op::EmanConv { .. }
                | Op::Gate
                | Op::Scalars
                | Op::Resize(_)
                | Op::ConvTranspose2d { .. }
                | Op::Where
                | Op::Output { .. }
                | Op::Binary(
                    Binary::Equal
                    | Binary::Greater
                    | Binary::Less
                    | Binary::GreaterOrEqual
                    | Binary::LessOrEqual,
                ) => {
                    return err(format!(
                        "op {k} ({}) cannot be trained here",
                        node.op.name()
                    ));
                }
                _ => {}
            }
            nodes.push(GraphNode {
                op: node.op,
                inputs: node.inputs().to_vec(),
                output: node.output,
                slot,
            });
        }
        let shapes = model.shapes.iter().map(|d| d.as_slice().to_vec()).collect();
        Ok(Self {
            layers,
            consts,
            graph: Graph {
                bytes: bytes.to_vec(),
                nodes,
                shapes,
                output: model.output,
                tensors,
            },
        })
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.graph.shapes[0]
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.graph.shapes[self.graph.output]
    }

    /// The output `[batch, numel(output)]` for flattened inputs `[batch, numel(input)]`.
    pub fn forward(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let g = &self.graph;
        let mut vals: Vec<Option<Tensor<B, 2>>> = vec![None; g.shapes.len()];
        vals[0] = Some(x);
        for node in &g.nodes {
            let get = |i: usize| vals[node.inputs[i]].clone().expect("computed before");
            let dims = |i: usize| g.shapes[node.inputs[i]].as_slice();
            let out = g.shapes[node.output].as_slice();
            let y = match node.op {
                Op::Linear { .. } => self.linear(node.slot, get(0), dims(0), mode),
                Op::Conv2d { geom, .. } => {
                    let d = dims(0);
                    let r = d.len();
                    let lead = numel(&d[..r - 3]);
                    let x = get(0);
                    let b = x.dims()[0];
                    let x = x.reshape([b * lead, d[r - 3], d[r - 2], d[r - 1]]);
                    let opts = PaddedConvOptions::asymmetric(
                        geom.stride,
                        [geom.pads[0], geom.pads[1]],
                        [geom.pads[2], geom.pads[3]],
                        geom.dilation,
                        geom.group,
                    );
                    let y = self.conv(node.slot, x, opts, mode);
                    y.reshape([b, numel(out)])
                }
                Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                    let d = dims(0);
                    let r = d.len();
                    let x = get(0);
                    let b = x.dims()[0];
                    // Every channel of every sample as its own one-channel image.
                    let mut x: Tensor<B, 4> =
                        x.reshape([b * numel(&d[..r - 2]), 1, d[r - 2], d[r - 1]]);
                    let max = matches!(node.op, Op::MaxPool2d(_));
                    let mut pad = [p.pads[0], p.pads[1]];
                    if p.pads[0] != p.pads[2] || p.pads[1] != p.pads[3] {
                        // burn pads symmetrically: pad explicitly. -inf never wins a max;
                        // zeros count in an average that counts the pad (the other case is
                        // refused when the net is built).
                        let fill = if max { f32::NEG_INFINITY } else { 0.0 };
                        x = x.pad(
                            [(p.pads[0], p.pads[2]), (p.pads[1], p.pads[3])],
                            BurnPad::Constant(fill),
                        );
                        pad = [0, 0];
                    }
                    let y = if max {
                        max_pool2d(x, p.kernel, p.stride, pad, p.dilation, p.ceil)
                    } else {
                        avg_pool2d(x, p.kernel, p.stride, pad, p.count_pad, p.ceil)
                    };
                    y.reshape([b, numel(out)])
                }
                Op::Flatten | Op::Reshape(_) => get(0),
                Op::Relu => activation::relu(get(0)),
                Op::Sine { w0 } => (get(0) * w0).sin(),
                Op::Softmax { axis, end } => {
                    let d = dims(0);
                    let (a, e) = if (axis, end) == (0, 0) {
                        (d.len() - 1, d.len())
                    } else {
                        (axis, end)
                    };
                    let x = get(0);
                    let b = x.dims()[0];
                    let x = x.reshape([b, numel(&d[..a]), numel(&d[a..e]), numel(&d[e..])]);
                    activation::softmax(x, 2).reshape([b, numel(d)])
                }
                Op::Unary(f) => unary(f, get(0)),
                Op::Binary(op) => binary(op, get(0), dims(0), get(1), dims(1), out),
                Op::Transpose { perm, rank } => transpose(get(0), dims(0), &perm[..rank]),
                Op::Concat { axis } => {
                    let b = node
                        .inputs
                        .iter()
                        .map(|&v| vals[v].as_ref().expect("computed").dims()[0])
                        .max()
                        .unwrap_or(1);
                    let parts: Vec<Tensor<B, 4>> = node
                        .inputs
                        .iter()
                        .map(|&v| {
                            let d = g.shapes[v].as_slice();
                            let t = vals[v].clone().expect("computed");
                            let t = if t.dims()[0] == b {
                                t
                            } else {
                                t.expand([b, numel(d)])
                            };
                            t.reshape([b, numel(&d[..axis]), d[axis], numel(&d[axis + 1..])])
                        })
                        .collect();
                    Tensor::cat(parts, 2).reshape([b, numel(out)])
                }
                Op::Const { .. } => {
                    let c = self.consts[node.slot].val();
                    let n = c.dims()[0];
                    c.reshape([1, n])
                }
                Op::Reduce { kind, axes } => reduce(kind, axes, get(0), dims(0), out),
                Op::Pad(p) => {
                    let d = dims(0);
                    let x = get(0);
                    let b = x.dims()[0];
                    let full = pad_rank(d, 4);
                    let off = 4 - d.len();
                    let x: Tensor<B, 5> = x.reshape([b, full[0], full[1], full[2], full[3]]);
                    let mut pairs = [(0usize, 0usize); 5];
                    for i in 0..d.len() {
                        pairs[1 + off + i] = (p.begin[i], p.end[i]);
                    }
                    let mode = match p.mode {
                        PadMode::Constant(v) => BurnPad::Constant(v),
                        PadMode::Reflect => BurnPad::Reflect,
                        PadMode::Edge => BurnPad::Edge,
                    };
                    x.pad(pairs, mode).reshape([b, numel(out)])
                }
                Op::MatMul
                | Op::Input { .. }
                | Op::MeshFeatures(_)
                | Op::EmanConv { .. }
                | Op::Gate
                | Op::Scalars
                | Op::Resize(_)
                | Op::ConvTranspose2d { .. }
                | Op::Where
                | Op::Output { .. } => unreachable!("refused when the net is built"),
            };
            vals[node.output] = Some(y);
        }
        let y = vals[g.output].take().expect("the output is computed");
        let n = y.dims()[1];
        let b = vals[0].as_ref().map_or(1, |x| x.dims()[0]);
        if y.dims()[0] == b {
            y
        } else {
            y.expand([b, n])
        }
    }

    /// The factor of layer `l`'s flattened weight: its per-weight or block gates times its
    /// mask, or `None` (neither; per-unit gates apply to the output).
    fn weight_factor(
        &self,
        l: &GraphLayer<B>,
        mode: GateMode,
        dims: &[usize],
    ) -> Option<Tensor<B, 1>> {
        match (self.gate_factor(l, mode, dims), &l.mask) {
            (Some(z), Some(m)) => Some(z * m.clone()),
            (None, Some(m)) => Some(m.clone()),
            (z, None) => z,
        }
    }

    /// The per-weight or block gates of layer `l` as a factor of its flattened weight.
    fn gate_factor(
        &self,
        l: &GraphLayer<B>,
        mode: GateMode,
        dims: &[usize],
    ) -> Option<Tensor<B, 1>> {
        let z = l.gates.as_ref()?.gates(mode);
        match l.structure {
            GateStructure::Weight => Some(z),
            GateStructure::Block1x4 => {
                let n = numel(dims);
                Some(
                    z.reshape([n / BLOCK_INPUTS, 1])
                        .repeat_dim(1, BLOCK_INPUTS)
                        .reshape([n]),
                )
            }
            GateStructure::OutputUnit => None,
        }
    }

    fn unit_gates(&self, l: &GraphLayer<B>, mode: GateMode) -> Option<Tensor<B, 1>> {
        match (&l.gates, l.structure) {
            (Some(g), GateStructure::OutputUnit) => Some(g.gates(mode)),
            _ => None,
        }
    }

    fn linear(&self, slot: usize, x: Tensor<B, 2>, d: &[usize], mode: GateMode) -> Tensor<B, 2> {
        let l = &self.layers[slot];
        let mut w = l.linear.as_ref().expect("a linear layer").val();
        let [out, inp] = w.dims();
        if let Some(z) = self.weight_factor(l, mode, &[out, inp]) {
            w = w * z.reshape([out, inp]);
        }
        let b = x.dims()[0];
        let rows = numel(d) / inp;
        let mut y = x.reshape([b * rows, inp]).matmul(w.transpose());
        if let Some(bias) = &l.bias {
            y = y + bias.val().unsqueeze_dim(0);
        }
        if let Some(z) = self.unit_gates(l, mode) {
            y = y * z.unsqueeze_dim(0);
        }
        y.reshape([b, rows * out])
    }

    fn conv(
        &self,
        slot: usize,
        x: Tensor<B, 4>,
        opts: PaddedConvOptions<2>,
        mode: GateMode,
    ) -> Tensor<B, 4> {
        let l = &self.layers[slot];
        let mut w = l.conv.as_ref().expect("a conv layer").val();
        let wd = w.dims();
        if let Some(z) = self.weight_factor(l, mode, &wd) {
            w = w * z.reshape(wd);
        }
        let mut y = conv2d(x, w, l.bias.as_ref().map(|b| b.val()), opts);
        if let Some(z) = self.unit_gates(l, mode) {
            y = y * z.reshape([1, wd[0], 1, 1]);
        }
        y
    }

    /// Every layer's weight (its shape, row-major values) and bias with the deterministic
    /// gates folded in: closed gates are exact zeros.
    pub fn folded_layers(&self) -> Vec<FoldedLayer> {
        let mode = GateMode::Deterministic;
        self.layers
            .iter()
            .map(|l| {
                let (w, dims): (Tensor<B, 1>, Vec<usize>) = match (&l.linear, &l.conv) {
                    (Some(w), _) => {
                        let d = w.dims();
                        (w.val().reshape([d[0] * d[1]]), d.to_vec())
                    }
                    (_, Some(w)) => {
                        let d = w.dims();
                        (w.val().reshape([numel(&d)]), d.to_vec())
                    }
                    _ => unreachable!("a layer has a weight"),
                };
                let mut w = w;
                if let Some(z) = self.weight_factor(l, mode, &dims) {
                    w = w * z;
                }
                let unit = self.unit_gates(l, mode);
                if let Some(z) = &unit {
                    let per = numel(&dims) / dims[0];
                    let z = z.clone().reshape([dims[0], 1]).repeat_dim(1, per);
                    w = w * z.reshape([numel(&dims)]);
                }
                let bias = l.bias.as_ref().map(|b| {
                    to_vec(match &unit {
                        Some(z) => b.val() * z.clone(),
                        None => b.val(),
                    })
                });
                FoldedLayer {
                    dims,
                    weight: to_vec(w),
                    bias,
                }
            })
            .collect()
    }

    /// The deploy model with the deterministic gates folded into the trained weights
    /// (closed gates are exact zeros, stored sparse where that is smaller).
    ///
    /// # Errors
    /// The writer's refusal (it re-validates the model).
    pub fn to_deploy(&self) -> Result<Vec<u8>, tether_deploy::Error> {
        let aligned = AlignedBytes::from_slice(&self.graph.bytes);
        let model = Model::parse(&aligned)?;
        let mut replaced: std::collections::HashMap<usize, Vec<f32>> = Default::default();
        for (f, &(wt, bt)) in self.folded_layers().into_iter().zip(&self.graph.tensors) {
            replaced.insert(wt, f.weight);
            if let (Some(bt), Some(b)) = (bt, f.bias) {
                replaced.insert(bt, b);
            }
        }
        tether_deploy::rebuild(&model, |i| replaced.remove(&i))
    }
}

/// A layer's weight and bias with its gates folded in ([`GraphNet::folded_layers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedLayer {
    /// The weight's shape: `[out, in]` or `[oc, ic / groups, kh, kw]`.
    pub dims: Vec<usize>,
    /// The weight, row-major.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: Option<Vec<f32>>,
}

impl<B: Backend> crate::classifier::Classifier<B> for GraphNet<B> {
    /// The net without gates (or with its deterministic gates).
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x, GateMode::Deterministic)
    }
}

fn to_vec<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data converts to f32")
}

fn unary<B: Backend>(f: Unary, x: Tensor<B, 2>) -> Tensor<B, 2> {
    match f {
        Unary::Sigmoid => activation::sigmoid(x),
        Unary::Tanh => x.tanh(),
        Unary::Exp => x.exp(),
        Unary::Log => x.log(),
        Unary::Sqrt => x.sqrt(),
        Unary::Neg => x.neg(),
        Unary::Abs => x.abs(),
        Unary::Reciprocal => x.recip(),
        Unary::LeakyRelu(a) => activation::leaky_relu(x, f64::from(a)),
        Unary::Elu(a) => {
            let neg = (x.clone().exp() - 1.0) * a;
            let mask = x.clone().lower_equal_elem(0.0);
            x.mask_where(mask, neg)
        }
        Unary::HardSigmoid(a, b) => (x * a + b).clamp(0.0, 1.0),
        Unary::Softplus => activation::softplus(x, 1.0),
        Unary::Clip(lo, hi) => x.clamp(lo, hi),
        Unary::Floor => x.floor(),
        Unary::Ceil => x.ceil(),
        Unary::Identity => x,
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Erf => x.erf(),
        Unary::Gelu => activation::gelu(x),
        Unary::GeluTanh => activation::gelu_approximate(x),
        Unary::HardSwish => x.clone() * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Unary::Pow(p) => x.powf_scalar(p),
    }
}

/// `[batch or 1, dims padded to rank 4]`.
fn rank5<B: Backend>(x: Tensor<B, 2>, d: &[usize]) -> Tensor<B, 5> {
    let b = x.dims()[0];
    let f = pad_rank(d, 4);
    x.reshape([b, f[0], f[1], f[2], f[3]])
}

fn binary<B: Backend>(
    op: Binary,
    a: Tensor<B, 2>,
    da: &[usize],
    b: Tensor<B, 2>,
    db: &[usize],
    out: &[usize],
) -> Tensor<B, 2> {
    let (a, b) = (rank5(a, da), rank5(b, db));
    let y = match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Pow => a.powf(b),
        Binary::Max => a.max_pair(b),
        Binary::Min => a.min_pair(b),
        Binary::PRelu => {
            let scaled = a.clone() * b;
            let shape = scaled.dims();
            let a = a.expand(shape);
            let mask = a.clone().lower_elem(0.0);
            a.mask_where(mask, scaled)
        }
        Binary::Equal
        | Binary::Greater
        | Binary::Less
        | Binary::GreaterOrEqual
        | Binary::LessOrEqual => unreachable!("refused when the net is built"),
    };
    let n = y.dims()[0];
    y.reshape([n, numel(out)])
}

fn transpose<B: Backend>(x: Tensor<B, 2>, d: &[usize], perm: &[usize]) -> Tensor<B, 2> {
    let b = x.dims()[0];
    let n = numel(d);
    // Axis 0 is the batch; the per-sample axes move behind it.
    let p = |k: usize| perm.iter().map(|&a| a + 1).take(k);
    match d.len() {
        1 => x,
        2 => {
            let x: Tensor<B, 3> = x.reshape([b, d[0], d[1]]);
            let mut q = [0usize; 3];
            q[1..].iter_mut().zip(p(2)).for_each(|(o, a)| *o = a);
            x.permute(q).reshape([b, n])
        }
        3 => {
            let x: Tensor<B, 4> = x.reshape([b, d[0], d[1], d[2]]);
            let mut q = [0usize; 4];
            q[1..].iter_mut().zip(p(3)).for_each(|(o, a)| *o = a);
            x.permute(q).reshape([b, n])
        }
        _ => {
            let x: Tensor<B, 5> = x.reshape([b, d[0], d[1], d[2], d[3]]);
            let mut q = [0usize; 5];
            q[1..].iter_mut().zip(p(4)).for_each(|(o, a)| *o = a);
            x.permute(q).reshape([b, n])
        }
    }
}

fn reduce<B: Backend>(
    kind: Reduce,
    axes: u8,
    x: Tensor<B, 2>,
    d: &[usize],
    out: &[usize],
) -> Tensor<B, 2> {
    let mut x = rank5(x, d);
    let off = 4 - d.len();
    for i in 0..d.len() {
        if axes & (1 << i) != 0 {
            let dim = 1 + off + i;
            x = match kind {
                Reduce::Mean => x.mean_dim(dim),
                Reduce::Sum => x.sum_dim(dim),
                Reduce::Max => x.max_dim(dim),
                Reduce::Min => x.min_dim(dim),
            };
        }
    }
    let b = x.dims()[0];
    x.reshape([b, numel(out)])
}

impl<B: Backend> GatedNetwork<B> for GraphNet<B> {
    fn forward_gated(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        self.forward(x, mode)
    }

    fn layer_gates(&self) -> Vec<LayerGates<B>> {
        self.layers
            .iter()
            .filter_map(|l| {
                let g = l.gates.as_ref()?;
                let weights = l
                    .linear
                    .as_ref()
                    .map(|w| numel(&w.dims()))
                    .or_else(|| l.conv.as_ref().map(|w| numel(&w.dims())))
                    .expect("a layer has a weight");
                let per = match l.structure {
                    GateStructure::Weight => 1,
                    GateStructure::Block1x4 => BLOCK_INPUTS,
                    GateStructure::OutputUnit => weights / g.len() + usize::from(l.bias.is_some()),
                };
                Some(g.layer_gates(per))
            })
            .collect()
    }

    fn gate_ids(&self) -> Vec<ParamId> {
        self.layers
            .iter()
            .filter_map(|l| l.gates.as_ref().map(|g| g.log_alpha.id))
            .collect()
    }
}
