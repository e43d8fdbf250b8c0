//! Direct sparse convolution, for stride 1 without padding or dilation: each nonzero
//! weight `w[o, c, di, dj]` adds `w * x[c, i + di, j + dj]` to `y[o, i, j]`, read straight
//! from the input planes. No patch matrix: im2col was a third of a pruned LeNet-5's
//! inference (LeNet-5's conv2 copies 4,000 rows of 8 floats a sample) and the sparse product
//! over it reads every patch row once per nonzero anyway.
//!
//! Work is tiled as rows x 8 columns of one output channel, the tile's sums kept in
//! registers across the channel's nonzeros; each nonzero's offset into the input is
//! precomputed at plan time. With AVX2 and FMA (the `avx2` module) a tile is 8 rows: each
//! nonzero is one broadcast and eight FMAs with their loads folded in, eight independent
//! chains that hide the FMA latency. The portable body (4-row tiles, plain Rust) is the
//! fallback and the tests' second reference. A row narrower than 8 is not handled (the plan
//! keeps im2col there); a width that is not a multiple of 8 ends with a tile overlapping
//! the previous one, recomputing the same sums.

use alloc::vec::Vec;

use super::conv::ConvShape;
use crate::format::Csr;

/// Columns per tile (one AVX2 vector).
const LANES: usize = 8;
/// Output rows per tile (independent sums, to hide the adds' latency).
const ROWS: usize = 4;

/// A CSR convolution weight's nonzeros as offsets into one sample's input planes.
#[derive(Clone, Debug)]
pub struct DirectConv {
    /// Per nonzero: `(c * h + di) * w + dj`.
    offsets: Vec<u32>,
    /// The geometry the offsets were computed for.
    shape: ConvShape,
}

impl DirectConv {
    /// The offsets of `a` (`[oc, c * kh * kw]`) for inputs of `shape`, or `None` where the
    /// geometry is not the one this kernel runs (a stride, padding or dilation, an output
    /// narrower than 8 columns, or an input too large for 32-bit offsets).
    pub fn new(a: &Csr, shape: &ConvShape) -> Option<Self> {
        if shape.stride != [1, 1] || shape.pads != [0; 4] || shape.dilation != [1, 1] {
            return None;
        }
        let (_, ow) = shape.out();
        if ow < LANES || a.cols() != shape.patch() {
            return None;
        }
        u32::try_from(shape.c * shape.h * shape.w).ok()?;
        let [kh, kw] = shape.k;
        let offsets = a
            .col_idx()
            .iter()
            .map(|&k| {
                let k = k as usize;
                let (c, tap) = (k / (kh * kw), k % (kh * kw));
                ((c * shape.h + tap / kw) * shape.w + tap % kw) as u32
            })
            .collect();
        Some(Self {
            offsets,
            shape: *shape,
        })
    }

    /// Floats of memory the offsets take.
    pub fn floats(&self) -> usize {
        self.offsets.len()
    }
}

/// `y[o] = bias[o] + sum over the nonzeros of o of w * (shifted input plane)` for one
/// sample: `x` is `[c, h, w]`, `y` is `[oc, oh, ow]`.
///
/// # Panics
/// When `x` or `y` is shorter than the shapes say, or `d` was built for another weight.
pub fn conv(
    a: &Csr,
    d: &DirectConv,
    bias: Option<&[f32]>,
    x: &[f32],
    shape: &ConvShape,
    y: &mut [f32],
) {
    assert_eq!(
        d.offsets.len(),
        a.values().len(),
        "offsets of another weight"
    );
    let s = &d.shape;
    assert!(
        (s.c, s.h, s.w, s.k) == (shape.c, shape.h, shape.w, shape.k),
        "offsets of another geometry"
    );
    let (oh, ow) = shape.out();
    assert!(x.len() >= shape.c * shape.h * shape.w && y.len() >= a.rows() * oh * ow);
    if let Some(b) = bias {
        assert!(b.len() >= a.rows());
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if super::sell::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above). The offsets were built
        // for this geometry (checked above) from column indices below `c * kh * kw`, so
        // every 8-float read `off + (i + r) * w + j0 ..+ 8` (i + r < oh, j0 + 8 <= ow)
        // stays inside plane c of `x`, whose length was checked; every write stays inside
        // the `[oc, oh, ow]` output, whose length was checked.
        unsafe { avx2::conv(a, &d.offsets, bias, x, shape, y) };
        return;
    }
    body(a, d, bias, x, shape, y);
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx2 {
    use core::arch::x86_64::*;

    use super::{ConvShape, Csr, LANES};

    /// Output rows per tile here: eight independent FMA chains, so that the FMA latency
    /// (4 cycles) does not bound a loop that can issue two a cycle; each nonzero is one
    /// broadcast and eight FMAs with their loads folded in.
    const ROWS: usize = 8;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn conv(
        a: &Csr,
        offsets: &[u32],
        bias: Option<&[f32]>,
        x: &[f32],
        shape: &ConvShape,
        y: &mut [f32],
    ) {
        let (oh, ow) = shape.out();
        super::channels(a, offsets, bias, oh * ow, y, |vals, offs, b, out| {
            let out = out.as_mut_ptr();
            let mut i = 0;
            // SAFETY (all calls): as in `super::conv`; tiles cover rows i..i + R < oh.
            while i + ROWS <= oh {
                unsafe { rows::<ROWS>(vals, offs, b, x.as_ptr(), shape.w, ow, i, out) };
                i += ROWS;
            }
            while i + ROWS / 2 <= oh {
                unsafe { rows::<{ ROWS / 2 }>(vals, offs, b, x.as_ptr(), shape.w, ow, i, out) };
                i += ROWS / 2;
            }
            while i < oh {
                unsafe { rows::<1>(vals, offs, b, x.as_ptr(), shape.w, ow, i, out) };
                i += 1;
            }
        });
    }

    /// The tiles of output rows `i..i + R` of one channel.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const R: usize>(
        vals: &[f32],
        offs: &[u32],
        b: f32,
        x: *const f32,
        w: usize,
        ow: usize,
        i: usize,
        out: *mut f32,
    ) {
        let mut j = 0;
        loop {
            let j0 = j.min(ow - LANES);
            let mut acc = [_mm256_set1_ps(b); R];
            for (&v, &off) in vals.iter().zip(offs) {
                let v = _mm256_set1_ps(v);
                // SAFETY: the caller's bounds (see `super::conv`).
                let base = unsafe { x.add(off as usize + i * w + j0) };
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(v, unsafe { _mm256_loadu_ps(base.add(r * w)) }, *acc);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                // SAFETY: row i + r < oh, columns j0..j0 + 8 <= ow of this channel.
                unsafe { _mm256_storeu_ps(out.add((i + r) * ow + j0), *acc) };
            }
            if j0 + LANES >= ow {
                break;
            }
            j += LANES;
        }
    }
}

/// Calls `f` per output channel with its nonzeros' values and input offsets, its bias and
/// its `p` outputs.
#[inline(always)]
fn channels(
    a: &Csr,
    offsets: &[u32],
    bias: Option<&[f32]>,
    p: usize,
    y: &mut [f32],
    mut f: impl FnMut(&[f32], &[u32], f32, &mut [f32]),
) {
    let (row_ptr, values) = (a.row_ptr(), a.values());
    for (o, out) in y.chunks_exact_mut(p).take(a.rows()).enumerate() {
        let (start, end) = (row_ptr[o] as usize, row_ptr[o + 1] as usize);
        f(
            &values[start..end],
            &offsets[start..end],
            bias.map_or(0.0, |b| b[o]),
            out,
        );
    }
}

/// The portable kernel: 4-row tiles in plain Rust.
fn body(
    a: &Csr,
    d: &DirectConv,
    bias: Option<&[f32]>,
    x: &[f32],
    shape: &ConvShape,
    y: &mut [f32],
) {
    let (oh, ow) = shape.out();
    let w = shape.w;
    channels(a, &d.offsets, bias, oh * ow, y, |vals, offs, b, out| {
        let mut i = 0;
        while i + ROWS <= oh {
            row_tiles::<ROWS>(vals, offs, b, x, w, ow, i, out);
            i += ROWS;
        }
        while i < oh {
            row_tiles::<1>(vals, offs, b, x, w, ow, i, out);
            i += 1;
        }
    });
}

/// The tiles of output rows `i..i + R` of one channel.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_tiles<const R: usize>(
    vals: &[f32],
    offs: &[u32],
    b: f32,
    x: &[f32],
    w: usize,
    ow: usize,
    i: usize,
    out: &mut [f32],
) {
    let mut j = 0;
    loop {
        // The last tile ends at the row's end (overlapping the one before it).
        let j0 = j.min(ow - LANES);
        let mut acc = [[b; LANES]; R];
        for (&v, &off) in vals.iter().zip(offs) {
            let base = off as usize + i * w + j0;
            for (r, acc) in acc.iter_mut().enumerate() {
                let xs: &[f32; LANES] =
                    x[base + r * w..][..LANES].try_into().expect("LANES floats");
                for l in 0..LANES {
                    acc[l] += v * xs[l];
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[(i + r) * ow + j0..][..LANES].copy_from_slice(acc);
        }
        if j0 + LANES >= ow {
            break;
        }
        j += LANES;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conv::im2col, lcg, sparse};
    use super::*;
    use alloc::vec;

    /// A random CSR `[rows, cols]` at about `density`, as the model format stores it.
    fn csr(rows: usize, cols: usize, density: f32, seed: u32) -> (Vec<u32>, Vec<u16>, Vec<f32>) {
        let w = lcg(rows * cols, seed);
        let keep = lcg(rows * cols, seed + 1);
        let (mut row_ptr, mut col_idx, mut values) = (vec![0u32], vec![], vec![]);
        for r in 0..rows {
            for c in 0..cols {
                if keep[r * cols + c] + 0.5 < density {
                    col_idx.push(c as u16);
                    values.push(w[r * cols + c]);
                }
            }
            row_ptr.push(values.len() as u32);
        }
        (row_ptr, col_idx, values)
    }

    /// Against im2col and the sparse product on the patch matrix, on LeNet-5's conv1 and
    /// conv2, widths that are not a multiple of 8, heights that are not a multiple of 8 or
    /// 4 (17 rows: tiles of 8, 8 and 1), and empty output channels.
    #[test]
    fn matches_im2col_and_spmm() {
        for (c, h, w, oc, k, density) in [
            (20, 12, 12, 50, 5, 0.22),
            (3, 13, 19, 7, 3, 0.5),
            (2, 9, 10, 5, 2, 0.05),
            (1, 28, 28, 20, 5, 0.6),
            (4, 19, 16, 3, 3, 0.3),
        ] {
            let shape = ConvShape::square(c, h, w, k, 1, 0);
            let (oh, ow) = shape.out();
            let (rp, ci, vals) = csr(oc, shape.patch(), density, 7);
            let a = Csr::new(oc, shape.patch(), &rp, &ci, &vals).expect("valid csr");
            let d = DirectConv::new(&a, &shape).expect("supported geometry");
            let x = lcg(c * h * w, 3);
            let bias = lcg(oc, 5);
            let mut cols = vec![0.0; shape.patch() * oh * ow];
            im2col(&x, &shape, &mut cols);
            let mut want = vec![0.0; oc * oh * ow];
            sparse::spmm(&a, Some(&bias), &cols, oh * ow, &mut want, oh * ow, 1);
            // The dispatched kernel (AVX2 + FMA where the CPU has them) and the portable one.
            let mut got = vec![f32::NAN; oc * oh * ow];
            conv(&a, &d, Some(&bias), &x, &shape, &mut got);
            let mut portable = vec![f32::NAN; oc * oh * ow];
            body(&a, &d, Some(&bias), &x, &shape, &mut portable);
            for (i, ((g, p), w)) in got.iter().zip(&portable).zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-5, "{c}x{h}x{w} k{k}: at {i} {g} vs {w}");
                assert!((p - w).abs() < 1e-5, "{c}x{h}x{w} k{k}: at {i} {p} vs {w}");
            }
        }
    }

    #[test]
    fn declines_geometries_it_does_not_run() {
        let (rp, ci, vals) = csr(4, 2 * 9, 0.5, 1);
        let a = Csr::new(4, 18, &rp, &ci, &vals).expect("valid csr");
        assert!(DirectConv::new(&a, &ConvShape::square(2, 12, 12, 3, 2, 0)).is_none());
        assert!(DirectConv::new(&a, &ConvShape::square(2, 12, 12, 3, 1, 1)).is_none());
        assert!(DirectConv::new(&a, &ConvShape::square(2, 9, 9, 3, 1, 0)).is_none());
        assert!(DirectConv::new(&a, &ConvShape::square(2, 10, 10, 3, 1, 0)).is_some());
    }
}
