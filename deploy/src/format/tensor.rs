//! Weight tensors borrowed from the model bytes: dense f32, f16, or validated CSR.

use alloc::vec::Vec;

use super::dims::Dims;

/// A weight tensor, borrowed from the model bytes.
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    /// Dense f32, row-major.
    F32(&'a [f32]),
    /// Dense f16 bits, row-major.
    F16(&'a [u16]),
    /// Compressed sparse rows.
    Csr(Csr<'a>),
}

/// A validated CSR matrix view: `row_ptr` has `rows + 1` entries, starts at 0, never
/// decreases and ends at the number of nonzeros; every column index is below `cols`. Only
/// [`Csr::new`] builds one, so the kernels may index activations by its columns without
/// bounds checks.
#[derive(Clone, Copy, Debug)]
pub struct Csr<'a> {
    rows: usize,
    cols: usize,
    row_ptr: &'a [u32],
    col_idx: &'a [u16],
    values: &'a [f32],
}

impl<'a> Csr<'a> {
    /// Validates the arrays (O(rows + nonzeros)); `None` when they do not form a CSR
    /// matrix of `rows x cols`.
    pub fn new(
        rows: usize,
        cols: usize,
        row_ptr: &'a [u32],
        col_idx: &'a [u16],
        values: &'a [f32],
    ) -> Option<Self> {
        let nnz = values.len();
        let ok = row_ptr.len() == rows.checked_add(1)?
            && col_idx.len() == nnz
            && row_ptr[0] == 0
            && row_ptr[rows] as usize == nnz
            && row_ptr.windows(2).all(|w| w[0] <= w[1])
            && col_idx.iter().all(|&c| (c as usize) < cols);
        ok.then_some(Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// A view of arrays known to be valid (built from a validated view, or by code that
    /// produces valid arrays); checked in debug builds only.
    pub(crate) fn trusted(
        rows: usize,
        cols: usize,
        row_ptr: &'a [u32],
        col_idx: &'a [u16],
        values: &'a [f32],
    ) -> Self {
        debug_assert!(Self::new(rows, cols, row_ptr, col_idx, values).is_some());
        Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `rows + 1` offsets into `col_idx` / `values`.
    pub fn row_ptr(&self) -> &'a [u32] {
        self.row_ptr
    }

    /// Column of each nonzero.
    pub fn col_idx(&self) -> &'a [u16] {
        self.col_idx
    }

    /// Value of each nonzero.
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// The column indices and values of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> (&'a [u16], &'a [f32]) {
        let (s, e) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        (&self.col_idx[s..e], &self.values[s..e])
    }
}

/// One tensor: shape and data.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    /// Shape.
    pub dims: Dims,
    /// Data.
    pub data: TensorData<'a>,
}

impl Tensor<'_> {
    /// The elements as dense row-major f32 (half precision widened exactly, CSR expanded).
    pub fn to_dense(&self) -> Vec<f32> {
        match self.data {
            TensorData::F32(d) => d.to_vec(),
            TensorData::F16(d) => d
                .iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect(),
            TensorData::Csr(c) => {
                let mut out = alloc::vec![0.0; c.rows() * c.cols()];
                for r in 0..c.rows() {
                    let (idx, vals) = c.row(r);
                    for (&k, &v) in idx.iter().zip(vals) {
                        out[r * c.cols() + k as usize] = v;
                    }
                }
                out
            }
        }
    }

    /// Stored nonzeros / elements (1 for dense tensors).
    pub fn stored_density(&self) -> f64 {
        match &self.data {
            TensorData::Csr(c) => c.values().len() as f64 / self.dims.numel() as f64,
            _ => 1.0,
        }
    }

    /// Bytes of its data in the file.
    pub fn bytes(&self) -> usize {
        match &self.data {
            TensorData::F32(d) => 4 * d.len(),
            TensorData::F16(d) => 2 * d.len(),
            TensorData::Csr(c) => {
                4 * c.values().len() + 4 * c.row_ptr().len() + 2 * c.col_idx().len()
            }
        }
    }
}
