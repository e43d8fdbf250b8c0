//! Sparse weights times one activation vector (batch 1) in SELL-8 layout (sliced ELLPACK
//! with slices of 8 rows, rows sorted by length: Kreutzer et al. 2014, "A unified sparse
//! matrix data format for efficient general sparse matrix-vector multiplication on modern
//! processors with wide SIMD units").
//!
//! Why not the CSR gather-dot ([`super::sparse::spmv`]): it reduces each row to one number,
//! so every row pays a horizontal sum and a scalar tail of up to 7 nonzeros; on
//! LeNet-300-100's 300x784 layer at 90% sparsity (78 nonzeros a row) that overhead is about
//! as large as the gathers themselves. In SELL-8 the 8 lanes of a vector are 8 *rows*: step
//! `k` of a slice holds the `k`-th nonzero of each of its 8 rows, so one gather and one
//! fused multiply-add advance 8 rows at once, with no horizontal sum and no tail. Rows are
//! sorted by length (longest first) before slicing, so the padding (zero weights on
//! column 0) that evens out a slice's rows is small.
//!
//! It is a copy of the weights built when a plan is made ([`Sell8::from_csr`]), so the plan
//! builds it only where the vector kernel runs (x86-64 with AVX2 and FMA); elsewhere (a
//! microcontroller reading its weights from flash) the CSR kernel runs on the file's bytes.

use alloc::vec::Vec;

use crate::format::Csr;

/// Lanes per slice (one AVX2 vector of f32).
const LANES: usize = 8;

/// A `rows x cols` sparse matrix in SELL-8 layout.
#[derive(Clone, Debug)]
pub struct Sell8 {
    rows: usize,
    cols: usize,
    /// The original row of each lane of each slice; `u32::MAX` for the padding lanes of
    /// the last slice.
    row_of: Vec<u32>,
    /// Slice `s` spans steps `slice_start[s]..slice_start[s + 1]` (a step is 8 entries).
    slice_start: Vec<u32>,
    /// Column of each entry, step-major (padding: column 0).
    col_idx: Vec<u16>,
    /// Value of each entry (padding: 0).
    values: Vec<f32>,
}

impl Sell8 {
    /// The SELL-8 layout of `a`.
    pub fn from_csr(a: &Csr) -> Self {
        let rows = a.rows();
        let mut order: Vec<usize> = (0..rows).collect();
        // Longest rows first (stable: equal lengths keep their order).
        order.sort_by_key(|&r| core::cmp::Reverse(a.row(r).0.len()));
        let slices = rows.div_ceil(LANES);
        let mut row_of = Vec::with_capacity(slices * LANES);
        let mut slice_start = Vec::with_capacity(slices + 1);
        let mut col_idx = Vec::new();
        let mut values = Vec::new();
        let mut steps = 0u32;
        slice_start.push(0);
        for slice in order.chunks(LANES) {
            let len = a.row(slice[0]).0.len();
            for k in 0..len {
                for lane in 0..LANES {
                    let (c, v) = match slice.get(lane) {
                        Some(&r) => {
                            let (c, v) = a.row(r);
                            c.get(k).zip(v.get(k)).map_or((0, 0.0), |(&c, &v)| (c, v))
                        }
                        None => (0, 0.0),
                    };
                    col_idx.push(c);
                    values.push(v);
                }
            }
            steps += len as u32;
            slice_start.push(steps);
            for lane in 0..LANES {
                row_of.push(slice.get(lane).map_or(u32::MAX, |&r| r as u32));
            }
        }
        Self {
            rows,
            cols: a.cols(),
            row_of,
            slice_start,
            col_idx,
            values,
        }
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Entries stored, padding included (`nonzeros <= stored`).
    pub fn stored(&self) -> usize {
        self.values.len()
    }
}

/// True where [`spmv`] runs its vector kernel (x86-64 with AVX2 and FMA, feature `std`):
/// only there is the SELL-8 copy worth its memory.
pub fn available() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// `y[r] = bias[r] + sum_k a[r, k] x[k]`.
///
/// # Panics
/// When `x` is shorter than `a.cols()` or `y` than `a.rows()`.
pub fn spmv(a: &Sell8, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
    let x = &x[..a.cols];
    let y = &mut y[..a.rows];
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); `x` holds `a.cols`
        // floats and every stored column index is below `a.cols` (copied from a valid CSR,
        // or 0 for padding).
        unsafe { avx2::spmv(a, bias, x, y) };
        return;
    }
    portable_spmv(a, bias, x, y);
}

fn portable_spmv(a: &Sell8, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
    for (s, lanes) in a.row_of.chunks_exact(LANES).enumerate() {
        let (start, end) = (a.slice_start[s] as usize, a.slice_start[s + 1] as usize);
        let mut acc = [0.0f32; LANES];
        for step in start..end {
            let at = step * LANES;
            for (l, acc) in acc.iter_mut().enumerate() {
                *acc += a.values[at + l] * x[a.col_idx[at + l] as usize];
            }
        }
        write_lanes(&acc, lanes, bias, y);
    }
}

/// Each lane's sum (plus bias) to its original row.
fn write_lanes(acc: &[f32; LANES], lanes: &[u32], bias: Option<&[f32]>, y: &mut [f32]) {
    for (&r, &v) in lanes.iter().zip(acc) {
        if r != u32::MAX {
            let r = r as usize;
            y[r] = bias.map_or(0.0, |b| b[r]) + v;
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx2 {
    use core::arch::x86_64::*;

    use super::{LANES, Sell8, write_lanes};

    /// Per slice: two accumulators over alternate steps, each step one 8-index widening
    /// load, one gather (`vgatherdps`, from L1: `x` is one activation vector) and one FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn spmv(a: &Sell8, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
        let xp = x.as_ptr();
        let (cp, vp) = (a.col_idx.as_ptr(), a.values.as_ptr());
        for (s, lanes) in a.row_of.chunks_exact(LANES).enumerate() {
            let (start, end) = (a.slice_start[s] as usize, a.slice_start[s + 1] as usize);
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut step = start;
            // SAFETY: steps below `end` address entries `step * 8..step * 8 + 8`, inside
            // `col_idx` and `values` (both `slice_start[last] * 8` long); every index is a
            // column below `a.cols <= x.len()`.
            unsafe {
                while step + 2 <= end {
                    let at = step * LANES;
                    let i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(cp.add(at).cast()));
                    let i1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(cp.add(at + LANES).cast()));
                    let x0 = _mm256_i32gather_ps::<4>(xp, i0);
                    let x1 = _mm256_i32gather_ps::<4>(xp, i1);
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(at)), x0, acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(at + LANES)), x1, acc1);
                    step += 2;
                }
                if step < end {
                    let at = step * LANES;
                    let i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(cp.add(at).cast()));
                    let x0 = _mm256_i32gather_ps::<4>(xp, i0);
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(at)), x0, acc0);
                }
            }
            let mut acc = [0.0f32; LANES];
            // SAFETY: `acc` holds 8 floats.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr(), _mm256_add_ps(acc0, acc1)) };
            write_lanes(&acc, lanes, bias, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::kernels::dense_product;
    use crate::kernels::sparse::csr_from_dense;

    #[test]
    fn sell_matches_the_dense_product_for_every_row_count_and_length() {
        // Row counts around the slice width, rows of every length from 0 to all columns
        // (odd and even step counts, empty rows, full rows).
        for rows in [1, 7, 8, 9, 23, 40] {
            let cols = 37;
            let vals = crate::kernels::lcg(rows * cols, rows as u32);
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| {
                    let (r, k) = (i / cols, i % cols);
                    let keep = (r * 7 + k * 3) % cols < (r * 5) % (cols + 1);
                    if keep { vals[i] } else { 0.0 }
                })
                .collect();
            let b = crate::kernels::lcg(rows, 11);
            let x = crate::kernels::lcg(cols, 13);
            let (ptr, idx, val) = csr_from_dense(rows, cols, &w);
            let csr = Csr::new(rows, cols, &ptr, &idx, &val).unwrap();
            let sell = Sell8::from_csr(&csr);
            assert!(sell.stored() >= val.len());
            let want = dense_product(&w, &b, &x, rows, cols);
            for simd in [true, false] {
                let mut y = vec![f32::NAN; rows];
                if simd {
                    spmv(&sell, Some(&b), &x, &mut y);
                } else {
                    portable_spmv(&sell, Some(&b), &x, &mut y);
                }
                for (r, (a, e)) in y.iter().zip(&want).enumerate() {
                    assert!((a - e).abs() < 1e-5, "rows {rows}, row {r}: {a} vs {e}");
                }
            }
            let mut y = vec![f32::NAN; rows];
            spmv(&sell, None, &x, &mut y);
            for (a, (e, bb)) in y.iter().zip(want.iter().zip(&b)) {
                assert!((a - (e - bb)).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn sorting_keeps_the_padding_small() {
        // Rows of lengths 1..=64 in scrambled order: sorted, each slice's rows differ in
        // length by at most 7, so the padding is at most 7 entries per row.
        let (rows, cols) = (64, 64);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let (r, k) = (i / cols, i % cols);
                let len = (r * 37) % rows + 1;
                if k < len { 1.0 } else { 0.0 }
            })
            .collect();
        let (ptr, idx, val) = csr_from_dense(rows, cols, &w);
        let csr = Csr::new(rows, cols, &ptr, &idx, &val).unwrap();
        let sell = Sell8::from_csr(&csr);
        assert!(sell.stored() - val.len() <= rows * 7, "{}", sell.stored());
    }
}
