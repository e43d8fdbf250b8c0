//! 2-D max and average pooling over `[c, h, w]`: rectangular windows, strides, padding,
//! dilation and ceil mode as ONNX's `MaxPool` / `AveragePool` define them.

use super::activation::max_nan;
use crate::format::PoolGeom;

/// Max pooling of one sample `x` of shape `[c, h, w]` into `y` of `[c, oh, ow]`; padded
/// cells are ignored. A window holding a NaN gives NaN, as PyTorch and ONNX Runtime do
/// (`activation::max_nan`; `f32::max` would drop the NaN and pass on the window's largest
/// number).
pub fn max_pool2d(x: &[f32], c: usize, h: usize, w: usize, g: &PoolGeom, y: &mut [f32]) {
    pool(x, c, h, w, g, y, f32::NEG_INFINITY, max_nan, |m, _| m);
}

/// Average pooling of one sample: the mean of the cells inside the input, or with
/// `count_pad` the sum over the window's cells inside the padded input.
pub fn avg_pool2d(x: &[f32], c: usize, h: usize, w: usize, g: &PoolGeom, y: &mut [f32]) {
    pool(x, c, h, w, g, y, 0.0, |a, b| a + b, |s, n| s / n as f32);
}

/// Widest row span (columns) the row-first pooling path handles on the stack; wider
/// inputs take the per-window path.
const ROW_BUFFER: usize = 512;

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pool(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    g: &PoolGeom,
    y: &mut [f32],
    init: f32,
    fold: impl Fn(f32, f32) -> f32,
    finish: impl Fn(f32, usize) -> f32,
) {
    let (oh, ow) = (
        g.out(0, h).expect("validated"),
        g.out(1, w).expect("validated"),
    );
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let (top, left) = (g.pads[0] as isize, g.pads[1] as isize);
    let (bottom, right) = ((h + g.pads[2]) as isize, (w + g.pads[3]) as isize);
    let simple = g.pads == [0; 4] && g.dilation == [1, 1] && !g.ceil;
    // Columns an output row's windows span.
    let span = ow.saturating_sub(1) * sw + kw;
    if simple && span <= ROW_BUFFER {
        // One row buffer for the whole call (filled from each window's first row, so it
        // is never cleared: a fresh array per output row cost more than the pooling).
        let mut buffer = [0.0f32; ROW_BUFFER];
        let rows = &mut buffer[..span];
        for ch in 0..c {
            let plane = &x[ch * h * w..(ch + 1) * h * w];
            let out = &mut y[ch * oh * ow..(ch + 1) * oh * ow];
            for (i, out_row) in out.chunks_exact_mut(ow).enumerate() {
                // Fold the window's rows element-wise first (a vector loop over the
                // columns), then the columns of each window: no per-output chain of
                // kh * kw dependent folds.
                rows.copy_from_slice(&plane[i * sh * w..][..span]);
                for di in 1..kh {
                    let src = &plane[(i * sh + di) * w..][..span];
                    for (r, &v) in rows.iter_mut().zip(src) {
                        *r = fold(*r, v);
                    }
                }
                if kw == 2 && sw == 2 {
                    for (o, pair) in out_row.iter_mut().zip(rows.chunks_exact(2)) {
                        *o = finish(fold(pair[0], pair[1]), kh * kw);
                    }
                } else {
                    for (j, o) in out_row.iter_mut().enumerate() {
                        let window = &rows[j * sw..j * sw + kw];
                        *o = finish(window.iter().fold(init, |a, &v| fold(a, v)), kh * kw);
                    }
                }
            }
        }
        return;
    }
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        let out = &mut y[ch * oh * ow..(ch + 1) * oh * ow];
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = init;
                let mut count = 0;
                if simple {
                    for di in 0..kh {
                        let row = &plane[(i * sh + di) * w + j * sw..][..kw];
                        for &v in row {
                            acc = fold(acc, v);
                        }
                    }
                    count = kh * kw;
                } else {
                    for di in 0..kh {
                        let yi = (i * sh + di * dh) as isize - top;
                        for dj in 0..kw {
                            let xj = (j * sw + dj * dw) as isize - left;
                            let inside = yi >= 0 && yi < h as isize && xj >= 0 && xj < w as isize;
                            if inside {
                                acc = fold(acc, plane[yi as usize * w + xj as usize]);
                            }
                            let counted = if g.count_pad {
                                yi < bottom && xj < right
                            } else {
                                inside
                            };
                            count += counted as usize;
                        }
                    }
                }
                out[i * ow + j] = finish(acc, count.max(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// The row-first path (no padding) against the pooling written out per window, on odd
    /// sizes, strides and kernels.
    #[test]
    fn row_first_path_matches_a_direct_computation() {
        for (h, w, k, s) in [(7, 9, 3, 2), (8, 8, 2, 2), (5, 11, 2, 1), (6, 13, 3, 3)] {
            let x: Vec<f32> = (0..2 * h * w)
                .map(|i| ((i * 37) % 23) as f32 - 11.0)
                .collect();
            let g = PoolGeom::simple(k, s);
            let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
            let mut y = vec![0.0; 2 * oh * ow];
            max_pool2d(&x, 2, h, w, &g, &mut y);
            let mut z = vec![0.0; 2 * oh * ow];
            avg_pool2d(&x, 2, h, w, &g, &mut z);
            for ch in 0..2 {
                for i in 0..oh {
                    for j in 0..ow {
                        let cells: Vec<f32> = (0..k)
                            .flat_map(|di| (0..k).map(move |dj| (di, dj)))
                            .map(|(di, dj)| x[ch * h * w + (i * s + di) * w + j * s + dj])
                            .collect();
                        let max = cells.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        let mean = cells.iter().sum::<f32>() / cells.len() as f32;
                        let at = ch * oh * ow + i * ow + j;
                        assert_eq!(y[at], max, "{h}x{w} k{k} s{s} at {at}");
                        assert!((z[at] - mean).abs() < 1e-5, "{h}x{w} k{k} s{s} at {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn two_by_two() {
        let x: [f32; 16] = core::array::from_fn(|i| i as f32);
        let mut y = [0.0; 4];
        let g = PoolGeom::simple(2, 2);
        max_pool2d(&x, 1, 4, 4, &g, &mut y);
        assert_eq!(y, [5.0, 7.0, 13.0, 15.0]);
        avg_pool2d(&x, 1, 4, 4, &g, &mut y);
        assert_eq!(y, [2.5, 4.5, 10.5, 12.5]);
    }

    /// A NaN anywhere in a window (first cell, last cell, or only in the folded rows of
    /// the row-first path) makes that window's max NaN and leaves the others alone; the
    /// infinities are ordinary values of the max and the average (`inf + -inf` is NaN).
    #[test]
    fn nan_in_a_window_gives_nan_in_both_paths() {
        let (h, w) = (4, 6);
        for nan_at in [0, 1, 7, 13, 23] {
            let mut x: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
            x[nan_at] = f32::NAN;
            x[20] = f32::INFINITY;
            x[3] = f32::NEG_INFINITY;
            // 2x2 stride 2 (the paired path), 3x3 stride 1 (per-window fold), and padded
            // (the general path).
            let padded = PoolGeom {
                pads: [1, 1, 1, 1],
                ..PoolGeom::simple(2, 2)
            };
            for g in [PoolGeom::simple(2, 2), PoolGeom::simple(3, 1), padded] {
                let (oh, ow) = (g.out(0, h).unwrap(), g.out(1, w).unwrap());
                let mut y = vec![0.0; oh * ow];
                max_pool2d(&x, 1, h, w, &g, &mut y);
                let mut z = vec![0.0; oh * ow];
                avg_pool2d(&x, 1, h, w, &g, &mut z);
                for i in 0..oh {
                    for j in 0..ow {
                        // The window's cells inside the input.
                        let mut cells = Vec::new();
                        for di in 0..g.kernel[0] {
                            for dj in 0..g.kernel[1] {
                                let r = (i * g.stride[0] + di) as isize - g.pads[0] as isize;
                                let c = (j * g.stride[1] + dj) as isize - g.pads[1] as isize;
                                if (0..h as isize).contains(&r) && (0..w as isize).contains(&c) {
                                    cells.push(x[r as usize * w + c as usize]);
                                }
                            }
                        }
                        let (m, a) = (y[i * ow + j], z[i * ow + j]);
                        if cells.iter().any(|v| v.is_nan()) {
                            assert!(m.is_nan() && a.is_nan(), "{g:?} window {i},{j}: {m} {a}");
                            continue;
                        }
                        let max = cells.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        assert_eq!(m, max, "{g:?} window {i},{j}");
                        let has = |v: f32| cells.contains(&v);
                        if has(f32::INFINITY) && has(f32::NEG_INFINITY) {
                            assert!(a.is_nan());
                        } else if has(f32::INFINITY) {
                            assert_eq!(a, f32::INFINITY);
                        } else if has(f32::NEG_INFINITY) {
                            assert_eq!(a, f32::NEG_INFINITY);
                        }
                    }
                }
            }
        }
    }
}
