//! The geometry of padding, convolution and pooling ops.

use super::layout::MAX_RANK;

/// How [`opcode::PAD`](super::opcode::PAD) fills the new elements (ONNX `Pad`'s modes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant.
    Constant(f32),
    /// The input mirrored about the edge, the edge itself not repeated.
    Reflect,
    /// The edge element repeated.
    Edge,
}

/// Padding of every axis of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadGeom {
    /// Elements added before each axis (`begin[..rank]`).
    pub begin: [usize; MAX_RANK],
    /// Elements added after each axis.
    pub end: [usize; MAX_RANK],
    /// The fill.
    pub mode: PadMode,
}

/// Geometry of a convolution over the last three axes `[c, h, w]` of a sample (ONNX
/// `Conv`'s attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Groups: input and output channels split into this many independent convolutions.
    pub group: usize,
}

impl ConvGeom {
    /// Square stride and symmetric padding, no dilation, one group.
    pub fn simple(stride: usize, padding: usize) -> Self {
        Self {
            stride: [stride; 2],
            pads: [padding; 4],
            dilation: [1; 2],
            group: 1,
        }
    }
}

/// Geometry of a transposed convolution over the last three axes `[c, h, w]` of a sample
/// (ONNX `ConvTranspose`): each input pixel `(i, j)` adds its weighted kernel to the output
/// at `(i s_h + k_h d_h - pad_top, j s_w + k_w d_w - pad_left)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTransposeGeom {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Cropped from the full output: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Groups.
    pub group: usize,
    /// Added at the bottom and right of the output (h, w), less than the stride or the
    /// dilation (it picks one of the input sizes that a strided convolution maps to one
    /// output size).
    pub output_padding: [usize; 2],
}

impl ConvTransposeGeom {
    /// Output extent along axis `a` (0: h, 1: w) for an input extent `n` and kernel `k`:
    /// `(n - 1) s + d (k - 1) + 1 + output_padding - pads`, or `None` when not positive.
    pub fn out(&self, a: usize, n: usize, k: usize) -> Option<usize> {
        let full = (n.checked_sub(1)?)
            .checked_mul(self.stride[a])?
            .checked_add(self.dilation[a].checked_mul(k.checked_sub(1)?)?)?
            .checked_add(1 + self.output_padding[a])?;
        full.checked_sub(self.pads[a] + self.pads[a + 2])
            .filter(|&o| o > 0)
    }
}

/// Geometry of a pooling window over the last two axes (ONNX `MaxPool` / `AveragePool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Window (h, w).
    pub kernel: [usize; 2],
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right (ignored by max, zeros for average).
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Output size rounded up (a last partial window is kept).
    pub ceil: bool,
    /// Average pooling divides by the whole window, padding included.
    pub count_pad: bool,
}

impl PoolGeom {
    /// Square window, no padding.
    pub fn simple(kernel: usize, stride: usize) -> Self {
        Self {
            kernel: [kernel; 2],
            stride: [stride; 2],
            pads: [0; 4],
            dilation: [1; 2],
            ceil: false,
            count_pad: false,
        }
    }

    /// Output extent along axis `a` (0: h, 1: w) of an input extent `n`; `None` when the
    /// window does not fit.
    pub fn out(&self, a: usize, n: usize) -> Option<usize> {
        let span = self.dilation[a]
            .checked_mul(self.kernel[a] - 1)?
            .checked_add(1)?;
        let padded = n.checked_add(self.pads[a])?.checked_add(self.pads[a + 2])?;
        if padded < span {
            return None;
        }
        let s = self.stride[a];
        let mut o = if self.ceil {
            (padded - span).div_ceil(s) + 1
        } else {
            (padded - span) / s + 1
        };
        // A window must start inside the input or its leading padding.
        if self.ceil && (o - 1) * s >= n + self.pads[a] {
            o -= 1;
        }
        Some(o)
    }
}

/// Output extent of a convolution along one axis: `None` when the kernel does not fit.
pub fn conv_out(n: usize, k: usize, stride: usize, pad: [usize; 2], dil: usize) -> Option<usize> {
    let span = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = n.checked_add(pad[0])?.checked_add(pad[1])?;
    (padded >= span).then(|| (padded - span) / stride + 1)
}
