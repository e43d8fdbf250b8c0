//! The execution plan: built once per model and largest batch, it lays every activation
//! out in one arena (a value's buffer is reused once its last reader has run), sizes the
//! scratch space (im2col patches, transposed batches), picks each layer's kernel and
//! converts weights where the stored form is not the one that runs. `run` then allocates
//! nothing.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::Error;
use crate::format::{
    Binary, Csr, Dims, MAX_INPUTS, Model, Op, PoolGeom, Tensor, TensorData, Unary,
};
use crate::kernels::{
    activation, block, conv, conv::ConvShape, dense, direct_conv, layout, packed, pool, sell,
    sparse,
};

/// Weight density at or below which [`KernelChoice::Auto`] runs the sparse kernel, for a
/// linear layer at batch 1 (CSR gather-dot against the `gemm` crate's GEMV): the
/// break-even measured by `cargo bench -p tether-deploy --bench sparse_kernels` was at
/// 73-83% sparsity on LeNet-sized layers (BENCHMARKS.md), so density 0.2.
pub const SPARSE_BREAK_EVEN_GEMV: f64 = 0.2;

/// The same for a batch or a convolution (register-blocked spmm): sparse was already
/// faster at 50% sparsity on every measured shape, so density 0.5.
pub const SPARSE_BREAK_EVEN_GEMM: f64 = 0.5;

/// How a plan picks each layer's kernel.
///
/// Every choice computes the same model, NaN and infinities included: the sparse kernels
/// skip pruned weights, which the dense product multiplies (`0 * inf` and `0 * NaN` are
/// NaN), so where a sparse layer's input holds a non-finite value its outputs are made the
/// dense product's (`kernels::sparse::match_dense_on_non_finite`), as ONNX Runtime or
/// PyTorch would compute them on the exported model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    /// Sparse where the density is at or below the measured break-even
    /// ([`SPARSE_BREAK_EVEN_GEMV`] for linear layers at batch 1, [`SPARSE_BREAK_EVEN_GEMM`]
    /// otherwise), dense elsewhere.
    #[default]
    Auto,
    /// Dense everywhere (CSR weights are expanded at plan time).
    Dense,
    /// Sparse everywhere (dense weights are compressed at plan time).
    Sparse,
}

/// Options of [`Plan::new`].
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Largest batch `run` accepts.
    pub batch: usize,
    /// Kernel selection.
    pub kernels: KernelChoice,
    /// Most bytes the plan may allocate for activations, scratch and converted weights
    /// (a hostile model cannot make the runtime allocate without bound).
    pub max_bytes: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            batch: 1,
            kernels: KernelChoice::Auto,
            max_bytes: 256 << 20,
        }
    }
}

/// A CSR matrix, borrowed from the model or built by the plan.
#[derive(Clone, Debug)]
struct CsrStore<'a> {
    rows: usize,
    cols: usize,
    row_ptr: Cow<'a, [u32]>,
    col_idx: Cow<'a, [u16]>,
    values: Cow<'a, [f32]>,
}

impl CsrStore<'_> {
    fn view(&self) -> Csr<'_> {
        // Built from a validated view or by `compress`, which yields valid arrays.
        Csr::trusted(
            self.rows,
            self.cols,
            &self.row_ptr,
            &self.col_idx,
            &self.values,
        )
    }
}

#[derive(Clone, Debug)]
enum Matrix<'a> {
    Dense(Cow<'a, [f32]>),
    /// Dense, packed into 32-output panels for the AVX-512 batch kernel.
    Packed(Vec<f32>),
    Sparse(CsrStore<'a>),
}

/// A sparse layer's copy for batch-1 calls (x86-64 with AVX2 and FMA).
#[derive(Clone, Debug)]
enum Batch1 {
    /// Scattered nonzeros: 8 rows per vector, gathers ([`sell`]).
    Sell(sell::Sell8),
    /// Nonzeros in whole 1x4 blocks: plain loads ([`block`]).
    Blocks(block::Block4),
}

/// Block fill (nonzeros per stored block entry) from which the 1x4-block kernel beats
/// SELL-8: it costs about 1.5 ns a block where SELL-8 costs 0.6 ns a nonzero (300x784 at
/// 90%, `cargo bench -p tether-deploy --bench sparse_kernels`), so blocks win above a fill
/// of about 0.6; scattered 90% sparsity fills about 0.27.
const BLOCK_FILL_BREAK_EVEN: f64 = 0.6;

impl Batch1 {
    /// The best batch-1 layout for `a`, or `None` where no vector kernel runs.
    fn choose(a: &crate::format::Csr) -> Option<Self> {
        if !sell::available() {
            return None;
        }
        if block::block_fill(a) >= BLOCK_FILL_BREAK_EVEN
            && let Some(b) = block::Block4::from_csr(a)
        {
            return Some(Self::Blocks(b));
        }
        Some(Self::Sell(sell::Sell8::from_csr(a)))
    }

    /// Floats of memory the copy takes (indices counted as fractions of a float).
    fn floats(&self) -> usize {
        match self {
            Self::Sell(a) => a.stored() * 3 / 2 + a.rows(),
            Self::Blocks(b) => b.blocks() * (block::BLOCK + 1) + b.rows() + 1,
        }
    }
}

/// A weight matrix `[rows, cols]` and its bias, in the form its kernel reads.
#[derive(Clone, Debug)]
struct Layer<'a> {
    rows: usize,
    cols: usize,
    density: f64,
    weight: Matrix<'a>,
    /// A sparse linear layer's weights in the layout of its batch-1 vector kernel, where
    /// that kernel runs; `None`: the CSR kernel on the model's bytes.
    batch1: Option<Batch1>,
    /// A sparse convolution's nonzeros as input offsets, where the direct kernel runs
    /// (stride 1, no padding; a CPU with AVX2): no im2col.
    direct: Option<direct_conv::DirectConv>,
    bias: Option<Cow<'a, [f32]>>,
}

#[derive(Clone, Debug)]
enum Step<'a> {
    /// Rows of `lead` per sample (the leading axes of the input). A sparse layer on a
    /// batch reads `[in, batch]` (`in_t`: its input is already in that layout, else it
    /// transposes it) and writes `[out, batch]` when `out_t` (its readers take that
    /// layout), `[batch, out]` otherwise.
    Linear {
        layer: usize,
        lead: usize,
        in_t: bool,
        out_t: bool,
    },
    /// One layer per group (consecutive), `lead` images per sample.
    Conv {
        first_layer: usize,
        groups: usize,
        shape: ConvShape,
        lead: usize,
    },
    MaxPool {
        c: usize,
        h: usize,
        w: usize,
        geom: PoolGeom,
    },
    AvgPool {
        c: usize,
        h: usize,
        w: usize,
        geom: PoolGeom,
    },
    Copy,
    Relu,
    Sine(f32),
    Unary(Unary),
    Softmax {
        outer: usize,
        n: usize,
        inner: usize,
    },
    Binary {
        op: Binary,
        a: Dims,
        b: Dims,
        out: Dims,
    },
    MatMul {
        a: Dims,
        b: Dims,
    },
    Transpose {
        dims: Dims,
        perm: [usize; crate::format::MAX_RANK],
    },
    Concat {
        axis: usize,
    },
    Const(Cow<'a, [f32]>),
    Input(usize),
    Reduce {
        kind: crate::format::Reduce,
        dims: Dims,
        axes: u8,
    },
    Pad {
        dims: Dims,
        geom: crate::format::PadGeom,
    },
}

#[derive(Clone, Debug)]
struct Exec<'a> {
    step: Step<'a>,
    inputs: [usize; MAX_INPUTS],
    n_inputs: usize,
    output: usize,
}

/// What one layer runs with, for reports (`tether-deploy inspect`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerReport {
    /// Index of the op in the model.
    pub op: usize,
    /// Weight rows (output units / channels).
    pub rows: usize,
    /// Weight columns (inputs, or `c*k*k`).
    pub cols: usize,
    /// Nonzero weights / weights.
    pub density: f64,
    /// True when the sparse kernel runs.
    pub sparse: bool,
    /// The layout a sparse layer's batch-1 calls read: `"csr"`, `"sell-8"` or
    /// `"1x4 blocks"`; `"direct"` for a convolution that reads its input planes directly
    /// at every batch size (no im2col); `None` for dense layers.
    pub batch1_layout: Option<&'static str>,
}

/// A model ready to run.
pub struct Plan<'a> {
    model: Model<'a>,
    layers: Vec<Layer<'a>>,
    layer_ops: Vec<usize>,
    execs: Vec<Exec<'a>>,
    /// Per value: start in the arena and floats per sample.
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    arena: Vec<f32>,
    scratch: Vec<f32>,
    batch: usize,
}

fn dense_view<'a>(t: &Tensor<'a>) -> Cow<'a, [f32]> {
    match t.data {
        TensorData::F32(d) => Cow::Borrowed(d),
        _ => Cow::Owned(t.to_dense()),
    }
}

fn compress(rows: usize, cols: usize, d: &[f32]) -> CsrStore<'static> {
    let (ptr, idx, vals) = sparse::csr_from_dense(rows, cols, d);
    CsrStore {
        rows,
        cols,
        row_ptr: Cow::Owned(ptr),
        col_idx: Cow::Owned(idx),
        values: Cow::Owned(vals),
    }
}

/// Rows `rows` (a group's output channels) of a weight, and their bias, as a layer.
fn group_layer<'a>(
    model: &Model<'a>,
    weight: usize,
    bias: Option<usize>,
    rows: Range<usize>,
    choice: KernelChoice,
) -> Layer<'a> {
    let t = &model.tensors[weight];
    let cols = t.dims.numel() / t.dims.as_slice()[0];
    let sub = |d: Cow<'a, [f32]>, r: Range<usize>, width: usize| match d {
        Cow::Borrowed(d) => Cow::Borrowed(&d[r.start * width..r.end * width]),
        Cow::Owned(d) => Cow::Owned(d[r.start * width..r.end * width].to_vec()),
    };
    let w = sub(dense_view(t), rows.clone(), cols);
    let n = rows.len();
    let density = w.iter().filter(|&&v| v != 0.0).count() as f64 / w.len() as f64;
    let sparse = match choice {
        KernelChoice::Auto => density <= SPARSE_BREAK_EVEN_GEMM,
        KernelChoice::Dense => false,
        KernelChoice::Sparse => true,
    } && cols <= u16::MAX as usize + 1;
    Layer {
        rows: n,
        cols,
        density,
        weight: if sparse {
            Matrix::Sparse(compress(n, cols, &w))
        } else {
            Matrix::Dense(w)
        },
        batch1: None,
        direct: None,
        bias: bias.map(|b| sub(dense_view(&model.tensors[b]), rows, 1)),
    }
}

fn layer<'a>(
    model: &Model<'a>,
    weight: usize,
    bias: Option<usize>,
    choice: KernelChoice,
    break_even: f64,
) -> Layer<'a> {
    let t = &model.tensors[weight];
    let rows = t.dims.as_slice()[0];
    let cols = t.dims.numel() / rows;
    let nonzeros = match t.data {
        TensorData::Csr(c) => c.values().len(),
        TensorData::F32(d) => d.iter().filter(|&&v| v != 0.0).count(),
        TensorData::F16(d) => d
            .iter()
            .filter(|&&h| half::f16::from_bits(h).to_f32() != 0.0)
            .count(),
    };
    let density = nonzeros as f64 / (rows * cols) as f64;
    let sparse = match choice {
        // A CSR-stored weight stays sparse: expanding it would allocate a dense copy
        // (on a microcontroller, more RAM than there is).
        KernelChoice::Auto => density <= break_even || matches!(t.data, TensorData::Csr(_)),
        KernelChoice::Dense => false,
        KernelChoice::Sparse => true,
    } && cols <= u16::MAX as usize + 1;
    let weight = match (sparse, t.data) {
        (true, TensorData::Csr(c)) => Matrix::Sparse(CsrStore {
            rows,
            cols,
            row_ptr: Cow::Borrowed(c.row_ptr()),
            col_idx: Cow::Borrowed(c.col_idx()),
            values: Cow::Borrowed(c.values()),
        }),
        (true, _) => Matrix::Sparse(compress(rows, cols, &dense_view(t))),
        (false, _) => Matrix::Dense(dense_view(t)),
    };
    Layer {
        rows,
        cols,
        density,
        weight,
        batch1: None,
        direct: None,
        bias: bias.map(|b| dense_view(&model.tensors[b])),
    }
}

/// First-fit placement of live buffers in one arena.
struct Arena {
    live: Vec<(usize, usize, usize)>, // (start, len, value)
    end: usize,
}

impl Arena {
    fn place(&mut self, len: usize, value: usize) -> usize {
        self.live.sort_unstable();
        let mut at = 0;
        for &(s, l, _) in &self.live {
            if s >= at + len {
                break;
            }
            at = at.max(s + l);
        }
        self.live.push((at, len, value));
        self.end = self.end.max(at + len);
        at
    }

    fn free(&mut self, value: usize) {
        self.live.retain(|&(_, _, v)| v != value);
    }
}

impl<'a> Plan<'a> {
    /// Plans `model` for batches of up to `options.batch` samples.
    pub fn new(model: Model<'a>, options: &PlanOptions) -> Result<Self, Error> {
        if options.batch == 0 {
            return Err(Error::BadOptions("batch must be at least 1"));
        }
        let batch = options.batch;
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
        last_use[model.output] = usize::MAX;

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
        for (i, node) in model.nodes.iter().enumerate() {
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
                    } else {
                        SPARSE_BREAK_EVEN_GEMM
                    };
                    let mut l = layer(&model, weight, bias, options.kernels, break_even);
                    if rows > 1
                        && packed::available()
                        && let Matrix::Dense(w) = &l.weight
                    {
                        l.weight = Matrix::Packed(packed::pack(w, l.rows, l.cols));
                    }
                    if lead == 1
                        && let Matrix::Sparse(s) = &l.weight
                    {
                        l.batch1 = Batch1::choose(&s.view());
                    }
                    layers.push(l);
                    layer_ops.push(i);
                    let l = layers.last().expect("pushed");
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
                    if groups == 1 {
                        layers.push(layer(
                            &model,
                            weight,
                            bias,
                            options.kernels,
                            SPARSE_BREAK_EVEN_GEMM,
                        ));
                        layer_ops.push(i);
                    } else {
                        let per = wd[0] / groups;
                        for g in 0..groups {
                            layers.push(group_layer(
                                &model,
                                weight,
                                bias,
                                g * per..(g + 1) * per,
                                options.kernels,
                            ));
                            layer_ops.push(i);
                        }
                    }
                    let shape = ConvShape {
                        c: xs[r - 3] / groups,
                        h: xs[r - 2],
                        w: xs[r - 1],
                        k: [wd[2], wd[3]],
                        stride: geom.stride,
                        pads: geom.pads,
                        dilation: geom.dilation,
                    };
                    if sell::available() {
                        for l in &mut layers[first_layer..] {
                            if let Matrix::Sparse(s) = &l.weight {
                                l.direct = direct_conv::DirectConv::new(&s.view(), &shape);
                            }
                        }
                    }
                    if !shape.is_pointwise() {
                        let (oh, ow) = shape.out();
                        let patch = shape
                            .patch()
                            .checked_mul(oh * ow)
                            .ok_or(too_large.clone())?;
                        scratch = scratch.max(patch);
                    }
                    if shape.c == 1 && groups > 1 {
                        scratch = scratch.max(conv::depthwise_scratch(&shape));
                    }
                    Step::Conv {
                        first_layer,
                        groups,
                        shape,
                        lead: lead_of(3),
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
                Op::Const { tensor } => Step::Const(dense_view(&model.tensors[tensor])),
                Op::Input { index, .. } => Step::Input(index),
                Op::MeshFeatures(_) | Op::EmanConv { .. } | Op::Gate | Op::Scalars => {
                    return Err(Error::NeedsMesh);
                }
            };
            let out = node.output;
            offsets[out] = arena.place(floats_of(out).ok_or(too_large.clone())?, out);
            // Values whose last reader is this op (and this op's output if nothing reads it).
            for (v, &last) in last_use.iter().enumerate().take(out + 1) {
                if last == i + 1 {
                    arena.free(v);
                }
            }
            execs.push(Exec {
                step,
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
                + l.direct.as_ref().map_or(0, direct_conv::DirectConv::floats))
            .sum::<usize>()
            + execs
                .iter()
                .map(|e| match &e.step {
                    Step::Const(Cow::Owned(d)) => d.len(),
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
                    (Matrix::Sparse(_), _) if l.direct.is_some() => Some("direct"),
                    (Matrix::Sparse(_), Some(Batch1::Sell(_))) => Some("sell-8"),
                    (Matrix::Sparse(_), Some(Batch1::Blocks(_))) => Some("1x4 blocks"),
                    (Matrix::Sparse(_), None) => Some("csr"),
                    _ => None,
                },
            })
            .collect()
    }

    /// Runs a batch of `input.len() / per-sample size` samples (at most the plan's batch),
    /// row-major; returns the outputs, one row per sample. For a model of one input.
    pub fn run(&mut self, input: &[f32]) -> Result<&[f32], Error> {
        if self.model.inputs.len() != 1 {
            return Err(Error::BadOptions(
                "the model has several inputs: use run_inputs",
            ));
        }
        self.run_inputs(&[input])
    }

    /// Runs a batch on a model of several inputs: `inputs[i]` holds the samples of input
    /// `i`, each input the same number of samples.
    pub fn run_inputs(&mut self, inputs: &[&[f32]]) -> Result<&[f32], Error> {
        let per = self.sizes[0];
        let input = inputs.first().copied().unwrap_or(&[]);
        let n = input.len() / per;
        if inputs.len() != self.model.inputs.len() {
            return Err(Error::BadOptions("wrong number of model inputs"));
        }
        for (&x, &v) in inputs.iter().zip(&self.model.inputs) {
            let per = self.sizes[v];
            if x.is_empty() || x.len() != n * per || n > self.batch {
                return Err(Error::InputLength {
                    per_sample: per,
                    max_batch: self.batch,
                    got: x.len(),
                });
            }
        }
        let Self {
            layers,
            execs,
            offsets,
            sizes,
            arena,
            scratch,
            model,
            ..
        } = self;
        let batched = &model.batched;
        arena[offsets[0]..offsets[0] + input.len()].copy_from_slice(input);
        let range = |v: usize| {
            let count = if batched[v] { n } else { 1 };
            offsets[v]..offsets[v] + count * sizes[v]
        };
        for e in execs.iter() {
            let mut ins: [Range<usize>; MAX_INPUTS] = Default::default();
            for (r, &v) in ins.iter_mut().zip(&e.inputs[..e.n_inputs]) {
                *r = range(v);
            }
            let (y, xs) = split(arena, range(e.output), &ins);
            let ctx = Ctx {
                n: if batched[e.output] { n } else { 1 },
                sizes,
                batched,
                inputs: &e.inputs[..e.n_inputs],
                output: e.output,
                shapes: &model.shapes,
            };
            if let Step::Input(k) = e.step {
                y.copy_from_slice(inputs[k]);
                continue;
            }
            run_step(e, &ctx, layers, scratch, &xs[..e.n_inputs], y);
        }
        Ok(&arena[range(model.output)])
    }
}

/// Chains of sparse linear layers on a batch keep their activations in the `[features,
/// batch]` layout `spmm` reads and writes, instead of transposing in and out at every
/// layer: a value is stored that way when its producer is such a layer (or an element-wise
/// op on such a value) and every reader is such a layer or an element-wise op whose output
/// is stored that way too. Element-wise ops do not care about the layout.
fn transposed_chains(execs: &mut [Exec], layers: &[Layer], model: &Model, batch: usize) {
    if batch == 1 {
        return;
    }
    let n_values = model.shapes.len();
    let sparse_linear = |e: &Exec| match e.step {
        Step::Linear { layer, lead, .. } => {
            lead == 1 && matches!(layers[layer].weight, Matrix::Sparse(_))
        }
        _ => false,
    };
    let elementwise = |e: &Exec| {
        matches!(e.step, Step::Relu | Step::Sine(_) | Step::Unary(_))
            || (matches!(e.step, Step::Copy) && model.shapes[e.inputs[0]].as_slice().len() == 1)
    };
    // Backward: every reader takes the transposed layout.
    let mut readers_ok = alloc::vec![true; n_values];
    let mut read = alloc::vec![false; n_values];
    readers_ok[model.output] = false;
    for e in execs.iter().rev() {
        for &v in &e.inputs[..e.n_inputs] {
            read[v] = true;
            let ok = sparse_linear(e) || (elementwise(e) && readers_ok[e.output]);
            readers_ok[v] &= ok;
        }
    }
    // Forward: produced in that layout.
    let mut transposed = alloc::vec![false; n_values];
    for e in execs.iter_mut() {
        let v = e.output;
        let input_t = e.n_inputs > 0 && transposed[e.inputs[0]];
        let produces = if sparse_linear(e) {
            true
        } else {
            elementwise(e) && input_t
        };
        transposed[v] = produces && read[v] && readers_ok[v];
        if let Step::Linear { in_t, out_t, .. } = &mut e.step {
            *in_t = input_t;
            *out_t = transposed[v];
        }
    }
}

/// What a step needs to know about its values.
struct Ctx<'c> {
    /// Samples the output holds (1 for a constant).
    n: usize,
    sizes: &'c [usize],
    batched: &'c [bool],
    inputs: &'c [usize],
    output: usize,
    shapes: &'c [Dims],
}

impl Ctx<'_> {
    /// Sample `b` of input `i` (the only copy of a constant).
    fn sample<'x>(&self, x: &'x [f32], i: usize, b: usize) -> &'x [f32] {
        let v = self.inputs[i];
        let s = self.sizes[v];
        if self.batched[v] {
            &x[b * s..(b + 1) * s]
        } else {
            &x[..s]
        }
    }
}

/// The output buffer and the input buffers of one step, from the arena (the placement
/// keeps the live ranges disjoint).
fn split<'b>(
    buf: &'b mut [f32],
    out: Range<usize>,
    ins: &[Range<usize>; MAX_INPUTS],
) -> (&'b mut [f32], [&'b [f32]; MAX_INPUTS]) {
    let (lo, rest) = buf.split_at_mut(out.start);
    let (o, hi) = rest.split_at_mut(out.end - out.start);
    let (lo, hi): (&[f32], &[f32]) = (lo, hi);
    let pick = |r: &Range<usize>| -> &[f32] {
        if r.is_empty() {
            &[]
        } else if r.end <= out.start {
            &lo[r.clone()]
        } else {
            &hi[r.start - out.end..r.end - out.end]
        }
    };
    (
        o,
        [pick(&ins[0]), pick(&ins[1]), pick(&ins[2]), pick(&ins[3])],
    )
}

fn run_step(
    e: &Exec,
    ctx: &Ctx,
    layers: &[Layer],
    scratch: &mut [f32],
    xs: &[&[f32]],
    y: &mut [f32],
) {
    let n = ctx.n;
    let out_size = ctx.sizes[ctx.output];
    let x = xs.first().copied().unwrap_or(&[]);
    match &e.step {
        &Step::Linear {
            layer,
            lead,
            in_t,
            out_t,
        } => {
            let l = &layers[layer];
            let bias = l.bias.as_deref();
            let rows = n * lead;
            match &l.weight {
                Matrix::Dense(w) => dense::linear(w, bias, x, rows, l.rows, l.cols, y),
                Matrix::Packed(w) => packed::linear(w, bias, x, rows, l.rows, l.cols, y),
                Matrix::Sparse(s) if rows == 1 => {
                    match &l.batch1 {
                        Some(Batch1::Sell(a)) => sell::spmv(a, bias, x, y),
                        Some(Batch1::Blocks(a)) => block::spmv(a, bias, x, y),
                        None => sparse::spmv(&s.view(), bias, x, y),
                    }
                    // A NaN or an infinity facing a pruned weight: NaN, as in the dense
                    // product (every kernel choice computes the same model).
                    sparse::match_dense_on_non_finite(&s.view(), bias, x, 1, y, 1, 0);
                }
                Matrix::Sparse(s) => {
                    let t: &[f32] = if in_t {
                        x
                    } else {
                        let t = &mut scratch[..l.cols * rows];
                        sparse::transpose(x, rows, l.cols, t);
                        t
                    };
                    let (rs, cs) = if out_t { (rows, 1) } else { (1, l.rows) };
                    sparse::spmm(&s.view(), bias, t, rows, y, rs, cs);
                    sparse::match_dense_on_non_finite(&s.view(), bias, t, rows, y, rs, cs);
                }
            }
        }
        &Step::Conv {
            first_layer,
            groups,
            shape,
            lead,
        } => {
            let (oh, ow) = shape.out();
            let p = oh * ow;
            let in_img = groups * shape.c * shape.h * shape.w;
            let in_group = shape.c * shape.h * shape.w;
            let out_img = out_size / lead;
            // Depthwise (one input channel per group), dense: the direct kernel.
            let depthwise = shape.c == 1
                && groups > 1
                && layers[first_layer..first_layer + groups]
                    .iter()
                    .all(|l| matches!(l.weight, Matrix::Dense(_)));
            for b in 0..n * lead {
                let xb = &x[b * in_img..(b + 1) * in_img];
                let yb = &mut y[b * out_img..(b + 1) * out_img];
                if depthwise {
                    for g in 0..groups {
                        let l = &layers[first_layer + g];
                        let Matrix::Dense(w) = &l.weight else {
                            unreachable!("checked dense above")
                        };
                        let xg = &xb[g * in_group..(g + 1) * in_group];
                        for r in 0..l.rows {
                            let bias = l.bias.as_deref().map_or(0.0, |b| b[r]);
                            let at = (g * l.rows + r) * p;
                            conv::depthwise(
                                xg,
                                &w[r * l.cols..(r + 1) * l.cols],
                                bias,
                                &shape,
                                scratch,
                                &mut yb[at..at + p],
                            );
                        }
                    }
                    continue;
                }
                for g in 0..groups {
                    let l = &layers[first_layer + g];
                    let bias = l.bias.as_deref();
                    let xg = &xb[g * in_group..(g + 1) * in_group];
                    let yg = &mut yb[g * l.rows * p..(g + 1) * l.rows * p];
                    // The sparse kernels skip pruned weights; where the image holds a NaN or
                    // an infinity, the outputs are made the dense product's (see
                    // `sparse::match_dense_on_non_finite`), stated on the patch matrix.
                    // Padded cells are zeros, so checking the image is enough.
                    let non_finite =
                        matches!(l.weight, Matrix::Sparse(_)) && !sparse::all_finite(xg);
                    if let (Matrix::Sparse(s), Some(d)) = (&l.weight, &l.direct) {
                        direct_conv::conv(&s.view(), d, bias, xg, &shape, yg);
                        if non_finite {
                            let cols: &[f32] = if shape.is_pointwise() {
                                xg
                            } else {
                                let c = &mut scratch[..shape.patch() * p];
                                conv::im2col(xg, &shape, c);
                                c
                            };
                            let a = s.view();
                            sparse::match_dense_on_non_finite(&a, bias, cols, p, yg, p, 1);
                        }
                        continue;
                    }
                    let cols: &[f32] = if shape.is_pointwise() {
                        xg
                    } else {
                        let c = &mut scratch[..shape.patch() * p];
                        conv::im2col(xg, &shape, c);
                        c
                    };
                    match &l.weight {
                        Matrix::Dense(w) => {
                            dense::matmul_rows(w, bias, cols, l.rows, l.cols, p, yg)
                        }
                        Matrix::Sparse(s) => {
                            sparse::spmm(&s.view(), bias, cols, p, yg, p, 1);
                            if non_finite {
                                let a = s.view();
                                sparse::match_dense_on_non_finite(&a, bias, cols, p, yg, p, 1);
                            }
                        }
                        Matrix::Packed(_) => unreachable!("convolution weights are not packed"),
                    }
                }
            }
        }
        Step::MaxPool { c, h, w, geom } | Step::AvgPool { c, h, w, geom } => {
            let in_size = ctx.sizes[ctx.inputs[0]];
            let max = matches!(e.step, Step::MaxPool { .. });
            for b in 0..n {
                let xb = &x[b * in_size..(b + 1) * in_size];
                let yb = &mut y[b * out_size..(b + 1) * out_size];
                if max {
                    pool::max_pool2d(xb, *c, *h, *w, geom, yb);
                } else {
                    pool::avg_pool2d(xb, *c, *h, *w, geom, yb);
                }
            }
        }
        Step::Copy => y.copy_from_slice(x),
        Step::Relu => activation::relu(x, y),
        &Step::Sine(w0) => activation::sine(x, w0, y),
        &Step::Unary(f) => activation::unary(f, x, y),
        &Step::Softmax { outer, n: m, inner } => {
            for b in 0..n {
                activation::softmax_strided(
                    &x[b * out_size..(b + 1) * out_size],
                    outer,
                    m,
                    inner,
                    &mut y[b * out_size..(b + 1) * out_size],
                );
            }
        }
        &Step::Binary { op, a, b, out } => {
            for s in 0..n {
                layout::binary(
                    op,
                    ctx.sample(xs[0], 0, s),
                    a.as_slice(),
                    ctx.sample(xs[1], 1, s),
                    b.as_slice(),
                    out.as_slice(),
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        &Step::MatMul { a, b } => {
            for s in 0..n {
                layout::matmul(
                    ctx.sample(xs[0], 0, s),
                    a.as_slice(),
                    ctx.sample(xs[1], 1, s),
                    b.as_slice(),
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Transpose { dims, perm } => {
            let in_size = dims.numel();
            for s in 0..n {
                layout::transpose(
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    &perm[..dims.as_slice().len()],
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        &Step::Concat { axis } => {
            for s in 0..n {
                let mut parts: [(&[f32], &[usize]); MAX_INPUTS] = [(&[], &[]); MAX_INPUTS];
                for (i, part) in parts.iter_mut().enumerate().take(ctx.inputs.len()) {
                    *part = (
                        ctx.sample(xs[i], i, s),
                        ctx.shapes[ctx.inputs[i]].as_slice(),
                    );
                }
                layout::concat(
                    &parts[..ctx.inputs.len()],
                    axis,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Const(d) => y.copy_from_slice(d),
        Step::Input(_) => {}
        &Step::Reduce { kind, dims, axes } => {
            let in_size = dims.numel();
            for s in 0..n {
                layout::reduce(
                    kind,
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    axes,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Pad { dims, geom } => {
            let in_size = dims.numel();
            for s in 0..n {
                layout::pad(
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    geom,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
    }
}
