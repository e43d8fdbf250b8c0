//! What a convolution's output goes through in the pass that writes it: a residual added
//! and a ReLU, `y = relu(conv(x, w) + b + r)`, as a ResNet's basic block ends (He et al.
//! 2016) and as every convolution of LeNet-5, the ResNet and the MobileNets is followed by
//! a ReLU. Done by burn's tensor ops, each of them is a pass of its own over an output
//! that has left the cache, with a fresh allocation, and so is each of their gradients;
//! here they cost nothing in the forward (the kernels' output copy applies them) and one
//! in-place pass in the backward ([`mask`]).
//!
//! The ReLU is `max(v, 0)` (burn's: NaN becomes 0) and its gradient passes where the
//! output is positive (burn's `relu_backward`).

/// The residual and activation applied to the convolution's output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Added to the output, same layout (`[batch, c_out, oh, ow]`).
    pub residual: Option<&'a [f32]>,
    /// ReLU last.
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Nothing but the bias.
    pub const NONE: Epilogue<'static> = Epilogue {
        residual: None,
        relu: false,
    };

    /// `dst[i] = act(src[i] + bias + residual[at + i])`.
    #[inline]
    pub fn write(&self, dst: &mut [f32], src: &[f32], bias: f32, at: usize) {
        let src = &src[..dst.len()];
        match (self.residual, self.relu) {
            (None, false) => dst.iter_mut().zip(src).for_each(|(d, s)| *d = s + bias),
            (None, true) => dst
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = (s + bias).max(0.0)),
            (Some(r), relu) => {
                let r = &r[at..][..dst.len()];
                for ((d, s), r) in dst.iter_mut().zip(src).zip(r) {
                    let v = s + bias + r;
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }

    /// In place: `dst[i] = act(dst[i] + bias + residual[at + i])`.
    #[inline]
    pub fn apply(&self, dst: &mut [f32], bias: f32, at: usize) {
        match (self.residual, self.relu) {
            (None, false) => dst.iter_mut().for_each(|d| *d += bias),
            (None, true) => dst.iter_mut().for_each(|d| *d = (*d + bias).max(0.0)),
            (Some(r), relu) => {
                let r = &r[at..][..dst.len()];
                for (d, r) in dst.iter_mut().zip(r) {
                    let v = *d + bias + r;
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

/// The ReLU's backward in place: `dy[i] = 0` where `y[i] <= 0` (`y` the ReLU's output).
/// A select, not a branch: on a ReLU's output the branch is a coin toss, and its
/// mispredictions made this pass 12-15% of a ResNet or MobileNet step (issue 33).
#[inline]
pub fn mask(dy: &mut [f32], y: &[f32]) {
    for (g, &v) in dy.iter_mut().zip(y) {
        *g = if v <= 0.0 { 0.0 } else { *g };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_apply_agree_with_the_definition() {
        let src = [-2.0f32, -0.5, 0.0, 0.25, 3.0, f32::NAN];
        let r = [9.0f32, 1.0, 0.5, -1.0, -4.0, 0.0, 2.0, 0.0];
        for residual in [None, Some(&r[..])] {
            for relu in [false, true] {
                let e = Epilogue { residual, relu };
                let mut written = [7.0f32; 6];
                e.write(&mut written, &src, 0.5, 2);
                let mut applied = src;
                e.apply(&mut applied, 0.5, 2);
                for (i, s) in src.iter().enumerate() {
                    let mut v = s + 0.5 + residual.map_or(0.0, |r| r[2 + i]);
                    if relu {
                        v = v.max(0.0);
                    }
                    for got in [written[i], applied[i]] {
                        assert!(
                            got == v || (got.is_nan() && v.is_nan()),
                            "{residual:?} {relu}: {got} != {v} at {i}"
                        );
                    }
                }
            }
        }
        // burn's ReLU: NaN becomes 0.
        let mut nan = [f32::NAN];
        Epilogue {
            residual: None,
            relu: true,
        }
        .apply(&mut nan, 0.0, 0);
        assert_eq!(nan, [0.0]);
    }

    #[test]
    fn mask_passes_the_gradient_where_the_output_is_positive() {
        let mut dy = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        mask(&mut dy, &[0.0, 0.5, -1.0, 1e-30, f32::NAN, -0.0]);
        assert_eq!(dy, [0.0, 2.0, 0.0, 4.0, 5.0, 0.0]);
    }
}
