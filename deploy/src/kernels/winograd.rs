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
//! is that of reordering the sums (the tests hold it to 1e-5 of the direct product). The
//! larger F(4x4, 3x3) would save 4x, but its transforms have coefficients up to 8 and
//! its rounding error grows with them; whether it holds the 1e-5 agreement with
//! onnxruntime the importer's tests require was not checked.
//!
//! Non-finite inputs: a NaN reaches exactly the outputs whose 3x3 window holds it (row 0
//! of `d` feeds only row 0 of `B^T d`, and that only output row 0 through `A^T`; likewise
//! row 3, and the columns), as in the direct product. An infinity would come out as NaN
//! where the direct product gives ±inf (the transforms subtract it from itself, as in
//! cuDNN's and NNPACK's Winograd modes), so an input holding one (one read of the input
//! decides, beside the layer's `16 c m` multiply-adds a tile) runs the direct definition
//! from the kernel kept beside the transformed one. Finite inputs within a factor 4 of
//! `f32::MAX` can still overflow in the input transform where the direct product would
//! not.

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

/// Estimated cycles of a micro-kernel tile's bookkeeping (24 plain stores, the loop),
/// per 8-channel tile of one position's product; fitted, with the two below, to the
/// thread CPU time of `cargo run --release -p tether-deploy --example conv_modes` in the
/// unit of [`super::implicit_conv::mode`]'s model (one cycle per 16-lane multiply-add).
const TILE_CYCLES: f64 = 44.0;
/// Cycles per tile and input channel of the input transform, where the layer's input fits
/// in L2 (256 Ki floats) and where it does not, and per tile and output channel of the
/// output transform: from `perf`'s shares of `conv_modes`' time, 5-6 / 4-5 on 3 and 16
/// channels on 32x32 at batch 1, 18 / 5 on 64 channels on 56x56 (an 800 KB input).
const IN_CYCLES: f64 = 5.0;
const IN_CYCLES_BEYOND_L2: f64 = 18.0;
const OUT_CYCLES: f64 = 4.0;
/// Floats of input from which the input transform reads it from beyond L2.
const L2_FLOATS: usize = 256 << 10;
/// Cycles per float of transformed weights read per chunk where they do not stay in L2
/// (more than 256 Ki floats): a 512-channel layer on 7x7 has 16 tiles, 16 Mi floats
/// of weights, and took 2.2 ms against the 1.3 ms of its multiply-adds.
const WEIGHT_CYCLES: f64 = 1.7;

/// Estimated cycles of [`conv`] on `n` samples of `s` with `m` output channels, in the
/// unit of [`super::implicit_conv::mode`]'s model, which compares it with the other
/// modes: per chunk, the 16 products (or the weights' streaming, where that is slower)
/// and the transforms.
pub fn cycles(s: &ConvShape, m: usize, n: usize) -> f64 {
    let (th, tw) = tiles(s);
    let per = chunk_rows(s, n);
    let br = block_rows(s, n);
    let panels = m.div_ceil(MR);
    let weights = (E * panels * MR * s.c) as f64;
    let stream = if weights > (256 << 10) as f64 {
        weights * WEIGHT_CYCLES
    } else {
        0.0
    };
    let input = if n * s.c * s.h * s.w > L2_FLOATS {
        IN_CYCLES_BEYOND_L2
    } else {
        IN_CYCLES
    };
    let total = n.max(1) * th;
    let mut cycles = 0.0;
    let mut row0 = 0;
    while row0 < total {
        let rows = per.min(total - row0);
        let cols = rows * tw;
        let (mut vectors, mut tiles, mut b0) = (0, 0, 0);
        while b0 < rows {
            let v = (br.min(rows - b0) * tw).div_ceil(16);
            vectors += v;
            tiles += v.div_ceil(NR / 16);
            b0 += br;
        }
        let product =
            (panels * E) as f64 * ((vectors * s.c * MR) as f64 + tiles as f64 * TILE_CYCLES);
        cycles +=
            product.max(stream) + (cols * s.c) as f64 * input + (cols * m) as f64 * OUT_CYCLES;
        row0 += rows;
    }
    cycles
}

/// Floats of scratch [`conv`] needs for batches of up to `n` samples: the chunk's `V`
/// (`[16][c][stride]`) and one block's products for a panel (`[16][8][block stride]`).
pub fn scratch(s: &ConvShape, n: usize) -> usize {
    let (_, tw) = tiles(s);
    let st = stride(chunk_rows(s, n), tw) + 16;
    E * s.c * st + E * MR * stride(block_rows(s, n), tw)
}

/// Tile rows per block of the products and the output transform: about 96 columns (two
/// micro-kernel tiles), so that a panel's 16 products of a block (48 KiB) are read back
/// from L1.
fn block_rows(s: &ConvShape, n: usize) -> usize {
    let (_, tw) = tiles(s);
    (96 / tw.max(1)).clamp(1, chunk_rows(s, n))
}

/// `U = G g G^T` for every output and input channel of `w` (`[m, c, 3, 3]`), laid out as
/// `ceil(m / 8)` panels of 8 output channels, each the 16 matrices `[c, 8]` of its
/// channels (the micro-kernel's operand; rows past `m` zero), so that a panel's products
/// read one contiguous run (panel-major: a 512-channel layer on a 7x7 plane, whose
/// weights stream from memory, took 2.16 ms, 2.41 ms position-major).
/// Computed in f64: the plan does it once.
#[allow(clippy::needless_range_loop)] // the matrices' indices, as in the equations
pub fn pack(w: &[f32], m: usize, c: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut p = alloc::vec![0.0f32; E * panels * c * MR];
    // The kernel itself after U, for inputs holding an infinity (see `conv`).
    p.extend_from_slice(&w[..m * c * 9]);
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
                    p[(((o / MR) * E + e) * c + ch) * MR + o % MR] = u as f32;
                }
            }
        }
    }
    p
}

/// `y = act(bias + conv(x, w) + residual)` for `n` samples: `x` is `n` of `[c, h, w]`,
/// `y` and `residual` `n` of `[m, oh, ow]`, `packed` the weight packed by [`pack`],
/// `scratch` at least [`scratch`]`(s, n)` floats. The residual and activation as
/// [`super::implicit_conv::conv`]'s epilogue (a ResNet block's Add and ReLU). An input
/// holding an infinity runs the direct definition instead (slowly: a broken input, not a
/// case to be fast on), so that every output is the direct product's, as onnxruntime's.
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
    let transformed = E * m.div_ceil(MR) * s.c * MR;
    assert!(packed.len() >= transformed + m * s.c * 9);
    if has_infinity(&x[..n * s.c * s.h * s.w]) {
        // The transforms would subtract an infinity from itself (NaN where the direct
        // product has ±inf, and ReLU makes -inf 0): the definition, from the kernel kept
        // beside U. A NaN needs no such care (it reaches exactly its windows' outputs).
        let w = &packed[transformed..transformed + m * s.c * 9];
        direct(w, m, bias, act, residual, x, n, s, y);
        return;
    }
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

/// True when `x` holds +inf or -inf (the exponent all ones, the mantissa zero), by a
/// branch-free fold the compiler vectorises.
fn has_infinity(x: &[f32]) -> bool {
    x.chunks(64).any(|c| {
        c.iter()
            .fold(false, |a, v| a | (v.to_bits() & 0x7fff_ffff == 0x7f80_0000))
    })
}

/// The definition of the convolution (f32 sums in the order of the taps), then the
/// residual and the activation: the path for inputs holding an infinity.
#[allow(clippy::too_many_arguments)]
fn direct(
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    x: &[f32],
    n: usize,
    s: &ConvShape,
    y: &mut [f32],
) {
    let (oh, ow) = s.out();
    let (top, left) = (s.pads[0] as isize, s.pads[1] as isize);
    for b in 0..n {
        for o in 0..m {
            for i in 0..oh {
                for j in 0..ow {
                    let mut sum = bias.map_or(0.0, |b| b[o]);
                    for c in 0..s.c {
                        let plane = &x[(b * s.c + c) * s.h * s.w..][..s.h * s.w];
                        for di in 0..3 {
                            let r = (i + di) as isize - top;
                            if r < 0 || r >= s.h as isize {
                                continue;
                            }
                            for dj in 0..3 {
                                let col = (j + dj) as isize - left;
                                if col < 0 || col >= s.w as isize {
                                    continue;
                                }
                                sum += w[(o * s.c + c) * 9 + di * 3 + dj]
                                    * plane[r as usize * s.w + col as usize];
                            }
                        }
                    }
                    let at = ((b * m + o) * oh + i) * ow + j;
                    y[at] = act.apply(sum + residual.map_or(0.0, |r| r[at]));
                }
            }
        }
    }
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
        // One vector past the chunk's columns: a block's whole vectors start at any column.
        let st = super::stride(per, tw) + 16;
        let br = super::block_rows(s, n);
        let mst = super::stride(br, tw);
        let (v, rest) = scratch.split_at_mut(E * s.c * st);
        let mm = &mut rest[..E * MR * mst];
        let panels = m.div_ceil(MR);
        let mut row0 = 0;
        while row0 < n * th {
            let rows = per.min(n * th - row0);
            let ch = Chunk {
                row0,
                rows,
                stride: st,
            };
            input(x, s, &ch, v);
            for panel in 0..panels {
                let m0 = panel * MR;
                // Blocks of tile rows whose 16 products stay in L1 for the output
                // transform (reading a whole chunk's back from L2 was 27% of a 16-channel
                // layer's time in `perf`; in blocks, 16 -> 16 on 32x32 went 45.7 -> 40.2 us).
                let mut b0 = 0;
                while b0 < rows {
                    let bn = br.min(rows - b0);
                    let cols = bn * tw;
                    for e in 0..E {
                        let w = &packed[(panel * E + e) * s.c * MR..][..s.c * MR];
                        let ve = &v[e * s.c * st + b0 * tw..];
                        let me = &mut mm[e * MR * mst..(e + 1) * MR * mst];
                        // SAFETY: `w` holds c * 8 floats; `ve` c rows of `st` floats from
                        // the block's first column, whose columns up to `cols` rounded to
                        // whole vectors lie in the row (`st` is rounded alike; the last
                        // row's block ends inside `v`); `me` 8 rows of `mst >= cols`.
                        unsafe { product(w, ve, s.c, st, cols, me, mst) };
                    }
                    let block = Chunk {
                        row0: row0 + b0,
                        rows: bn,
                        stride: mst,
                    };
                    output(mm, s, &block, m, m0, MR.min(m - m0), bias, act, residual, y);
                    b0 += bn;
                }
            }
            row0 += rows;
        }
    }

    /// The input transform of one chunk: `v[e][ch][t]` = `(B^T d B)[e]` of tile `t`
    /// (local tile row `t / tw`, column `t % tw`) of channel `ch`, with
    /// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
    ///
    /// 16 tiles of a row a step, straight from the input rows (no padded copy): the row
    /// transform `B^T d` on the 34 padded columns the tiles read (three vectors of each of
    /// the four rows, the padding masked off), then its even and odd columns by two
    /// permutes and both shifted by one column by `valignd`, so that the column
    /// transform of tile `j` (padded columns `2j..2j + 4`) is four vector operations.
    /// Through a split of each row into even and odd columns first (`rows::split_row`, a
    /// call per row and tile row), 16 -> 16 channels on 32x32 took 49.7 us, 45.7 without.
    #[allow(clippy::needless_range_loop)] // t[row][k]: both axes indexed
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    fn input(x: &[f32], s: &ConvShape, ch_: &Chunk, v: &mut [f32]) {
        let (th, tw) = super::tiles(s);
        let (top, left) = (s.pads[0] as isize, s.pads[1] as isize);
        let cs = s.c * ch_.stride;
        assert!(v.len() >= E * cs);
        let (h, w) = (s.h as isize, s.w as isize);
        let ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        // Lanes of 16 input columns from `c0` inside the row.
        let inside = |c0: isize| -> __mmask16 {
            let lo = (-c0).clamp(0, 16);
            let hi = (w - c0).clamp(0, 16);
            if hi <= lo {
                0
            } else {
                (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
            }
        };
        for ch in 0..s.c {
            for lr in 0..ch_.rows {
                let row = ch_.row0 + lr;
                let (b, ti) = (row / th, row % th);
                let plane = &x[(b * s.c + ch) * s.h * s.w..][..s.h * s.w];
                // Input row of padded row 2 ti + a, where it is inside the image.
                let rows: [Option<*const f32>; 4] = core::array::from_fn(|a| {
                    let r = (2 * ti + a) as isize - top;
                    (r >= 0 && r < h).then(|| plane[r as usize * s.w..].as_ptr())
                });
                // SAFETY: row (e, ch) of `v`, tiles lr tw..lr tw + tw <= stride.
                let vp = unsafe { v.as_mut_ptr().add(ch * ch_.stride + lr * tw) };
                let mut j = 0;
                while j < tw {
                    let mask = lanes(tw - j);
                    // Padded column 2j is input column 2j - left.
                    let c0 = 2 * j as isize - left;
                    let ms = [inside(c0), inside(c0 + 16), inside(c0 + 32)];
                    // SAFETY: only lanes inside the row are read (masked loads do not
                    // touch the others); the stores are masked to the row's tiles.
                    unsafe {
                        let load = |a: usize, k: usize| match rows[a] {
                            Some(p) if ms[k] != 0 => _mm512_maskz_loadu_ps(
                                ms[k],
                                p.wrapping_offset(c0 + 16 * k as isize),
                            ),
                            _ => _mm512_setzero_ps(),
                        };
                        let mut t = [[_mm512_setzero_ps(); 3]; 4];
                        for k in 0..3 {
                            let d: [__m512; 4] = core::array::from_fn(|a| load(a, k));
                            // Row transform B^T d: d0 - d2, d1 + d2, d2 - d1, d1 - d3.
                            t[0][k] = _mm512_sub_ps(d[0], d[2]);
                            t[1][k] = _mm512_add_ps(d[1], d[2]);
                            t[2][k] = _mm512_sub_ps(d[2], d[1]);
                            t[3][k] = _mm512_sub_ps(d[1], d[3]);
                        }
                        for (a, t) in t.iter().enumerate() {
                            // Padded columns 2j + 2i (x0), 2j + 2i + 1 (x1), and the two
                            // one tile on (x2, x3), for lanes i.
                            let x0 = _mm512_permutex2var_ps(t[0], ie, t[1]);
                            let x1 = _mm512_permutex2var_ps(t[0], io, t[1]);
                            let (e2, o2) = (
                                _mm512_permutex2var_ps(t[2], ie, t[2]),
                                _mm512_permutex2var_ps(t[2], io, t[2]),
                            );
                            let x2 = _mm512_castsi512_ps(_mm512_alignr_epi32(
                                _mm512_castps_si512(e2),
                                _mm512_castps_si512(x0),
                                1,
                            ));
                            let x3 = _mm512_castsi512_ps(_mm512_alignr_epi32(
                                _mm512_castps_si512(o2),
                                _mm512_castps_si512(x1),
                                1,
                            ));
                            // Column transform: x0 - x2, x1 + x2, x2 - x1, x1 - x3.
                            let cols = [
                                _mm512_sub_ps(x0, x2),
                                _mm512_add_ps(x1, x2),
                                _mm512_sub_ps(x2, x1),
                                _mm512_sub_ps(x1, x3),
                            ];
                            for (c, val) in cols.into_iter().enumerate() {
                                let e = 4 * a + c;
                                _mm512_mask_storeu_ps(vp.add(e * cs + j), mask, val);
                            }
                        }
                    }
                    j += 16;
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

    /// The lanes below `n` (all 16 from 16 on).
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as u16
        }
    }

    /// The output transform of one panel of `rows` channels over one chunk: `Y = A^T M A`
    /// with `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`, plus the bias, the residual and the
    /// activation. 16 tiles a step: their four outputs in four vectors, the two of each
    /// output row interleaved by two permutes into 32 consecutive outputs, stored masked
    /// where the output is odd.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    fn output(
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
    ) {
        let (oh, ow) = s.out();
        let (th, tw) = super::tiles(s);
        let p = oh * ow;
        let st = ch_.stride;
        assert!(mm.len() >= E * MR * st);
        // The chunk's samples' outputs lie in `y` and the residual (`conv` asserted).
        let samples = (ch_.row0 + ch_.rows).div_ceil(th);
        assert!(y.len() >= samples * m * p && residual.is_none_or(|r| r.len() >= samples * m * p));
        let lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        let (lo, hi) = match act {
            Act::Clip(lo, hi) => (_mm512_set1_ps(lo), _mm512_set1_ps(hi)),
            _ => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        let activate = |v: __m512| match act {
            Act::None => v,
            // `vmaxps a, b` returns b when either is NaN: the value, NaN kept.
            Act::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
            Act::Clip(..) => _mm512_min_ps(hi, _mm512_max_ps(lo, v)),
        };
        let yp = y.as_mut_ptr();
        for r in 0..rows {
            let bv = _mm512_set1_ps(bias.map_or(0.0, |b| b[m0 + r]));
            let mp = mm.as_ptr().wrapping_add(r * st);
            for lr in 0..ch_.rows {
                let row = ch_.row0 + lr;
                let (b, ti) = (row / th, row % th);
                let t0 = lr * tw;
                let at = (b * m + m0 + r) * p;
                let mut j = 0;
                while j < tw {
                    let mask = lanes(tw - j);
                    // SAFETY: row (e, r) of `mm` holds the chunk's tiles; masked to this
                    // row's.
                    let g: [__m512; E] = core::array::from_fn(|e| unsafe {
                        _mm512_maskz_loadu_ps(mask, mp.add(e * MR * st + t0 + j))
                    });
                    // Column sums of A^T M: s0 = M0 + M1 + M2, s1 = M1 - M2 - M3 (rows).
                    let s0: [__m512; 4] = core::array::from_fn(|c| {
                        _mm512_add_ps(_mm512_add_ps(g[c], g[4 + c]), g[8 + c])
                    });
                    let s1: [__m512; 4] = core::array::from_fn(|c| {
                        _mm512_sub_ps(_mm512_sub_ps(g[4 + c], g[8 + c]), g[12 + c])
                    });
                    let left = |t: [__m512; 4]| {
                        _mm512_add_ps(bv, _mm512_add_ps(_mm512_add_ps(t[0], t[1]), t[2]))
                    };
                    let right = |t: [__m512; 4]| {
                        _mm512_add_ps(bv, _mm512_sub_ps(_mm512_sub_ps(t[1], t[2]), t[3]))
                    };
                    for (dy, t) in [(0, s0), (1, s1)] {
                        let i = 2 * ti + dy;
                        if i >= oh {
                            continue;
                        }
                        let (ev, od) = (left(t), right(t));
                        let halves = [
                            _mm512_permutex2var_ps(ev, lo_idx, od),
                            _mm512_permutex2var_ps(ev, hi_idx, od),
                        ];
                        let c0 = 2 * j;
                        for (h, v) in halves.into_iter().enumerate() {
                            let c = c0 + 16 * h;
                            if c >= ow {
                                break;
                            }
                            let mk = lanes(ow - c);
                            let o = at + i * ow + c;
                            // SAFETY: outputs o..o + lanes of row i of channel m0 + r of
                            // sample b, inside `y` (and the residual, of its layout).
                            unsafe {
                                let v = match residual {
                                    Some(res) => activate(_mm512_add_ps(
                                        v,
                                        _mm512_maskz_loadu_ps(mk, res.as_ptr().add(o)),
                                    )),
                                    None => activate(v),
                                };
                                _mm512_mask_storeu_ps(yp.add(o), mk, v);
                            }
                        }
                    }
                    j += 16;
                }
            }
        }
    }

    /// `me[r][q] = sum_k w[k][r] ve[k][q]` for `q < cols` (rounded up to whole vectors),
    /// in 8 x 48 register tiles.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn product(
        w: &[f32],
        ve: &[f32],
        k: usize,
        st: usize,
        cols: usize,
        me: &mut [f32],
        mst: usize,
    ) {
        assert!(ve.len() >= (k - 1) * st + cols.div_ceil(16) * 16 && me.len() >= MR * mst);
        let mut q0 = 0;
        while q0 < cols {
            let nv = (cols - q0).div_ceil(16).min(NR / 16);
            // SAFETY: columns q0..q0 + 16 nv of every row (asserted).
            unsafe {
                match nv {
                    3 => tile::<3>(w, ve, k, st, q0, me, mst),
                    2 => tile::<2>(w, ve, k, st, q0, me, mst),
                    _ => tile::<1>(w, ve, k, st, q0, me, mst),
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
        mst: usize,
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
                    _mm512_storeu_ps(mp.add(r * mst + 16 * v), acc[v][r]);
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
            // Rows of several 16-tile steps, padding on one side only.
            (3, 5, 70, 4, [0, 0, 1, 3], 2),
            (2, 6, 67, 3, [2, 2, 0, 0], 1),
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
    /// (as in the direct product), through ReLU and Clip; an infinity as in the direct
    /// product (±inf, or NaN where both signs meet), through every activation (ReLU makes
    /// -inf 0, where the transforms would have made NaN).
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
                for act in [Act::None, Act::Relu, Act::Clip(0.0, 6.0)] {
                    let want = reference(&wt, &[0.0; 3], &x, 1, m, &s, act, None);
                    let mut sc = alloc::vec![0.0; scratch(&s, 1)];
                    let mut y = alloc::vec![0.0; m * 42];
                    conv(&packed, m, None, act, None, &x, 1, &s, &mut sc, &mut y);
                    for (g, e) in y.iter().zip(&want) {
                        let ctx = alloc::format!("{bad} at {at} {act:?}: {g} vs {e}");
                        assert_eq!(g.is_nan(), e.is_nan(), "{ctx}");
                        if !e.is_finite() {
                            assert!(g.is_nan() || g == e, "{ctx}");
                        } else {
                            assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{ctx}");
                        }
                    }
                    let none = reference(&wt, &[0.0; 3], &x, 1, m, &s, Act::None, None);
                    assert!(none.iter().any(|v| !v.is_finite()));
                }
            }
        }
    }
}
