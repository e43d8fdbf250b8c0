//! Dense layers. With the `gemm` feature, the `gemm` crate (which picks the best instruction
//! set of the running CPU: AVX-512, AVX2+FMA, NEON...); without it (the microcontroller
//! build), portable loops with independent accumulators that the compiler vectorises.

/// `y[b, n] = bias[n] + sum_k x[b, k] w[n, k]`: a linear layer on a batch.
/// `w` is `[out, in]` row-major, `x` `[batch, in]`, `y` `[batch, out]`.
pub fn linear(
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    batch: usize,
    out: usize,
    inp: usize,
    y: &mut [f32],
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if batch == 1 && std::is_x86_feature_detected!("avx512f") {
        let (w, x, y) = (&w[..out * inp], &x[..inp], &mut y[..out]);
        // SAFETY: the CPU has AVX-512F (checked just above); the slices were cut to the
        // lengths the kernel reads and writes.
        unsafe { avx512::gemv(w, bias, x, out, inp, y) };
        return;
    }
    bias_per_column(y, bias, batch, out);
    #[cfg(feature = "gemm")]
    // SAFETY: the plan sized `w` to out*inp, `x` to batch*inp and `y` to batch*out.
    unsafe {
        gemm_linear_accumulate(
            w.as_ptr(),
            x.as_ptr(),
            y.as_mut_ptr(),
            batch,
            out,
            inp,
            1.0f32,
        )
    };
    #[cfg(not(feature = "gemm"))]
    for b in 0..batch {
        let xb = &x[b * inp..(b + 1) * inp];
        for (n, yv) in y[b * out..(b + 1) * out].iter_mut().enumerate() {
            *yv += dot(&w[n * inp..(n + 1) * inp], xb);
        }
    }
}

/// A batch of one: `y[n] = bias[n] + w[n, :] . x`, eight rows at a time.
///
/// The `gemm` crate runs its AVX2 kernels on stable Rust, and a GEMV streams the whole
/// weight once per call, so its width is what sets the time; this is the AVX-512 one.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    /// Rows per pass: eight dot products in flight, eight independent FMA chains.
    const ROWS: usize = 8;

    /// # Safety
    /// AVX-512F; `w.len() == out * inp`, `x.len() == inp`, `y.len() == out`,
    /// `bias` (when given) at least `out` long.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemv(
        w: &[f32],
        bias: Option<&[f32]>,
        x: &[f32],
        out: usize,
        inp: usize,
        y: &mut [f32],
    ) {
        let full = inp / 16 * 16;
        let tail: __mmask16 = ((1u32 << (inp - full)) - 1) as u16;
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut r = 0;
        while r < out {
            let rows = ROWS.min(out - r);
            // SAFETY: rows r..r + rows < out of `w`, columns below `inp` (the tail
            // masked), and `x`'s `inp` floats.
            let sums = unsafe {
                let mut acc = [_mm512_setzero_ps(); ROWS];
                let mut k = 0;
                while k < full {
                    let xv = _mm512_loadu_ps(xp.add(k));
                    for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                        let wv = _mm512_loadu_ps(wp.add((r + i) * inp + k));
                        *acc = _mm512_fmadd_ps(wv, xv, *acc);
                    }
                    k += 16;
                }
                if tail != 0 {
                    let xv = _mm512_maskz_loadu_ps(tail, xp.add(k));
                    for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                        let wv = _mm512_maskz_loadu_ps(tail, wp.add((r + i) * inp + k));
                        *acc = _mm512_fmadd_ps(wv, xv, *acc);
                    }
                }
                acc.map(|a| _mm512_reduce_add_ps(a))
            };
            for (i, &sum) in sums.iter().enumerate().take(rows) {
                y[r + i] = bias.map_or(0.0, |b| b[r + i]) + sum;
            }
            r += rows;
        }
    }
}

/// `y[b, n] += sum_k x[b, k] w[n, k]` through the `gemm` crate, for any element type it
/// supports (`one` is that type's 1: f32 here, f64 for `mesh`'s double-precision runs).
/// Computed as `y^T += W x^T`: the crate is fastest with a column-major destination, which
/// `y^T` is (`y[b, n]` at `b * out + n`: row stride 1 in `y^T`).
///
/// # Safety
/// `w` points to `out * inp`, `x` to `batch * inp` and `y` to `batch * out` elements, all
/// row-major; `T` is f32 or f64.
#[cfg(feature = "gemm")]
pub(crate) unsafe fn gemm_linear_accumulate<T: Copy + 'static>(
    w: *const T,
    x: *const T,
    y: *mut T,
    batch: usize,
    out: usize,
    inp: usize,
    one: T,
) {
    // SAFETY: as the caller promises; the strides address exactly those elements.
    unsafe {
        gemm::gemm(
            out,
            batch,
            inp,
            y,
            out as isize,
            1,
            true,
            w,
            1,
            inp as isize,
            x,
            inp as isize,
            1,
            one,
            one,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `y[m, p] = bias[m] + sum_k w[m, k] c[k, p]`: a weight `[m, k]` times a patch matrix
/// `[k, p]` (a convolution after im2col), all row-major.
pub fn matmul_rows(
    w: &[f32],
    bias: Option<&[f32]>,
    c: &[f32],
    m: usize,
    k: usize,
    p: usize,
    y: &mut [f32],
) {
    bias_per_row(y, bias, m, p);
    #[cfg(feature = "gemm")]
    // SAFETY: `w` is m*k, `c` k*p and `y` m*p elements, as the strides address them.
    unsafe {
        gemm::gemm(
            m,
            p,
            k,
            y.as_mut_ptr(),
            1,
            p as isize,
            true,
            w.as_ptr(),
            1,
            k as isize,
            c.as_ptr(),
            1,
            p as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    #[cfg(not(feature = "gemm"))]
    {
        // Skipping zero weights saves work on a microcontroller, and is exact only where
        // the patch matrix is finite: `0 * inf` and `0 * NaN` are NaN in the dense product
        // the `gemm` build and the sparse kernels (`sparse::match_dense_on_non_finite`)
        // compute.
        let skip_zeros = super::sparse::all_finite(&c[..k * p]);
        for r in 0..m {
            let yr = &mut y[r * p..(r + 1) * p];
            for (kk, &wv) in w[r * k..(r + 1) * k].iter().enumerate() {
                if wv != 0.0 || !skip_zeros {
                    for (yv, &cv) in yr.iter_mut().zip(&c[kk * p..(kk + 1) * p]) {
                        *yv += wv * cv;
                    }
                }
            }
        }
    }
}

/// `y[r, c] = bias[c]` (or 0) for a `[rows, cols]` matrix: a linear layer's bias.
pub(crate) fn bias_per_column(y: &mut [f32], bias: Option<&[f32]>, rows: usize, cols: usize) {
    let y = &mut y[..rows * cols];
    match bias {
        None => y.fill(0.0),
        Some(bias) => {
            for row in y.chunks_exact_mut(cols) {
                row.copy_from_slice(&bias[..cols]);
            }
        }
    }
}

/// `y[r, c] = bias[r]` (or 0) for a `[rows, cols]` matrix: a convolution's bias.
pub(crate) fn bias_per_row(y: &mut [f32], bias: Option<&[f32]>, rows: usize, cols: usize) {
    let y = &mut y[..rows * cols];
    match bias {
        None => y.fill(0.0),
        Some(bias) => {
            for (row, &v) in y.chunks_exact_mut(cols).zip(bias) {
                row.fill(v);
            }
        }
    }
}

/// A dot product with eight independent accumulators (vectorisable, and less rounding
/// drift than one running sum).
#[cfg_attr(feature = "gemm", allow(dead_code))]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;

    #[test]
    fn linear_and_matmul_match_naive_sums() {
        let (batch, out, inp) = (3, 5, 37);
        let (w, x, b) = (lcg(out * inp, 1), lcg(batch * inp, 2), lcg(out, 3));
        let mut y = alloc::vec![f32::NAN; batch * out];
        linear(&w, Some(&b), &x, batch, out, inp, &mut y);
        for i in 0..batch {
            for n in 0..out {
                let r: f64 = b[n] as f64
                    + (0..inp)
                        .map(|k| (x[i * inp + k] * w[n * inp + k]) as f64)
                        .sum::<f64>();
                assert!((y[i * out + n] as f64 - r).abs() < 1e-5);
            }
        }
        let (m, k, p) = (4, 9, 13);
        let (w, c, b) = (lcg(m * k, 4), lcg(k * p, 5), lcg(m, 6));
        let mut y = alloc::vec![f32::NAN; m * p];
        matmul_rows(&w, Some(&b), &c, m, k, p, &mut y);
        for r in 0..m {
            for j in 0..p {
                let e: f64 = b[r] as f64
                    + (0..k)
                        .map(|q| (w[r * k + q] * c[q * p + j]) as f64)
                        .sum::<f64>();
                assert!((y[r * p + j] as f64 - e).abs() < 1e-5);
            }
        }
        matmul_rows(&w, None, &c, m, k, p, &mut y);
        let e: f64 = (0..k).map(|q| (w[q] * c[q * p]) as f64).sum();
        assert!((y[0] as f64 - e).abs() < 1e-5);
    }

    /// A batch of one (the AVX-512 GEMV where the CPU has it): row counts around its
    /// 8-row passes and widths around its 16-float steps, with and without a bias.
    #[test]
    fn a_batch_of_one_matches_naive_sums() {
        for (out, inp) in [(1, 1), (7, 15), (8, 16), (9, 17), (300, 784), (10, 100)] {
            let (w, x, b) = (lcg(out * inp, 7), lcg(inp, 8), lcg(out, 9));
            for bias in [Some(&b[..]), None] {
                let mut y = alloc::vec![f32::NAN; out];
                linear(&w, bias, &x, 1, out, inp, &mut y);
                for n in 0..out {
                    let r: f64 = bias.map_or(0.0, |b| b[n] as f64)
                        + (0..inp)
                            .map(|k| (x[k] * w[n * inp + k]) as f64)
                            .sum::<f64>();
                    assert!((y[n] as f64 - r).abs() < 1e-5, "{out}x{inp} row {n}");
                }
            }
        }
    }
}
