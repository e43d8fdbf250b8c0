//! Shampoo's per-block linear algebra on host slices (faer), for CPU backends.
//!
//! Why: at batch 128 on LeNet-5 the optimizer's fixed cost is a handful of products of
//! 500-1000-sized matrices per step (Shi et al. 2023, Algorithm 1: the factor statistics
//! `L_k += G_(k) G_(k)^T` and the preconditioning `G x_1 R_1 ... x_o R_o`), as large as the
//! network's own work. Done with burn's tensor ops they cost a full product for a symmetric
//! result, a transpose copy for every mode product, and a fresh allocation per op. Here:
//! - a factor is updated in its lower triangle only (`syrk`: half the multiply-adds), and
//!   scaled in place by `beta2` (no temporary);
//! - a mode product multiplies the row-major block in place of unfolding it: `R_k X_b` on
//!   each `[d_k, after]` slice, or `X R_k^T` for the last mode (no transposes);
//! - blocks are read from and written to the parameter by contiguous runs.
//!
//! Layout: blocks are row-major over their (merged) shape; factors and roots are row-major
//! `d x d`. A factor's strict upper triangle is not kept (the roots read the lower one).

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};

use super::blocking::Block;

/// `(before, d_k, after)`: a row-major tensor of `shape` seen as `[before, d_k, after]`.
pub(super) fn mode(shape: &[usize], k: usize) -> (usize, usize, usize) {
    (
        shape[..k].iter().product(),
        shape[k],
        shape[k + 1..].iter().product(),
    )
}

/// `L <- beta L + alpha X_(k) X_(k)^T` on the lower triangle of the `d_k x d_k` factor `l`,
/// for the row-major block `x` of `shape` (`X_(k)`: its mode-`k` unfolding, never formed:
/// the sum over `before` of `X_b X_b^T`, each `X_b` a contiguous `[d_k, after]` slice).
pub(super) fn update_factor(
    l: &mut [f32],
    x: &[f32],
    shape: &[usize],
    k: usize,
    beta: f32,
    alpha: f32,
) {
    let (before, d, after) = mode(shape, k);
    debug_assert_eq!(l.len(), d * d);
    debug_assert_eq!(x.len(), before * d * after);
    if beta != 1.0 {
        for i in 0..d {
            for v in &mut l[i * d..=i * d + i] {
                *v *= beta;
            }
        }
    }
    let lower = |l: &mut [f32], lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>| {
        triangular::matmul(
            MatMut::from_row_major_slice_mut(l, d, d),
            BlockStructure::TriangularLower,
            Accum::Add,
            lhs,
            BlockStructure::Rectangular,
            rhs,
            BlockStructure::Rectangular,
            alpha,
            Par::Seq,
        )
    };
    if after == 1 {
        // The last mode: X is [before, d], X_(k) X_(k)^T = X^T X.
        let x = MatRef::from_row_major_slice(x, before, d);
        lower(l, x.transpose(), x);
    } else {
        for xb in x.chunks_exact(d * after) {
            let xb = MatRef::from_row_major_slice(xb, d, after);
            lower(l, xb, xb.transpose());
        }
    }
}

/// `y = x x_k R`: the mode-`k` product of the row-major block `x` of `shape` with the
/// `d_k x d_k` matrix `r` (`y_(k) = R x_(k)`), written to `y` (same length as `x`).
pub(super) fn mode_product(y: &mut [f32], x: &[f32], shape: &[usize], k: usize, r: &[f32]) {
    let (before, d, after) = mode(shape, k);
    debug_assert_eq!(r.len(), d * d);
    let r = MatRef::from_row_major_slice(r, d, d);
    if after == 1 {
        // The last mode: Y [before, d] = X R^T.
        matmul(
            MatMut::from_row_major_slice_mut(y, before, d),
            Accum::Replace,
            MatRef::from_row_major_slice(x, before, d),
            r.transpose(),
            1.0,
            Par::Seq,
        );
    } else {
        for (yb, xb) in y.chunks_exact_mut(d * after).zip(x.chunks_exact(d * after)) {
            matmul(
                MatMut::from_row_major_slice_mut(yb, d, after),
                Accum::Replace,
                r,
                MatRef::from_row_major_slice(xb, d, after),
                1.0,
                Par::Seq,
            );
        }
    }
}

/// `x x_1 R_1 ... x_o R_o` for the row-major block `x` of `shape`, with `scratch` (same
/// length) as the second buffer; the result is in `x`.
pub(super) fn precondition(
    x: &mut Vec<f32>,
    scratch: &mut Vec<f32>,
    shape: &[usize],
    roots: &[Vec<f32>],
) {
    for (k, r) in roots.iter().enumerate() {
        mode_product(scratch, x, shape, k, r);
        std::mem::swap(x, scratch);
    }
}

/// `sum x^2` in f64, in a form that vectorizes: 16 f32 lanes, added into f64 every 1024
/// values (an f64 running sum is one long dependency chain).
pub(super) fn sum_squares(x: &[f32]) -> f64 {
    const LANES: usize = 16;
    let mut total = 0.0f64;
    for chunk in x.chunks(LANES * 64) {
        let mut acc = [0.0f32; LANES];
        let lanes = chunk.chunks_exact(LANES);
        let rest = lanes.remainder();
        for c in lanes {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v * v;
            }
        }
        total += acc.iter().map(|&a| f64::from(a)).sum::<f64>();
        total += rest.iter().map(|&v| f64::from(v * v)).sum::<f64>();
    }
    total
}

/// The symmetric factor from its lower triangle, divided by `bias`, in f64 (the inverse
/// root's input).
pub(super) fn symmetric_f64(l: &[f32], d: usize, bias: f64) -> Vec<f64> {
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let v = f64::from(l[i * d + j]) / bias;
            a[i * d + j] = v;
            a[j * d + i] = v;
        }
    }
    a
}

/// Calls `f(src, dst, len)` for every contiguous run of `block` in a row-major tensor of
/// shape `merged` (`src`: offset in the tensor, `dst`: offset in the row-major block).
pub(super) fn runs(merged: &[usize], block: &Block, mut f: impl FnMut(usize, usize, usize)) {
    let o = merged.len();
    let mut strides = vec![1usize; o];
    for k in (0..o.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * merged[k + 1];
    }
    let len = block.shape[o - 1];
    let rows: usize = block.shape[..o - 1].iter().product();
    let mut index = vec![0usize; o];
    for row in 0..rows {
        let src = (0..o)
            .map(|k| (block.offsets[k] + index[k]) * strides[k])
            .sum();
        f(src, row * len, len);
        // Next row: the multi-index over all but the last dimension, last fastest.
        for k in (0..o - 1).rev() {
            index[k] += 1;
            if index[k] < block.shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batches::SplitMix64;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| (rng.next_unit() * 2.0 - 1.0) as f32)
            .collect()
    }

    /// The mode-`k` unfolding `[d_k, before * after]`, formed explicitly (column
    /// `b * after + a`), as the definition reads.
    fn unfold(x: &[f32], shape: &[usize], k: usize) -> Vec<Vec<f64>> {
        let (before, d, after) = mode(shape, k);
        (0..d)
            .map(|i| {
                (0..before * after)
                    .map(|c| f64::from(x[(c / after * d + i) * after + c % after]))
                    .collect()
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + b.abs())
    }

    /// Each mode of a 3-d block: the lower triangle of `beta L + alpha U U^T` against the
    /// explicit unfolding in f64; the strict upper triangle is left alone.
    #[test]
    fn factor_update_is_the_unfolded_gram_matrix_on_the_lower_triangle() {
        let shape = [3, 4, 5];
        let x = random(60, 1);
        for k in 0..3 {
            let d = shape[k];
            let start = random(d * d, 2 + k as u64);
            let mut l = start.clone();
            update_factor(&mut l, &x, &shape, k, 0.9, 0.1);
            let u = unfold(&x, &shape, k);
            for i in 0..d {
                for j in 0..d {
                    let got = f64::from(l[i * d + j]);
                    if j > i {
                        assert_eq!(l[i * d + j], start[i * d + j], "upper ({i}, {j}) moved");
                        continue;
                    }
                    let gram: f64 = u[i].iter().zip(&u[j]).map(|(a, b)| a * b).sum();
                    let want = 0.9 * f64::from(start[i * d + j]) + 0.1 * gram;
                    assert!(close(got, want), "mode {k} ({i}, {j}): {got} vs {want}");
                }
            }
        }
    }

    /// `(x x_k R)_(k) = R x_(k)` for each mode of a 3-d block, and `R` need not be symmetric.
    #[test]
    fn mode_product_multiplies_the_unfolding() {
        let shape = [3, 4, 5];
        let x = random(60, 7);
        for k in 0..3 {
            let d = shape[k];
            let r = random(d * d, 8 + k as u64);
            let mut y = vec![0.0; 60];
            mode_product(&mut y, &x, &shape, k, &r);
            let ux = unfold(&x, &shape, k);
            let uy = unfold(&y, &shape, k);
            for i in 0..d {
                for c in 0..60 / d {
                    let want: f64 = (0..d).map(|j| f64::from(r[i * d + j]) * ux[j][c]).sum();
                    assert!(
                        close(uy[i][c], want),
                        "mode {k} ({i}, {c}): {} vs {want}",
                        uy[i][c]
                    );
                }
            }
        }
    }

    /// The vectorized sum of squares is the f64 sum (lengths around its chunk sizes).
    #[test]
    fn sum_of_squares_matches_the_f64_sum() {
        for n in [0, 1, 15, 16, 17, 1023, 1024, 1025, 5000] {
            let x = random(n, n as u64);
            let want: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let got = sum_squares(&x);
            assert!(
                (got - want).abs() <= 1e-6 * want.max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
    }

    /// The runs of a block cover exactly its elements, in the block's row-major order.
    #[test]
    fn runs_visit_a_block_in_row_major_order() {
        let merged = [4, 5, 6];
        let block = Block {
            offsets: vec![2, 3, 1],
            shape: vec![2, 2, 4],
        };
        let mut got = vec![usize::MAX; block.numel()];
        runs(&merged, &block, |src, dst, len| {
            for i in 0..len {
                got[dst + i] = src + i;
            }
        });
        let mut want = vec![];
        for a in 2..4 {
            for b in 3..5 {
                for c in 1..5 {
                    want.push((a * 5 + b) * 6 + c);
                }
            }
        }
        assert_eq!(got, want);
    }
}
