//! Row copies into the zero-padded, stride-phase planes that the direct convolution
//! kernels read ([`super::conv`]'s depthwise kernel, [`super::implicit_conv`]): short
//! rows without a call to `memmove`, and a row split into its column phases.

#[cfg(all(feature = "std", target_arch = "x86_64"))]
use super::packed::available;

/// `dst.copy_from_slice(src)` for the short rows of im2col (a LeNet conv2 patch row is 8
/// floats, and there are 4,000 of them per sample): `copy_from_slice` is a call to
/// `memcpy`, whose fixed cost is most of a short copy's. Fixed-size chunks of 8 compile to
/// inline vector moves; the tail is one more chunk, overlapping the last full one. Rows
/// under 8 floats keep `copy_from_slice`.
#[inline(always)]
pub(crate) fn copy_short(src: &[f32], dst: &mut [f32]) {
    const W: usize = 8;
    let n = dst.len();
    debug_assert_eq!(src.len(), n);
    if n < W {
        dst.copy_from_slice(src);
        return;
    }
    for (d, s) in dst.chunks_exact_mut(W).zip(src.chunks_exact(W)) {
        let s: &[f32; W] = s.try_into().expect("chunk of W");
        let d: &mut [f32; W] = d.try_into().expect("chunk of W");
        *d = *s;
    }
    if !n.is_multiple_of(W) {
        let s: &[f32; W] = src[n - W..].try_into().expect("W floats");
        let d: &mut [f32; W] = (&mut dst[n - W..]).try_into().expect("W floats");
        *d = *s;
    }
}

/// `dst.copy_from_slice(src)`, with masked AVX-512 moves where the CPU has them (rows of
/// 4 to 16 floats, where a call to `memmove` costs more than the copy).
pub(crate) fn copy(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if available() {
        // SAFETY: AVX-512F is present; the slices have the same length.
        unsafe { avx512::copy_row(src, dst) };
        return;
    }
    dst.copy_from_slice(src);
}

/// Writes one input row, shifted right by `left` (the padding), into its `stride` column
/// phases: padded column `pc` goes to phase `pc % stride`, column `pc / stride`, phase
/// `f` starting at `dst[f * phase_stride]`.
pub(crate) fn split_row(
    src: &[f32],
    left: usize,
    stride: usize,
    phase_stride: usize,
    dst: &mut [f32],
) {
    if stride == 1 {
        let dst = &mut dst[left..left + src.len()];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if available() {
            // SAFETY: AVX-512F is present; the slices have the same length.
            unsafe { avx512::copy_row(src, dst) };
            return;
        }
        copy_short(src, dst);
        return;
    }
    if stride == 2 {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if available() {
            // Source columns 2t go to phase `left & 1`, column t + left / 2; columns
            // 2t + 1 to the other phase, one column further where `left` is odd.
            let (even, odd) = if left & 1 == 0 {
                (left >> 1, phase_stride + (left >> 1))
            } else {
                (phase_stride + (left >> 1), (left >> 1) + 1)
            };
            let (ne, no) = (src.len().div_ceil(2), src.len() / 2);
            assert!(dst.len() >= (even + ne).max(odd + no));
            // SAFETY: AVX-512F is present; `ne` floats from `even` and `no` from `odd`
            // lie in `dst` (asserted).
            unsafe { avx512::deinterleave(src, dst.as_mut_ptr(), even, odd) };
            return;
        }
        // Even and odd padded columns; bit operations, not divisions.
        for (c, &v) in src.iter().enumerate() {
            let pc = c + left;
            dst[(pc & 1) * phase_stride + (pc >> 1)] = v;
        }
        return;
    }
    for f in 0..stride {
        // The first source column whose padded column falls in phase f.
        let c0 = (f + stride - left % stride) % stride;
        if c0 >= src.len() {
            continue;
        }
        let at = f * phase_stride + (c0 + left) / stride;
        for (d, &v) in dst[at..].iter_mut().zip(src[c0..].iter().step_by(stride)) {
            *d = v;
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    /// `dst.copy_from_slice(src)` in 16-float pieces, the last one masked: the rows of a
    /// MobileNet's small planes are 2 to 16 floats, where a call to `memmove` costs more
    /// than the copy.
    ///
    /// # Safety
    /// AVX-512F; `src` and `dst` of the same length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy_row(src: &[f32], dst: &mut [f32]) {
        let n = src.len();
        debug_assert_eq!(dst.len(), n);
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        // SAFETY (both loops): floats i..i + 16 (or the masked rest) of both slices.
        while i + 16 <= n {
            unsafe { _mm512_storeu_ps(d.add(i), _mm512_loadu_ps(s.add(i))) };
            i += 16;
        }
        if i < n {
            let m = ((1u32 << (n - i)) - 1) as __mmask16;
            unsafe { _mm512_mask_storeu_ps(d.add(i), m, _mm512_maskz_loadu_ps(m, s.add(i))) };
        }
    }

    /// Even source columns to `dst + even`, odd ones to `dst + odd`, 32 columns a step
    /// (two permutes): the stride-2 phase split, which element by element was a tenth of
    /// a MobileNet's time.
    ///
    /// # Safety
    /// AVX-512F; `ceil(n / 2)` floats from `dst + even` and `n / 2` from `dst + odd` are
    /// writable (`n = src.len()`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn deinterleave(src: &[f32], dst: *mut f32, even: usize, odd: usize) {
        let n = src.len();
        let sp = src.as_ptr();
        let ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let mut i = 0;
        while i < n {
            let rest = n - i;
            let lo = if rest >= 16 {
                0xffff
            } else {
                ((1u32 << rest) - 1) as u16
            };
            let hi = if rest >= 32 {
                0xffff
            } else if rest > 16 {
                ((1u32 << (rest - 16)) - 1) as u16
            } else {
                0
            };
            let (ne, no) = (rest.min(32).div_ceil(2), rest.min(32) / 2);
            // SAFETY: source floats i..i + min(rest, 32) (masked), destination floats
            // i / 2 .. i / 2 + ne (no) from `even` (`odd`), as the caller promises.
            unsafe {
                let a = _mm512_maskz_loadu_ps(lo, sp.add(i));
                let b = _mm512_maskz_loadu_ps(hi, sp.add(i + 16));
                let ev = _mm512_permutex2var_ps(a, ie, b);
                let od = _mm512_permutex2var_ps(a, io, b);
                let me = ((1u32 << ne) - 1) as u16;
                let mo = ((1u32 << no) - 1) as u16;
                _mm512_mask_storeu_ps(dst.add(even + i / 2), me, ev);
                _mm512_mask_storeu_ps(dst.add(odd + i / 2), mo, od);
            }
            i += 32;
        }
    }
}
