//! 2-D max and average pooling over `[c, h, w]` (square window, no padding).

/// Output side of a window sweep.
pub fn out_side(side: usize, kernel: usize, stride: usize) -> usize {
    (side - kernel) / stride + 1
}

/// Max pooling of one sample `x` of shape `[c, h, w]` into `y` of `[c, oh, ow]`.
pub fn max_pool2d(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    y: &mut [f32],
) {
    pool(
        x,
        c,
        h,
        w,
        kernel,
        stride,
        y,
        f32::NEG_INFINITY,
        f32::max,
        |m| m,
    );
}

/// Average pooling of one sample.
pub fn avg_pool2d(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    y: &mut [f32],
) {
    let n = (kernel * kernel) as f32;
    pool(x, c, h, w, kernel, stride, y, 0.0, |a, b| a + b, |s| s / n);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pool(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    y: &mut [f32],
    init: f32,
    fold: impl Fn(f32, f32) -> f32,
    finish: impl Fn(f32) -> f32,
) {
    let (oh, ow) = (out_side(h, kernel, stride), out_side(w, kernel, stride));
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        let out = &mut y[ch * oh * ow..(ch + 1) * oh * ow];
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = init;
                for di in 0..kernel {
                    let row = &plane[(i * stride + di) * w + j * stride..][..kernel];
                    for &v in row {
                        acc = fold(acc, v);
                    }
                }
                out[i * ow + j] = finish(acc);
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
        max_pool2d(&x, 1, 4, 4, 2, 2, &mut y);
        assert_eq!(y, [5.0, 7.0, 13.0, 15.0]);
        avg_pool2d(&x, 1, 4, 4, 2, 2, &mut y);
        assert_eq!(y, [2.5, 4.5, 10.5, 12.5]);
    }
}
