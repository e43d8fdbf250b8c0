//! Sparse weights in 1x4 blocks times one activation vector (batch 1).
//!
//! A block is 4 consecutive weights of one row starting at a column that is a multiple of
//! 4. Where pruning removes whole blocks (structured gates over 1x4 groups), a row is a
//! list of blocks, and each block multiplies 4 *consecutive* activations: one 16-byte load
//! instead of a gather. The gathers are what bounds the unstructured kernels
//! ([`super::sell`]: about 5 cycles per 8 nonzeros); here two blocks are one 256-bit
//! multiply-add fed by two plain loads.
//!
//! Any CSR matrix can be put in this form by padding its touched blocks with zeros;
//! [`block_fill`] measures how much of the stored blocks would be real nonzeros, and the
//! plan uses this layout only when that fill is high (unstructured 90% sparsity touches
//! about one nonzero per block: four times the work). Like [`super::sell::Sell8`] it is a
//! copy made when the plan is built, where the vector kernel runs.

use alloc::vec::Vec;

use crate::format::Csr;

/// Weights per block.
pub const BLOCK: usize = 4;

/// The fraction of the entries of `a`'s touched 1x4 blocks (aligned at multiples of 4)
/// that are nonzeros: 1 when the sparsity is made of whole blocks, about `1/4` for
/// scattered nonzeros at high sparsity. 0 for an empty matrix.
pub fn block_fill(a: &Csr) -> f64 {
    let mut blocks = 0usize;
    for r in 0..a.rows() {
        let mut last = usize::MAX;
        for &c in a.row(r).0 {
            let b = c as usize / BLOCK;
            if b != last {
                blocks += 1;
                last = b;
            }
        }
    }
    if blocks == 0 {
        0.0
    } else {
        a.values().len() as f64 / (blocks * BLOCK) as f64
    }
}

/// A `rows x cols` sparse matrix as rows of 1x4 blocks (`cols` a multiple of 4).
#[derive(Clone, Debug)]
pub struct Block4 {
    rows: usize,
    cols: usize,
    /// Row `r`'s blocks are `row_ptr[r]..row_ptr[r + 1]`.
    row_ptr: Vec<u32>,
    /// First column of each block (a multiple of 4).
    start: Vec<u32>,
    /// The 4 weights of each block (zeros where the CSR had none).
    values: Vec<f32>,
}

impl Block4 {
    /// `a` in 1x4 blocks; `None` when `a.cols()` is not a multiple of 4 (a block would
    /// read past the end of the activations).
    pub fn from_csr(a: &Csr) -> Option<Self> {
        if !a.cols().is_multiple_of(BLOCK) {
            return None;
        }
        let mut row_ptr = Vec::with_capacity(a.rows() + 1);
        let mut start = Vec::new();
        let mut values = Vec::new();
        row_ptr.push(0u32);
        for r in 0..a.rows() {
            let (cols, vals) = a.row(r);
            let first = start.len();
            for (&c, &v) in cols.iter().zip(vals) {
                let s = (c as usize / BLOCK * BLOCK) as u32;
                // A new block at the row's first nonzero or a new aligned group (columns out
                // of order only make more blocks; duplicates add up, as in the CSR product).
                if start.len() == first || start.last() != Some(&s) {
                    start.push(s);
                    values.extend_from_slice(&[0.0; BLOCK]);
                }
                let at = values.len() - BLOCK + (c as usize - s as usize);
                values[at] += v;
            }
            row_ptr.push(start.len() as u32);
        }
        Some(Self {
            rows: a.rows(),
            cols: a.cols(),
            row_ptr,
            start,
            values,
        })
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Blocks stored.
    pub fn blocks(&self) -> usize {
        self.start.len()
    }
}

/// True where [`spmv`] runs its vector kernel (x86-64 with AVX2 and FMA, feature `std`).
pub fn available() -> bool {
    super::sell::available()
}

/// `y[r] = bias[r] + sum_k a[r, k] x[k]`.
///
/// # Panics
/// When `x` is shorter than `a`'s columns or `y` than its rows.
pub fn spmv(a: &Block4, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
    let x = &x[..a.cols];
    let y = &mut y[..a.rows];
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if available() {
        // SAFETY: the CPU has AVX2 and FMA (checked by `available`); every block starts
        // at a multiple of 4 below `a.cols`, a multiple of 4, so its 4 activations are
        // inside `x` (`a.cols` long).
        unsafe { avx2::spmv(a, bias, x, y) };
        return;
    }
    portable_spmv(a, bias, x, y);
}

fn portable_spmv(a: &Block4, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
    for (r, yv) in y.iter_mut().enumerate() {
        let mut acc = [0.0f32; BLOCK];
        for b in a.row_ptr[r] as usize..a.row_ptr[r + 1] as usize {
            let s = a.start[b] as usize;
            for (l, acc) in acc.iter_mut().enumerate() {
                *acc += a.values[b * BLOCK + l] * x[s + l];
            }
        }
        *yv = bias.map_or(0.0, |b| b[r]) + (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx2 {
    use core::arch::x86_64::*;

    use super::{BLOCK, Block4};

    /// Per row: four blocks per iteration in two 256-bit accumulators (each multiply-add
    /// takes two blocks: two 16-byte activation loads joined into one register), then a
    /// pair, then a last block in a 128-bit accumulator; one horizontal sum per row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn spmv(a: &Block4, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
        let xp = x.as_ptr();
        let vp = a.values.as_ptr();
        let sp = a.start.as_ptr();
        for (r, yv) in y.iter_mut().enumerate() {
            let (mut b, end) = (a.row_ptr[r] as usize, a.row_ptr[r + 1] as usize);
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            // SAFETY: block indices below `end <= blocks`; `values` holds 4 per block;
            // every `start` + 4 <= `x.len()` (see `super::spmv`).
            let tail = unsafe {
                let pair = |b: usize| {
                    let lo = _mm_loadu_ps(xp.add(*sp.add(b) as usize));
                    let hi = _mm_loadu_ps(xp.add(*sp.add(b + 1) as usize));
                    _mm256_set_m128(hi, lo)
                };
                while b + 4 <= end {
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(b * BLOCK)), pair(b), acc0);
                    acc1 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(vp.add((b + 2) * BLOCK)),
                        pair(b + 2),
                        acc1,
                    );
                    b += 4;
                }
                if b + 2 <= end {
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(b * BLOCK)), pair(b), acc0);
                    b += 2;
                }
                let acc = _mm256_add_ps(acc0, acc1);
                let mut half =
                    _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                if b < end {
                    let xv = _mm_loadu_ps(xp.add(*sp.add(b) as usize));
                    half = _mm_fmadd_ps(_mm_loadu_ps(vp.add(b * BLOCK)), xv, half);
                }
                half
            };
            let mut lanes = [0.0f32; 4];
            // SAFETY: `lanes` holds 4 floats.
            unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), tail) };
            *yv = bias.map_or(0.0, |bb| bb[r]) + (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::kernels::dense_product;
    use crate::kernels::sparse::csr_from_dense;

    /// Blocks of every count per row (0 to all), whole or partly filled.
    #[test]
    fn blocks_match_the_dense_product() {
        let (rows, cols) = (19, 40);
        let vals = crate::kernels::lcg(rows * cols, 3);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let (r, k) = (i / cols, i % cols);
                let block = k / BLOCK;
                let keep_block = (block * 7 + r * 3) % 10 < r % 11;
                let keep = keep_block && (r % 3 != 0 || k % 4 != 1);
                if keep { vals[i] } else { 0.0 }
            })
            .collect();
        let b = crate::kernels::lcg(rows, 5);
        let x = crate::kernels::lcg(cols, 7);
        let (ptr, idx, val) = csr_from_dense(rows, cols, &w);
        let csr = Csr::new(rows, cols, &ptr, &idx, &val).unwrap();
        let blocks = Block4::from_csr(&csr).unwrap();
        assert!(blocks.blocks() * BLOCK >= val.len());
        let want = dense_product(&w, &b, &x, rows, cols);
        for simd in [true, false] {
            let mut y = vec![f32::NAN; rows];
            if simd {
                spmv(&blocks, Some(&b), &x, &mut y);
            } else {
                portable_spmv(&blocks, Some(&b), &x, &mut y);
            }
            for (r, (a, e)) in y.iter().zip(&want).enumerate() {
                assert!((a - e).abs() < 1e-5, "row {r}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn fill_tells_whole_blocks_from_scattered_nonzeros() {
        let (rows, cols) = (4, 16);
        // Whole blocks: rows keep blocks 0 and 2.
        let whole: Vec<f32> = (0..rows * cols)
            .map(|i| if (i % cols) / 4 % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        // One nonzero per block.
        let scattered: Vec<f32> = (0..rows * cols)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        for (w, fill) in [(whole, 1.0), (scattered, 0.25)] {
            let (ptr, idx, val) = csr_from_dense(rows, cols, &w);
            let csr = Csr::new(rows, cols, &ptr, &idx, &val).unwrap();
            assert_eq!(block_fill(&csr), fill);
        }
        // Columns not a multiple of 4: no block layout.
        let (ptr, idx, val) = csr_from_dense(1, 6, &[1.0; 6]);
        let csr = Csr::new(1, 6, &ptr, &idx, &val).unwrap();
        assert!(Block4::from_csr(&csr).is_none());
    }
}
