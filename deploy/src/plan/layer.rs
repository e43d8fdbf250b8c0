//! Weight layers in the form their kernel reads: dense, packed or CSR (borrowed from the
//! model or built at plan time), with the batch-1 and direct-convolution copies where
//! those kernels run; and [`LayerReport`], what a layer runs with.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::ops::Range;

use super::options::KernelChoice;
use crate::format::{Csr, Model, Tensor, TensorData};
use crate::kernels::{block, direct_conv, sell, sparse, sparse_conv};

/// A CSR matrix, borrowed from the model or built by the plan.
#[derive(Clone, Debug)]
pub(super) struct CsrStore<'a> {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_ptr: Cow<'a, [u32]>,
    pub(super) col_idx: Cow<'a, [u16]>,
    pub(super) values: Cow<'a, [f32]>,
}

impl CsrStore<'_> {
    pub(super) fn view(&self) -> Csr<'_> {
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
pub(super) enum Matrix<'a> {
    Dense(Cow<'a, [f32]>),
    /// Dense, packed into 32-output panels for the AVX-512 batch kernel.
    Packed(Vec<f32>),
    Sparse(CsrStore<'a>),
}

/// A sparse layer's copy for batch-1 calls (x86-64 with AVX2 and FMA).
#[derive(Clone, Debug)]
pub(super) enum Batch1 {
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
    pub(super) fn choose(a: &crate::format::Csr) -> Option<Self> {
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
    pub(super) fn floats(&self) -> usize {
        match self {
            Self::Sell(a) => a.stored() * 3 / 2 + a.rows(),
            Self::Blocks(b) => b.blocks() * (block::BLOCK + 1) + b.rows() + 1,
        }
    }
}

/// A weight matrix `[rows, cols]` and its bias, in the form its kernel reads.
#[derive(Clone, Debug)]
pub(super) struct Layer<'a> {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) density: f64,
    pub(super) weight: Matrix<'a>,
    /// A sparse linear layer's weights in the layout of its batch-1 vector kernel, where
    /// that kernel runs; `None`: the CSR kernel on the model's bytes.
    pub(super) batch1: Option<Batch1>,
    /// A sparse convolution's nonzeros as input offsets, where the direct kernel runs
    /// (stride 1, no padding; a CPU with AVX2): no im2col.
    pub(super) direct: Option<direct_conv::DirectConv>,
    /// A sparse convolution's nonzeros as offsets into its input's phase planes, where the
    /// AVX-512 sparse direct kernel runs ([`sparse_conv`]): any geometry, the batch folded.
    pub(super) planes: Option<sparse_conv::SparseConv>,
    pub(super) bias: Option<Cow<'a, [f32]>>,
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
    /// at every batch size (no im2col), `"planes"` for one that reads them zero-padded and
    /// split by stride phase ([`sparse_conv`]); `None` for dense layers.
    pub batch1_layout: Option<&'static str>,
}

pub(super) fn dense_view<'a>(t: &Tensor<'a>) -> Cow<'a, [f32]> {
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
pub(super) fn group_layer<'a>(
    model: &Model<'a>,
    weight: usize,
    bias: Option<usize>,
    rows: Range<usize>,
    choice: KernelChoice,
    break_even: f64,
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
        KernelChoice::Auto => density <= break_even,
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
        planes: None,
        bias: bias.map(|b| sub(dense_view(&model.tensors[b]), rows, 1)),
    }
}

/// Nonzero weights of a tensor, whatever its storage.
pub(super) fn nonzeros(t: &Tensor) -> usize {
    match t.data {
        TensorData::Csr(c) => c.values().len(),
        TensorData::F32(d) => d.iter().filter(|&&v| v != 0.0).count(),
        TensorData::F16(d) => d
            .iter()
            .filter(|&&h| half::f16::from_bits(h).to_f32() != 0.0)
            .count(),
    }
}

pub(super) fn layer<'a>(
    model: &Model<'a>,
    weight: usize,
    bias: Option<usize>,
    choice: KernelChoice,
    break_even: f64,
    expand_csr: bool,
) -> Layer<'a> {
    let t = &model.tensors[weight];
    let rows = t.dims.as_slice()[0];
    let cols = t.dims.numel() / rows;
    let density = nonzeros(t) as f64 / (rows * cols) as f64;
    let sparse = match choice {
        // A CSR-stored weight stays sparse unless `expand_csr`: expanding it allocates a
        // dense copy (on a microcontroller, more RAM than there is; `Plan::new` retries
        // without it when the plan does not fit).
        KernelChoice::Auto => {
            density <= break_even || (!expand_csr && matches!(t.data, TensorData::Csr(_)))
        }
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
        planes: None,
        bias: bias.map(|b| dense_view(&model.tensors[b])),
    }
}
