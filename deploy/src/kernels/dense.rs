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
    for r in 0..m {
        let yr = &mut y[r * p..(r + 1) * p];
        for (kk, &wv) in w[r * k..(r + 1) * k].iter().enumerate() {
            if wv != 0.0 {
                for (yv, &cv) in yr.iter_mut().zip(&c[kk * p..(kk + 1) * p]) {
                    *yv += wv * cv;
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
}
