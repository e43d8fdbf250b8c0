//! The shape arithmetic of a 2-D convolution, checked once so that the kernels can index
//! without bounds surprises.

use burn::tensor::ops::ConvOptions;

/// Every size a convolution kernel needs: `x [batch, c_in, h, w]`, weight
/// `[c_out, c_in / groups, kh, kw]`, `y [batch, c_out, oh, ow]` with
/// `oh = (h + 2 pad - dil (kh - 1) - 1) / stride + 1` (and the same for `ow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Samples.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Zero padding on each side (rows, columns).
    pub pad: [usize; 2],
    /// Dilation (rows, columns).
    pub dil: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Geometry {
    /// The geometry of `x` (dims) convolved with `weight` (dims) under `options`, or why
    /// it is not a valid convolution.
    pub fn new(
        x: [usize; 4],
        weight: [usize; 4],
        options: &ConvOptions<2>,
    ) -> Result<Self, String> {
        let [batch, c_in, h, w] = x;
        let [c_out, c_in_g, kh, kw] = weight;
        let groups = options.groups;
        if groups == 0 || options.stride.contains(&0) || options.dilation.contains(&0) {
            return Err(format!(
                "conv2d: zero groups, stride or dilation in {options:?}"
            ));
        }
        if c_in_g * groups != c_in || !c_out.is_multiple_of(groups) {
            return Err(format!(
                "conv2d: input {x:?} and weight {weight:?} disagree with {groups} groups"
            ));
        }
        let out = |n: usize, k: usize, i: usize| {
            let span = options.dilation[i] * (k.max(1) - 1) + 1;
            (n + 2 * options.padding[i])
                .checked_sub(span)
                .map(|r| r / options.stride[i] + 1)
        };
        let (Some(oh), Some(ow)) = (out(h, kh, 0), out(w, kw, 1)) else {
            return Err(format!(
                "conv2d: kernel {kh}x{kw} larger than the padded input {h}x{w}"
            ));
        };
        if kh == 0 || kw == 0 {
            return Err("conv2d: empty kernel".into());
        }
        Ok(Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: options.stride,
            pad: options.padding,
            dil: options.dilation,
            groups,
            oh,
            ow,
        })
    }

    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of a group's im2col matrix (`cin_g kh kw`).
    pub fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
    /// Output pixels per channel.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Input pixels per channel.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Depthwise: one input and one output channel per group.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.cin_g() == 1 && self.cout_g() == 1
    }
    /// `x`'s, the weight's and `y`'s element counts.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.batch * self.c_in * self.hw(),
            self.c_out * self.k(),
            self.batch * self.c_out * self.p(),
        )
    }

    /// The output positions `o` along one axis whose input `o stride + k dil - pad` lies in
    /// `0..n`, for kernel offset `k`: a half-open range, empty when none does.
    pub fn valid(
        n: usize,
        out: usize,
        stride: usize,
        k: usize,
        dil: usize,
        pad: usize,
    ) -> (usize, usize) {
        let off = (k * dil) as isize - pad as isize;
        // o stride + off >= 0  and  o stride + off < n
        let lo = if off >= 0 {
            0
        } else {
            ((-off) as usize).div_ceil(stride)
        };
        let hi = if (n as isize) <= off {
            0
        } else {
            ((n as isize - off) as usize).div_ceil(stride).min(out)
        };
        (lo.min(hi), hi)
    }
}
