//! Depthwise convolution on small planes with 16 channels in the vector lanes (the
//! "NCHWc" blocking of oneDNN and ONNX Runtime's MLAS, Georganas et al. 2018), with
//! AVX-512.
//!
//! Why: the plane-at-a-time kernel ([`super::conv::depthwise`]) puts one channel's
//! columns in the lanes, so a 2x2, 4x4 or 7x7 output fills a fraction of a vector and
//! pays its per-channel setup (padding, taps, masks) for a handful of multiply-adds: a
//! MobileNet's 2x2 layers at batch 32 ran at about 1 GMAC/s, and its depthwise layers
//! were half of the network's time (`perf`, BENCHMARKS.md). Here a block of 16 channels
//! of one image is transposed (16x16 in registers) into a zero-padded buffer of
//! `[padded row][padded column][16 channels]`, so that every output position is one
//! vector whatever the plane's size or stride: `kh kw` fused multiply-adds of the tap's
//! 16 weights by the input vector at the tap's position, 8 positions at a time (eight
//! independent sums). The outputs, activated in registers, are transposed back into the
//! `[channel][row][column]` layout the rest of the plan uses.

use super::activation::Act;
use super::conv::ConvShape;

/// Channels per block (the lanes of one vector).
pub const LANES: usize = 16;

/// Output positions up to which the planner runs this kernel rather than the
/// plane-at-a-time one, whose rows of 16 or more columns fill its vectors. Measured on
/// the 3x3 depthwise layers of mobilenet_v2 and the MobileNet-style net (time of this
/// kernel / the plane kernel, the least of 5): 2x2 x 480 channels at batch 32 146 / 761
/// us, 4x4 244 / 813 us, 8x8 219 / 454 us, 7x7 x 960 at batch 1 67 / 131 us, 14x14 x 576
/// 131 / 164 us; 16x16 x 96 even at batch 4 (110 us each), 28x28 x 192 162 / 132 us.
pub const MAX_OUTPUTS: usize = 14 * 14;

/// True when the plan runs this kernel for `s` on this CPU: it [`runs`] it, on an output of
/// at most [`MAX_OUTPUTS`] positions.
pub fn suits(s: &ConvShape) -> bool {
    let (oh, ow) = s.out();
    runs(s) && oh * ow <= MAX_OUTPUTS
}

/// True when this kernel can run `s` on this CPU (AVX-512F, at most 64 taps), whatever the
/// plane's size (the `depthwise_modes` example times it beside the plane kernel).
pub fn runs(s: &ConvShape) -> bool {
    super::packed::available() && s.k[0] * s.k[1] <= 64
}

/// Floats of scratch [`depthwise`] needs for `s`: the padded block, the outputs of one
/// block (rounded up to whole transposes) and the block's weights.
pub fn scratch(s: &ConvShape) -> usize {
    let (oh, ow) = s.out();
    let padded = (s.h + s.pads[0] + s.pads[2]) * (s.w + s.pads[1] + s.pads[3]);
    (padded + (oh * ow).div_ceil(LANES) * LANES + s.k[0] * s.k[1] + 1) * LANES
}

/// Every channel of every image: `x` is `samples` of `[channels, h, w]`, `y` as many of
/// `[channels, oh, ow]`; `weight(ch)` gives channel `ch`'s `kh kw` weights and its bias;
/// `scratch` holds [`scratch`]`(s)` floats.
///
/// # Panics
/// When [`runs`] is false for `s`, or a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn depthwise<'w>(
    x: &[f32],
    samples: usize,
    channels: usize,
    weight: &dyn Fn(usize) -> (&'w [f32], f32),
    s: &ConvShape,
    act: Act,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    assert!(
        runs(s),
        "depthwise_lanes::depthwise on a geometry it does not run"
    );
    let (oh, ow) = s.out();
    assert!(x.len() >= samples * channels * s.h * s.w && y.len() >= samples * channels * oh * ow);
    assert!(scratch.len() >= self::scratch(s));
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        let taps = s.k[0] * s.k[1];
        let checked = |ch: usize| {
            let (w, b) = weight(ch);
            assert!(
                w.len() >= taps,
                "channel {ch}: {} weights for {taps} taps",
                w.len()
            );
            (w, b)
        };
        // SAFETY: AVX-512F is present (`runs`); the lengths are asserted above and by
        // `checked`.
        unsafe { avx512::depthwise(x, samples, channels, &checked, s, act, scratch, y) };
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        let _ = (x, samples, channels, weight, act, scratch, y);
        unreachable!("runs() is false without AVX-512");
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(super) mod avx512 {
    use core::arch::x86_64::*;

    use super::{Act, ConvShape, LANES};

    /// Output positions per register tile (independent sums: the multiply-add latency is
    /// 4 cycles).
    const R: usize = 8;

    /// # Safety
    /// AVX-512F; the slices as [`super::depthwise`] asserts.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn depthwise<'w>(
        x: &[f32],
        samples: usize,
        channels: usize,
        weight: &dyn Fn(usize) -> (&'w [f32], f32),
        s: &ConvShape,
        act: Act,
        scratch: &mut [f32],
        y: &mut [f32],
    ) {
        let (oh, ow) = s.out();
        let (hw, p) = (s.h * s.w, oh * ow);
        let pw = s.w + s.pads[1] + s.pads[3];
        let ph = s.h + s.pads[0] + s.pads[2];
        let taps = s.k[0] * s.k[1];
        let (padded, rest) = scratch.split_at_mut(ph * pw * LANES);
        let (out, wts) = rest.split_at_mut(p.div_ceil(LANES) * LANES * LANES);
        let wts = &mut wts[..(taps + 1) * LANES];
        // The border stays zero: every image writes the same inside positions.
        padded.fill(0.0);
        // Per tap, its offset from an output's first input position (floats).
        let mut toff = [0usize; 64];
        for di in 0..s.k[0] {
            for dj in 0..s.k[1] {
                toff[di * s.k[1] + dj] = (di * s.dilation[0] * pw + dj * s.dilation[1]) * LANES;
            }
        }
        let geom = Geom {
            oh,
            ow,
            pw,
            sh: s.stride[0],
            sw: s.stride[1],
            p,
        };
        for c0 in (0..channels).step_by(LANES) {
            let nch = LANES.min(channels - c0);
            // The block's weights, tap-major, lanes past `nch` zero; the bias last.
            wts.fill(0.0);
            for l in 0..nch {
                let (w, b) = weight(c0 + l);
                for t in 0..taps {
                    wts[t * LANES + l] = w[t];
                }
                wts[taps * LANES + l] = b;
            }
            // A block pruned to nothing: its outputs are the activated biases, unless an
            // input is NaN or infinite (0 * inf is NaN, as in the dense product).
            let pruned = wts[..taps * LANES].iter().all(|&w| w == 0.0);
            for b in 0..samples {
                let xb = &x[(b * channels + c0) * hw..];
                if pruned && crate::kernels::sparse::all_finite(&xb[..nch * hw]) {
                    let yb = &mut y[(b * channels + c0) * p..][..nch * p];
                    for (l, yc) in yb.chunks_exact_mut(p).enumerate() {
                        yc.fill(act.apply(wts[taps * LANES + l]));
                    }
                    continue;
                }
                // SAFETY: channels c0..c0 + nch of image b lie in `x` (asserted by the
                // caller); `padded` holds the padded plane of 16 lanes.
                unsafe { to_lanes(xb, nch, s, pw, padded) };
                // SAFETY: every tap of every output reads inside the padded plane (the
                // shape's output size is the padded plane's, by construction).
                unsafe {
                    match taps {
                        9 => sums::<9>(padded, wts, &toff, &geom, act, out),
                        25 => sums::<25>(padded, wts, &toff[..taps], &geom, act, out),
                        _ => sums::<64>(padded, wts, &toff[..taps], &geom, act, out),
                    }
                }
                let yb = &mut y[(b * channels + c0) * p..];
                // SAFETY: outputs of channels c0..c0 + nch of image b lie in `y`.
                unsafe { from_lanes(out, nch, p, yb) };
            }
        }
    }

    /// The output geometry the sums walk.
    struct Geom {
        oh: usize,
        ow: usize,
        pw: usize,
        sh: usize,
        sw: usize,
        p: usize,
    }

    /// `nch` planes of `[h, w]` (consecutive in `x`) into `padded` as
    /// `[padded row][padded column][16]`, 16 input positions at a time by one 16x16
    /// transpose. Lanes past `nch` are zero.
    #[target_feature(enable = "avx512f")]
    unsafe fn to_lanes(x: &[f32], nch: usize, s: &ConvShape, pw: usize, padded: &mut [f32]) {
        let hw = s.h * s.w;
        let (top, left) = (s.pads[0], s.pads[1]);
        let dst = padded.as_mut_ptr();
        // Input position q0 + k is row r, column c: counted, not divided.
        let (mut r0, mut cl0) = (0usize, 0usize);
        let mut q0 = 0;
        while q0 < hw {
            let cnt = (hw - q0).min(LANES);
            let mask = ((1u32 << cnt) - 1) as __mmask16;
            let mut v = [_mm512_setzero_ps(); LANES];
            for (l, v) in v.iter_mut().enumerate().take(nch) {
                // SAFETY: positions q0..q0 + cnt of channel l, inside `x`.
                *v = unsafe { _mm512_maskz_loadu_ps(mask, x.as_ptr().add(l * hw + q0)) };
            }
            transpose(&mut v);
            let (mut r, mut c) = (r0, cl0);
            for v in v.iter().take(cnt) {
                // SAFETY: padded position (r + top, c + left) is inside the padded plane.
                unsafe { _mm512_storeu_ps(dst.add(((r + top) * pw + c + left) * LANES), *v) };
                c += 1;
                if c == s.w {
                    (r, c) = (r + 1, 0);
                }
            }
            (r0, cl0) = (r, c);
            q0 += LANES;
        }
    }

    /// `out[q]` (16 lanes) for every output position `q`: the bias plus the taps'
    /// products, activated; `T` taps (64: `toff.len()`, up to 64).
    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const T: usize>(
        padded: &[f32],
        wts: &[f32],
        toff: &[usize],
        g: &Geom,
        act: Act,
        out: &mut [f32],
    ) {
        let taps = if T == 64 { toff.len() } else { T };
        let wp = wts.as_ptr();
        let pp = padded.as_ptr();
        let op = out.as_mut_ptr();
        let mut wv = [_mm512_setzero_ps(); T];
        for (t, w) in wv.iter_mut().enumerate().take(taps) {
            // SAFETY: `wts` holds `taps + 1` vectors.
            *w = unsafe { _mm512_loadu_ps(wp.add(t * LANES)) };
        }
        // SAFETY: as above.
        let bias = unsafe { _mm512_loadu_ps(wp.add(taps * LANES)) };
        let (lo, hi) = match act {
            Act::Clip(lo, hi) => (_mm512_set1_ps(lo), _mm512_set1_ps(hi)),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        let row_step = g.sh * g.pw * LANES;
        let col_step = g.sw * LANES;
        // Output position q is row i, column j; its first input at `base`.
        let (mut i, mut j) = (0usize, 0usize);
        let mut q = 0;
        while q < g.p {
            let cnt = R.min(g.p - q);
            let mut base = [0usize; R];
            for b in base.iter_mut().take(cnt) {
                *b = i * row_step + j * col_step;
                j += 1;
                if j == g.ow {
                    (i, j) = (i + 1, 0);
                }
            }
            let mut acc = [bias; R];
            for t in 0..taps {
                let (w, o) = (wv[t], toff[t]);
                for r in 0..R {
                    if r < cnt {
                        // SAFETY: tap t of output q + r reads inside the padded plane.
                        let v = unsafe { _mm512_loadu_ps(pp.add(base[r] + o)) };
                        acc[r] = _mm512_fmadd_ps(w, v, acc[r]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(cnt) {
                // `vmaxps a, b` returns b when either is NaN: the value, NaN kept.
                let v = match act {
                    Act::None => *a,
                    Act::Relu => _mm512_max_ps(_mm512_setzero_ps(), *a),
                    Act::Clip(..) => _mm512_min_ps(hi, _mm512_max_ps(lo, *a)),
                };
                // SAFETY: `out` holds a vector per output position.
                unsafe { _mm512_storeu_ps(op.add((q + r) * LANES), v) };
            }
            q += cnt;
        }
        debug_assert!(i == g.oh || g.p == 0);
    }

    /// `out` (`[p][16]`) back into `nch` planes of `p` floats in `y`, 16 positions at a
    /// time by one 16x16 transpose.
    #[target_feature(enable = "avx512f")]
    unsafe fn from_lanes(out: &[f32], nch: usize, p: usize, y: &mut [f32]) {
        let (op, yp) = (out.as_ptr(), y.as_mut_ptr());
        let mut q0 = 0;
        while q0 < p {
            let cnt = (p - q0).min(LANES);
            let mask = ((1u32 << cnt) - 1) as __mmask16;
            let mut v = [_mm512_setzero_ps(); LANES];
            for (k, v) in v.iter_mut().enumerate().take(cnt) {
                // SAFETY: output position q0 + k < p of `out`.
                *v = unsafe { _mm512_loadu_ps(op.add((q0 + k) * LANES)) };
            }
            transpose(&mut v);
            for (l, v) in v.iter().enumerate().take(nch) {
                // SAFETY: positions q0..q0 + cnt of channel l's plane, inside `y`.
                unsafe { _mm512_mask_storeu_ps(yp.add(l * p + q0), mask, *v) };
            }
            q0 += LANES;
        }
    }

    /// Transposes 16 vectors of 16 floats in registers: `v[i][j]` becomes `v[j][i]` (pairs
    /// of lanes, then of pairs, then 128-bit quarters twice).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::kernels) fn transpose(v: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]);
        }
        let pd = _mm512_castps_pd;
        let ps = _mm512_castpd_ps;
        for k in 0..4 {
            let (a, b, c, d) = (t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
            v[4 * k] = ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            v[4 * k + 1] = ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            v[4 * k + 2] = ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            v[4 * k + 3] = ps(_mm512_unpackhi_pd(pd(b), pd(d)));
        }
        for h in 0..2 {
            for k in 0..4 {
                let (a, b) = (v[8 * h + k], v[8 * h + 4 + k]);
                t[8 * h + k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                t[8 * h + 4 + k] = _mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        for k in 0..8 {
            v[k] = _mm512_shuffle_f32x4::<0x88>(t[k], t[8 + k]);
            v[8 + k] = _mm512_shuffle_f32x4::<0xdd>(t[k], t[8 + k]);
        }
    }

    #[cfg(test)]
    #[test]
    fn transpose_is_its_definition() {
        if !crate::kernels::packed::available() {
            return;
        }
        let src: [[f32; 16]; 16] =
            core::array::from_fn(|i| core::array::from_fn(|j| (i * 16 + j) as f32));
        // SAFETY: AVX-512F checked above; 16 floats per row.
        unsafe {
            let mut v: [__m512; 16] = core::array::from_fn(|i| _mm512_loadu_ps(src[i].as_ptr()));
            transpose(&mut v);
            for (i, v) in v.iter().enumerate() {
                let mut row = [0.0f32; 16];
                _mm512_storeu_ps(row.as_mut_ptr(), *v);
                for (j, &x) in row.iter().enumerate() {
                    assert_eq!(x, src[j][i], "at ({i}, {j})");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{DepthwiseTaps, depthwise_scratch};
    use crate::kernels::lcg;
    use alloc::vec::Vec;

    /// The definition, in f64, then the activation: `x` is `n` of `[c, h, w]`, `w` `c`
    /// of `kh kw`.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        n: usize,
        c: usize,
        s: &ConvShape,
        act: Act,
    ) -> Vec<f32> {
        let (oh, ow) = s.out();
        let taps = s.k[0] * s.k[1];
        let mut y = alloc::vec![0.0; n * c * oh * ow];
        for img in 0..n {
            for ch in 0..c {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut sum = b[ch] as f64;
                        for di in 0..s.k[0] {
                            for dj in 0..s.k[1] {
                                let r = (i * s.stride[0] + di * s.dilation[0]) as isize
                                    - s.pads[0] as isize;
                                let q = (j * s.stride[1] + dj * s.dilation[1]) as isize
                                    - s.pads[1] as isize;
                                if r < 0 || q < 0 || r >= s.h as isize || q >= s.w as isize {
                                    continue;
                                }
                                let xv = x[((img * c + ch) * s.h + r as usize) * s.w + q as usize];
                                sum += xv as f64 * w[ch * taps + di * s.k[1] + dj] as f64;
                            }
                        }
                        y[((img * c + ch) * oh + i) * ow + j] = act.apply(sum as f32);
                    }
                }
            }
        }
        y
    }

    /// Against the definition and the plane-at-a-time kernel: planes from 1x1 to 14x14
    /// (odd sizes, positions around the 16-position transposes and 8-position tiles),
    /// strides, dilations, asymmetric padding, 3x3, 5x5 and 3x2 kernels, channel counts
    /// around the 16-channel blocks, several images, each activation.
    #[test]
    fn matches_the_definition_and_the_plane_kernel() {
        if !super::super::packed::available() {
            return;
        }
        let cases = [
            // (c, h, w, k, stride, pads, dilation, n)
            (1, 2, 2, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            (19, 2, 2, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 3),
            (40, 4, 4, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 2),
            (16, 7, 7, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2),
            (33, 14, 14, [3, 3], [2, 2], [0, 0, 1, 1], [1, 1], 1),
            (5, 9, 11, [5, 5], [1, 2], [2, 1, 2, 3], [1, 1], 2),
            (17, 13, 6, [3, 2], [3, 1], [2, 0, 1, 2], [2, 1], 2),
            (3, 13, 15, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            (16, 1, 1, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 4),
            (7, 8, 8, [3, 3], [1, 1], [0, 0, 0, 0], [2, 2], 1),
        ];
        for (idx, &(c, h, w, k, stride, pads, dilation, n)) in cases.iter().enumerate() {
            let s = ConvShape {
                c: 1,
                h,
                w,
                k,
                stride,
                pads,
                dilation,
            };
            assert!(suits(&s), "case {idx}");
            let taps = k[0] * k[1];
            let (x, wt, b) = (
                lcg(n * c * h * w, 11 + idx as u32),
                lcg(c * taps, 12),
                lcg(c, 13),
            );
            let (oh, ow) = s.out();
            let p = oh * ow;
            let weight = |ch: usize| (&wt[ch * taps..(ch + 1) * taps], b[ch]);
            for act in [Act::None, Act::Relu, Act::Clip(-0.1, 0.2)] {
                let want = reference(&x, &wt, &b, n, c, &s, act);
                let mut sc = alloc::vec![f32::NAN; scratch(&s)];
                let mut y = alloc::vec![f32::NAN; n * c * p + 1];
                y[n * c * p] = 7.0;
                depthwise(&x, n, c, &weight, &s, act, &mut sc, &mut y);
                assert_eq!(y[n * c * p], 7.0, "case {idx}: wrote past the output");
                let mut plane = alloc::vec![f32::NAN; n * c * p];
                let mut sc2 = alloc::vec![f32::NAN; depthwise_scratch(&s)];
                let t = DepthwiseTaps::new(&s);
                crate::kernels::conv::depthwise(
                    &x, n, c, &weight, &s, &t, act, &mut sc2, &mut plane,
                );
                for (at, ((g, e), q)) in y.iter().zip(&want).zip(&plane).enumerate() {
                    assert!(
                        (g - e).abs() < 1e-5 && (g - q).abs() < 1e-5,
                        "case {idx} {act:?}: at {at} {g} vs {e} (plane kernel {q})"
                    );
                }
            }
        }
    }

    /// Channels pruned to nothing (a whole 16-channel block, and single channels of the
    /// plane kernel) give their activated bias, and NaN where their window holds a NaN or
    /// an infinity (0 * inf), as the definition: both kernels, one image of three bad.
    #[test]
    fn pruned_channels_give_the_bias_and_keep_non_finite_inputs() {
        if !super::super::packed::available() {
            return;
        }
        let c = 40;
        for (h, stride) in [(4, 1), (40, 2)] {
            let s = ConvShape::square(1, h, h, 3, stride, 1);
            let (oh, ow) = s.out();
            let p = oh * ow;
            let mut wt = lcg(c * 9, 3);
            // Channels 0-15 (a block) and every third of the rest pruned.
            for ch in (0..c).filter(|ch| *ch < 16 || ch % 3 == 0) {
                wt[ch * 9..(ch + 1) * 9].fill(0.0);
            }
            let b = lcg(c, 4);
            let weight = |ch: usize| (&wt[ch * 9..(ch + 1) * 9], b[ch]);
            for bad in [f32::NAN, f32::INFINITY] {
                let mut x = lcg(3 * c * h * h, 5);
                // Image 1: channel 2 (pruned block) and channel 18 (pruned) hold it.
                x[(c + 2) * h * h + h + 1] = bad;
                x[(c + 18) * h * h + 2 * h] = bad;
                for act in [Act::None, Act::Relu, Act::Clip(0.0, 6.0)] {
                    let want = reference(&x, &wt, &b, 3, c, &s, act);
                    assert!(want.iter().any(|v| v.is_nan()));
                    let mut y = alloc::vec![0.0; 3 * c * p];
                    if suits(&s) {
                        let mut sc = alloc::vec![0.0; scratch(&s)];
                        depthwise(&x, 3, c, &weight, &s, act, &mut sc, &mut y);
                    } else {
                        let mut sc = alloc::vec![0.0; depthwise_scratch(&s)];
                        let t = DepthwiseTaps::new(&s);
                        crate::kernels::conv::depthwise(
                            &x, 3, c, &weight, &s, &t, act, &mut sc, &mut y,
                        );
                    }
                    for (at, (g, e)) in y.iter().zip(&want).enumerate() {
                        assert!(
                            (g.is_nan() && e.is_nan()) || (g - e).abs() < 1e-5,
                            "{h}x{h} {bad} {act:?} at {at}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    /// A NaN or an infinity in one channel reaches that channel's outputs whose taps read
    /// it, through ReLU and Clip, and no other channel's.
    #[test]
    fn non_finite_inputs_stay_in_their_channel() {
        if !super::super::packed::available() {
            return;
        }
        let s = ConvShape::square(1, 4, 4, 3, 1, 1);
        let c = 20;
        let wt = lcg(c * 9, 3);
        let b = lcg(c, 4);
        let weight = |ch: usize| (&wt[ch * 9..(ch + 1) * 9], b[ch]);
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = lcg(c * 16, 5);
            x[17 * 16 + 5] = bad;
            for act in [Act::Relu, Act::Clip(0.0, 6.0)] {
                let want = reference(&x, &wt, &b, 1, c, &s, act);
                let mut sc = alloc::vec![0.0; scratch(&s)];
                let mut y = alloc::vec![0.0; c * 16];
                depthwise(&x, 1, c, &weight, &s, act, &mut sc, &mut y);
                for (at, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == e.to_bits()
                            || (g.is_nan() && e.is_nan())
                            || (g - e).abs() < 1e-5,
                        "{bad} {act:?} at {at}: {g} vs {e}"
                    );
                }
                assert!(
                    y[17 * 16..18 * 16]
                        .iter()
                        .any(|v| !v.is_finite() || *v == 6.0)
                );
            }
        }
    }
}
