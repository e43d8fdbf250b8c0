//! Convolution as a matrix product: im2col lays the input patches out as a
//! `[c*kh*kw, oh*ow]` matrix, so that the weight `[oc, c*kh*kw]` (dense or CSR) times it
//! is the output `[oc, oh*ow]`, already in `[c, h, w]` order. Grouped convolutions run
//! this once per group, on the group's channels.

use super::activation::Act;
use super::rows::copy_short;

/// Geometry of one convolution (of one group).
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Input channels (of the group).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height and width.
    pub k: [usize; 2],
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
}

impl ConvShape {
    /// Square kernel and stride, symmetric padding, no dilation.
    pub fn square(c: usize, h: usize, w: usize, k: usize, stride: usize, padding: usize) -> Self {
        Self {
            c,
            h,
            w,
            k: [k; 2],
            stride: [stride; 2],
            pads: [padding; 4],
            dilation: [1; 2],
        }
    }

    /// Output height and width (the model's shape inference checked they exist).
    pub fn out(&self) -> (usize, usize) {
        let o = |n: usize, a: usize| {
            (n + self.pads[a] + self.pads[a + 2] - self.dilation[a] * (self.k[a] - 1) - 1)
                / self.stride[a]
                + 1
        };
        (o(self.h, 0), o(self.w, 1))
    }

    /// Rows of the patch matrix (`c * kh * kw`).
    pub fn patch(&self) -> usize {
        self.c * self.k[0] * self.k[1]
    }

    /// The output columns `[j0, j1)` (empty when `j0 == j1`) whose input column
    /// `j * sw + off - left` lies inside the image, for a tap at column offset
    /// `off = dj * dw`: the columns outside read padding.
    pub fn valid_columns(&self, off: usize) -> (usize, usize) {
        let (ow, (sw, left)) = (self.out().1, (self.stride[1], self.pads[1]));
        let j0 = left.saturating_sub(off).div_ceil(sw).min(ow);
        let j1 = if self.w + left > off {
            (self.w + left - off).div_ceil(sw).min(ow)
        } else {
            0
        };
        (j0, j1.max(j0))
    }

    /// True when the input is its own patch matrix (1x1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.k == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4]
    }
}

/// Writes the patch matrix of one sample `x` (`[c, h, w]`) into `cols`
/// (`[c*kh*kw, oh*ow]`, row-major).
///
/// Per patch row and output row, the output columns whose input lies inside the image
/// form one interval `[j0, j1)`, known in advance: the padding on either side is filled
/// with zeros and the interval is a contiguous copy at stride 1 (a strided gather
/// otherwise), with no bounds check per element (which used to cost more than the matrix
/// product on 3x3 convolutions with padding).
pub fn im2col(x: &[f32], s: &ConvShape, cols: &mut [f32]) {
    let (oh, ow) = s.out();
    let p = oh * ow;
    let [kh, kw] = s.k;
    let [sh, sw] = s.stride;
    let [dh, dw] = s.dilation;
    let (top, left) = (s.pads[0], s.pads[1]);
    for dj in 0..kw {
        // Output column j reads input column j*sw + dj*dw - left: inside [0, w) for j in
        // [j0, j1).
        let off = dj * dw;
        let (j0, j1) = s.valid_columns(off);
        for ch in 0..s.c {
            let plane = &x[ch * s.h * s.w..(ch + 1) * s.h * s.w];
            for di in 0..kh {
                let row = &mut cols[((ch * kh + di) * kw + dj) * p..][..p];
                for i in 0..oh {
                    let out = &mut row[i * ow..(i + 1) * ow];
                    let yi = (i * sh + di * dh) as isize - top as isize;
                    if yi < 0 || yi >= s.h as isize || j0 == j1 {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[yi as usize * s.w..(yi as usize + 1) * s.w];
                    out[..j0].fill(0.0);
                    out[j1..].fill(0.0);
                    let x0 = j0 * sw + off - left;
                    if sw == 1 {
                        copy_short(&src[x0..x0 + (j1 - j0)], &mut out[j0..j1]);
                    } else {
                        for (o, &v) in out[j0..j1].iter_mut().zip(src[x0..].iter().step_by(sw)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
}

/// Floats of scratch [`depthwise`] needs: one zero-padded input plane, split by stride
/// phase (see [`super::implicit_conv`]).
pub fn depthwise_scratch(s: &ConvShape) -> usize {
    let ph = (s.h + s.pads[0] + s.pads[2]).div_ceil(s.stride[0]);
    let pw = (s.w + s.pads[1] + s.pads[3]).div_ceil(s.stride[1]);
    let portable = (s.h + s.pads[0] + s.pads[2]) * (s.w + s.pads[1] + s.pads[3]);
    portable.max(s.stride[0] * s.stride[1] * ph * pw)
}

/// One channel of a depthwise convolution, directly: `y` (`[oh, ow]`) is
/// `act(bias + sum over taps of the tap's weight times the shifted input)`. The input plane
/// `x` (`[h, w]`) is first copied into `padded` with its zero border, so the inner loop over
/// an output row has no bounds checks. im2col would copy `kh kw` shifted planes to feed a
/// 1-row matrix product, which is memory traffic for a handful of multiplies per output.
///
/// With AVX-512 (the `avx512` module) the padded plane is split by stride phase, as the
/// implicit product's ([`super::implicit_conv`]), so every tap reads 16 consecutive
/// columns at any stride, and each 16-column piece of an output row sums its taps in a
/// register and is stored once, activated: the portable loop (the fallback, and the
/// reference in the tests) adds one tap at a time over the row and strided taps gather.
#[allow(clippy::too_many_arguments)]
pub fn depthwise<'w>(
    x: &[f32],
    samples: usize,
    channels: usize,
    weight: &dyn Fn(usize) -> (&'w [f32], f32),
    s: &ConvShape,
    taps: &DepthwiseTaps,
    act: Act,
    padded: &mut [f32],
    y: &mut [f32],
) {
    let (oh, ow) = s.out();
    let (hw, p) = (s.h * s.w, oh * ow);
    assert!(x.len() >= samples * channels * hw && y.len() >= samples * channels * p);
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if let Some((offs, n)) = &taps.offsets {
        let offs = &offs[..*n];
        assert!(padded.len() >= depthwise_scratch(s));
        assert_eq!(offs.len(), s.k[0] * s.k[1], "taps of another geometry");
        let checked = |ch: usize| {
            let (w, b) = weight(ch);
            assert!(w.len() >= offs.len());
            (w, b)
        };
        // SAFETY: AVX-512F is present (`DepthwiseTaps::new` checked); the lengths are
        // asserted above and by `checked`.
        unsafe { avx512::depthwise(x, samples, channels, &checked, s, offs, act, padded, y) };
        return;
    }
    let _ = taps;
    for ch in 0..channels {
        let (w, b) = weight(ch);
        for i in 0..samples {
            let at = i * channels + ch;
            let (xc, yc) = (&x[at * hw..(at + 1) * hw], &mut y[at * p..(at + 1) * p]);
            depthwise_portable(xc, w, b, s, act, padded, yc);
        }
    }
}

/// The vector kernel's per-tap offsets into the phase planes of one geometry, computed
/// once per convolution (no allocation) rather than per channel (a MobileNet's 2x2 and 4x4 layers have
/// hundreds of channels of a few outputs each, where the divisions cost more than the
/// sums); `None` where the portable loop runs.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // read by the AVX-512 kernel only
)]
#[derive(Clone, Debug)]
pub struct DepthwiseTaps {
    offsets: Option<([usize; 64], usize)>,
}

impl DepthwiseTaps {
    /// The offsets for `s`, where the CPU has AVX-512F and the kernel has at most 64 taps.
    pub fn new(s: &ConvShape) -> Self {
        let vector = super::packed::available() && s.k[0] * s.k[1] <= 64;
        let [sh, sw] = s.stride;
        let pw = (s.w + s.pads[1] + s.pads[3]).div_ceil(sw);
        let plane = (s.h + s.pads[0] + s.pads[2]).div_ceil(sh) * pw;
        let offsets = vector.then(|| {
            let mut offs = [0usize; 64];
            for di in 0..s.k[0] {
                for dj in 0..s.k[1] {
                    let (r, c) = (di * s.dilation[0], dj * s.dilation[1]);
                    offs[di * s.k[1] + dj] =
                        ((r % sh) * sw + c % sw) * plane + (r / sh) * pw + c / sw;
                }
            }
            (offs, s.k[0] * s.k[1])
        });
        Self { offsets }
    }
}

/// The portable body of [`depthwise`].
fn depthwise_portable(
    x: &[f32],
    w: &[f32],
    bias: f32,
    s: &ConvShape,
    act: Act,
    padded: &mut [f32],
    y: &mut [f32],
) {
    let (oh, ow) = s.out();
    let [kh, kw] = s.k;
    let [sh, sw] = s.stride;
    let [dh, dw] = s.dilation;
    let pw = s.w + s.pads[1] + s.pads[3];
    let ph = s.h + s.pads[0] + s.pads[2];
    let padded = &mut padded[..ph * pw];
    if s.pads == [0; 4] {
        padded.copy_from_slice(&x[..s.h * s.w]);
    } else {
        padded.fill(0.0);
        for r in 0..s.h {
            let at = (r + s.pads[0]) * pw + s.pads[1];
            padded[at..at + s.w].copy_from_slice(&x[r * s.w..(r + 1) * s.w]);
        }
    }
    let y = &mut y[..oh * ow];
    y.fill(bias);
    for i in 0..oh {
        let out = &mut y[i * ow..(i + 1) * ow];
        for di in 0..kh {
            let row = &padded[(i * sh + di * dh) * pw..][..pw];
            for dj in 0..kw {
                let wv = w[di * kw + dj];
                let x0 = dj * dw;
                if sw == 1 {
                    for (o, &v) in out.iter_mut().zip(&row[x0..x0 + ow]) {
                        *o += wv * v;
                    }
                } else {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o += wv * row[x0 + j * sw];
                    }
                }
            }
        }
    }
    super::activation::activate_in_place(y, act);
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use super::{Act, ConvShape};

    /// Floats of input from which the kernel prefetches each next plane (1 MiB, an L2):
    /// the split of a plane reads one row after another, but the planes of a larger input
    /// come from L3 or memory, and the hardware prefetcher did not keep up (96 x 112x112,
    /// stride 2, at batch 1 and 4, `depthwise_modes`, us with / without, two rounds: 293 /
    /// 784 and 259 / 673; 1851 / 5511 and 2311 / 5418).
    const PREFETCH_FLOATS: usize = 256 << 10;

    /// # Safety
    /// AVX-512F; `x` holds `samples` of `channels` planes of `h w` floats, `y` as many of
    /// `oh ow`,
    /// `weight` gives each channel's `kh kw` weights and bias, `padded` holds
    /// `depthwise_scratch(s)`; `offs` from [`super::DepthwiseTaps::new`]`(s)`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn depthwise<'w>(
        x: &[f32],
        samples: usize,
        channels: usize,
        weight: &dyn Fn(usize) -> (&'w [f32], f32),
        s: &ConvShape,
        offs: &[usize],
        act: Act,
        padded: &mut [f32],
        y: &mut [f32],
    ) {
        let (oh, ow) = s.out();
        let [sh, sw] = s.stride;
        let ph = (s.h + s.pads[0] + s.pads[2]).div_ceil(sh);
        let pw = (s.w + s.pads[1] + s.pads[3]).div_ceil(sw);
        let plane = ph * pw;
        // The border is zeroed once: every channel writes the same inside positions.
        padded[..sh * sw * plane].fill(0.0);
        // Inputs larger than L2 come from L3 or memory.
        let prefetch = samples * channels * s.h * s.w > PREFETCH_FLOATS;
        let (top, left) = (s.pads[0], s.pads[1]);
        let (mut w, mut bias) = weight(0);
        // Channel by channel, each channel's weights fetched once for every sample.
        for (ch, i) in (0..channels).flat_map(|ch| (0..samples).map(move |i| (ch, i))) {
            let at = i * channels + ch;
            if i == 0 {
                (w, bias) = weight(ch);
            }
            let xc = &x[at * s.h * s.w..(at + 1) * s.h * s.w];
            // A channel pruned to nothing: its outputs are the activated bias, unless an
            // input is NaN or infinite (0 * inf is NaN, as in the dense product).
            if w[..offs.len()].iter().all(|&v| v == 0.0) && crate::kernels::sparse::all_finite(xc) {
                y[at * oh * ow..(at + 1) * oh * ow].fill(act.apply(bias));
                continue;
            }
            // Padded row r + top is row `row` of phase `phase` (counters, not divisions:
            // a small plane's whole work is a few hundred cycles).
            let (mut phase, mut row) = (top % sh, top / sh);
            // The next plane this loop reads (the next image's, or the next channel's
            // first), prefetched row by row a plane ahead of the split.
            let next = if i + 1 < samples {
                Some(at + channels)
            } else if ch + 1 < channels {
                Some(ch + 1)
            } else {
                None
            };
            let next = next
                .filter(|_| prefetch)
                .map(|n| x[n * s.h * s.w..].as_ptr());
            for r in 0..s.h {
                if let Some(np) = next {
                    let nrow = np.wrapping_add(r * s.w);
                    for c in (0..s.w).step_by(16) {
                        _mm_prefetch::<_MM_HINT_T1>(nrow.wrapping_add(c) as *const i8);
                    }
                }
                let base = phase * sw * plane + row * pw;
                phase += 1;
                if phase == sh {
                    (phase, row) = (0, row + 1);
                }
                let src = &xc[r * s.w..(r + 1) * s.w];
                crate::kernels::rows::split_row(src, left, sw, plane, &mut padded[base..]);
            }
            let (pp, yp) = (padded.as_ptr(), y[at * oh * ow..].as_mut_ptr());
            let g = Rows {
                oh,
                ow,
                pw,
                bias: _mm512_set1_ps(bias),
                act,
            };
            // SAFETY: as this function's callers promise; `offs` are taps inside the
            // planes; channel ch's `oh ow` outputs lie in `y`.
            unsafe {
                match offs.len() {
                    9 => rows::<9>(pp, offs, w, &g, yp),
                    25 => rows::<25>(pp, offs, w, &g, yp),
                    _ => rows::<64>(pp, offs, w, &g, yp),
                }
            }
        }
    }

    /// What [`rows`] needs besides the planes and taps.
    struct Rows {
        oh: usize,
        ow: usize,
        pw: usize,
        bias: __m512,
        act: Act,
    }

    /// The output of one channel: `T` taps (64: any number up to 64, `offs.len()`), each
    /// weight broadcast once into a register.
    ///
    /// Rows of 16 or more outputs run row by row, 16 columns a vector (the tail masked).
    /// Narrower rows (a MobileNet's 8x8, 4x4 and 2x2 planes) run over the phase plane as
    /// one flat sequence `q = i * pw + j`, 16 positions a vector whatever the row breaks,
    /// and the lanes with `j < ow` are compressed into consecutive outputs: a 2x2 output
    /// is one vector, not two a quarter full.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const T: usize>(
        pp: *const f32,
        offs: &[usize],
        w: &[f32],
        g: &Rows,
        yp: *mut f32,
    ) {
        let taps = if T == 64 { offs.len() } else { T };
        let mut o = [0usize; T];
        let mut wv = [_mm512_setzero_ps(); T];
        for t in 0..taps {
            o[t] = offs[t];
            wv[t] = _mm512_set1_ps(w[t]);
        }
        let (lo, hi) = match g.act {
            Act::Clip(lo, hi) => (_mm512_set1_ps(lo), _mm512_set1_ps(hi)),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        let sum = |at: usize, mask: __mmask16| {
            let mut acc = g.bias;
            for t in 0..taps {
                // SAFETY: the lanes in `mask` are outputs whose taps read inside the
                // planes (the callers' bounds).
                let v = unsafe { _mm512_maskz_loadu_ps(mask, pp.add(o[t] + at)) };
                acc = _mm512_fmadd_ps(wv[t], v, acc);
            }
            // `vmaxps a, b` returns b when either is NaN: the value, NaN kept.
            match g.act {
                Act::None => acc,
                Act::Relu => _mm512_max_ps(_mm512_setzero_ps(), acc),
                Act::Clip(..) => _mm512_min_ps(hi, _mm512_max_ps(lo, acc)),
            }
        };
        let (oh, ow, pw) = (g.oh, g.ow, g.pw);
        if ow >= 16 {
            for i in 0..oh {
                let mut j0 = 0;
                while j0 < ow {
                    let cnt = (ow - j0).min(16);
                    let mask: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
                    let out = sum(i * pw + j0, mask);
                    // SAFETY: row i, columns j0..j0 + cnt of the `oh x ow` output.
                    unsafe { _mm512_mask_storeu_ps(yp.add(i * ow + j0), mask, out) };
                    j0 += 16;
                }
            }
            return;
        }
        let end = (oh - 1) * pw + ow;
        // q0 is column j0 of a plane row (counted, not divided).
        let (mut q0, mut j0, mut done) = (0, 0, 0);
        while q0 < end {
            // Lanes of q0..q0 + 16 that are outputs: j < ow, below `end`.
            let mut mask = 0u32;
            let (mut q, mut j) = (q0, j0);
            let stop = (q0 + 16).min(end);
            while q < stop {
                if j < ow {
                    let cnt = (ow - j).min(stop - q);
                    mask |= ((1u32 << cnt) - 1) << (q - q0);
                }
                q += pw - j;
                j = 0;
            }
            j0 += 16;
            while j0 >= pw {
                j0 -= pw;
            }
            let mask = mask as __mmask16;
            let out = _mm512_maskz_compress_ps(mask, sum(q0, mask));
            let cnt = mask.count_ones() as usize;
            // SAFETY: `done + cnt` outputs of the `oh x ow` channel, in order.
            unsafe { _mm512_mask_storeu_ps(yp.add(done), ((1u32 << cnt) - 1) as u16, out) };
            done += cnt;
            q0 += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn short_copies_of_every_length() {
        for n in 0..40 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut dst = vec![-1.0; n];
            copy_short(&src, &mut dst);
            assert_eq!(src, dst, "length {n}");
        }
    }

    #[test]
    fn patches_with_padding() {
        // 1 channel 2x2, k 3, padding 1: 2x2 output, 9 patch rows of 4.
        let s = ConvShape::square(1, 2, 2, 3, 1, 1);
        assert_eq!(s.out(), (2, 2));
        let mut cols = [9.0; 36];
        im2col(&[1.0, 2.0, 3.0, 4.0], &s, &mut cols);
        // The centre tap (di = dj = 1) sees the input itself.
        assert_eq!(&cols[16..20], &[1.0, 2.0, 3.0, 4.0]);
        // The top-left tap sees x[i-1][j-1]: only output (1, 1) has it.
        assert_eq!(&cols[0..4], &[0.0, 0.0, 0.0, 1.0]);
    }

    /// An input larger than the kernel's prefetch threshold (every next plane prefetched,
    /// the next image's and then the next channel's, up to the last): every plane against
    /// the f64 definition, stride 1 and 2, with a NaN and an infinity in two planes.
    #[test]
    fn depthwise_on_an_input_larger_than_l2_matches_the_definition() {
        let (n, c, h, w) = (3, 8, 110, 113);
        assert!(n * c * h * w > 256 << 10);
        let mut x: alloc::vec::Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 37) % 23) as f32 * 0.1 - 1.1)
            .collect();
        x[(2 * c + 3) * h * w + 50 * w + 7] = f32::NAN;
        x[(c + 6) * h * w + 109 * w + 112] = f32::INFINITY;
        let wt: alloc::vec::Vec<f32> = (0..c * 9)
            .map(|i| ((i * 5) % 7) as f32 * 0.25 - 0.75)
            .collect();
        let weight = |ch: usize| (&wt[ch * 9..(ch + 1) * 9], 0.5 - ch as f32 * 0.1);
        for stride in [1, 2] {
            let s = ConvShape::square(1, h, w, 3, stride, 1);
            let (oh, ow) = s.out();
            let p = oh * ow;
            let mut padded = alloc::vec![f32::NAN; depthwise_scratch(&s)];
            let mut y = alloc::vec![f32::NAN; n * c * p];
            let taps = DepthwiseTaps::new(&s);
            depthwise(&x, n, c, &weight, &s, &taps, Act::Relu, &mut padded, &mut y);
            for img in 0..n {
                for ch in 0..c {
                    let at = img * c + ch;
                    let (wc, b) = weight(ch);
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut sum = b as f64;
                            for di in 0..3 {
                                for dj in 0..3 {
                                    let r = (i * stride + di) as isize - 1;
                                    let q = (j * stride + dj) as isize - 1;
                                    if r < 0 || q < 0 || r >= h as isize || q >= w as isize {
                                        continue;
                                    }
                                    let v = x[at * h * w + r as usize * w + q as usize];
                                    sum += v as f64 * wc[di * 3 + dj] as f64;
                                }
                            }
                            let want = Act::Relu.apply(sum as f32);
                            let got = y[at * p + i * ow + j];
                            assert!(
                                got == want
                                    || (got.is_nan() && want.is_nan())
                                    || (got - want).abs() < 1e-5,
                                "stride {stride}, image {img}, channel {ch}, ({i}, {j}): \
                                 {got} vs {want}"
                            );
                        }
                    }
                }
            }
            assert!(y.iter().any(|v| v.is_nan()) && y.iter().any(|v| v.is_infinite()));
        }
    }

    #[test]
    fn depthwise_equals_im2col_times_the_kernel_row() {
        // Odd sizes, asymmetric padding, strides and dilations; rows narrower than a
        // vector (the flat path) and wider (row by row), 6, 9 and 25 taps.
        for (wd, k) in [(11, [3, 2]), (37, [3, 3]), (7, [3, 3]), (23, [5, 5])] {
            for (stride, dilation, pads) in [
                ([1, 1], [1, 1], [1, 1, 1, 1]),
                ([2, 2], [1, 1], [0, 1, 1, 0]),
                ([2, 1], [2, 1], [2, 0, 1, 2]),
                ([1, 3], [1, 2], [0, 0, 0, 0]),
                ([3, 2], [1, 1], [1, 2, 2, 1]),
            ] {
                let s = ConvShape {
                    c: 1,
                    h: 9,
                    w: wd,
                    k,
                    stride,
                    pads,
                    dilation,
                };
                let taps = k[0] * k[1];
                let x: alloc::vec::Vec<f32> =
                    (0..9 * wd).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
                let w: alloc::vec::Vec<f32> = (0..taps)
                    .map(|i| ((i * 5) % 7) as f32 * 0.25 - 0.75)
                    .collect();
                let (oh, ow) = s.out();
                let p = oh * ow;
                let mut cols = alloc::vec![0.0; taps * p];
                im2col(&x, &s, &mut cols);
                let want: alloc::vec::Vec<f32> = (0..p)
                    .map(|q| 0.125 + (0..taps).map(|r| w[r] * cols[r * p + q]).sum::<f32>())
                    .collect();
                for act in [Act::None, Act::Relu, Act::Clip(-1.0, 2.5)] {
                    let mut padded = alloc::vec![f32::NAN; depthwise_scratch(&s)];
                    // The dispatched kernel (AVX-512 where the CPU has it) and the portable one.
                    // Two channels: the second sees the first's input reversed, and its
                    // zero border must survive the first channel's pass.
                    let mut x2 = x.clone();
                    x2.extend(x.iter().rev());
                    let mut y = alloc::vec![f32::NAN; 2 * p];
                    let wr: alloc::vec::Vec<f32> = w.iter().rev().copied().collect();
                    let weight = |ch: usize| {
                        if ch == 0 {
                            (&w[..], 0.125)
                        } else {
                            (&wr[..], 0.125)
                        }
                    };
                    let taps = DepthwiseTaps::new(&s);
                    depthwise(&x2, 1, 2, &weight, &s, &taps, act, &mut padded, &mut y);
                    let xr: alloc::vec::Vec<f32> = x.iter().rev().copied().collect();
                    let mut y2 = alloc::vec![f32::NAN; p];
                    depthwise_portable(&xr, &wr, 0.125, &s, act, &mut padded, &mut y2);
                    for (a, b) in y[p..].iter().zip(&y2) {
                        assert!((a - b).abs() < 1e-5, "second channel: {a} vs {b}");
                    }
                    let mut portable = alloc::vec![f32::NAN; p];
                    depthwise_portable(&x, &w, 0.125, &s, act, &mut padded, &mut portable);
                    for ((a, c), b) in y.iter().zip(&portable).zip(&want) {
                        let b = act.apply(*b);
                        assert!(
                            (a - b).abs() < 1e-5 && (c - b).abs() < 1e-5,
                            "{stride:?} {dilation:?} {pads:?} {act:?}: {a}, {c} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn im2col_matches_its_definition_on_every_geometry() {
        for (k, stride, dilation, pads, w) in [
            ([3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 7),
            ([3, 3], [2, 2], [1, 1], [1, 1, 1, 1], 8),
            ([5, 2], [2, 3], [2, 1], [2, 0, 1, 3], 11),
            ([1, 1], [2, 2], [1, 1], [0, 0, 0, 0], 9),
            ([3, 3], [1, 1], [3, 3], [1, 4, 1, 4], 5),
            ([2, 4], [1, 2], [1, 1], [0, 5, 1, 6], 3),
        ] {
            let s = ConvShape {
                c: 2,
                h: 6,
                w,
                k,
                stride,
                pads,
                dilation,
            };
            let x: alloc::vec::Vec<f32> = (0..2 * 6 * w).map(|i| i as f32 + 1.0).collect();
            let (oh, ow) = s.out();
            let p = oh * ow;
            let mut cols = alloc::vec![f32::NAN; s.patch() * p];
            im2col(&x, &s, &mut cols);
            for ch in 0..2 {
                for di in 0..k[0] {
                    for dj in 0..k[1] {
                        let r = (ch * k[0] + di) * k[1] + dj;
                        for i in 0..oh {
                            for j in 0..ow {
                                let yi =
                                    (i * stride[0] + di * dilation[0]) as isize - pads[0] as isize;
                                let xj =
                                    (j * stride[1] + dj * dilation[1]) as isize - pads[1] as isize;
                                let want = if yi < 0 || xj < 0 || yi >= 6 || xj >= w as isize {
                                    0.0
                                } else {
                                    x[ch * 6 * w + yi as usize * w + xj as usize]
                                };
                                assert_eq!(
                                    cols[r * p + i * ow + j],
                                    want,
                                    "{k:?} {stride:?} {pads:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
