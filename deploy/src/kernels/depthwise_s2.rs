//! Depthwise 3x3 convolution of stride 2 and padding 1 (a MobileNet's downsampling
//! layers), read straight from the input planes, with AVX-512.
//!
//! Why: the plane kernel ([`super::conv::depthwise`]) first copies each channel into four
//! zero-padded stride-phase planes, a pass over the whole input before the sums. On
//! mobilenet_v2's 96 x 112x112 -> 56x56 layer that pass and the sums took 790 us of
//! thread CPU time where onnxruntime took 210 (`tether-deploy bench --per-node` and
//! `scripts/profile-vs-ort.py`, BENCHMARKS.md), the largest gap of any layer. Here the
//! stride-2 split happens in registers: for 16 outputs of a row, each of the three input
//! rows is read as two vectors of 32 consecutive columns, whose even and odd lanes
//! (`vpermt2ps`) are the taps of columns `2j` and `2j + 1`, and the same read one column
//! to the left gives `2j - 1`. The zero padding is the masks: lanes left of column 0 or
//! right of the last are not loaded (masked loads do not fault there), and rows above or
//! below the plane are skipped.

use super::activation::Act;
use super::conv::ConvShape;

/// True when [`depthwise`] runs `s` on this CPU: a 3x3 kernel, stride 2, padding 1 on
/// every side, no dilation, AVX-512F.
pub fn suits(s: &ConvShape) -> bool {
    s.k == [3, 3]
        && s.stride == [2, 2]
        && s.pads == [1; 4]
        && s.dilation == [1, 1]
        && super::packed::available()
}

/// Every channel of every image: `x` is `samples` of `[channels, h, w]`, `y` as many of
/// `[channels, oh, ow]`; `weight(ch)` gives channel `ch`'s 9 weights and its bias.
///
/// A channel pruned to nothing outputs its activated bias, unless its input holds a NaN
/// or an infinity (0 times either is NaN, as in the dense product).
///
/// # Panics
/// When [`suits`] is false for `s`, or a slice is shorter than its shape.
pub fn depthwise<'w>(
    x: &[f32],
    samples: usize,
    channels: usize,
    weight: &dyn Fn(usize) -> (&'w [f32], f32),
    s: &ConvShape,
    act: Act,
    y: &mut [f32],
) {
    assert!(
        suits(s),
        "depthwise_s2::depthwise on a geometry it does not run"
    );
    let (oh, ow) = s.out();
    let (hw, p) = (s.h * s.w, oh * ow);
    assert!(x.len() >= samples * channels * hw && y.len() >= samples * channels * p);
    for ch in 0..channels {
        let (w, bias) = weight(ch);
        assert!(w.len() >= 9, "channel {ch}: {} weights for 9 taps", w.len());
        let pruned = w[..9].iter().all(|&v| v == 0.0);
        for b in 0..samples {
            let at = b * channels + ch;
            let (xc, yc) = (&x[at * hw..(at + 1) * hw], &mut y[at * p..(at + 1) * p]);
            if pruned && super::sparse::all_finite(xc) {
                yc.fill(act.apply(bias));
                continue;
            }
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            // SAFETY: AVX-512F is present (`suits`); `xc` and `yc` hold one plane each.
            unsafe {
                avx512::plane(xc, s.h, s.w, w, bias, act, yc)
            };
            #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
            {
                let _ = (xc, yc, bias);
                unreachable!("suits() is false without AVX-512");
            }
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use super::Act;

    /// Lanes `l` of a vector of columns `c0 + l` that lie in `0..w` (`c0` may be -1 or -2).
    #[inline]
    fn lanes(c0: isize, w: usize) -> __mmask16 {
        let lo = (-c0).clamp(0, 16) as u32;
        let hi = (w as isize - c0).clamp(0, 16) as u32;
        if hi <= lo {
            return 0;
        }
        (((1u64 << hi) - 1) as u32 & !((1u32 << lo) - 1)) as __mmask16
    }

    /// One channel: `x` is `[h, w]`, `y` `[oh, ow]`.
    ///
    /// # Safety
    /// AVX-512F; `x` holds `h w` floats, `y` the output plane, `w9` 9 weights.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane(
        x: &[f32],
        h: usize,
        w: usize,
        w9: &[f32],
        bias: f32,
        act: Act,
        y: &mut [f32],
    ) {
        let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let wv: [__m512; 9] = core::array::from_fn(|t| _mm512_set1_ps(w9[t]));
        let bv = _mm512_set1_ps(bias);
        let (lo, hi) = match act {
            Act::Clip(lo, hi) => (_mm512_set1_ps(lo), _mm512_set1_ps(hi)),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        let xp = x.as_ptr();
        for i in 0..oh {
            let mut j0 = 0;
            while j0 < ow {
                let cnt = (ow - j0).min(16);
                let out_mask = ((1u32 << cnt) - 1) as __mmask16;
                let c = 2 * j0 as isize;
                let mut acc = bv;
                for di in 0..3 {
                    let r = (2 * i + di) as isize - 1;
                    if r < 0 || r >= h as isize {
                        continue;
                    }
                    let row = xp.wrapping_add(r as usize * w);
                    // Columns c - 2 .. c + 30 and c .. c + 32, masked to the row.
                    // SAFETY: only lanes inside the row are read (the masks); the pointers
                    // of masked-out lanes are never dereferenced.
                    let (a0, a1, b0, b1) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(lanes(c - 2, w), row.wrapping_offset(c - 2)),
                            _mm512_maskz_loadu_ps(lanes(c + 14, w), row.wrapping_offset(c + 14)),
                            _mm512_maskz_loadu_ps(lanes(c, w), row.wrapping_offset(c)),
                            _mm512_maskz_loadu_ps(lanes(c + 16, w), row.wrapping_offset(c + 16)),
                        )
                    };
                    // Output j reads columns 2j - 1, 2j, 2j + 1.
                    let left = _mm512_permutex2var_ps(a0, io, a1);
                    let mid = _mm512_permutex2var_ps(b0, ie, b1);
                    let right = _mm512_permutex2var_ps(b0, io, b1);
                    acc = _mm512_fmadd_ps(wv[3 * di], left, acc);
                    acc = _mm512_fmadd_ps(wv[3 * di + 1], mid, acc);
                    acc = _mm512_fmadd_ps(wv[3 * di + 2], right, acc);
                }
                // `vmaxps a, b` returns b when either is NaN: the value, NaN kept.
                let v = match act {
                    Act::None => acc,
                    Act::Relu => _mm512_max_ps(_mm512_setzero_ps(), acc),
                    Act::Clip(..) => _mm512_min_ps(hi, _mm512_max_ps(lo, acc)),
                };
                // SAFETY: outputs j0..j0 + cnt of row i, inside `y`.
                unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(i * ow + j0), out_mask, v) };
                j0 += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;
    use alloc::vec::Vec;

    /// The definition in f64, then the activation: `x` is `[c, h, w]`, `w` `c` of 9.
    fn reference(x: &[f32], w: &[f32], b: &[f32], c: usize, s: &ConvShape, act: Act) -> Vec<f32> {
        let (oh, ow) = s.out();
        let mut y = Vec::with_capacity(c * oh * ow);
        for ch in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut sum = b[ch] as f64;
                    for di in 0..3 {
                        for dj in 0..3 {
                            let (r, q) = ((2 * i + di) as isize - 1, (2 * j + dj) as isize - 1);
                            if r < 0 || q < 0 || r >= s.h as isize || q >= s.w as isize {
                                continue;
                            }
                            let xv = x[(ch * s.h + r as usize) * s.w + q as usize] as f64;
                            sum += xv * w[ch * 9 + di * 3 + dj] as f64;
                        }
                    }
                    y.push(act.apply(sum as f32));
                }
            }
        }
        y
    }

    fn same(a: f32, b: f32) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 * (1.0 + b.abs())
    }

    /// Planes narrower and wider than a vector, odd and even sides, one and several rows;
    /// each activation; a NaN and an infinity in the input; a channel pruned to nothing.
    #[test]
    fn matches_the_definition() {
        if !super::super::packed::available() {
            return;
        }
        let c = 3;
        for (h, w) in [
            (1, 1),
            (2, 3),
            (5, 16),
            (7, 31),
            (9, 32),
            (4, 33),
            (6, 70),
            (112, 112),
        ] {
            let s = ConvShape {
                c: 1,
                h,
                w,
                k: [3, 3],
                stride: [2, 2],
                pads: [1; 4],
                dilation: [1, 1],
            };
            assert!(suits(&s));
            let (oh, ow) = s.out();
            let mut x = lcg(c * h * w, 7);
            let mut wt = lcg(c * 9, 8);
            wt[18..27].fill(0.0); // channel 2 pruned to nothing
            let b = lcg(c, 9);
            for poison in [None, Some(f32::NAN), Some(f32::INFINITY)] {
                if let Some(v) = poison {
                    x[h * w + (h / 2) * w + w / 2] = v; // in channel 1
                    x[2 * h * w + h * w - 1] = v; // in the pruned channel
                }
                for act in [Act::None, Act::Relu, Act::Clip(-0.1, 0.2)] {
                    let want = reference(&x, &wt, &b, c, &s, act);
                    let mut y = alloc::vec![f32::NAN; c * oh * ow + 1];
                    y[c * oh * ow] = 3.0;
                    let weight = |ch: usize| (&wt[ch * 9..(ch + 1) * 9], b[ch]);
                    depthwise(&x, 1, c, &weight, &s, act, &mut y);
                    for (k, (&g, &e)) in y.iter().zip(&want).enumerate() {
                        assert!(same(g, e), "{h}x{w} {poison:?} {act:?} at {k}: {g} vs {e}");
                    }
                    assert_eq!(y[c * oh * ow], 3.0, "wrote past the output");
                }
            }
        }
    }
}
