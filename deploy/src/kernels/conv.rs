//! Convolution as a matrix product: im2col lays the input patches out as a `[c*k*k, oh*ow]`
//! matrix, so that the weight `[oc, c*k*k]` (dense or CSR) times it is the output
//! `[oc, oh*ow]`, already in `[c, h, w]` order.

/// Geometry of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl ConvShape {
    /// Output height and width.
    pub fn out(&self) -> (usize, usize) {
        let o = |s: usize| (s + 2 * self.padding - self.k) / self.stride + 1;
        (o(self.h), o(self.w))
    }

    /// Rows of the patch matrix (`c * k * k`).
    pub fn patch(&self) -> usize {
        self.c * self.k * self.k
    }

    /// True when the input is its own patch matrix (1x1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }
}

/// Writes the patch matrix of one sample `x` (`[c, h, w]`) into `cols`
/// (`[c*k*k, oh*ow]`, row-major).
pub fn im2col(x: &[f32], s: &ConvShape, cols: &mut [f32]) {
    let (oh, ow) = s.out();
    let p = oh * ow;
    for ch in 0..s.c {
        let plane = &x[ch * s.h * s.w..(ch + 1) * s.h * s.w];
        for di in 0..s.k {
            for dj in 0..s.k {
                let row = &mut cols[((ch * s.k + di) * s.k + dj) * p..][..p];
                for i in 0..oh {
                    let yi = (i * s.stride + di) as isize - s.padding as isize;
                    let out = &mut row[i * ow..(i + 1) * ow];
                    if yi < 0 || yi >= s.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[yi as usize * s.w..(yi as usize + 1) * s.w];
                    if s.stride == 1 && s.padding == 0 {
                        out.copy_from_slice(&src[dj..dj + ow]);
                        continue;
                    }
                    for (j, o) in out.iter_mut().enumerate() {
                        let xj = (j * s.stride + dj) as isize - s.padding as isize;
                        *o = if xj < 0 || xj >= s.w as isize {
                            0.0
                        } else {
                            src[xj as usize]
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_with_padding() {
        // 1 channel 2x2, k 3, padding 1: 2x2 output, 9 patch rows of 4.
        let s = ConvShape {
            c: 1,
            h: 2,
            w: 2,
            k: 3,
            stride: 1,
            padding: 1,
        };
        assert_eq!(s.out(), (2, 2));
        let mut cols = [9.0; 36];
        im2col(&[1.0, 2.0, 3.0, 4.0], &s, &mut cols);
        // The centre tap (di = dj = 1) sees the input itself.
        assert_eq!(&cols[16..20], &[1.0, 2.0, 3.0, 4.0]);
        // The top-left tap sees x[i-1][j-1]: only output (1, 1) has it.
        assert_eq!(&cols[0..4], &[0.0, 0.0, 0.0, 1.0]);
    }
}
