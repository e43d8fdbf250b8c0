//! Patch-free convolution in portable Rust: the kernel of the plan a microcontroller
//! builds, whose RAM is the device's.
//!
//! Why: the im2col product ([`super::conv`]) first lays out a `[c*kh*kw, oh*ow]` patch
//! matrix, which for LeNet-5's first layer is 25 x 576 floats (57.6 KB): more than the RAM
//! of most Cortex-M boards, and more than everything else that network needs at batch 1.
//! Here every weight tap `w[o, c, di, dj]` adds
//! `w * x[c, i*sh + di*dh - pt, j*sw + dj*dw - pl]` to `y[o, i, j]` for the output
//! positions whose input lies inside the image, read straight from the input planes: no scratch at all, so a convolution's RAM is its input
//! and output. The work is the same multiply-adds as the matrix product (padding skipped,
//! not multiplied by zero); each tap is an `axpy` over an output row, which a core without
//! a cache (a Cortex-M's SRAM) runs as fast as the matrix product's inner loop.
//!
//! Dense weights run every tap, zeros included, so that a NaN or an infinity in the image
//! propagates exactly as in the dense product (`0 * inf` is NaN). Sparse (CSR) weights run
//! their stored taps; where the image holds a non-finite value, an output whose window
//! meets one through a pruned tap is made NaN, as the dense product of the same weights
//! would make it (the rule of [`super::sparse::match_dense_on_non_finite`]).

use super::conv::ConvShape;
use super::sparse::all_finite;
use crate::format::Csr;

/// Whether a plan runs its (non-pointwise, non-depthwise) convolutions patch-free: the
/// plan a microcontroller builds (no vector kernels: `PlanOptions::in_place`), and every
/// plan on a target without an operating system, where RAM is what is scarce.
pub fn preferred(vector_kernels: bool) -> bool {
    !vector_kernels || cfg!(target_os = "none")
}

/// `y[i, j] += w * x[c, i*sh + di*dh - pt, j*sw + dj*dw - pl]` over the output plane `y`
/// (`[oh, ow]`) for one tap `k = (c * kh + di) * kw + dj`.
fn add_tap(x: &[f32], s: &ConvShape, k: usize, w: f32, y: &mut [f32]) {
    let [kh, kw] = s.k;
    let (c, di, dj) = (k / (kh * kw), k / kw % kh, k % kw);
    let (oh, ow) = s.out();
    let (j0, j1) = s.valid_columns(dj * s.dilation[1]);
    if j0 >= j1 {
        return;
    }
    let plane = &x[c * s.h * s.w..(c + 1) * s.h * s.w];
    let (sh, sw) = (s.stride[0], s.stride[1]);
    let row_off = di * s.dilation[0];
    for i in 0..oh {
        let Some(ii) = (i * sh + row_off).checked_sub(s.pads[0]) else {
            continue;
        };
        if ii >= s.h {
            break;
        }
        let start = ii * s.w + j0 * sw + dj * s.dilation[1] - s.pads[1];
        let yr = &mut y[i * ow + j0..i * ow + j1];
        if sw == 1 {
            for (yv, &xv) in yr.iter_mut().zip(&plane[start..start + (j1 - j0)]) {
                *yv += w * xv;
            }
        } else {
            for (t, yv) in yr.iter_mut().enumerate() {
                *yv += w * plane[start + t * sw];
            }
        }
    }
}

/// `y` (`[rows, oh, ow]`) = the convolution of one image `x` (`[c, h, w]`) with a dense
/// row-major weight `[rows, c*kh*kw]`, plus `bias`.
pub fn dense(
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    x: &[f32],
    s: &ConvShape,
    y: &mut [f32],
) {
    let patch = s.patch();
    let (oh, ow) = s.out();
    let p = oh * ow;
    for r in 0..rows {
        let yr = &mut y[r * p..(r + 1) * p];
        yr.fill(bias.map_or(0.0, |b| b[r]));
        for (k, &wv) in w[r * patch..(r + 1) * patch].iter().enumerate() {
            add_tap(x, s, k, wv, yr);
        }
    }
}

/// As [`dense`], with a CSR weight `a` (`[rows, c*kh*kw]`): only the stored taps run.
pub fn sparse(a: &Csr, bias: Option<&[f32]>, x: &[f32], s: &ConvShape, y: &mut [f32]) {
    let (oh, ow) = s.out();
    let p = oh * ow;
    for r in 0..a.rows() {
        let yr = &mut y[r * p..(r + 1) * p];
        yr.fill(bias.map_or(0.0, |b| b[r]));
        let (cols, vals) = a.row(r);
        for (&k, &wv) in cols.iter().zip(vals) {
            add_tap(x, s, usize::from(k), wv, yr);
        }
    }
    let x = &x[..s.c * s.h * s.w];
    if !all_finite(x) {
        match_dense_on_non_finite(a, x, s, y);
    }
}

/// Where a window of `x` meets a non-finite value through a tap the row does not store,
/// the dense product of the same weights (the pruned ones 0) is NaN: so is the output.
fn match_dense_on_non_finite(a: &Csr, x: &[f32], s: &ConvShape, y: &mut [f32]) {
    let [kh, kw] = s.k;
    let (oh, ow) = s.out();
    let p = oh * ow;
    // The input cell tap `k` reads for output `(i, j)`, if inside the image.
    let cell = |k: usize, i: usize, j: usize| -> Option<usize> {
        let (c, di, dj) = (k / (kh * kw), k / kw % kh, k % kw);
        let ii = (i * s.stride[0] + di * s.dilation[0]).checked_sub(s.pads[0])?;
        let jj = (j * s.stride[1] + dj * s.dilation[1]).checked_sub(s.pads[1])?;
        (ii < s.h && jj < s.w).then(|| (c * s.h + ii) * s.w + jj)
    };
    let mut bad = alloc::vec::Vec::new();
    for i in 0..oh {
        for j in 0..ow {
            bad.clear();
            bad.extend(
                (0..s.patch()).filter(|&k| cell(k, i, j).is_some_and(|at| !x[at].is_finite())),
            );
            if bad.is_empty() {
                continue;
            }
            for r in 0..a.rows() {
                let (cols, _) = a.row(r);
                let covered = bad
                    .iter()
                    .all(|&k| cols.iter().any(|&c| usize::from(c) == k));
                if !covered {
                    y[r * p + i * ow + j] = f32::NAN;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::kernels::sparse::csr_from_dense;
    use crate::kernels::{conv, dense_product, lcg};

    /// The im2col product, the reference.
    fn reference(w: &[f32], b: &[f32], rows: usize, x: &[f32], s: &ConvShape) -> Vec<f32> {
        let (oh, ow) = s.out();
        let p = oh * ow;
        let mut cols = alloc::vec![0.0; s.patch() * p];
        conv::im2col(x, s, &mut cols);
        let mut y = alloc::vec![0.0; rows * p];
        for j in 0..p {
            let col: Vec<f32> = (0..s.patch()).map(|k| cols[k * p + j]).collect();
            for (r, v) in dense_product(w, b, &col, rows, s.patch())
                .into_iter()
                .enumerate()
            {
                y[r * p + j] = v;
            }
        }
        y
    }

    fn shapes() -> Vec<ConvShape> {
        let mut v = alloc::vec![
            ConvShape::square(1, 28, 28, 5, 1, 0),
            ConvShape::square(3, 9, 11, 3, 1, 1),
            ConvShape::square(2, 10, 7, 3, 2, 1),
            ConvShape::square(4, 8, 8, 1, 2, 0),
            ConvShape::square(2, 5, 5, 7, 1, 3),
        ];
        v.push(ConvShape {
            c: 2,
            h: 9,
            w: 10,
            k: [3, 2],
            stride: [2, 3],
            pads: [1, 0, 2, 3],
            dilation: [2, 1],
        });
        v
    }

    #[test]
    fn dense_and_sparse_equal_the_im2col_product_on_every_geometry() {
        for (n, s) in shapes().into_iter().enumerate() {
            let rows = 3;
            let x = lcg(s.c * s.h * s.w, 7 + n as u32);
            let mut w = lcg(rows * s.patch(), 11 + n as u32);
            let b = lcg(rows, 13);
            let (oh, ow) = s.out();
            let want = reference(&w, &b, rows, &x, &s);
            let mut y = alloc::vec![f32::NAN; rows * oh * ow];
            dense(&w, Some(&b), rows, &x, &s, &mut y);
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() <= 1e-5, "{s:?}: {a} vs {e}");
            }
            // Prune two thirds of the taps.
            for (k, v) in w.iter_mut().enumerate() {
                if k % 3 != 0 {
                    *v = 0.0;
                }
            }
            let want = reference(&w, &b, rows, &x, &s);
            let (ptr, idx, val) = csr_from_dense(rows, s.patch(), &w);
            let a = Csr::new(rows, s.patch(), &ptr, &idx, &val).unwrap();
            let mut y = alloc::vec![f32::NAN; rows * oh * ow];
            sparse(&a, Some(&b), &x, &s, &mut y);
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() <= 1e-5, "{s:?} sparse: {a} vs {e}");
            }
        }
    }

    #[test]
    fn a_nan_reaches_the_outputs_the_dense_product_makes_nan() {
        let s = ConvShape::square(2, 6, 6, 3, 1, 1);
        let rows = 2;
        let mut x = lcg(s.c * s.h * s.w, 3);
        x[s.h * s.w + 2 * s.w + 3] = f32::NAN; // channel 1, (2, 3)
        x[4] = f32::INFINITY; // channel 0, (0, 4)
        let mut w = lcg(rows * s.patch(), 5);
        for (k, v) in w.iter_mut().enumerate() {
            if k % 2 == 1 {
                *v = 0.0;
            }
        }
        let b = [0.25, -0.5];
        let want = reference(&w, &b, rows, &x, &s);
        let (ptr, idx, val) = csr_from_dense(rows, s.patch(), &w);
        let a = Csr::new(rows, s.patch(), &ptr, &idx, &val).unwrap();
        let (mut yd, mut ys) = (alloc::vec![0.0; want.len()], alloc::vec![0.0; want.len()]);
        dense(&w, Some(&b), rows, &x, &s, &mut yd);
        sparse(&a, Some(&b), &x, &s, &mut ys);
        assert!(want.iter().any(|v| v.is_nan()));
        assert!(want.iter().any(|v| v.is_finite()));
        for (i, e) in want.iter().enumerate() {
            for (name, got) in [("dense", yd[i]), ("sparse", ys[i])] {
                if e.is_nan() {
                    assert!(got.is_nan(), "{name} {i}: {got}, want NaN");
                } else if e.is_infinite() {
                    assert_eq!(got, *e, "{name} {i}");
                } else {
                    assert!((got - e).abs() <= 1e-5, "{name} {i}: {got} vs {e}");
                }
            }
        }
    }
}
