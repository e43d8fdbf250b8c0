//! Dense 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3), with
//! AVX-512 (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks").
//!
//! Why: the implicit product ([`super::implicit_conv`]) runs at the FMA units' peak inside
//! a tile, as onnxruntime's NCHWc kernels do, so a 3x3 layer can only get faster with
//! fewer multiplies. Each 2x2 output tile of one output channel is
//!
//! `Y = A^T [ sum_c (G g_c G^T) ⊙ (B^T d_c B) ] A`   (Lavin & Gray, eq. 8)
//!
//! for `d_c` the tile's 4x4 input patch of channel `c` and `g_c` the 3x3 kernel: 16
//! multiplies per tile and channel pair instead of 36, 2.25x fewer. The sum over input
//! channels of the element-wise products is, for each of the 16 positions `e` of the 4x4
//! transformed tile, a matrix product `M_e [m, tiles] = U_e [m, c] V_e [c, tiles]` (eq.
//! 11), which the 8-channel x 48-column AVX-512 micro-kernel of the implicit product runs
//! (the same register tile, re-stated here). The weight transform `U = G g G^T` is done
//! once, at plan time; the input transform `V = B^T d B` and the output transform per
//! chunk of tile rows, sized so that the chunk's `V` stays in L2 while every weight panel
//! reads it.
//!
//! F(2x2, 3x3)'s transforms have coefficients 0, ±1 and ±1/2 only, so its rounding error
//! is that of reordering the sums (the tests hold it to 1e-5 of the direct product); the
//! larger F(4x4, 3x3) saves 4x but loses two to three digits in f32 (Lavin & Gray, sec.
//! 5), more than the 1e-5 agreement with onnxruntime the importer's tests require.
//!
//! Non-finite inputs: a NaN reaches exactly the outputs whose 3x3 window holds it (row 0
//! of `d` feeds only row 0 of `B^T d`, and that only output row 0 through `A^T`; likewise
//! row 3, and the columns), as in the direct product. An infinity can come out as NaN
//! where the direct product gives ±inf (the transforms subtract it from itself), as with
//! any transform-based convolution (cuDNN's and NNPACK's Winograd modes alike).

use alloc::vec::Vec;

use super::activation::Act;
use super::conv::ConvShape;

/// Output channels per weight panel (rows of the micro-kernel's tile).
const MR: usize = 8;
/// Columns (tiles) per micro-kernel tile: three vectors of 16.
const NR: usize = 48;
/// Floats of transformed input per chunk: about 384 KiB, so that `V` stays in a 1 MiB L2
/// while the weight panels stream through it.
const CHUNK_FLOATS: usize = 96 << 10;
/// The 16 positions of a transformed tile.
const E: usize = 16;

/// True when `s` is a convolution F(2x2, 3x3) computes: a 3x3 kernel, stride 1, no
/// dilation (any padding).
pub fn applies(s: &ConvShape) -> bool {
    s.k == [3, 3] && s.stride == [1, 1] && s.dilation == [1, 1]
}

/// True when the running CPU has the instructions [`conv`] uses.
pub fn available() -> bool {
    super::packed::available()
}

/// Tile rows and tiles per row of one sample (2x2 output tiles, the last ones cut where
/// the output is odd).
fn tiles(s: &ConvShape) -> (usize, usize) {
    let (oh, ow) = s.out();
    (oh.div_ceil(2), ow.div_ceil(2))
}

/// Tile rows per chunk for a batch of `n`: `V` (16 `c` floats a tile) within
/// [`CHUNK_FLOATS`], and at least one micro-kernel tile of columns.
fn chunk_rows(s: &ConvShape, n: usize) -> usize {
    let (th, tw) = tiles(s);
    let by_cache = CHUNK_FLOATS / (E * s.c * tw).max(1);
    by_cache.max(NR.div_ceil(tw)).clamp(1, (n * th).max(1))
}

/// Columns of a chunk of `rows` tile rows, rounded up to whole vectors (the row stride
/// of `V` and `M`).
fn stride(rows: usize, tw: usize) -> usize {
    (rows * tw).div_ceil(16) * 16
}

/// Floats of scratch [`conv`] needs for batches of up to `n` samples: the chunk's `V`
/// (`[16][c][stride]`), one panel's `M` (`[16][8][stride]`) and the rows the input
/// transform splits into even and odd columns.
pub fn scratch(s: &ConvShape, n: usize) -> usize {
    let (_, tw) = tiles(s);
    let st = stride(chunk_rows(s, n), tw);
    E * s.c * st + E * MR * st + row_floats(tw)
}

/// Floats of the input transform's row buffers: four padded input rows split into even
/// and odd columns, plus a row of zeros.
fn row_floats(tw: usize) -> usize {
    9 * 2 * (tw + 2)
}

/// `U = G g G^T` for every output and input channel of `w` (`[m, c, 3, 3]`), laid out as
/// 16 matrices, each `ceil(m / 8)` panels of `[c, 8]` (the micro-kernel's operand; rows
/// past `m` zero). Computed in f64: the plan does it once.
pub fn pack(w: &[f32], m: usize, c: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut p = alloc::vec![0.0f32; E * panels * c * MR];
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    for o in 0..m {
        for ch in 0..c {
            let g = &w[(o * c + ch) * 9..][..9];
            // t = G g (4x3), u = t G^T (4x4).
            let mut t = [[0.0f64; 3]; 4];
            for (i, row) in t.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[i][k] * g[k * 3 + j] as f64).sum();
                }
            }
            for i in 0..4 {
                for j in 0..4 {
                    let u: f64 = (0..3).map(|k| t[i][k] * G[j][k]).sum();
                    let e = i * 4 + j;
                    p[((e * panels + o / MR) * c + ch) * MR + o % MR] = u as f32;
                }
            }
        }
    }
    p
}

/// `y = act(bias + conv(x, w) + residual)` for `n` samples: `x` is `n` of `[c, h, w]`,
/// `y` and `residual` `n` of `[m, oh, ow]`, `packed` the weight packed by [`pack`],
/// `scratch` at least [`scratch`]`(s, n)` floats. The residual and activation as
/// [`super::implicit_conv::conv`]'s epilogue (a ResNet block's Add and ReLU).
///
/// # Panics
/// When [`available`] is false, `s` is not one [`applies`] takes, or a slice is shorter
/// than its shape.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    packed: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    x: &[f32],
    n: usize,
    s: &ConvShape,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    assert!(
        applies(s),
        "F(2x2, 3x3) takes 3x3 stride-1 undilated kernels"
    );
    let (oh, ow) = s.out();
    assert!(packed.len() >= E * m.div_ceil(MR) * s.c * MR);
    assert!(x.len() >= n * s.c * s.h * s.w && y.len() >= n * m * oh * ow);
    assert!(bias.is_none_or(|b| b.len() >= m));
    assert!(residual.is_none_or(|r| r.len() >= n * m * oh * ow));
    assert!(scratch.len() >= self::scratch(s, n));
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if available() {
        // SAFETY: AVX-512F is present; the lengths are asserted above.
        unsafe { avx512::conv(packed, m, bias, act, residual, x, n, s, scratch, y) };
        return;
    }
    let _ = (packed, m, bias, act, residual, x, n, s, scratch, y);
    panic!("winograd::conv needs AVX-512F (check winograd::available)");
}

/// Where a chunk's tiles come from and go to.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // read by the AVX-512 kernel only
)]
struct Chunk {
    /// The first global tile row (sample `row / th`, tile row `row % th`) and the count.
    row0: usize,
    rows: usize,
    /// The row stride of `V` and `M`.
    stride: usize,
}

/// The input transform of one chunk: `v[e][ch][t]` = `(B^T d B)[e]` of tile `t` (local
/// tile row `t / tw`, column `t % tw`) of channel `ch`, with
/// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
///
/// Each padded input row is split into its even and odd columns, so that the column
/// transform of tile `j` (padded columns `2j..2j + 4`) reads both halves at `j` and
/// `j + 1`: contiguous loads, vectorised over the tiles of a row.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // called by the AVX-512 kernel only
)]
#[inline(always)]
fn input_transform(x: &[f32], s: &ConvShape, ch_: &Chunk, v: &mut [f32], rowbuf: &mut [f32]) {
    let (th, tw) = tiles(s);
    let half = tw + 2;
    // Rows 0..4: the four padded rows, each [even | odd]; row 4: zeros (a padding row).
    let (bufs, rest) = rowbuf.split_at_mut(8 * half);
    let zero = &mut rest[..2 * half];
    zero.fill(0.0);
    bufs.fill(0.0);
    let (top, left) = (s.pads[0], s.pads[1]);
    let cs = s.c * ch_.stride;
    for ch in 0..s.c {
        for lr in 0..ch_.rows {
            let row = ch_.row0 + lr;
            let (b, ti) = (row / th, row % th);
            let plane = &x[(b * s.c + ch) * s.h * s.w..][..s.h * s.w];
            // Which buffer holds padded row 2 ti + a: a split input row, or zeros.
            let mut which = [4usize; 4];
            for (a, wh) in which.iter_mut().enumerate() {
                let pr = 2 * ti + a;
                if pr >= top && pr - top < s.h {
                    let r = pr - top;
                    let dst = &mut bufs[a * 2 * half..(a + 1) * 2 * half];
                    super::rows::split_row(&plane[r * s.w..(r + 1) * s.w], left, 2, half, dst);
                    *wh = a;
                }
            }
            let rowref = |a: usize| -> (&[f32], &[f32]) {
                let r: &[f32] = if which[a] == 4 {
                    zero
                } else {
                    &bufs[a * 2 * half..(a + 1) * 2 * half]
                };
                (&r[..half], &r[half..])
            };
            let (e0, o0) = rowref(0);
            let (e1, o1) = rowref(1);
            let (e2, o2) = rowref(2);
            let (e3, o3) = rowref(3);
            let t0 = lr * tw;
            let base = ch * ch_.stride + t0;
            // SAFETY-free: bounds by slicing; 16 output rows of tw tiles.
            let mut out: [&mut [f32]; E] = Default::default();
            let mut vrest = &mut v[..];
            let mut consumed = 0;
            for (e, o) in out.iter_mut().enumerate() {
                let at = e * cs + base;
                let (_, tail) = core::mem::take(&mut vrest).split_at_mut(at - consumed);
                let (mine, after) = tail.split_at_mut(tw);
                *o = mine;
                vrest = after;
                consumed = at + tw;
            }
            for j in 0..tw {
                // Row transform B^T d: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3), even and
                // odd columns at j and j + 1.
                let re = |k: usize| {
                    let (a0, a1, a2, a3) = (e0[k], e1[k], e2[k], e3[k]);
                    [a0 - a2, a1 + a2, a2 - a1, a1 - a3]
                };
                let ro = |k: usize| {
                    let (a0, a1, a2, a3) = (o0[k], o1[k], o2[k], o3[k]);
                    [a0 - a2, a1 + a2, a2 - a1, a1 - a3]
                };
                let (x0, x1, x2, x3) = (re(j), ro(j), re(j + 1), ro(j + 1));
                for a in 0..4 {
                    // Column transform: (x0 - x2, x1 + x2, x2 - x1, x1 - x3).
                    out[4 * a][j] = x0[a] - x2[a];
                    out[4 * a + 1][j] = x1[a] + x2[a];
                    out[4 * a + 2][j] = x2[a] - x1[a];
                    out[4 * a + 3][j] = x1[a] - x3[a];
                }
            }
        }
    }
    // The columns past the chunk's tiles (read by the last vector of a tile) as zeros,
    // not whatever the scratch held (a subnormal there would slow every multiply-add).
    let used = ch_.rows * tw;
    if used < ch_.stride {
        for row in v[..E * cs].chunks_exact_mut(ch_.stride) {
            row[used..].fill(0.0);
        }
    }
}

/// The output transform of one panel of `rows` channels over one chunk: `Y = A^T M A`
/// with `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`, plus the bias, the residual and the
/// activation, written where the output tile lies inside `oh x ow`.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // called by the AVX-512 kernel only
)]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_transform(
    mm: &[f32],
    s: &ConvShape,
    ch_: &Chunk,
    m: usize,
    m0: usize,
    rows: usize,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
    rowbuf: &mut [f32],
) {
    let (oh, ow) = s.out();
    let (th, tw) = tiles(s);
    let p = oh * ow;
    let (top_row, bottom_row) = rowbuf.split_at_mut(2 * tw);
    let bottom_row = &mut bottom_row[..2 * tw];
    for r in 0..rows {
        let b0 = bias.map_or(0.0, |b| b[m0 + r]);
        let mrow = |e: usize| &mm[(e * MR + r) * ch_.stride..][..ch_.stride];
        let me: [&[f32]; E] = core::array::from_fn(mrow);
        for lr in 0..ch_.rows {
            let row = ch_.row0 + lr;
            let (b, ti) = (row / th, row % th);
            let t0 = lr * tw;
            for j in 0..tw {
                let g = |e: usize| me[e][t0 + j];
                // Column sums of A^T M: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (rows of M).
                let s0: [f32; 4] = core::array::from_fn(|c| g(c) + g(4 + c) + g(8 + c));
                let s1: [f32; 4] = core::array::from_fn(|c| g(4 + c) - g(8 + c) - g(12 + c));
                top_row[2 * j] = b0 + (s0[0] + s0[1] + s0[2]);
                top_row[2 * j + 1] = b0 + (s0[1] - s0[2] - s0[3]);
                bottom_row[2 * j] = b0 + (s1[0] + s1[1] + s1[2]);
                bottom_row[2 * j + 1] = b0 + (s1[1] - s1[2] - s1[3]);
            }
            let at = (b * m + m0 + r) * p;
            for (dy, src) in [(0, &*top_row), (1, &*bottom_row)] {
                let i = 2 * ti + dy;
                if i >= oh {
                    continue;
                }
                let dst = &mut y[at + i * ow..at + (i + 1) * ow];
                match residual {
                    Some(res) => {
                        let res = &res[at + i * ow..at + (i + 1) * ow];
                        for ((d, &v), &rv) in dst.iter_mut().zip(src).zip(res) {
                            *d = act.apply(v + rv);
                        }
                    }
                    None => {
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = act.apply(v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use super::{Act, Chunk, ConvShape, E, MR, NR};

    /// # Safety
    /// AVX-512F; the lengths as [`super::conv`] asserts.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn conv(
        packed: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        act: Act,
        residual: Option<&[f32]>,
        x: &[f32],
        n: usize,
        s: &ConvShape,
        scratch: &mut [f32],
        y: &mut [f32],
    ) {
        let (th, tw) = super::tiles(s);
        let per = super::chunk_rows(s, n);
        let st = super::stride(per, tw);
        let (v, rest) = scratch.split_at_mut(E * s.c * st);
        let (mm, rowbuf) = rest.split_at_mut(E * MR * st);
        let panels = m.div_ceil(MR);
        let mut row0 = 0;
        while row0 < n * th {
            let rows = per.min(n * th - row0);
            let ch = Chunk {
                row0,
                rows,
                stride: st,
            };
            super::input_transform(x, s, &ch, v, rowbuf);
            let cols = rows * tw;
            for panel in 0..panels {
                for e in 0..E {
                    let w = &packed[(e * panels + panel) * s.c * MR..][..s.c * MR];
                    let ve = &v[e * s.c * st..(e + 1) * s.c * st];
                    let me = &mut mm[e * MR * st..(e + 1) * MR * st];
                    // SAFETY: `w` holds c * 8 floats, `ve` c rows of `st` >= the columns
                    // read (whole vectors up to `st`), `me` 8 rows of `st`.
                    unsafe { product(w, ve, s.c, st, cols, me) };
                }
                let m0 = panel * MR;
                super::output_transform(
                    mm,
                    s,
                    &ch,
                    m,
                    m0,
                    MR.min(m - m0),
                    bias,
                    act,
                    residual,
                    y,
                    rowbuf,
                );
            }
            row0 += rows;
        }
    }

    /// `me[r][q] = sum_k w[k][r] ve[k][q]` for `q < cols` (rounded up to whole vectors),
    /// in 8 x 48 register tiles.
    #[target_feature(enable = "avx512f")]
    unsafe fn product(w: &[f32], ve: &[f32], k: usize, st: usize, cols: usize, me: &mut [f32]) {
        let mut q0 = 0;
        while q0 < cols {
            let nv = (cols - q0).div_ceil(16).min(NR / 16);
            // SAFETY: columns q0..q0 + 16 nv <= st of every row.
            unsafe {
                match nv {
                    3 => tile::<3>(w, ve, k, st, q0, me),
                    2 => tile::<2>(w, ve, k, st, q0, me),
                    _ => tile::<1>(w, ve, k, st, q0, me),
                }
            }
            q0 += 16 * nv;
        }
    }

    #[allow(clippy::needless_range_loop)] // acc[v][r]: both axes indexed
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const V: usize>(
        w: &[f32],
        ve: &[f32],
        k: usize,
        st: usize,
        q0: usize,
        me: &mut [f32],
    ) {
        // SAFETY (whole body): `w` holds k * 8 floats; rows of `ve` and `me` hold
        // columns q0..q0 + 16 V (the caller's bound).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); MR]; V];
            let mut wp = w.as_ptr();
            let mut xp = ve.as_ptr().add(q0);
            for _ in 0..k {
                let mut xv = [_mm512_setzero_ps(); V];
                for (v, x) in xv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(xp.add(16 * v));
                }
                for r in 0..MR {
                    let wv = _mm512_set1_ps(*wp.add(r));
                    for v in 0..V {
                        acc[v][r] = _mm512_fmadd_ps(wv, xv[v], acc[v][r]);
                    }
                }
                wp = wp.add(MR);
                xp = xp.add(st);
            }
            let mp = me.as_mut_ptr().add(q0);
            for v in 0..V {
                for r in 0..MR {
                    _mm512_storeu_ps(mp.add(r * st + 16 * v), acc[v][r]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;

    /// The definition of the convolution in f64, then the residual and the activation.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        w: &[f32],
        bias: &[f32],
        x: &[f32],
        n: usize,
        m: usize,
        s: &ConvShape,
        act: Act,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        let (oh, ow) = s.out();
        let mut y = alloc::vec![0.0; n * m * oh * ow];
        for b in 0..n {
            for o in 0..m {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut sum = bias[o] as f64;
                        for c in 0..s.c {
                            for di in 0..3 {
                                for dj in 0..3 {
                                    let yi = (i + di) as isize - s.pads[0] as isize;
                                    let xj = (j + dj) as isize - s.pads[1] as isize;
                                    if yi < 0 || xj < 0 || yi >= s.h as isize || xj >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((b * s.c + c) * s.h + yi as usize) * s.w + xj as usize];
                                    sum += xv as f64 * w[((o * s.c + c) * 3 + di) * 3 + dj] as f64;
                                }
                            }
                        }
                        let at = ((b * m + o) * oh + i) * ow + j;
                        y[at] = act.apply(sum as f32 + residual.map_or(0.0, |r| r[at]));
                    }
                }
            }
        }
        y
    }

    fn shape(c: usize, h: usize, w: usize, pads: [usize; 4]) -> ConvShape {
        ConvShape {
            c,
            h,
            w,
            k: [3, 3],
            stride: [1, 1],
            pads,
            dilation: [1, 1],
        }
    }

    /// Against the definition: odd and even outputs (cut tiles), asymmetric and no padding,
    /// channel counts around the 8-channel panels, rows of tiles around the 48-column
    /// micro-tile, batches over several chunks, each activation, with and without a
    /// residual; scratch and output start as NaN, and a guard past the output survives.
    #[test]
    fn matches_the_definition_on_every_geometry() {
        if !available() {
            return;
        }
        let cases = [
            // (c, h, w, m, pads, n)
            (3, 9, 9, 8, [1, 1, 1, 1], 1),
            (4, 7, 11, 13, [1, 1, 1, 1], 3),
            (2, 10, 6, 5, [0, 0, 0, 0], 2),
            (5, 2, 2, 24, [1, 1, 1, 1], 7),
            (1, 1, 1, 3, [1, 1, 1, 1], 2),
            (3, 7, 9, 5, [0, 2, 1, 0], 2),
            (4, 5, 5, 3, [2, 3, 2, 1], 4),
            (16, 32, 32, 16, [1, 1, 1, 1], 1),
            (9, 13, 50, 17, [1, 1, 1, 1], 2),
            // Enough channels and tiles for several chunks.
            (64, 30, 30, 9, [1, 1, 1, 1], 3),
        ];
        for (i, &(c, h, w, m, pads, n)) in cases.iter().enumerate() {
            let s = shape(c, h, w, pads);
            let (wt, x, b) = (
                lcg(m * c * 9, 1 + i as u32),
                lcg(n * c * h * w, 2),
                lcg(m, 3),
            );
            let (oh, ow) = s.out();
            let len = n * m * oh * ow;
            let packed = pack(&wt, m, c);
            let res = lcg(len, 4 + i as u32);
            for act in [Act::None, Act::Relu, Act::Clip(-0.1, 0.2)] {
                for residual in [None, Some(&res[..])] {
                    let want = reference(&wt, &b, &x, n, m, &s, act, residual);
                    let mut sc = alloc::vec![f32::NAN; scratch(&s, n)];
                    let mut y = alloc::vec![f32::NAN; len + 1];
                    y[len] = 7.0;
                    conv(
                        &packed,
                        m,
                        Some(&b),
                        act,
                        residual,
                        &x,
                        n,
                        &s,
                        &mut sc,
                        &mut y,
                    );
                    assert_eq!(y[len], 7.0, "case {i}: wrote past the output");
                    for (at, (g, e)) in y.iter().zip(&want).enumerate() {
                        // Relative to the size of the sum (1e-5), as the ONNX tests hold it.
                        assert!(
                            (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                            "case {i} {act:?} residual {}: at {at} {g} vs {e}",
                            residual.is_some()
                        );
                    }
                }
            }
        }
    }

    /// A scratch sized for a batch of 5 serves any smaller batch, and no bias is zeros.
    #[test]
    fn smaller_batches_and_no_bias() {
        if !available() {
            return;
        }
        let s = shape(6, 11, 7, [1, 1, 1, 1]);
        let m = 10;
        let (wt, x) = (lcg(m * 6 * 9, 7), lcg(5 * 6 * 77, 8));
        let packed = pack(&wt, m, 6);
        let mut sc = alloc::vec![f32::NAN; scratch(&s, 5)];
        for n in 1..=5 {
            let want = reference(&wt, &[0.0; 10], &x, n, m, &s, Act::None, None);
            let mut y = alloc::vec![f32::NAN; want.len()];
            conv(
                &packed,
                m,
                None,
                Act::None,
                None,
                &x,
                n,
                &s,
                &mut sc,
                &mut y,
            );
            for (g, e) in y.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                    "n {n}: {g} vs {e}"
                );
            }
        }
    }

    /// A NaN anywhere in the input comes out exactly at the outputs whose window holds it
    /// (as in the direct product), through ReLU and Clip; an infinity comes out non-finite
    /// (inf or NaN) at exactly those outputs, and the others are unchanged.
    #[test]
    fn non_finite_inputs_reach_exactly_their_windows() {
        if !available() {
            return;
        }
        let s = shape(2, 6, 7, [1, 1, 1, 1]);
        let m = 3;
        let wt = lcg(m * 2 * 9, 5);
        let packed = pack(&wt, m, 2);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // Positions of every row and column parity of a tile's 4x4 patch, borders too.
            for at in [0, 1, 6, 7, 8, 15, 20, 41] {
                let mut x = lcg(2 * 42, 6);
                x[42 + at] = bad;
                let acts: &[Act] = if bad.is_nan() {
                    &[Act::Relu, Act::Clip(0.0, 6.0)]
                } else {
                    &[Act::None]
                };
                for &act in acts {
                    let want = reference(&wt, &[0.0; 3], &x, 1, m, &s, act, None);
                    let mut sc = alloc::vec![0.0; scratch(&s, 1)];
                    let mut y = alloc::vec![0.0; m * 42];
                    conv(&packed, m, None, act, None, &x, 1, &s, &mut sc, &mut y);
                    for (g, e) in y.iter().zip(&want) {
                        let ctx = alloc::format!("{bad} at {at} {act:?}: {g} vs {e}");
                        if bad.is_nan() {
                            assert_eq!(g.is_nan(), e.is_nan(), "{ctx}");
                        } else {
                            assert_eq!(g.is_finite(), e.is_finite(), "{ctx}");
                        }
                        if e.is_finite() {
                            assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{ctx}");
                        }
                    }
                    assert!(want.iter().any(|v| !v.is_finite()));
                }
            }
        }
    }
}
