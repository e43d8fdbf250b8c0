//! [`Plan`] and [`Plan::new`]: the arena laid out, each layer's kernel chosen and its
//! weights converted, the memory bounded.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::arena::Arena;
use super::layer::{Batch1, Layer, LayerReport, Matrix, dense_view, group_layer, layer, nonzeros};
use super::options::{
    PlanOptions, SPARSE_BREAK_EVEN_CHAIN, SPARSE_BREAK_EVEN_CONV, SPARSE_BREAK_EVEN_GEMM,
    SPARSE_BREAK_EVEN_GEMV,
};
use super::step::{Exec, Step, transposed_chains};
use crate::error::Error;
use crate::format::{Model, Op, Unary};
use crate::kernels::implicit_conv::{self, Act};
use crate::kernels::{
    conv, conv::ConvShape, direct_conv, packed, portable_conv, sell, sparse_conv,
};

/// A model ready to run.
pub struct Plan<'a> {
    pub(super) model: Model<'a>,
    pub(super) layers: Vec<Layer<'a>>,
    pub(super) layer_ops: Vec<usize>,
    pub(super) execs: Vec<Exec<'a>>,
    /// Per value: start in the arena and floats per sample.
    pub(super) offsets: Vec<usize>,
    pub(super) sizes: Vec<usize>,
    pub(super) arena: Vec<f32>,
    pub(super) scratch: Vec<f32>,
    pub(super) batch: usize,
    /// Bytes the plan allocated: activations, scratch, converted weights.
    pub(super) ram_bytes: usize,
}

impl<'a> Plan<'a> {
    /// Plans `model` for batches of up to `options.batch` samples.
    ///
    /// With [`KernelChoice::Auto`](super::KernelChoice::Auto), a weight stored as CSR (the
    /// smaller file below a density of about 2/3) but denser than the sparse kernel's
    /// break-even runs dense
    /// from a dense copy: the sparse kernel there is several times slower (MNIST
    /// LeNet-300-100 pruned to 0.51: 227 us against 49 us dense at batch 1). The copy
    /// counts against `options.max_bytes`; where the plan would not fit with it, the CSR
    /// weights stay sparse ([`PlanOptions::expand_csr`] turns this off).
    pub fn new(model: Model<'a>, options: &PlanOptions) -> Result<Self, Error> {
        if options.kernels == super::KernelChoice::Auto && options.expand_csr {
            match Self::build(model.clone(), options, true) {
                Err(Error::TooLarge { .. }) => {}
                built => return built,
            }
        }
        Self::build(model, options, false)
    }

    /// [`Plan::new`]; `expand_csr`: run CSR weights above the break-even dense.
    fn build(model: Model<'a>, options: &PlanOptions, expand_csr: bool) -> Result<Self, Error> {
        if options.batch == 0 {
            return Err(Error::BadOptions("batch must be at least 1"));
        }
        let batch = options.batch;
        // Weight copies for this CPU's vector kernels, unless the plan is to take what a
        // microcontroller's would (`PlanOptions::vector_kernels`).
        let vector = options.vector_kernels;
        let sizes: Vec<usize> = model.shapes.iter().map(|d| d.numel()).collect();
        let too_large = Error::TooLarge {
            bytes: usize::MAX,
            limit: options.max_bytes,
        };
        // Last reader of every value (the output is read at the end).
        let mut last_use: Vec<usize> = (0..sizes.len()).collect();
        for (i, n) in model.nodes.iter().enumerate() {
            for &v in n.inputs() {
                last_use[v] = i + 1;
            }
        }
        for &v in &model.outputs {
            last_use[v] = usize::MAX;
        }

        let mut arena = Arena {
            live: Vec::new(),
            end: 0,
        };
        let mut offsets = alloc::vec![0usize; sizes.len()];
        // A constant has one copy; a batched value one per sample.
        let floats_of = |v: usize| {
            if model.batched[v] {
                sizes[v].checked_mul(batch)
            } else {
                Some(sizes[v])
            }
        };
        offsets[0] = arena.place(floats_of(0).ok_or(too_large.clone())?, 0);
        let mut layers = Vec::new();
        let mut layer_ops = Vec::new();
        let mut execs = Vec::with_capacity(model.nodes.len());
        let mut scratch = 0usize;
        // Per value: the output of a sparse linear layer on a batch, or of an element-wise
        // op on one (a value the sparse kernels can keep transposed, `transposed_chains`).
        let mut chain = alloc::vec![false; sizes.len()];
        for (i, node) in model.nodes.iter().enumerate() {
            if matches!(node.op, Op::Relu | Op::Sine { .. } | Op::Unary(_))
                && node.inputs().first().is_some_and(|&v| chain[v])
            {
                chain[node.output] = true;
            }
            let x = node.inputs().first().map(|&v| model.shapes[v]);
            let xs = x.as_ref().map_or(&[][..], |x| x.as_slice());
            let lead_of = |k: usize| xs[..xs.len() - k].iter().product::<usize>();
            // Samples of the input that one op call sees.
            let rows_in_batch = if node.inputs().first().is_some_and(|&v| model.batched[v]) {
                batch
            } else {
                1
            };
            let step = match node.op {
                Op::Linear { weight, bias } => {
                    let lead = lead_of(1);
                    let rows = lead.checked_mul(rows_in_batch).ok_or(too_large.clone())?;
                    let break_even = if rows == 1 {
                        SPARSE_BREAK_EVEN_GEMV
                    } else if lead == 1 && node.inputs().first().is_some_and(|&v| chain[v]) {
                        SPARSE_BREAK_EVEN_CHAIN
                    } else {
                        SPARSE_BREAK_EVEN_GEMM
                    };
                    let mut l = layer(
                        &model,
                        weight,
                        bias,
                        options.kernels,
                        break_even,
                        expand_csr,
                    );
                    if rows > 1
                        && vector
                        && packed::available()
                        && let Matrix::Dense(w) = &l.weight
                    {
                        l.weight = Matrix::Packed(packed::pack(w, l.rows, l.cols));
                    }
                    if lead == 1
                        && vector
                        && let Matrix::Sparse(s) = &l.weight
                    {
                        l.batch1 = Batch1::choose(&s.view());
                    }
                    layers.push(l);
                    layer_ops.push(i);
                    let l = layers.last().expect("pushed");
                    chain[node.output] =
                        matches!(l.weight, Matrix::Sparse(_)) && rows > 1 && lead == 1;
                    if matches!(l.weight, Matrix::Sparse(_)) && rows > 1 {
                        scratch = scratch.max(l.cols.checked_mul(rows).ok_or(too_large.clone())?);
                    }
                    Step::Linear {
                        layer: layers.len() - 1,
                        lead,
                        in_t: false,
                        out_t: false,
                    }
                }
                Op::Conv2d { weight, bias, geom } => {
                    let wd = model.tensors[weight].dims.as_slice();
                    let r = xs.len();
                    let groups = geom.group;
                    let first_layer = layers.len();
                    let shape = ConvShape {
                        c: xs[r - 3] / groups,
                        h: xs[r - 2],
                        w: xs[r - 1],
                        k: [wd[2], wd[3]],
                        stride: geom.stride,
                        pads: geom.pads,
                        dilation: geom.dilation,
                    };
                    let images = lead_of(3)
                        .checked_mul(rows_in_batch)
                        .ok_or(too_large.clone())?;
                    if groups == 1 {
                        // Where the sparse kernel needs im2col (padding, a stride) and the
                        // dense one does not, dense wins down to a lower density.
                        let sparse_reads_input = shape.is_pointwise()
                            || (shape.stride == [1, 1]
                                && shape.pads == [0; 4]
                                && shape.dilation == [1, 1]
                                && vector
                                && sell::available());
                        let break_even = if vector && sparse_conv::available() {
                            // Both vector kernels run: the one of fewer estimated cycles.
                            let (m, t) = (wd[0], &model.tensors[weight]);
                            let dense = implicit_conv::mode_cycles(&shape, m, images).1;
                            let sparse = sparse_conv::cycles(&shape, m, nonzeros(t), images);
                            if sparse < dense { 2.0 } else { -1.0 }
                        } else if vector && implicit_conv::available() && !sparse_reads_input {
                            SPARSE_BREAK_EVEN_CONV
                        } else {
                            SPARSE_BREAK_EVEN_GEMM
                        };
                        layers.push(layer(
                            &model,
                            weight,
                            bias,
                            options.kernels,
                            break_even,
                            expand_csr,
                        ));
                        layer_ops.push(i);
                    } else {
                        let per = wd[0] / groups;
                        // Depthwise: the direct vector kernel (9 multiply-adds an output for
                        // a 3x3 kernel, no patch matrix) is faster than the sparse product
                        // over im2col at any density, and needs every group dense.
                        let break_even = if wd[1] == 1 && vector && packed::available() {
                            -1.0
                        } else {
                            SPARSE_BREAK_EVEN_GEMM
                        };
                        for g in 0..groups {
                            layers.push(group_layer(
                                &model,
                                weight,
                                bias,
                                g * per..(g + 1) * per,
                                options.kernels,
                                break_even,
                            ));
                            layer_ops.push(i);
                        }
                    }
                    // The portable patch-free kernel where RAM is what counts: every group
                    // that is not depthwise-dense (the depthwise kernels read no patches).
                    let depthwise_dense = shape.c == 1
                        && groups > 1
                        && layers[first_layer..]
                            .iter()
                            .all(|l| matches!(l.weight, Matrix::Dense(_)));
                    let patch_free = portable_conv::preferred(vector)
                        && !shape.is_pointwise()
                        && !depthwise_dense;
                    if groups == 1
                        && vector
                        && let Matrix::Sparse(s) = &layers[first_layer].weight
                    {
                        let planes = sparse_conv::SparseConv::new(&s.view(), &shape, images);
                        if let Some(p) = &planes {
                            scratch = scratch.max(p.scratch());
                        }
                        layers[first_layer].planes = planes;
                    }
                    if vector && sell::available() && !patch_free {
                        for l in &mut layers[first_layer..] {
                            if let (Matrix::Sparse(s), None) = (&l.weight, &l.planes) {
                                l.direct = direct_conv::DirectConv::new(&s.view(), &shape);
                            }
                        }
                    }
                    let mut implicit = None;
                    if groups == 1
                        && vector
                        && implicit_conv::available()
                        && let Matrix::Dense(w) = &layers[first_layer].weight
                    {
                        let l = &layers[first_layer];
                        let mode = implicit_conv::mode(&shape, l.rows, images);
                        let p = implicit_conv::pack(w, l.rows, l.cols, mode);
                        layers[first_layer].weight = Matrix::Packed(p);
                        scratch = scratch.max(implicit_conv::scratch(&shape, mode, images));
                        implicit = Some(mode);
                    } else if !shape.is_pointwise()
                        && !patch_free
                        && layers[first_layer].planes.is_none()
                    {
                        let (oh, ow) = shape.out();
                        let patch = shape
                            .patch()
                            .checked_mul(oh * ow)
                            .ok_or(too_large.clone())?;
                        scratch = scratch.max(patch);
                    }
                    if shape.c == 1 && groups > 1 {
                        scratch = scratch.max(conv::depthwise_scratch(&shape));
                        scratch = scratch.max(crate::kernels::depthwise_choice::scratch(&shape));
                    }
                    Step::Conv {
                        first_layer,
                        groups,
                        shape,
                        lead: lead_of(3),
                        act: Act::None,
                        implicit,
                        patch_free,
                        residual: false,
                    }
                }
                Op::MaxPool2d(geom) | Op::AvgPool2d(geom) => {
                    let r = xs.len();
                    let (c, h, w) = (lead_of(2), xs[r - 2], xs[r - 1]);
                    if matches!(node.op, Op::MaxPool2d(_)) {
                        Step::MaxPool { c, h, w, geom }
                    } else {
                        Step::AvgPool { c, h, w, geom }
                    }
                }
                Op::Flatten | Op::Reshape(_) | Op::Unary(Unary::Identity) => Step::Copy,
                Op::Relu => Step::Relu,
                Op::Sine { w0 } => Step::Sine(w0),
                Op::Unary(f) => Step::Unary(f),
                Op::Softmax { axis, end } => {
                    let (a, e) = if (axis, end) == (0, 0) {
                        (xs.len() - 1, xs.len())
                    } else {
                        (axis, end)
                    };
                    Step::Softmax {
                        outer: xs[..a].iter().product(),
                        n: xs[a..e].iter().product(),
                        inner: xs[e..].iter().product(),
                    }
                }
                Op::Binary(op) => Step::Binary {
                    op,
                    a: model.shapes[node.inputs[0]],
                    b: model.shapes[node.inputs[1]],
                    out: model.shapes[node.output],
                },
                Op::MatMul => Step::MatMul {
                    a: model.shapes[node.inputs[0]],
                    b: model.shapes[node.inputs[1]],
                },
                Op::Transpose { perm, .. } => Step::Transpose {
                    dims: model.shapes[node.inputs[0]],
                    perm,
                },
                Op::Concat { axis } => Step::Concat { axis },
                Op::Reduce { kind, axes } => Step::Reduce {
                    kind,
                    dims: model.shapes[node.inputs[0]],
                    axes,
                },
                Op::Pad(geom) => Step::Pad {
                    dims: model.shapes[node.inputs[0]],
                    geom,
                },
                Op::Resize(geom) => Step::Resize {
                    dims: model.shapes[node.inputs[0]],
                    geom,
                },
                Op::ConvTranspose2d { weight, bias, geom } => {
                    use crate::kernels::conv_transpose as ct;
                    let wd = model.tensors[weight].dims.as_slice();
                    let r = xs.len();
                    let out = model.shapes[node.output].as_slice();
                    let shape = ct::DeconvShape {
                        c_in: xs[r - 3],
                        oc_per_group: wd[1],
                        h: xs[r - 2],
                        w: xs[r - 1],
                        k: [wd[2], wd[3]],
                        out: [out[r - 2], out[r - 1]],
                        geom,
                    };
                    // The weight as the per-group matrices the product reads (a copy).
                    let mut wt = alloc::vec![0.0; model.tensors[weight].dims.numel()];
                    ct::transpose_weight(&dense_view(&model.tensors[weight]), &shape, &mut wt);
                    scratch = scratch.max(ct::gemm_scratch(&shape));
                    Step::ConvTranspose {
                        weight: Cow::Owned(wt),
                        bias: bias.map(|b| dense_view(&model.tensors[b])),
                        shape,
                        lead: lead_of(3),
                    }
                }
                Op::Where => Step::Where {
                    c: model.shapes[node.inputs[0]],
                    a: model.shapes[node.inputs[1]],
                    b: model.shapes[node.inputs[2]],
                    out: model.shapes[node.output],
                },
                Op::Output { .. } => Step::Copy,
                Op::Const { tensor } => Step::Const(dense_view(&model.tensors[tensor])),
                Op::Input { index, .. } => Step::Input(index),
                Op::MeshFeatures(_) | Op::EmanConv { .. } | Op::Gate | Op::Scalars => {
                    return Err(Error::NeedsMesh);
                }
            };
            let out = node.output;
            if vector && let Some(r) = fused_residual(&model, node.inputs(), &execs, &last_use, i) {
                // The convolution before adds the other operand in its epilogue: its output
                // is this Add's, and the Add is not run.
                let last = execs.last_mut().expect("a convolution before");
                let v = last.output;
                if let Step::Conv { residual, .. } = &mut last.step {
                    *residual = true;
                }
                last.inputs[1] = r;
                last.n_inputs = 2;
                last.output = out;
                offsets[out] = offsets[v];
                for entry in &mut arena.live {
                    if entry.2 == v {
                        entry.2 = out;
                    }
                }
                for (v, &last) in last_use.iter().enumerate().take(out + 1) {
                    if last == i + 1 {
                        arena.free(v);
                    }
                }
                continue;
            }
            let fused = fused_activation(&step, node.inputs(), &execs, &last_use, i);
            if let Some(act) = fused {
                // The convolution before computes this activation on its tile: its output
                // is this op's, and this op is not run.
                let v = node.inputs()[0];
                if let Some(Exec {
                    step: Step::Conv { act: a, .. },
                    ..
                }) = execs.last_mut()
                {
                    *a = act;
                }
                offsets[out] = offsets[v];
                for entry in &mut arena.live {
                    if entry.2 == v {
                        entry.2 = out;
                    }
                }
            } else {
                offsets[out] = arena.place(floats_of(out).ok_or(too_large.clone())?, out);
            }
            // Values whose last reader is this op (and this op's output if nothing reads it).
            for (v, &last) in last_use.iter().enumerate().take(out + 1) {
                if last == i + 1 {
                    arena.free(v);
                }
            }
            if fused.is_some() {
                continue;
            }
            execs.push(Exec {
                step,
                node: i,
                inputs: node.inputs,
                n_inputs: node.n_inputs,
                output: out,
            });
        }
        transposed_chains(&mut execs, &layers, &model, batch);
        let weight_floats: usize = layers
            .iter()
            .map(|l| match &l.weight {
                Matrix::Dense(Cow::Owned(d)) | Matrix::Packed(d) => d.len(),
                Matrix::Sparse(s) if matches!(s.values, Cow::Owned(_)) => {
                    2 * s.values.len() + s.rows
                }
                _ => 0,
            } + l.batch1.as_ref().map_or(0, Batch1::floats)
                + l.direct.as_ref().map_or(0, direct_conv::DirectConv::floats)
                + l.planes.as_ref().map_or(0, sparse_conv::SparseConv::floats))
            .sum::<usize>()
            + execs
                .iter()
                .map(|e| match &e.step {
                    Step::Const(Cow::Owned(d)) => d.len(),
                    Step::ConvTranspose {
                        weight: Cow::Owned(d),
                        ..
                    } => d.len(),
                    _ => 0,
                })
                .sum::<usize>();
        let total = arena
            .end
            .checked_add(scratch)
            .and_then(|f| f.checked_add(weight_floats))
            .and_then(|f| f.checked_mul(4))
            .ok_or(too_large.clone())?;
        if total > options.max_bytes {
            return Err(Error::TooLarge {
                bytes: total,
                limit: options.max_bytes,
            });
        }
        Ok(Self {
            model,
            layers,
            layer_ops,
            execs,
            offsets,
            sizes,
            arena: alloc::vec![0.0; arena.end],
            scratch: alloc::vec![0.0; scratch],
            batch,
            ram_bytes: total,
        })
    }

    /// The model planned.
    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    /// Largest batch `run` accepts.
    pub fn max_batch(&self) -> usize {
        self.batch
    }

    /// Bytes of activation buffers: the arena (values reuse space once dead) plus scratch.
    pub fn activation_bytes(&self) -> usize {
        4 * (self.arena.len() + self.scratch.len())
    }

    /// The RAM the plan takes besides the model file (which a microcontroller reads in
    /// place from flash): activations and scratch, and the weights it converted (sparse
    /// layouts, dense copies), as checked against [`PlanOptions::max_bytes`].
    pub fn ram_bytes(&self) -> usize {
        self.ram_bytes
    }

    /// The layers with weights and the kernel each runs.
    pub fn layers(&self) -> Vec<LayerReport> {
        self.layers
            .iter()
            .zip(&self.layer_ops)
            .map(|(l, &op)| LayerReport {
                op,
                rows: l.rows,
                cols: l.cols,
                density: l.density,
                sparse: matches!(l.weight, Matrix::Sparse(_)),
                batch1_layout: match (&l.weight, &l.batch1) {
                    (Matrix::Sparse(_), _) if l.planes.is_some() => Some("planes"),
                    (Matrix::Sparse(_), _) if l.direct.is_some() => Some("direct"),
                    (Matrix::Sparse(_), Some(Batch1::Sell(_))) => Some("sell-8"),
                    (Matrix::Sparse(_), Some(Batch1::Blocks(_))) => Some("1x4 blocks"),
                    (Matrix::Sparse(_), None) => Some("csr"),
                    _ => None,
                },
            })
            .collect()
    }
}

/// The operand of an Add (node `i`, reading `inputs`) that the convolution just before it
/// can add to its output tile instead: the other operand is the output of the previous
/// step, a convolution of one group with no activation or residual yet, read by no other
/// step (nor the model's output), and both have the Add's shape, batched. Its ReLU, if
/// any, then fuses as [`fused_activation`] says, applied after the sum.
fn fused_residual(
    model: &Model,
    inputs: &[usize],
    execs: &[Exec],
    last_use: &[usize],
    i: usize,
) -> Option<usize> {
    if !matches!(model.nodes[i].op, Op::Binary(crate::format::Binary::Add)) || inputs.len() != 2 {
        return None;
    }
    let prev = execs.last()?;
    let Step::Conv {
        groups: 1,
        act: Act::None,
        residual: false,
        ..
    } = prev.step
    else {
        return None;
    };
    let v = prev.output;
    let r = match inputs {
        [a, b] if *a == v && *b != v => *b,
        [a, b] if *b == v && *a != v => *a,
        _ => return None,
    };
    let out = model.nodes[i].output;
    let only_reader =
        last_use[v] == i + 1 && !execs.iter().any(|e| e.inputs[..e.n_inputs].contains(&v));
    let same = model.shapes[r] == model.shapes[v] && model.shapes[out] == model.shapes[v];
    (only_reader && same && model.batched[r] && model.batched[v]).then_some(r)
}

/// The activation `step` (node `i`, reading `inputs`) computes, where the convolution just
/// before it can apply it to its output tile instead: the step is a ReLU or a Clip whose
/// input is the output of the previous step, a convolution with no activation yet, and no
/// other step reads that value (nor is it the model's output).
fn fused_activation(
    step: &Step,
    inputs: &[usize],
    execs: &[Exec],
    last_use: &[usize],
    i: usize,
) -> Option<Act> {
    let act = match *step {
        Step::Relu => Act::Relu,
        Step::Unary(Unary::Clip(lo, hi)) => Act::Clip(lo, hi),
        _ => return None,
    };
    let v = *inputs.first()?;
    let prev = execs.last()?;
    let only_reader =
        last_use[v] == i + 1 && !execs.iter().any(|e| e.inputs[..e.n_inputs].contains(&v));
    match prev.step {
        Step::Conv { act: Act::None, .. } if prev.output == v && only_reader => Some(act),
        _ => None,
    }
}
