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
//! BatchNorm: PyTorch's default export (either exporter, eval mode) folds every
//! BatchNorm that follows a convolution into the convolution's weight and bias, so the
//! file has none; an export without that folding has BatchNormalization nodes, which
//! the importer turns into a per-channel `Mul` and `Add` by constants.
//! [`GraphNet::train_batch_norms`] gives the net trainable [`BatchNorm`]s again (batch
//! statistics in training, running statistics in evaluation, as PyTorch's
//! `model.train()` fine-tuning does): one in place of each such `Mul`/`Add` pair that
//! follows a layer, and with [`NormSites::AfterConvs`] one after every convolution
//! (with a bias) not already followed by one, which is where the default export's were
//! folded. Each is calibrated on a batch so the net starts equal to the imported one,
//! and [`GraphNet::to_deploy`] folds it back (into the two constants, or into the
//! convolution's weight and bias): the exported graph has the imported graph's ops.
//! Frozen, the folded statistics no longer match a convolution's output once its
//! weights are pruned, and a pretrained network's pruning collapses (BENCHMARKS.md,
//! own-model section).
//!
//! Values are carried flattened, `[batch, numel]` (a constant `[1, numel]`), and reshaped
//! to the rank an op needs: per-sample shapes are known when the net is built, so no
//! shape is computed per step.

use burn::module::{Module, Param, ParamId, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, max_pool2d};

use crate::conv::conv2d;
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
    /// The node's part in a folded BatchNorm ([`NormSite`]).
    norm: Option<NormRole>,
}

/// A node's part in a BatchNorm site ([`NormSite`]).
#[derive(Clone, Copy, Debug)]
enum NormRole {
    /// The `Mul` of an affine site: computes the whole BatchNorm of site `.0`.
    Apply(usize),
    /// The `Add` of an affine site: passes its input `.0` (the `Apply`'s output) through.
    Pass(usize),
    /// A convolution followed by the BatchNorm of site `.0`.
    AfterLayer(usize),
}

/// Which BatchNorms [`GraphNet::train_batch_norms`] trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NormSites {
    /// None: every folded BatchNorm stays a frozen affine map.
    None,
    /// The file's BatchNormalization nodes that follow a layer (an export without
    /// BatchNorm folding).
    Imported,
    /// Those, and one after every convolution with a bias that none follows: where
    /// PyTorch's default export folded them.
    #[default]
    AfterConvs,
}

/// Where a trainable BatchNorm sits and what it starts as.
#[derive(Clone, Debug)]
enum NormKind {
    /// A BatchNorm the importer made `Mul(x, scale)` then `Add(., shift)`, by
    /// per-channel constants, right after a Linear or Conv layer.
    Affine {
        /// The const slots of the scale and the shift.
        consts: [usize; 2],
        /// The deploy model's tensors of the scale and the shift.
        tensors: [usize; 2],
    },
    /// After layer `.0`, a convolution whose weight and bias hold a folded BatchNorm
    /// (it starts as the identity).
    AfterConv(usize),
}

/// A trainable BatchNorm's place in the graph.
#[derive(Clone, Debug)]
struct NormSite {
    /// The per-sample shape of the normalised value.
    dims: Vec<usize>,
    /// Its channel axis; the axes before it are batch axes too (a static-shape export's).
    axis: usize,
    kind: NormKind,
}

impl NormSite {
    /// `[lead, channels, rest]`: the normalised value as BatchNorm sees it, per sample.
    fn split(&self) -> [usize; 3] {
        let d = &self.dims;
        [
            numel(&d[..self.axis]),
            d[self.axis],
            numel(&d[self.axis + 1..]),
        ]
    }

    fn channels(&self) -> usize {
        self.dims[self.axis]
    }

    /// `y = BatchNorm(x)` for `x` `[batch, numel(dims)]`.
    fn apply<B: Backend>(&self, bn: &BatchNorm<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, n] = x.dims();
        let [lead, c, rest] = self.split();
        bn.forward(x.reshape([b * lead, c, rest])).reshape([b, n])
    }

    /// The per-channel mean and (biased) variance of `x`, `[batch, numel(dims)]`, over
    /// the batch and the other axes: BatchNorm's batch statistics.
    fn stats<B: Backend>(&self, x: Tensor<B, 2>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let b = x.dims()[0];
        let [lead, c, rest] = self.split();
        let per_channel = x
            .detach()
            .reshape([b * lead, c, rest])
            .swap_dims(0, 1)
            .reshape([c, b * lead * rest]);
        let mean = per_channel.clone().mean_dim(1);
        let var = (per_channel - mean.clone()).square().mean_dim(1);
        (mean.reshape([c]), var.reshape([c]))
    }
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
    /// The folded BatchNorms.
    norm_sites: Vec<NormSite>,
}

/// How a forward pass treats the folded BatchNorms.
enum NormPass<'a, B: Backend> {
    /// The trained [`BatchNorm`]s when there are, else the folded constants.
    Auto,
    /// The folded constants, no gates, and each site's batch mean and variance of its
    /// input collected ([`GraphNet::train_batch_norms`]).
    Calibrate(&'a mut Vec<Option<(Tensor<B, 1>, Tensor<B, 1>)>>),
}

/// A trainable, gateable network interpreting a `tether-deploy` model graph.
#[derive(Module, Debug)]
pub struct GraphNet<B: Backend> {
    /// The Linear and Conv layers, in graph order.
    pub layers: Vec<GraphLayer<B>>,
    /// The graph's constants (flattened), frozen.
    pub consts: Vec<Param<Tensor<B, 1>>>,
    /// The trained BatchNorms, one per site, or none (the folded BatchNorms stay
    /// frozen): see [`GraphNet::train_batch_norms`].
    pub norms: Vec<BatchNorm<B>>,
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
        // The last layer computes the scores: removing one of its output units would
        // remove a class, so per-unit gating gates its weights instead (as GatedMlp).
        let last_layer = model
            .nodes
            .iter()
            .rposition(|n| matches!(n.op, Op::Linear { .. } | Op::Conv2d { .. }));
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
                        Some(GateStructure::OutputUnit) if Some(k) == last_layer => {
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
                norm: None,
            });
        }
        let shapes: Vec<Vec<usize>> = model.shapes.iter().map(|d| d.as_slice().to_vec()).collect();
        let norm_sites = find_norm_sites(&mut nodes, &shapes, model.output);
        Ok(Self {
            layers,
            consts,
            norms: Vec::new(),
            graph: Graph {
                bytes: bytes.to_vec(),
                nodes,
                shapes,
                output: model.output,
                tensors,
                norm_sites,
            },
        })
    }

    /// How many BatchNorms [`Self::train_batch_norms`] would train with `sites`.
    pub fn batch_norm_sites(&self, sites: NormSites) -> usize {
        match sites {
            NormSites::None => 0,
            NormSites::Imported => self.graph.norm_sites.len(),
            NormSites::AfterConvs => self.graph.norm_sites.len() + self.bare_convs().len(),
        }
    }

    /// The convolutions with a bias that no BatchNorm site follows: `(node, layer)`.
    fn bare_convs(&self) -> Vec<(usize, usize)> {
        let g = &self.graph;
        g.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.op, Op::Conv2d { bias: Some(_), .. }))
            .filter(|(_, n)| {
                !g.nodes.iter().any(|m| {
                    matches!(m.norm, Some(NormRole::Apply(_)))
                        && m.inputs.first() == Some(&n.output)
                })
            })
            .map(|(k, n)| (k, n.slot))
            .collect()
    }

    /// Gives the net trainable [`BatchNorm`]s at `sites` (momentum `momentum`, epsilon
    /// 1e-5; PyTorch's defaults are 0.1 and 1e-5). Call it once, before training (and
    /// before loading a record saved from a net that had them).
    ///
    /// A folded BatchNorm is a per-channel `x * scale + shift`: the import kept only
    /// `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale` (for one
    /// folded into a convolution, the convolution computes `x * scale + shift` and the
    /// site starts from `scale = 1`, `shift = 0`). So the statistics are measured: on
    /// `x`, a batch of inputs, through the net as imported (no gates), each site's batch
    /// mean `m` and variance `v` of its input become its running statistics, and
    /// `gamma = scale * sqrt(v + eps)`, `beta = shift + m * scale`, so that in evaluation
    /// `gamma (x - m) / sqrt(v + eps) + beta = x * scale + shift`: the net computes what
    /// it computed before, and in training it normalises by the batch.
    #[must_use]
    pub fn train_batch_norms(mut self, x: Tensor<B, 2>, momentum: f64, sites: NormSites) -> Self {
        match sites {
            NormSites::None => self.graph.norm_sites.clear(),
            NormSites::Imported => {}
            NormSites::AfterConvs => {
                for (k, layer) in self.bare_convs() {
                    let s = self.graph.norm_sites.len();
                    let node = &mut self.graph.nodes[k];
                    node.norm = Some(NormRole::AfterLayer(s));
                    let dims = self.graph.shapes[node.output].clone();
                    self.graph.norm_sites.push(NormSite {
                        axis: dims.len() - 3,
                        dims,
                        kind: NormKind::AfterConv(layer),
                    });
                }
            }
        }
        if sites == NormSites::None {
            for n in &mut self.graph.nodes {
                n.norm = None;
            }
        }
        let sites = self.graph.norm_sites.len();
        if sites == 0 {
            return self;
        }
        let device = x.device();
        let mut stats = vec![None; sites];
        drop(self.forward_pass(x, GateMode::Deterministic, NormPass::Calibrate(&mut stats)));
        let eps = 1e-5;
        self.norms = self
            .graph
            .norm_sites
            .iter()
            .zip(stats)
            .map(|(site, s)| {
                let (mean, var) = s.expect("every site is computed");
                let channels = site.channels();
                let [scale, shift] = match site.kind {
                    NormKind::Affine { consts, .. } => {
                        consts.map(|c| self.consts[c].val().detach())
                    }
                    NormKind::AfterConv(_) => [
                        Tensor::ones([channels], &device),
                        Tensor::zeros([channels], &device),
                    ],
                };
                let mut bn = BatchNormConfig::new(channels)
                    .with_momentum(momentum)
                    .with_epsilon(eps)
                    .init(&device);
                let std = var.clone().add_scalar(eps).sqrt();
                bn.gamma = Param::from_tensor(scale.clone() * std);
                bn.beta = Param::from_tensor(shift + mean.clone() * scale);
                bn.running_mean = RunningState::new(mean);
                bn.running_var = RunningState::new(var);
                bn
            })
            .collect();
        self
    }

    /// Site `s`'s trained BatchNorm in evaluation as `x * scale + shift`, from its
    /// running statistics.
    fn norm_affine(&self, s: usize) -> [Tensor<B, 1>; 2] {
        let bn = &self.norms[s];
        let scale = bn.gamma.val() / bn.running_var.value().add_scalar(bn.epsilon).sqrt();
        let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
        [scale, shift]
    }

    /// The trained BatchNorms of affine sites folded back into their constants (deploy
    /// tensor index, values); those after a convolution are in [`Self::folded_layers`].
    fn folded_norms(&self) -> Vec<(usize, Vec<f32>)> {
        let mut out = Vec::new();
        if self.norms.is_empty() {
            return out;
        }
        for (s, site) in self.graph.norm_sites.iter().enumerate() {
            if let NormKind::Affine { tensors, .. } = site.kind {
                let [scale, shift] = self.norm_affine(s);
                out.push((tensors[0], to_vec(scale)));
                out.push((tensors[1], to_vec(shift)));
            }
        }
        out
    }

    /// The trained BatchNorm after layer `layer`, if any, as `[scale, shift]`.
    fn layer_norm_affine(&self, layer: usize) -> Option<[Tensor<B, 1>; 2]> {
        if self.norms.is_empty() {
            return None;
        }
        let s = self
            .graph
            .norm_sites
            .iter()
            .position(|site| matches!(site.kind, NormKind::AfterConv(l) if l == layer))?;
        Some(self.norm_affine(s))
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
        self.forward_pass(x, mode, NormPass::Auto)
    }

    fn forward_pass(
        &self,
        x: Tensor<B, 2>,
        mode: GateMode,
        mut norms: NormPass<B>,
    ) -> Tensor<B, 2> {
        let g = &self.graph;
        let trained = matches!(norms, NormPass::Auto) && !self.norms.is_empty();
        // Calibration measures the imported net: no gates.
        let gated = matches!(norms, NormPass::Auto);
        let mut vals: Vec<Option<Tensor<B, 2>>> = vec![None; g.shapes.len()];
        vals[0] = Some(x);
        for node in &g.nodes {
            let get = |i: usize| vals[node.inputs[i]].clone().expect("computed before");
            let dims = |i: usize| g.shapes[node.inputs[i]].as_slice();
            let out = g.shapes[node.output].as_slice();
            match (node.norm, &mut norms) {
                (Some(NormRole::Apply(s)), _) if trained => {
                    vals[node.output] = Some(g.norm_sites[s].apply(&self.norms[s], get(0)));
                    continue;
                }
                (Some(NormRole::Pass(i)), _) if trained => {
                    vals[node.output] = Some(get(i));
                    continue;
                }
                (Some(NormRole::Apply(s)), NormPass::Calibrate(stats)) => {
                    stats[s] = Some(g.norm_sites[s].stats(get(0)));
                }
                _ => {}
            }
            let mode = gated.then_some(mode);
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
                    let y = self.conv(node.slot, x, opts, mode).reshape([b, numel(out)]);
                    match (node.norm, &mut norms) {
                        (Some(NormRole::AfterLayer(s)), _) if trained => {
                            g.norm_sites[s].apply(&self.norms[s], y)
                        }
                        (Some(NormRole::AfterLayer(s)), NormPass::Calibrate(stats)) => {
                            stats[s] = Some(g.norm_sites[s].stats(y.clone()));
                            y
                        }
                        _ => y,
                    }
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
                    let y = if max && pad == [0, 0] && p.dilation == [1, 1] && !p.ceil {
                        crate::conv::max_pool2d(x, p.kernel, p.stride)
                    } else if max {
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
        mode: Option<GateMode>,
        dims: &[usize],
    ) -> Option<Tensor<B, 1>> {
        let z = mode.and_then(|mode| self.gate_factor(l, mode, dims));
        match (z, &l.mask) {
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

    /// Layer `slot` as a linear layer; `mode` `None` leaves the gates out.
    fn linear(
        &self,
        slot: usize,
        x: Tensor<B, 2>,
        d: &[usize],
        mode: Option<GateMode>,
    ) -> Tensor<B, 2> {
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
        if let Some(z) = mode.and_then(|mode| self.unit_gates(l, mode)) {
            y = y * z.unsqueeze_dim(0);
        }
        y.reshape([b, rows * out])
    }

    fn conv(
        &self,
        slot: usize,
        x: Tensor<B, 4>,
        opts: PaddedConvOptions<2>,
        mode: Option<GateMode>,
    ) -> Tensor<B, 4> {
        let l = &self.layers[slot];
        let mut w = l.conv.as_ref().expect("a conv layer").val();
        let wd = w.dims();
        if let Some(z) = self.weight_factor(l, mode, &wd) {
            w = w * z.reshape(wd);
        }
        let mut y = conv2d(x, w, l.bias.as_ref().map(|b| b.val()), opts);
        if let Some(z) = mode.and_then(|mode| self.unit_gates(l, mode)) {
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
            .enumerate()
            .map(|(i, l)| {
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
                if let Some(z) = self.weight_factor(l, Some(mode), &dims) {
                    w = w * z;
                }
                let unit = self.unit_gates(l, mode);
                if let Some(z) = &unit {
                    let per = numel(&dims) / dims[0];
                    let z = z.clone().reshape([dims[0], 1]).repeat_dim(1, per);
                    w = w * z.reshape([numel(&dims)]);
                }
                let mut bias = l.bias.as_ref().map(|b| match &unit {
                    Some(z) => b.val() * z.clone(),
                    None => b.val(),
                });
                if let Some([scale, shift]) = self.layer_norm_affine(i) {
                    // BatchNorm(conv(x)) in evaluation is conv(x) * scale + shift, per
                    // output channel: a convolution with scaled weights and bias.
                    let per = numel(&dims) / dims[0];
                    w = w * scale
                        .clone()
                        .reshape([dims[0], 1])
                        .repeat_dim(1, per)
                        .reshape([numel(&dims)]);
                    bias = bias.map(|b| b * scale + shift);
                }
                let bias = bias.map(to_vec);
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
        replaced.extend(self.folded_norms());
        tether_deploy::rebuild(&model, |i| replaced.remove(&i))
    }
}

/// Marks the folded BatchNorms among `nodes` (see [`NormSite`]): a `Mul` of a Linear or
/// Conv layer's output by a constant of shape `[C, 1, ..]` (C the extent of the value's
/// channel axis, the const right-aligned to the value as broadcasting does; the
/// importer's channel axis is the first per-sample one, or the second of a static-shape
/// export), whose only consumer is an `Add` of a constant of the same shape. Other
/// affine pairs (a LayerNorm's, a user's own) are not after a layer and stay as they
/// are.
fn find_norm_sites(nodes: &mut [GraphNode], shapes: &[Vec<usize>], output: usize) -> Vec<NormSite> {
    let producer = |v: usize| nodes.iter().position(|n| n.output == v);
    let consumers = |v: usize| nodes.iter().filter(|n| n.inputs.contains(&v)).count();
    // The channel axis of `d` if constant `c` is per channel along one.
    let per_channel = |c: usize, d: &[usize]| {
        let cd = &shapes[nodes[c].output];
        let axis = d.len().checked_sub(cd.len())?;
        let ok = matches!(nodes[c].op, Op::Const { .. })
            && axis <= 1
            && !cd.is_empty()
            && cd[0] == d[axis]
            && cd.iter().skip(1).all(|&e| e == 1);
        ok.then_some(axis)
    };
    let const_tensor = |c: usize| match nodes[c].op {
        Op::Const { tensor } => tensor,
        _ => unreachable!("checked to be a constant"),
    };
    let mut marks = Vec::new();
    let mut sites = Vec::new();
    for (m, node) in nodes.iter().enumerate() {
        if !matches!(node.op, Op::Binary(Binary::Mul)) || node.inputs.len() != 2 {
            continue;
        }
        let (x, d) = (node.inputs[0], &shapes[node.inputs[0]]);
        let Some(scale) = producer(node.inputs[1]) else {
            continue;
        };
        let after_layer = producer(x)
            .is_some_and(|p| matches!(nodes[p].op, Op::Linear { .. } | Op::Conv2d { .. }));
        let Some(axis) = per_channel(scale, d) else {
            continue;
        };
        if !after_layer || node.output == output {
            continue;
        }
        if consumers(node.output) != 1 {
            continue;
        }
        let Some(a) = nodes.iter().position(|n| n.inputs.contains(&node.output)) else {
            continue;
        };
        let add = &nodes[a];
        if !matches!(add.op, Op::Binary(Binary::Add)) || add.inputs.len() != 2 {
            continue;
        }
        let pass = usize::from(add.inputs[1] == node.output);
        let Some(shift) = producer(add.inputs[1 - pass]) else {
            continue;
        };
        if per_channel(shift, d) != Some(axis) {
            continue;
        }
        marks.push((m, a, pass, sites.len()));
        sites.push(NormSite {
            dims: d.clone(),
            axis,
            kind: NormKind::Affine {
                consts: [nodes[scale].slot, nodes[shift].slot],
                tensors: [const_tensor(scale), const_tensor(shift)],
            },
        });
    }
    for (m, a, pass, s) in marks {
        nodes[m].norm = Some(NormRole::Apply(s));
        nodes[a].norm = Some(NormRole::Pass(pass));
    }
    sites
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
