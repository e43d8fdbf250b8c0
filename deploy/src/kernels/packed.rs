//! Dense linear layers on a batch, with AVX-512: `y[b, n] = bias[n] + sum_k x[b, k] w[n, k]`
//! with the weight packed once (at plan time) into panels of 32 outputs, `k`-major, so
//! that the micro-kernel holds an 8-sample x 32-output tile in 16 registers and each `k`
//! costs two panel loads, eight broadcasts and sixteen fused multiply-adds.
//!
//! Why: the `gemm` crate runs AVX2 code on stable Rust (its AVX-512 kernels need its
//! `nightly` feature), which left dense batch-32 layers 1.6x slower than tract on AVX-512
//! machines (BENCHMARKS.md, "tether-deploy vs tract"). Only used where the CPU has AVX-512F
//! ([`available`]); elsewhere the plan keeps the `gemm` crate.

use alloc::vec::Vec;

/// Outputs per panel.
pub const PANEL: usize = 32;

/// True when the running CPU has the instructions [`linear`] uses.
pub fn available() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// `w` (`[out, inp]` row-major) as `ceil(out / 32)` panels of `[inp, 32]` (outputs past
/// `out` are zero).
pub fn pack(w: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let panels = out.div_ceil(PANEL);
    let mut p = alloc::vec![0.0f32; panels * inp * PANEL];
    for n in 0..out {
        let (panel, j) = (n / PANEL, n % PANEL);
        for k in 0..inp {
            p[(panel * inp + k) * PANEL + j] = w[n * inp + k];
        }
    }
    p
}

/// `y[b, n] = bias[n] + sum_k x[b, k] w[n, k]` for `b < batch`, `w` packed by [`pack`].
///
/// # Panics
/// When [`available`] is false, or a slice is shorter than its shape.
pub fn linear(
    packed: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    batch: usize,
    out: usize,
    inp: usize,
    y: &mut [f32],
) {
    assert!(packed.len() >= out.div_ceil(PANEL) * inp * PANEL);
    assert!(x.len() >= batch * inp && y.len() >= batch * out);
    assert!(bias.is_none_or(|b| b.len() >= out));
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if available() {
        // SAFETY: AVX-512F is present (checked); the lengths are asserted above.
        unsafe { avx512::linear(packed, bias, x, batch, out, inp, y) };
        return;
    }
    panic!("packed::linear needs AVX-512F (check packed::available)");
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use super::PANEL;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn linear(
        packed: &[f32],
        bias: Option<&[f32]>,
        x: &[f32],
        batch: usize,
        out: usize,
        inp: usize,
        y: &mut [f32],
    ) {
        for panel in 0..out.div_ceil(PANEL) {
            let n0 = panel * PANEL;
            let width = PANEL.min(out - n0);
            let w = &packed[panel * inp * PANEL..(panel + 1) * inp * PANEL];
            let mut bias_lanes = [0.0f32; PANEL];
            if let Some(b) = bias {
                bias_lanes[..width].copy_from_slice(&b[n0..n0 + width]);
            }
            let mut b0 = 0;
            while b0 < batch {
                let rows = (batch - b0).min(8);
                // SAFETY: rows <= 8 samples from b0 lie in x and y (asserted by the caller).
                unsafe {
                    match rows {
                        8 => tile::<8>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        7 => tile::<7>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        6 => tile::<6>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        5 => tile::<5>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        4 => tile::<4>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        3 => tile::<3>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        2 => tile::<2>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                        _ => tile::<1>(w, &bias_lanes, x, b0, inp, y, out, n0, width),
                    }
                }
                b0 += rows;
            }
        }
    }

    /// One `R x 32` output tile: samples `b0..b0 + R`, outputs `n0..n0 + width`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize>(
        w: &[f32],
        bias: &[f32; PANEL],
        x: &[f32],
        b0: usize,
        inp: usize,
        y: &mut [f32],
        out: usize,
        n0: usize,
        width: usize,
    ) {
        // SAFETY (whole body): `w` holds inp * 32 floats, read at k * 32 + {0, 16} for
        // k < inp; x rows b0..b0 + R hold inp floats each; y writes stay inside row b's
        // outputs n0..n0 + width (a masked store past `width`).
        unsafe {
            let bl = _mm512_loadu_ps(bias.as_ptr());
            let bh = _mm512_loadu_ps(bias.as_ptr().add(16));
            let mut lo = [bl; R];
            let mut hi = [bh; R];
            let wp = w.as_ptr();
            let xp = x.as_ptr().add(b0 * inp);
            for k in 0..inp {
                let w0 = _mm512_loadu_ps(wp.add(k * PANEL));
                let w1 = _mm512_loadu_ps(wp.add(k * PANEL + 16));
                for r in 0..R {
                    let xv = _mm512_set1_ps(*xp.add(r * inp + k));
                    lo[r] = _mm512_fmadd_ps(xv, w0, lo[r]);
                    hi[r] = _mm512_fmadd_ps(xv, w1, hi[r]);
                }
            }
            let m_lo: __mmask16 = if width >= 16 {
                0xffff
            } else {
                (1u16 << width) - 1
            };
            let m_hi: __mmask16 = if width >= 32 {
                0xffff
            } else if width > 16 {
                (1u16 << (width - 16)) - 1
            } else {
                0
            };
            for r in 0..R {
                let yp = y.as_mut_ptr().add((b0 + r) * out + n0);
                _mm512_mask_storeu_ps(yp, m_lo, lo[r]);
                if m_hi != 0 {
                    _mm512_mask_storeu_ps(yp.add(16), m_hi, hi[r]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;

    #[test]
    fn packed_linear_matches_naive_sums_for_every_tail() {
        if !available() {
            return;
        }
        for (batch, out, inp) in [
            (1, 1, 1),
            (3, 17, 5),
            (9, 32, 33),
            (17, 45, 7),
            (32, 100, 300),
        ] {
            let (w, x, b) = (lcg(out * inp, 1), lcg(batch * inp, 2), lcg(out, 3));
            let p = pack(&w, out, inp);
            // A guard value past the output must survive the masked stores.
            let mut y = alloc::vec![f32::NAN; batch * out + 1];
            y[batch * out] = 7.0;
            linear(&p, Some(&b), &x, batch, out, inp, &mut y);
            assert_eq!(y[batch * out], 7.0);
            for i in 0..batch {
                for n in 0..out {
                    let r: f64 = b[n] as f64
                        + (0..inp)
                            .map(|k| (x[i * inp + k] * w[n * inp + k]) as f64)
                            .sum::<f64>();
                    assert!(
                        (y[i * out + n] as f64 - r).abs() < 1e-4,
                        "{batch} {out} {inp}"
                    );
                }
            }
        }
    }
}
