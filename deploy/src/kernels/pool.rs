//! 2-D max and average pooling over `[c, h, w]`: rectangular windows, strides, padding,
//! dilation and ceil mode as ONNX's `MaxPool` / `AveragePool` define them.

use crate::format::PoolGeom;

/// Max pooling of one sample `x` of shape `[c, h, w]` into `y` of `[c, oh, ow]`; padded
/// cells are ignored.
pub fn max_pool2d(x: &[f32], c: usize, h: usize, w: usize, g: &PoolGeom, y: &mut [f32]) {
    pool(x, c, h, w, g, y, f32::NEG_INFINITY, f32::max, |m, _| m);
}

/// Average pooling of one sample: the mean of the cells inside the input, or with
/// `count_pad` the sum over the window's cells inside the padded input.
pub fn avg_pool2d(x: &[f32], c: usize, h: usize, w: usize, g: &PoolGeom, y: &mut [f32]) {
    pool(x, c, h, w, g, y, 0.0, |a, b| a + b, |s, n| s / n as f32);
}

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
}
