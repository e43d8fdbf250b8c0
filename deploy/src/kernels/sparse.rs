//! The project's sparse kernels: CSR weights times dense activations.
//!
//! - [`spmv`] (batch 1): one gather-dot per row (AVX2 `vgatherdps`, 16 nonzeros a step in
//!   two accumulators; portable: four scalar accumulators). It reads the file's CSR bytes
//!   in place; where AVX2 runs, the plan uses a SELL-8 copy instead ([`super::sell`]).
//! - [`spmm`] (a batch, or a convolution's patch matrix): the activations as a row-major
//!   `[k, n]` matrix (a batch is transposed into it first), so each nonzero `w[r, k]` scales
//!   one contiguous row `x[k, ..]` into the output row. Register blocking: the output row is
//!   produced in tiles of 32 (then 8) columns held in registers across the whole row of
//!   nonzeros, so each nonzero costs one broadcast and one fused multiply-add per 8 lanes,
//!   and the output is written once.
//!
//! With `std` on x86-64, AVX-512 (spmm) and AVX2+FMA versions are picked at run time (no
//! `target-cpu=native` needed); elsewhere the portable versions run (on a Cortex-M4, scalar
//! FPU code).

use alloc::vec::Vec;

use crate::format::Csr;

/// `y[r] = bias[r] + sum_k a[r, k] x[k]`.
///
/// # Panics
/// When `x` is shorter than `a.cols()` or `y` than `a.rows()`.
pub fn spmv(a: &Csr, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
    let x = &x[..a.cols()];
    let y = &mut y[..a.rows()];
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); `x` holds `a.cols()`
        // floats and the CSR was validated (column indices below `a.cols()`).
        unsafe { avx2::spmv(a, bias, x, y) };
        return;
    }
    portable_spmv(a, bias, x, y)
}

fn portable_spmv(a: &Csr, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
    for (r, yv) in y[..a.rows()].iter_mut().enumerate() {
        let (c, v) = a.row(r);
        let mut acc = [0.0f32; 4];
        let whole = v.len() / 4 * 4;
        for (vv, cc) in v[..whole].chunks_exact(4).zip(c[..whole].chunks_exact(4)) {
            for l in 0..4 {
                // SAFETY: `Csr` guarantees every column index is below `a.cols()`, and
                // `x` has `a.cols()` elements.
                acc[l] += vv[l] * unsafe { *x.get_unchecked(cc[l] as usize) };
            }
        }
        let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (&vv, &cc) in v[whole..].iter().zip(&c[whole..]) {
            // SAFETY: as above.
            sum += vv * unsafe { *x.get_unchecked(cc as usize) };
        }
        *yv = bias.map_or(0.0, |b| b[r]) + sum;
    }
}

/// `y[r * rs + j * cs] = bias[r] + sum_k a[r, k] x[k, j]` for `j < n`, with `x` row-major
/// `[a.cols, n]`. `(rs, cs) = (n, 1)` writes `[rows, n]` (a convolution's output);
/// `(1, rows)` writes `[n, rows]` (a batch's output).
pub fn spmm(
    a: &Csr,
    bias: Option<&[f32]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    rs: usize,
    cs: usize,
) {
    assert!(x.len() >= a.cols() * n, "spmm: x is smaller than [cols, n]");
    assert!(
        a.rows() == 0 || n == 0 || y.len() > (a.rows() - 1) * rs + (n - 1) * cs,
        "spmm: y is smaller than the output"
    );
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); bounds as asserted above and
        // the CSR validated at load (column indices below `a.cols`).
        unsafe { avx512::spmm(a, bias, x, n, y, rs, cs) };
        return;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); bounds as asserted above
        // and the CSR validated at load (column indices below `a.cols`).
        unsafe { avx2::spmm(a, bias, x, n, y, rs, cs) };
        return;
    }
    portable_spmm(a, bias, x, n, y, rs, cs);
}

fn portable_spmm(
    a: &Csr,
    bias: Option<&[f32]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    rs: usize,
    cs: usize,
) {
    for r in 0..a.rows() {
        let b = bias.map_or(0.0, |b| b[r]);
        let (c, v) = a.row(r);
        let mut j = 0;
        while j + 8 <= n {
            let mut acc = [b; 8];
            for (&vv, &cc) in v.iter().zip(c) {
                let xr = &x[cc as usize * n + j..][..8];
                for l in 0..8 {
                    acc[l] += vv * xr[l];
                }
            }
            for (l, &av) in acc.iter().enumerate() {
                y[r * rs + (j + l) * cs] = av;
            }
            j += 8;
        }
        for jj in j..n {
            let mut acc = b;
            for (&vv, &cc) in v.iter().zip(c) {
                acc += vv * x[cc as usize * n + jj];
            }
            y[r * rs + jj * cs] = acc;
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx2 {
    use core::arch::x86_64::*;

    use crate::format::Csr;

    /// Gather-dot per row: 8 column indices widened from u16, 8 activations gathered
    /// (`vgatherdps`, from L1: `x` is one activation vector), one FMA; two accumulators,
    /// then one 8-wide step and a scalar tail of at most 7 (a masked gather for the tail
    /// measured slower than the scalar loop; a 16-wide AVX-512 version no faster).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn spmv(a: &Csr, bias: Option<&[f32]>, x: &[f32], y: &mut [f32]) {
        let xp = x.as_ptr();
        for (r, yv) in y.iter_mut().enumerate() {
            let (c, v) = a.row(r);
            let n = v.len();
            let (cp, vp) = (c.as_ptr(), v.as_ptr());
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            // SAFETY: every load reads `c[i..i + w]` / `v[i..i + w]` with `i + w <= n`, and
            // every gathered index is a validated column index (< a.cols <= x.len()).
            unsafe {
                while i + 16 <= n {
                    let i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(cp.add(i).cast()));
                    let i1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(cp.add(i + 8).cast()));
                    let x0 = _mm256_i32gather_ps::<4>(xp, i0);
                    let x1 = _mm256_i32gather_ps::<4>(xp, i1);
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i)), x0, acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i + 8)), x1, acc1);
                    i += 16;
                }
                if i + 8 <= n {
                    let i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(cp.add(i).cast()));
                    let x0 = _mm256_i32gather_ps::<4>(xp, i0);
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(i)), x0, acc0);
                    i += 8;
                }
            }
            let mut sum = hsum(_mm256_add_ps(acc0, acc1));
            for k in i..n {
                sum += v[k] * x[c[k] as usize];
            }
            *yv = bias.map_or(0.0, |b| b[r]) + sum;
        }
    }

    /// Sum of the 8 lanes.
    #[target_feature(enable = "avx2")]
    pub(super) fn hsum(s: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
        ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
            + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    }

    /// Tiles of 32 then 8 columns in 4 and 1 AVX registers; a scalar tail.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn spmm(
        a: &Csr,
        bias: Option<&[f32]>,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        rs: usize,
        cs: usize,
    ) {
        let xp = x.as_ptr();
        for r in 0..a.rows() {
            let b = bias.map_or(0.0, |b| b[r]);
            let (c, v) = a.row(r);
            let mut j = 0;
            while j + 32 <= n {
                let mut acc = [_mm256_set1_ps(b); 4];
                for (&vv, &cc) in v.iter().zip(c) {
                    let w = _mm256_set1_ps(vv);
                    // SAFETY: cc < a.cols and j + 32 <= n, so the 32 floats lie in x.
                    let p = unsafe { xp.add(cc as usize * n + j) };
                    for (l, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(w, unsafe { _mm256_loadu_ps(p.add(8 * l)) }, *acc);
                    }
                }
                store(&acc, y, r * rs + j * cs, cs);
                j += 32;
            }
            while j + 8 <= n {
                let mut acc = [_mm256_set1_ps(b)];
                for (&vv, &cc) in v.iter().zip(c) {
                    // SAFETY: as above, 8 floats.
                    let p = unsafe { xp.add(cc as usize * n + j) };
                    acc[0] =
                        _mm256_fmadd_ps(_mm256_set1_ps(vv), unsafe { _mm256_loadu_ps(p) }, acc[0]);
                }
                store(&acc, y, r * rs + j * cs, cs);
                j += 8;
            }
            for jj in j..n {
                let mut acc = b;
                for (&vv, &cc) in v.iter().zip(c) {
                    acc = vv.mul_add(x[cc as usize * n + jj], acc);
                }
                y[r * rs + jj * cs] = acc;
            }
        }
    }

    /// Writes `8 * acc.len()` lanes to `y[at + l * cs]`.
    #[inline(always)]
    fn store<const T: usize>(acc: &[__m256; T], y: &mut [f32], at: usize, cs: usize) {
        let mut lanes = [[0.0f32; 8]; T];
        for (lane, a) in lanes.iter_mut().zip(acc) {
            // SAFETY: `lane` holds 8 floats.
            unsafe { _mm256_storeu_ps(lane.as_mut_ptr(), *a) };
        }
        if cs == 1 {
            y[at..at + 8 * T].copy_from_slice(lanes.as_flattened());
        } else {
            for (l, &v) in lanes.as_flattened().iter().enumerate() {
                y[at + l * cs] = v;
            }
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use crate::format::Csr;

    /// As the AVX2 version with 16-lane registers: tiles of 64 columns (4 registers),
    /// then 32, then 16, then one masked tile for the last 1 to 15.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn spmm(
        a: &Csr,
        bias: Option<&[f32]>,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        rs: usize,
        cs: usize,
    ) {
        let xp = x.as_ptr();
        for r in 0..a.rows() {
            let b = bias.map_or(0.0, |b| b[r]);
            let (c, v) = a.row(r);
            let mut j = 0;
            while j + 64 <= n {
                // SAFETY: j + 64 <= n.
                let acc = unsafe { tile::<4>(c, v, xp, n, j, b) };
                store(&acc, y, r * rs + j * cs, cs, 64);
                j += 64;
            }
            while j + 32 <= n {
                // SAFETY: j + 32 <= n.
                let acc = unsafe { tile::<2>(c, v, xp, n, j, b) };
                store(&acc, y, r * rs + j * cs, cs, 32);
                j += 32;
            }
            while j < n {
                let width = (n - j).min(16);
                let mask: __mmask16 = if width == 16 {
                    0xffff
                } else {
                    (1u16 << width) - 1
                };
                let mut acc = [_mm512_set1_ps(b)];
                for (&vv, &cc) in v.iter().zip(c) {
                    // SAFETY: cc < a.cols and the mask reads only j..j + width < n.
                    let p = unsafe { xp.add(cc as usize * n + j) };
                    acc[0] = _mm512_fmadd_ps(
                        _mm512_set1_ps(vv),
                        unsafe { _mm512_maskz_loadu_ps(mask, p) },
                        acc[0],
                    );
                }
                store(&acc, y, r * rs + j * cs, cs, width);
                j += width;
            }
        }
    }

    /// Columns `j..j + 16 T` of one output row: `bias + sum v[i] x[c[i], j..]`.
    ///
    /// # Safety
    /// AVX-512F; `j + 16 T <= n`, every `c[i]` a row of `x` (`[cols, n]` at `xp`).
    #[inline(always)]
    unsafe fn tile<const T: usize>(
        c: &[u16],
        v: &[f32],
        xp: *const f32,
        n: usize,
        j: usize,
        bias: f32,
    ) -> [__m512; T] {
        // SAFETY: as the caller promises; each load reads 16 floats inside row c[i].
        unsafe {
            let mut acc = [_mm512_set1_ps(bias); T];
            for (&vv, &cc) in v.iter().zip(c) {
                let w = _mm512_set1_ps(vv);
                let p = xp.add(cc as usize * n + j);
                for (l, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(w, _mm512_loadu_ps(p.add(16 * l)), *acc);
                }
            }
            acc
        }
    }

    /// Writes the first `count` lanes of `acc` to `y[at + l * cs]`.
    #[inline(always)]
    fn store<const T: usize>(acc: &[__m512; T], y: &mut [f32], at: usize, cs: usize, count: usize) {
        let mut lanes = [[0.0f32; 16]; T];
        for (lane, a) in lanes.iter_mut().zip(acc) {
            // SAFETY: `lane` holds 16 floats.
            unsafe { _mm512_storeu_ps(lane.as_mut_ptr(), *a) };
        }
        let flat = &lanes.as_flattened()[..count];
        if cs == 1 {
            y[at..at + count].copy_from_slice(flat);
        } else {
            for (l, &v) in flat.iter().enumerate() {
                y[at + l * cs] = v;
            }
        }
    }
}

/// True when every value of `x` is finite: an OR of "exponent all ones" over the bits,
/// which the compiler vectorises (no early exit), so the check costs a small fraction of
/// the sparse product it guards (one pass over the activations against one per nonzero).
pub fn all_finite(x: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    let mut bad = 0u32;
    for &v in x {
        bad |= u32::from(v.to_bits() & EXPONENT == EXPONENT);
    }
    bad == 0
}

/// Makes the outputs of a sparse product on non-finite activations what the dense
/// product gives, so that every kernel choice computes the same model.
///
/// The sparse kernels skip pruned (zero) weights. That is exact for finite activations
/// (`0 * x = 0`) but not for the others: in the dense product, and so in the dense
/// kernels, in ONNX Runtime and in PyTorch running the exported model, `0 * inf` and
/// `0 * NaN` are NaN, so a pruned weight facing a NaN or an infinity makes its output NaN.
/// (The SELL-8 padding and the zeros inside 1x4 blocks, which do multiply, would give yet
/// other answers.) For each column `j` of `x` (row-major `[a.cols, n]`, as [`spmm`] reads
/// it; `n = 1` for [`spmv`]) that holds a non-finite value, every output
/// `y[r * rs + j * cs]` is recomputed from the stored weights: NaN where a non-finite
/// `x[k, j]` has no stored weight in row `r`, else `bias[r]` plus the stored products. That
/// sum holds a non-finite term, so it is NaN or an infinity whatever the order of the
/// additions (NaN if a term is NaN or both infinities occur), the same bits as the dense
/// kernels compute, except for the sign and payload of a NaN, which IEEE 754 leaves open.
/// Columns of finite values are left as the kernel computed them; when all of `x` is
/// finite (nearly always) this is one vectorised pass over `x`.
///
/// # Panics
/// When `x` is shorter than `[a.cols, n]` or `y` than the outputs.
pub fn match_dense_on_non_finite(
    a: &Csr,
    bias: Option<&[f32]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    rs: usize,
    cs: usize,
) {
    let x = &x[..a.cols() * n];
    if all_finite(x) {
        return;
    }
    let bad = |k: usize, j: usize| !x[k * n + j].is_finite();
    for j in 0..n {
        let count = (0..a.cols()).filter(|&k| bad(k, j)).count();
        if count == 0 {
            continue;
        }
        for r in 0..a.rows() {
            let (c, v) = a.row(r);
            let mut sum = bias.map_or(0.0, |b| b[r]);
            // Stored weights facing a non-finite value, and whether the row's column
            // indices are strictly increasing (as every writer here stores them; the
            // format does not require it).
            let (mut hits, mut increasing, mut prev) = (0usize, true, None);
            for (&k, &w) in c.iter().zip(v) {
                let k = usize::from(k);
                sum += w * x[k * n + j];
                hits += usize::from(bad(k, j));
                increasing &= prev.is_none_or(|p| p < k);
                prev = Some(k);
            }
            // Every non-finite column has a stored weight in this row: with distinct
            // columns the count says so; otherwise look each one up.
            let covered = if increasing {
                hits == count
            } else {
                (0..a.cols())
                    .filter(|&k| bad(k, j))
                    .all(|k| c.iter().any(|&s| usize::from(s) == k))
            };
            y[r * rs + j * cs] = if covered { sum } else { f32::NAN };
        }
    }
}

/// The CSR arrays `(row_ptr, col_idx, values)` of a dense row-major `[rows, cols]` matrix
/// (exact zeros dropped; column indices truncate to u16, so `cols` must be at most 65,536
/// for the result to validate).
pub fn csr_from_dense(rows: usize, cols: usize, d: &[f32]) -> (Vec<u32>, Vec<u16>, Vec<f32>) {
    let (mut ptr, mut idx, mut vals) = (alloc::vec![0u32], Vec::new(), Vec::new());
    for row in d.chunks_exact(cols.max(1)).take(rows) {
        for (c, &v) in row.iter().enumerate() {
            if v != 0.0 {
                idx.push(c as u16);
                vals.push(v);
            }
        }
        ptr.push(vals.len() as u32);
    }
    (ptr, idx, vals)
}

/// Transposes `x` `[rows, cols]` into `t` `[cols, rows]` (a batch into the layout
/// [`spmm`] reads).
///
/// Whole 8x8 blocks are transposed in AVX2 registers where the CPU has it, else through a
/// fixed-size array (the element-wise loop this replaces was a quarter of a pruned
/// LeNet-300-100's batch of 32 under `perf`); the ragged edges go element by element.
pub fn transpose(x: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    const B: usize = 8;
    let (x, t) = (&x[..rows * cols], &mut t[..rows * cols]);
    let (full_rows, full_cols) = (rows / B * B, cols / B * B);
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    let avx2 = std::is_x86_feature_detected!("avx2");
    for r0 in (0..full_rows).step_by(B) {
        for c0 in (0..full_cols).step_by(B) {
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if avx2 {
                // SAFETY: the CPU has AVX2 (checked above); rows r0..r0 + 8 and columns
                // c0..c0 + 8 lie inside `x` ([rows, cols]) and, transposed, inside `t`,
                // whose lengths were cut to rows * cols above.
                unsafe { avx2_transpose::block8(x, cols, t, rows, r0, c0) };
                continue;
            }
            block8(x, cols, t, rows, r0, c0);
        }
        for r in r0..r0 + B {
            for c in full_cols..cols {
                t[c * rows + r] = x[r * cols + c];
            }
        }
    }
    for r in full_rows..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
}

/// One 8x8 block of [`transpose`] in portable code: through a fixed-size array, one
/// bounds check per 8-float row.
fn block8(x: &[f32], cols: usize, t: &mut [f32], rows: usize, r0: usize, c0: usize) {
    const B: usize = 8;
    let block: [[f32; B]; B] =
        core::array::from_fn(|i| x[(r0 + i) * cols + c0..][..B].try_into().expect("B floats"));
    for j in 0..B {
        let column: [f32; B] = core::array::from_fn(|i| block[i][j]);
        t[(c0 + j) * rows + r0..][..B].copy_from_slice(&column);
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx2_transpose {
    use core::arch::x86_64::*;

    /// `t[(c0 + j) * rows + r0 + i] = x[(r0 + i) * cols + c0 + j]` for `i, j < 8`: eight
    /// row loads, the 8x8 transpose in registers (unpack pairs of rows, shuffle pairs of
    /// pairs, swap 128-bit halves) and eight column stores.
    ///
    /// # Safety
    /// AVX2; rows `r0..r0 + 8`, columns `c0..c0 + 8` inside `x` (`[rows, cols]`) and the
    /// transposed block inside `t` (`[cols, rows]`).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn block8(
        x: &[f32],
        cols: usize,
        t: &mut [f32],
        rows: usize,
        r0: usize,
        c0: usize,
    ) {
        // SAFETY: as the caller promises.
        unsafe {
            let src = x.as_ptr().add(r0 * cols + c0);
            let r: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(src.add(i * cols)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let c = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            let dst = t.as_mut_ptr().add(c0 * rows + r0);
            for (j, c) in c.iter().enumerate() {
                _mm256_storeu_ps(dst.add(j * rows), *c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn transpose_of_every_ragged_shape() {
        for rows in [1, 7, 8, 9, 17, 32] {
            for cols in [1, 5, 8, 13, 24, 31] {
                let x: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
                let mut t = alloc::vec![f32::NAN; rows * cols];
                transpose(&x, rows, cols, &mut t);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(t[c * rows + r], x[r * cols + c], "{rows}x{cols}");
                    }
                }
                // The portable block, where the dispatched transpose took the AVX2 one.
                if rows >= 8 && cols >= 8 {
                    let mut p = alloc::vec![f32::NAN; rows * cols];
                    block8(&x, cols, &mut p, rows, 0, 0);
                    for r in 0..8 {
                        for c in 0..8 {
                            assert_eq!(p[c * rows + r], x[r * cols + c], "{rows}x{cols}");
                        }
                    }
                }
            }
        }
    }

    /// A random matrix with about `density` nonzeros, dense and as CSR arrays.
    fn random_sparse(
        rows: usize,
        cols: usize,
        density: f32,
        seed: u32,
    ) -> (Vec<f32>, Vec<u32>, Vec<u16>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32
        };
        let mut dense = alloc::vec![0.0; rows * cols];
        let (mut ptr, mut idx, mut vals) = (alloc::vec![0u32], Vec::new(), Vec::new());
        for r in 0..rows {
            for c in 0..cols {
                if next() < density {
                    let v = next() - 0.5;
                    dense[r * cols + c] = v;
                    idx.push(c as u16);
                    vals.push(v);
                }
            }
            ptr.push(vals.len() as u32);
        }
        (dense, ptr, idx, vals)
    }

    #[test]
    fn spmv_and_spmm_match_dense_products() {
        let (rows, cols) = (37, 53);
        let (dense, ptr, idx, vals) = random_sparse(rows, cols, 0.2, 7);
        let a = Csr::new(rows, cols, &ptr, &idx, &vals).unwrap();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.01).collect();
        for n in [1, 3, 8, 32, 45, 77] {
            let x: Vec<f32> = (0..cols * n)
                .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                .collect();
            // Output [rows, n] and [n, rows].
            let mut y1 = alloc::vec![f32::NAN; rows * n];
            let mut y2 = alloc::vec![f32::NAN; rows * n];
            spmm(&a, Some(&bias), &x, n, &mut y1, n, 1);
            spmm(&a, Some(&bias), &x, n, &mut y2, 1, rows);
            for r in 0..rows {
                for j in 0..n {
                    let e: f64 = bias[r] as f64
                        + (0..cols)
                            .map(|k| (dense[r * cols + k] * x[k * n + j]) as f64)
                            .sum::<f64>();
                    assert!((y1[r * n + j] as f64 - e).abs() < 1e-5, "n {n}");
                    assert!((y2[j * rows + r] as f64 - e).abs() < 1e-5, "n {n}");
                }
            }
            let mut p = alloc::vec![f32::NAN; rows * n];
            portable_spmm(&a, Some(&bias), &x, n, &mut p, n, 1);
            for (u, v) in p.iter().zip(&y1) {
                assert!((u - v).abs() < 1e-5);
            }
        }
        let x: Vec<f32> = (0..cols).map(|i| i as f32 / cols as f32).collect();
        let mut y = alloc::vec![0.0; rows];
        spmv(&a, None, &x, &mut y);
        for r in 0..rows {
            let e: f64 = (0..cols).map(|k| (dense[r * cols + k] * x[k]) as f64).sum();
            assert!((y[r] as f64 - e).abs() < 1e-5);
        }
    }

    /// Rows of every length from 0 to 70 nonzeros (the vector kernel's 16- and 8-wide steps
    /// and every tail length), against the f64 dense product and the portable kernel.
    #[test]
    fn spmv_matches_dense_product_for_every_row_length() {
        let (rows, cols) = (71, 300);
        let mut dense = alloc::vec![0.0f32; rows * cols];
        for r in 0..rows {
            for j in 0..r {
                // Row r has r nonzeros at scattered columns.
                dense[r * cols + (j * 37 + r * 11) % cols] = ((r * 31 + j * 17) % 23) as f32 - 11.5;
            }
        }
        let (ptr, idx, vals) = csr_from_dense(rows, cols, &dense);
        let a = Csr::new(rows, cols, &ptr, &idx, &vals).unwrap();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5)
            .collect();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.5).collect();
        let (mut y, mut p) = (alloc::vec![f32::NAN; rows], alloc::vec![f32::NAN; rows]);
        spmv(&a, Some(&bias), &x, &mut y);
        portable_spmv(&a, Some(&bias), &x, &mut p);
        for r in 0..rows {
            assert_eq!(a.row(r).0.len(), r);
            let e: f64 = bias[r] as f64
                + (0..cols)
                    .map(|k| dense[r * cols + k] as f64 * x[k] as f64)
                    .sum::<f64>();
            assert!((y[r] as f64 - e).abs() < 1e-4, "row {r}: {} vs {e}", y[r]);
            assert!((p[r] as f64 - e).abs() < 1e-4, "row {r}: {} vs {e}", p[r]);
        }
    }

    #[test]
    fn transpose_round_trips() {
        let x: Vec<f32> = (0..30).map(|i| i as f32).collect();
        let mut t = alloc::vec![0.0; 30];
        transpose(&x, 3, 10, &mut t);
        assert_eq!(t[1], 10.0);
        let mut back = alloc::vec![0.0; 30];
        transpose(&t, 10, 3, &mut back);
        assert_eq!(back, x);
    }

    /// The same value, or both NaN (IEEE leaves a NaN's sign and payload open).
    fn same(a: f32, b: f32) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    /// With NaN and infinities among the activations, spmv and spmm followed by
    /// [`match_dense_on_non_finite`] give what the dense product gives (in f32, where `0 *
    /// inf` is NaN): the columns holding a non-finite value exactly (their sums are
    /// non-finite, so the order of the additions does not matter), the others as the
    /// kernels computed them (within the tolerance of the finite test above). Without the
    /// correction the rows whose weights are pruned where the input is infinite come out
    /// finite, which this also checks.
    #[test]
    fn non_finite_activations_give_the_dense_products_results() {
        let (rows, cols) = (37, 53);
        let (dense, ptr, idx, vals) = random_sparse(rows, cols, 0.2, 7);
        let a = Csr::new(rows, cols, &ptr, &idx, &vals).unwrap();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.01).collect();
        let mut pruned_rows_were_finite = false;
        for n in [1, 3, 8, 32, 45] {
            let mut x: Vec<f32> = (0..cols * n)
                .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                .collect();
            // Column 0: one NaN; column 1: +inf; column 2: +inf and -inf; column 3: -inf
            // at a column no row keeps, if any; the rest finite.
            let empty_col = (0..cols).find(|&k| (0..rows).all(|r| dense[r * cols + k] == 0.0));
            let marks = [
                (0, 5, f32::NAN),
                (1, 11, f32::INFINITY),
                (2, 11, f32::INFINITY),
                (2, 30, f32::NEG_INFINITY),
                (3, empty_col.unwrap_or(40), f32::NEG_INFINITY),
            ];
            for &(j, k, v) in &marks {
                if j < n {
                    x[k * n + j] = v;
                }
            }
            let reference = |r: usize, j: usize| {
                let mut e = bias[r];
                for k in 0..cols {
                    e += dense[r * cols + k] * x[k * n + j];
                }
                e
            };
            let mut y1 = alloc::vec![0.0; rows * n];
            let mut y2 = alloc::vec![0.0; rows * n];
            spmm(&a, Some(&bias), &x, n, &mut y1, n, 1);
            spmm(&a, Some(&bias), &x, n, &mut y2, 1, rows);
            // Column 0 faces the NaN at input 5: the rows that pruned input 5 skipped it.
            pruned_rows_were_finite |=
                (0..rows).any(|r| y1[r * n].is_finite() && dense[r * cols + 5] == 0.0);
            match_dense_on_non_finite(&a, Some(&bias), &x, n, &mut y1, n, 1);
            match_dense_on_non_finite(&a, Some(&bias), &x, n, &mut y2, 1, rows);
            let mut y3 = alloc::vec![0.0; rows];
            if n == 1 {
                spmv(&a, Some(&bias), &x, &mut y3);
                match_dense_on_non_finite(&a, Some(&bias), &x, 1, &mut y3, 1, 0);
            }
            for j in 0..n {
                let bad = (0..cols).any(|k| !x[k * n + j].is_finite());
                for r in 0..rows {
                    let e = reference(r, j);
                    for (got, what) in [
                        (y1[r * n + j], "[rows, n]"),
                        (y2[j * rows + r], "[n, rows]"),
                    ]
                    .into_iter()
                    .chain((n == 1).then_some((y3[r], "spmv")))
                    {
                        if bad {
                            assert!(!e.is_finite(), "row {r} column {j}");
                            assert!(
                                same(got, e),
                                "{what} n {n} row {r} column {j}: {got} vs {e}"
                            );
                        } else {
                            assert!((got - e).abs() < 1e-5, "{what} n {n} row {r} column {j}");
                        }
                    }
                }
            }
        }
        assert!(
            pruned_rows_were_finite,
            "the correction had nothing to correct"
        );
        // Finite activations: untouched.
        let x: Vec<f32> = (0..cols).map(|i| i as f32).collect();
        let mut y = alloc::vec![0.0; rows];
        spmv(&a, None, &x, &mut y);
        let before = y.clone();
        match_dense_on_non_finite(&a, None, &x, 1, &mut y, 1, 0);
        assert_eq!(y, before);
    }

    /// Unsorted and repeated column indices (the format allows them) take the look-up
    /// path: a row that stores the non-finite column (twice, out of order) keeps its sum,
    /// a row that does not is NaN.
    #[test]
    fn non_finite_correction_with_unsorted_columns() {
        // Row 0: columns 2, 0, 2; row 1: column 1 only.
        let ptr = [0u32, 3, 4];
        let idx = [2u16, 0, 2, 1];
        let vals = [1.0f32, 2.0, 3.0, 4.0];
        let a = Csr::new(2, 3, &ptr, &idx, &vals).unwrap();
        let x = [1.0, 1.0, f32::INFINITY];
        let mut y = [0.0; 2];
        spmv(&a, None, &x, &mut y);
        match_dense_on_non_finite(&a, None, &x, 1, &mut y, 1, 0);
        assert_eq!(y[0], f32::INFINITY);
        assert!(y[1].is_nan());
        assert!(all_finite(&[0.0, -1e38, f32::MIN_POSITIVE / 2.0]));
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
            for at in 0..19 {
                let mut x = [1.0f32; 19];
                x[at] = v;
                assert!(!all_finite(&x), "{v} at {at}");
            }
        }
    }
}
