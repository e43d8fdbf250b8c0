//! Convolution forward and backward as GEMMs over im2col matrices ([`super::im2col`]),
//! on f32 slices in NCHW order. With `cols = im2col(x)` and `dY` as `[cout_g, nb p]`:
//!
//! ```text
//! Y    = W . cols                 forward
//! dW  += dY . cols^T              weight gradient (summed over the chunks)
//! dX   = col2im(W^T . dY)         input gradient
//! db   = sum over (n, p) of dY    bias gradient
//! ```
//!
//! All three are strided GEMMs, so that no transposed copy of `W` or `cols` is made: the
//! input gradient through the `gemm` crate (burn-flex's matmul), the forward and the
//! weight gradient through faer's matmul, whose AVX-512 kernels ran these products with
//! few output channels (M = 16 to 64) 1.3-2.2x faster than `gemm` here (e.g. 16 x 32768
//! x 144: 21 against 9.4 GFLOP/s; `gemm` 30 against faer 24 on the input gradient's
//! 144 x 32768 x 16). The batch is processed in chunks whose
//! im2col matrix stays near [`CHUNK_ELEMS`] floats: wide enough for the GEMM, small
//! enough to stay in cache and keep memory bounded (the im2col of a whole batch of
//! ResNet's first block is 58 MB).

use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::im2col::{col2im, im2col};

/// Target size (floats) of one chunk's im2col matrix.
const CHUNK_ELEMS: usize = 1 << 18;

/// Samples per chunk: as many as keep `k nb p` near [`CHUNK_ELEMS`], at least one.
fn chunk(geo: &Geometry) -> usize {
    (CHUNK_ELEMS / (geo.k() * geo.p()).max(1)).clamp(1, geo.batch.max(1))
}

/// How the GEMMs may use threads: rayon's pool when the `rayon` feature is on and the
/// product is large enough to pay for the split.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    {
        let threads = rayon::current_num_threads();
        if threads > 1 && m * n * k >= 64 * 64 * 64 {
            return gemm::Parallelism::Rayon(threads);
        }
    }
    let _ = (m, n, k);
    gemm::Parallelism::None
}

/// Offset of the last element of a `rows x cols` operand with strides `(cs, rs)`: the
/// length its slice must exceed.
fn last(cs: usize, rs: usize, rows: usize, cols: usize) -> usize {
    (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
}

/// `dst [m, n] (row stride dst_rs) = (acc ? dst : 0) + lhs . rhs` with explicit
/// (column, row) strides of each operand.
#[allow(clippy::too_many_arguments)]
fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: &[f32],
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: &[f32],
    (rhs_cs, rhs_rs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // The slices cover every element the strides reach (checked here, so the unsafe call
    // below reads and writes inside them).
    assert!(last(1, dst_rs, m, n) < dst.len());
    if k > 0 {
        assert!(last(lhs_cs, lhs_rs, m, k) < lhs.len());
        assert!(last(rhs_cs, rhs_rs, k, n) < rhs.len());
    }
    // SAFETY: the asserts above keep every access inside the slices; dst does not alias
    // lhs or rhs (a &mut and two & borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// `dst [m, n] (row-major) = (acc ? dst : 0) + lhs . rhs` through faer, strides as in
/// [`gemm_f32`], on rayon's threads when the product is large enough.
#[allow(clippy::too_many_arguments)]
fn faer_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    acc: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    #[cfg(feature = "rayon")]
    let par = match rayon::current_num_threads() {
        t if t > 1 && m * n * k >= 64 * 64 * 64 => faer::Par::rayon(t),
        _ => faer::Par::Seq,
    };
    #[cfg(not(feature = "rayon"))]
    let par = faer::Par::Seq;
    faer_f32_in(par, m, n, k, dst, acc, lhs, lhs_strides, rhs, rhs_strides);
}

/// [`faer_f32`] with the caller's choice of threads (`Par::Seq` inside a parallel loop).
#[allow(clippy::too_many_arguments)]
pub(super) fn faer_f32_in(
    par: faer::Par,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    acc: bool,
    lhs: &[f32],
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: &[f32],
    (rhs_cs, rhs_rs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(m * n <= dst.len());
    if k > 0 {
        assert!(last(lhs_cs, lhs_rs, m, k) < lhs.len());
        assert!(last(rhs_cs, rhs_rs, k, n) < rhs.len());
    }
    // SAFETY: the asserts above keep every strided access inside the slices, and dst (a
    // &mut) aliases neither operand.
    unsafe {
        let l = faer::MatRef::<f32>::from_raw_parts(
            lhs.as_ptr(),
            m,
            k,
            lhs_rs as isize,
            lhs_cs as isize,
        );
        let r = faer::MatRef::<f32>::from_raw_parts(
            rhs.as_ptr(),
            k,
            n,
            rhs_rs as isize,
            rhs_cs as isize,
        );
        let d = faer::MatMut::<f32>::from_raw_parts_mut(dst.as_mut_ptr(), m, n, n as isize, 1);
        let accum = if acc {
            faer::Accum::Add
        } else {
            faer::Accum::Replace
        };
        faer::linalg::matmul::matmul(d, accum, l, r, 1.0f32, par);
    }
}

std::thread_local! {
    /// Scratch matrices (im2col, GEMM output, transposed dY) reused across calls: a fresh
    /// zeroed allocation per call cost ~8% of a ResNet step in page faults.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` with two scratch buffers of at least `a` and `b` floats (contents arbitrary).
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let Ok(mut bufs) = cell.try_borrow_mut() else {
            // Re-entered (cannot happen with the kernels here): fresh buffers.
            return f(&mut vec![0.0; a], &mut vec![0.0; b]);
        };
        let [x, y] = &mut *bufs;
        if x.len() < a {
            x.resize(a, 0.0);
        }
        if y.len() < b {
            y.resize(b, 0.0);
        }
        f(&mut x[..a], &mut y[..b])
    })
}

/// `y = ep(conv(x, w) + b)`, `y` in NCHW.
#[inline(always)]
pub fn forward(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    ep: Epilogue<'_>,
) -> Vec<f32> {
    let (p, k, cog) = (geo.p(), geo.k(), geo.cout_g());
    let mut y = vec![0.0f32; geo.sizes().2];
    let nb_max = chunk(geo);
    with_scratch(k * nb_max * p, cog * nb_max * p, |cols, ybuf| {
        for n0 in (0..geo.batch).step_by(nb_max) {
            let nb = nb_max.min(geo.batch - n0);
            let width = nb * p;
            for g in 0..geo.groups {
                let cols = &mut cols[..k * width];
                im2col(geo, x, n0, nb, g, cols);
                let ybuf = &mut ybuf[..cog * width];
                faer_f32(
                    cog,
                    width,
                    k,
                    ybuf,
                    false,
                    &w[g * cog * k..],
                    (1, k),
                    cols,
                    (1, width),
                );
                for o in 0..cog {
                    let channel = g * cog + o;
                    let bias = b.map_or(0.0, |b| b[channel]);
                    for n in 0..nb {
                        let at = ((n0 + n) * geo.c_out + channel) * p;
                        ep.write(&mut y[at..][..p], &ybuf[o * width + n * p..][..p], bias, at);
                    }
                }
            }
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
    let (p, k, cog) = (geo.p(), geo.k(), geo.cout_g());
    let (x_len, w_len, _) = geo.sizes();
    let mut dx = want_dx.then(|| vec![0.0f32; x_len]);
    let mut dw = want_dw.then(|| vec![0.0f32; w_len]);
    if dx.is_none() && dw.is_none() {
        return (None, None);
    }
    let nb_max = chunk(geo);
    with_scratch(k * nb_max * p, cog * nb_max * p, |cols, dyt| {
        let mut started = vec![false; geo.groups];
        for n0 in (0..geo.batch).step_by(nb_max) {
            let nb = nb_max.min(geo.batch - n0);
            let width = nb * p;
            for g in 0..geo.groups {
                // dY of this chunk and group as [cout_g, nb p].
                let dyt = &mut dyt[..cog * width];
                for o in 0..cog {
                    for n in 0..nb {
                        dyt[o * width + n * p..][..p]
                            .copy_from_slice(&dy[((n0 + n) * geo.c_out + g * cog + o) * p..][..p]);
                    }
                }
                let cols = &mut cols[..k * width];
                let wg = &w[g * cog * k..][..cog * k];
                if let Some(dw) = dw.as_mut() {
                    im2col(geo, x, n0, nb, g, cols);
                    // dW_g [cog, k] += dY [cog, width] . cols^T [width, k]
                    let acc = std::mem::replace(&mut started[g], true);
                    faer_f32(
                        cog,
                        k,
                        width,
                        &mut dw[g * cog * k..][..cog * k],
                        acc,
                        dyt,
                        (1, width),
                        cols,
                        (width, 1),
                    );
                }
                if let Some(dx) = dx.as_mut() {
                    // dcols [k, width] = W_g^T [k, cog] . dY [cog, width]
                    gemm_f32(
                        k,
                        width,
                        cog,
                        cols,
                        width,
                        false,
                        wg,
                        (k, 1),
                        dyt,
                        (1, width),
                    );
                    col2im(geo, cols, n0, nb, g, dx);
                }
            }
        }
    });
    (dx, dw)
}

/// `db[c] = sum over (n, p) of dy[n, c, p]`.
#[inline(always)]
pub fn bias_grad(geo: &Geometry, dy: &[f32]) -> Vec<f32> {
    let p = geo.p();
    let mut db = vec![0.0f32; geo.c_out];
    for n in 0..geo.batch {
        for (c, d) in db.iter_mut().enumerate() {
            *d += sum(&dy[(n * geo.c_out + c) * p..][..p]);
        }
    }
    db
}

/// The sum of `v` in 16 interleaved partial sums: a plain `iter().sum()` is one serial
/// chain of additions (the compiler may not reorder float sums), which made the bias
/// gradient 3% of a ResNet step.
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = v.chunks_exact(16);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}
