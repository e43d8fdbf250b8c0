//! The execution plan: built once per model and largest batch, it lays every activation
//! out in one arena (a value's buffer is reused once its last reader has run), sizes the
//! scratch space (im2col patches, transposed batches), picks each layer's kernel and
//! converts weights where the stored form is not the one that runs. `run` then allocates
//! nothing.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::Error;
use crate::format::{Csr, Model, Op, Tensor, TensorData};
use crate::kernels::{activation, conv, conv::ConvShape, dense, pool, sparse};

/// Weight density at or below which [`KernelChoice::Auto`] runs the sparse kernel, for a
/// linear layer at batch 1 (CSR gather-dot against the `gemm` crate's GEMV): the
/// break-even measured by `cargo bench -p tether-deploy --bench sparse_kernels` was at
/// 73-83% sparsity on LeNet-sized layers (BENCHMARKS.md), so density 0.2.
pub const SPARSE_BREAK_EVEN_GEMV: f64 = 0.2;

/// The same for a batch or a convolution (register-blocked spmm): sparse was already
/// faster at 50% sparsity on every measured shape, so density 0.5.
pub const SPARSE_BREAK_EVEN_GEMM: f64 = 0.5;

/// How a plan picks each layer's kernel.
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
    Sparse(CsrStore<'a>),
}

/// A weight matrix `[rows, cols]` and its bias, in the form its kernel reads.
#[derive(Clone, Debug)]
struct Layer<'a> {
    rows: usize,
    cols: usize,
    density: f64,
    weight: Matrix<'a>,
    bias: Option<Cow<'a, [f32]>>,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Linear {
        layer: usize,
    },
    Conv {
        layer: usize,
        shape: ConvShape,
    },
    MaxPool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        s: usize,
    },
    AvgPool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        s: usize,
    },
    Copy,
    Relu,
    Sine(f32),
    Softmax {
        row: usize,
    },
    Add,
}

#[derive(Clone, Copy, Debug)]
struct Exec {
    step: Step,
    inputs: [usize; 2],
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
}

/// A model ready to run.
pub struct Plan<'a> {
    model: Model<'a>,
    layers: Vec<Layer<'a>>,
    layer_ops: Vec<usize>,
    execs: Vec<Exec>,
    /// Per value: start in the arena and floats per sample.
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    arena: Vec<f32>,
    scratch: Vec<f32>,
    batch: usize,
}

fn to_f32(t: &Tensor<'_>) -> Cow<'static, [f32]> {
    match t.data {
        TensorData::F32(d) => Cow::Owned(d.to_vec()),
        TensorData::F16(d) => Cow::Owned(
            d.iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect(),
        ),
        TensorData::Csr(c) => {
            let mut out = alloc::vec![0.0; c.rows() * c.cols()];
            for r in 0..c.rows() {
                let (idx, vals) = c.row(r);
                for (&k, &v) in idx.iter().zip(vals) {
                    out[r * c.cols() + k as usize] = v;
                }
            }
            Cow::Owned(out)
        }
    }
}

fn dense_view<'a>(t: &Tensor<'a>) -> Cow<'a, [f32]> {
    match t.data {
        TensorData::F32(d) => Cow::Borrowed(d),
        _ => to_f32(t),
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
        (true, _) => Matrix::Sparse(compress(rows, cols, &to_f32(t))),
        (false, _) => Matrix::Dense(dense_view(t)),
    };
    Layer {
        rows,
        cols,
        density,
        weight,
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
        let bytes_of = |n: usize| n.checked_mul(batch);
        offsets[0] = arena.place(bytes_of(sizes[0]).ok_or(too_large.clone())?, 0);
        let mut layers = Vec::new();
        let mut layer_ops = Vec::new();
        let mut execs = Vec::with_capacity(model.nodes.len());
        let mut scratch = 0usize;
        for (i, node) in model.nodes.iter().enumerate() {
            let x = model.shapes[node.inputs[0]];
            let xs = x.as_slice();
            let step = match node.op {
                Op::Linear { weight, bias } => {
                    let break_even = if batch == 1 {
                        SPARSE_BREAK_EVEN_GEMV
                    } else {
                        SPARSE_BREAK_EVEN_GEMM
                    };
                    layers.push(layer(&model, weight, bias, options.kernels, break_even));
                    layer_ops.push(i);
                    let l = layers.last().expect("pushed");
                    if matches!(l.weight, Matrix::Sparse(_)) && batch > 1 {
                        scratch = scratch.max(l.cols.checked_mul(batch).ok_or(too_large.clone())?);
                    }
                    Step::Linear {
                        layer: layers.len() - 1,
                    }
                }
                Op::Conv2d {
                    weight,
                    bias,
                    stride,
                    padding,
                } => {
                    layers.push(layer(
                        &model,
                        weight,
                        bias,
                        options.kernels,
                        SPARSE_BREAK_EVEN_GEMM,
                    ));
                    layer_ops.push(i);
                    let k = model.tensors[weight].dims.as_slice()[2];
                    let shape = ConvShape {
                        c: xs[0],
                        h: xs[1],
                        w: xs[2],
                        k,
                        stride,
                        padding,
                    };
                    if !shape.is_pointwise() {
                        let (oh, ow) = shape.out();
                        let patch = shape
                            .patch()
                            .checked_mul(oh * ow)
                            .ok_or(too_large.clone())?;
                        scratch = scratch.max(patch);
                    }
                    Step::Conv {
                        layer: layers.len() - 1,
                        shape,
                    }
                }
                Op::MaxPool2d { kernel, stride } => Step::MaxPool {
                    c: xs[0],
                    h: xs[1],
                    w: xs[2],
                    k: kernel,
                    s: stride,
                },
                Op::AvgPool2d { kernel, stride } => Step::AvgPool {
                    c: xs[0],
                    h: xs[1],
                    w: xs[2],
                    k: kernel,
                    s: stride,
                },
                Op::Flatten => Step::Copy,
                Op::Relu => Step::Relu,
                Op::Sine { w0 } => Step::Sine(w0),
                Op::Softmax => Step::Softmax {
                    row: *xs.last().expect("rank >= 1"),
                },
                Op::Add => Step::Add,
            };
            let out = node.output;
            offsets[out] = arena.place(bytes_of(sizes[out]).ok_or(too_large.clone())?, out);
            // Values whose last reader is this op (and this op's output if nothing reads it).
            for (v, &last) in last_use.iter().enumerate().take(out + 1) {
                if last == i + 1 {
                    arena.free(v);
                }
            }
            execs.push(Exec {
                step,
                inputs: node.inputs,
                output: out,
            });
        }
        let weight_floats: usize = layers
            .iter()
            .map(|l| match &l.weight {
                Matrix::Dense(Cow::Owned(d)) => d.len(),
                Matrix::Sparse(s) if matches!(s.values, Cow::Owned(_)) => {
                    2 * s.values.len() + s.rows
                }
                _ => 0,
            })
            .sum();
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
            })
            .collect()
    }

    /// Runs a batch of `input.len() / per-sample size` samples (at most the plan's batch),
    /// row-major; returns the outputs, one row per sample.
    pub fn run(&mut self, input: &[f32]) -> Result<&[f32], Error> {
        let per = self.sizes[0];
        let n = input.len() / per;
        if input.is_empty() || !input.len().is_multiple_of(per) || n > self.batch {
            return Err(Error::InputLength {
                per_sample: per,
                max_batch: self.batch,
                got: input.len(),
            });
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
        arena[offsets[0]..offsets[0] + input.len()].copy_from_slice(input);
        let range = |v: usize| offsets[v]..offsets[v] + n * sizes[v];
        for e in execs.iter() {
            let (y, x, x2) = split(arena, range(e.output), range(e.inputs[0]), {
                if matches!(e.step, Step::Add) {
                    range(e.inputs[1])
                } else {
                    0..0
                }
            });
            run_step(
                e,
                layers,
                scratch,
                n,
                sizes[e.inputs[0]],
                sizes[e.output],
                x,
                x2,
                y,
            );
        }
        Ok(&arena[range(model.output)])
    }
}

/// The output buffer and up to two input buffers of one step, from the arena (the
/// placement keeps the live ranges disjoint).
fn split(
    buf: &mut [f32],
    out: Range<usize>,
    a: Range<usize>,
    b: Range<usize>,
) -> (&mut [f32], &[f32], &[f32]) {
    let (lo, rest) = buf.split_at_mut(out.start);
    let (o, hi) = rest.split_at_mut(out.end - out.start);
    let (lo, hi): (&[f32], &[f32]) = (lo, hi);
    let pick = |r: Range<usize>| -> &[f32] {
        if r.end <= out.start {
            &lo[r]
        } else {
            &hi[r.start - out.end..r.end - out.end]
        }
    };
    (o, pick(a), pick(b))
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    e: &Exec,
    layers: &[Layer],
    scratch: &mut [f32],
    n: usize,
    in_size: usize,
    out_size: usize,
    x: &[f32],
    x2: &[f32],
    y: &mut [f32],
) {
    match e.step {
        Step::Linear { layer } => {
            let l = &layers[layer];
            let bias = l.bias.as_deref();
            match &l.weight {
                Matrix::Dense(w) => dense::linear(w, bias, x, n, l.rows, l.cols, y),
                Matrix::Sparse(s) if n == 1 => sparse::spmv(&s.view(), bias, x, y),
                Matrix::Sparse(s) => {
                    let t = &mut scratch[..l.cols * n];
                    sparse::transpose(x, n, l.cols, t);
                    sparse::spmm(&s.view(), bias, t, n, y, 1, l.rows);
                }
            }
        }
        Step::Conv { layer, shape } => {
            let l = &layers[layer];
            let bias = l.bias.as_deref();
            let (oh, ow) = shape.out();
            let p = oh * ow;
            for b in 0..n {
                let xb = &x[b * in_size..(b + 1) * in_size];
                let yb = &mut y[b * out_size..(b + 1) * out_size];
                let cols: &[f32] = if shape.is_pointwise() {
                    xb
                } else {
                    let c = &mut scratch[..shape.patch() * p];
                    conv::im2col(xb, &shape, c);
                    c
                };
                match &l.weight {
                    Matrix::Dense(w) => dense::matmul_rows(w, bias, cols, l.rows, l.cols, p, yb),
                    Matrix::Sparse(s) => sparse::spmm(&s.view(), bias, cols, p, yb, p, 1),
                }
            }
        }
        Step::MaxPool { c, h, w, k, s } => {
            for b in 0..n {
                pool::max_pool2d(
                    &x[b * in_size..(b + 1) * in_size],
                    c,
                    h,
                    w,
                    k,
                    s,
                    &mut y[b * out_size..(b + 1) * out_size],
                );
            }
        }
        Step::AvgPool { c, h, w, k, s } => {
            for b in 0..n {
                pool::avg_pool2d(
                    &x[b * in_size..(b + 1) * in_size],
                    c,
                    h,
                    w,
                    k,
                    s,
                    &mut y[b * out_size..(b + 1) * out_size],
                );
            }
        }
        Step::Copy => y.copy_from_slice(x),
        Step::Relu => activation::relu(x, y),
        Step::Sine(w0) => activation::sine(x, w0, y),
        Step::Softmax { row } => activation::softmax(x, row, y),
        Step::Add => activation::add(x, x2, y),
    }
}
