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
    if simple && g.kernel == [h, w] {
        // One window over the whole plane (a CNN's global pooling head): one fold per
        // channel, no row buffers (a 1280-channel 2x2 head spent its time setting them up).
        for (plane, o) in x.chunks_exact(h * w).zip(y.iter_mut()).take(c) {
            *o = finish(plane.iter().fold(init, |a, &v| fold(a, v)), h * w);
        }
        return;
    }
    // Columns an output row's windows span, from padded column 0.
    let span = ow.saturating_sub(1) * sw + kw;
    if g.dilation == [1, 1] && span <= ROW_BUFFER {
        // One row buffer for the whole call; its padded columns hold `init` (the fold's
        // identity: padded cells are ignored), the image's columns are overwritten by each
        // window's first row inside the image. resnet18's padded 3x3 max pooling took
        // 2.3 ms per window with bounds checks, onnxruntime's 0.1 ms.
        let mut buffer = [init; ROW_BUFFER];
        let rows = &mut buffer[..span];
        let mut windows = [0.0f32; ROW_BUFFER];
        // Padded columns [x0, x1) are the image's.
        let x0 = (left as usize).min(span);
        let x1 = (left as usize + w).min(span).max(x0);
        let image = x0 - left as usize..x1 - left as usize;
        // Cells of window j's columns that count (inside the image, or inside the padded
        // input with `count_pad`), and the same for rows: a window's count is their product.
        let inside = |lo: isize, k: usize, end: isize, start: isize| {
            ((lo + k as isize).min(end) - lo.max(start)).max(0) as usize
        };
        let counts = |lo: isize, k: usize, n: usize, end_pad: isize| {
            if g.count_pad {
                inside(lo, k, end_pad, lo)
            } else {
                inside(lo, k, n as isize, 0)
            }
        };
        for ch in 0..c {
            let plane = &x[ch * h * w..(ch + 1) * h * w];
            let out = &mut y[ch * oh * ow..(ch + 1) * oh * ow];
            for (i, out_row) in out.chunks_exact_mut(ow).enumerate() {
                let y0 = (i * sh) as isize - top;
                let (r0, r1) = (
                    y0.max(0) as usize,
                    ((y0 + kh as isize).min(h as isize)).max(0) as usize,
                );
                let row_count = counts(y0, kh, h, bottom);
                // Fold the window's rows element-wise first (a vector loop over the
                // columns), then the columns of each window: no per-output chain of
                // kh * kw dependent folds.
                let cols = &mut rows[x0..x1];
                if r0 < r1 {
                    cols.copy_from_slice(&plane[r0 * w..][image.clone()]);
                    for r in r0 + 1..r1 {
                        let src = &plane[r * w..][image.clone()];
                        for (c, &v) in cols.iter_mut().zip(src) {
                            *c = fold(*c, v);
                        }
                    }
                } else {
                    cols.fill(init);
                }
                if kw == 2 && sw == 2 && simple {
                    for (o, pair) in out_row.iter_mut().zip(rows.chunks_exact(2)) {
                        *o = finish(fold(pair[0], pair[1]), kh * kw);
                    }
                } else {
                    // The windows' columns folded at every start column (`kw` vector passes
                    // over the row), then every `sw`-th start taken: a fold per window was
                    // a chain of `kw` dependent scalar folds per output.
                    let starts = span - kw + 1;
                    let win = &mut windows[..starts];
                    win.copy_from_slice(&rows[..starts]);
                    for dj in 1..kw {
                        for (a, &v) in win.iter_mut().zip(&rows[dj..dj + starts]) {
                            *a = fold(*a, v);
                        }
                    }
                    for (j, o) in out_row.iter_mut().enumerate() {
                        let lo = (j * sw) as isize - left;
                        let n = row_count * counts(lo, kw, w, right);
                        *o = finish(win[j * sw], n.max(1));
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
        // The last: one window over the whole plane (global pooling).
        for (h, w, k, s) in [
            (7, 9, 3, 2),
            (8, 8, 2, 2),
            (5, 11, 2, 1),
            (6, 13, 3, 3),
            (5, 5, 5, 1),
        ] {
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

    /// The row-first path with padding, ceil mode and `count_pad` against ONNX's
    /// definition written out per window (the max over the window's cells inside the
    /// input; the mean over them, or with `count_pad` the sum over the cells inside the
    /// padded input), on odd sizes, asymmetric padding and windows past the padding.
    #[test]
    fn padded_windows_match_the_definition() {
        let geoms = [
            ([3, 3], [2, 2], [1, 1, 1, 1], false),
            ([3, 3], [2, 2], [1, 1, 1, 1], true),
            ([3, 2], [1, 2], [0, 1, 2, 0], false),
            ([2, 3], [2, 1], [1, 2, 0, 1], true),
            ([4, 4], [3, 3], [2, 2, 2, 2], true),
        ];
        for (h, w) in [(7, 9), (6, 5), (4, 11)] {
            let x: Vec<f32> = (0..2 * h * w)
                .map(|i| ((i * 37) % 23) as f32 - 11.0)
                .collect();
            for &(kernel, stride, pads, ceil) in &geoms {
                for count_pad in [false, true] {
                    let g = PoolGeom {
                        kernel,
                        stride,
                        pads,
                        ceil,
                        count_pad,
                        ..PoolGeom::simple(1, 1)
                    };
                    let (Some(oh), Some(ow)) = (g.out(0, h), g.out(1, w)) else {
                        continue;
                    };
                    let mut y = vec![0.0; 2 * oh * ow];
                    max_pool2d(&x, 2, h, w, &g, &mut y);
                    let mut z = vec![0.0; 2 * oh * ow];
                    avg_pool2d(&x, 2, h, w, &g, &mut z);
                    for ch in 0..2 {
                        for i in 0..oh {
                            for j in 0..ow {
                                let (mut max, mut sum, mut n) = (f32::NEG_INFINITY, 0.0, 0);
                                for di in 0..kernel[0] {
                                    for dj in 0..kernel[1] {
                                        let r = (i * stride[0] + di) as isize - pads[0] as isize;
                                        let c = (j * stride[1] + dj) as isize - pads[1] as isize;
                                        let inside = (0..h as isize).contains(&r)
                                            && (0..w as isize).contains(&c);
                                        if inside {
                                            let v = x[ch * h * w + r as usize * w + c as usize];
                                            max = max.max(v);
                                            sum += v;
                                        }
                                        let padded = r < (h + pads[2]) as isize
                                            && c < (w + pads[3]) as isize;
                                        n += if count_pad { padded } else { inside } as usize;
                                    }
                                }
                                let at = ch * oh * ow + i * ow + j;
                                let what = alloc::format!("{h}x{w} {g:?} at {i},{j}");
                                assert_eq!(y[at], max, "{what}");
                                assert!((z[at] - sum / n.max(1) as f32).abs() < 1e-5, "{what}");
                            }
                        }
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
            // 2x2 stride 2 (the paired path), 3x3 stride 1 (per-window fold), padded, and
            // one window over the whole plane.
            let padded = PoolGeom {
                pads: [1, 1, 1, 1],
                ..PoolGeom::simple(2, 2)
            };
            let global = PoolGeom {
                kernel: [h, w],
                ..PoolGeom::simple(1, 1)
            };
            for g in [
                PoolGeom::simple(2, 2),
                PoolGeom::simple(3, 1),
                padded,
                global,
            ] {
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
