//! Pointwise convolutions (1x1, stride 1, no padding, one group: MobileNet's expansion
//! layers, Howard et al. 2017) as one GEMM per sample, with no im2col at all: in NCHW a
//! sample `x_n [c_in, h w]` already is its im2col matrix, and `y_n [c_out, h w]` the
//! GEMM's output, so
//!
//! ```text
//! y_n  = W . x_n              forward, written in place
//! dx_n = W^T . dY_n           input gradient, written in place
//! dW   = sum_n dY_n . x_n^T   weight gradient
//! ```
//!
//! Through the general path ([`super::gemm_conv`]) each of them paid a copy into the
//! batch-folded layout and one back (im2col, output scatter, dY transpose, col2im).
//! Samples run in parallel on rayon's threads (each GEMM sequential: one sample's GEMM
//! is too small to split well).

use super::epilogue::Epilogue;
use super::gemm_conv::faer_f32_in;
use super::geometry::Geometry;

/// Whether `geo` is a pointwise convolution this module handles.
pub fn applies(geo: &Geometry) -> bool {
    geo.kh == 1 && geo.kw == 1 && geo.stride == [1, 1] && geo.pad == [0, 0] && geo.groups == 1
}

const SEQ: faer::Par = faer::Par::Seq;

/// Runs `f(sample, chunk_of_out)` for every sample, `out` split in `len`-sized chunks,
/// in parallel when rayon has more than one thread.
fn per_sample(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    #[cfg(feature = "rayon")]
    if rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(n, chunk)| f(n, chunk));
        return;
    }
    for (n, chunk) in out.chunks_mut(len).enumerate() {
        f(n, chunk);
    }
}

/// `y = ep(conv(x, w) + b)`.
#[inline(always)]
pub fn forward(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    ep: Epilogue<'_>,
) -> Vec<f32> {
    let (p, ci, co) = (geo.p(), geo.c_in, geo.c_out);
    let mut y = vec![0.0f32; geo.sizes().2];
    per_sample(&mut y, co * p, |n, yn| {
        let xn = &x[n * ci * p..][..ci * p];
        faer_f32_in(SEQ, co, p, ci, yn, false, w, (1, ci), xn, (1, p));
        for (c, row) in yn.chunks_exact_mut(p).enumerate() {
            ep.apply(row, b.map_or(0.0, |b| b[c]), (n * co + c) * p);
        }
    });
    y
}

/// The gradients `(dx, dw)` of `sum(dy * conv(x, w))`, each only when asked for.
#[inline(always)]
pub fn backward(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (p, ci, co) = (geo.p(), geo.c_in, geo.c_out);
    let (x_len, w_len, _) = geo.sizes();
    let dx = want_dx.then(|| {
        let mut dx = vec![0.0f32; x_len];
        per_sample(&mut dx, ci * p, |n, dxn| {
            let dyn_ = &dy[n * co * p..][..co * p];
            // W^T [ci, co]: element (c, o) at w[o ci + c].
            faer_f32_in(SEQ, ci, p, co, dxn, false, w, (ci, 1), dyn_, (1, p));
        });
        dx
    });
    let dw = want_dw.then(|| {
        // One partial dW per block of samples (per thread), summed at the end.
        let blocks = threads().min(geo.batch.max(1));
        let per = geo.batch.div_ceil(blocks).max(1);
        let mut partial = vec![0.0f32; blocks * w_len];
        per_sample(&mut partial, w_len, |blk, dwb| {
            let samples = blk * per..((blk + 1) * per).min(geo.batch);
            for (i, n) in samples.enumerate() {
                let dyn_ = &dy[n * co * p..][..co * p];
                let xn = &x[n * ci * p..][..ci * p];
                // x_n^T [p, ci]: element (q, c) at x_n[c p + q].
                faer_f32_in(SEQ, co, ci, p, dwb, i > 0, dyn_, (1, p), xn, (p, 1));
            }
        });
        let (first, rest) = partial.split_at_mut(w_len);
        for other in rest.chunks_exact(w_len) {
            first.iter_mut().zip(other).for_each(|(a, b)| *a += b);
        }
        partial.truncate(w_len);
        partial
    });
    (dx, dw)
}

fn threads() -> usize {
    #[cfg(feature = "rayon")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "rayon"))]
    1
}
