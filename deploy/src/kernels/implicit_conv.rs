//! Dense convolution as an implicit matrix product, with AVX-512: no patch matrix, the
//! batch folded into the product's columns, and the bias and activation applied to the
//! tile in registers before it is stored.
//!
//! Why: im2col copies every input value `kh kw` times (a 3x3 convolution's patch matrix
//! is nine times its input) and was a third of a small ResNet's time beside the `gemm`
//! crate's product (`perf`, BENCHMARKS.md); one im2col and product per sample left the
//! 4x4 and 2x2 layers of a MobileNet with 4 to 16 columns per product, under one vector;
//! and the bias, ReLU and ReLU6 passes each read and wrote the whole output again.
//!
//! The input is copied once into zero-padded planes, split by stride phase (for stride
//! `s`, padded row `r` goes to phase `r % s`, row `r / s`), so that every kernel tap of a
//! convolution of any stride and dilation reads its phase plane at stride 1, shifted by a
//! fixed offset: column `q = i * pw + j` of the product (output row `i`, column `j`, `pw`
//! the plane's width) is the plane at `q + offset(c, tap)`. The product then runs over
//! `q` as if the plane were a matrix of `c * kh * kw` overlapping rows (Chellapilla et
//! al. 2006's unrolling without the copy; the "implicit GEMM" of cuDNN, Chetlur et al.
//! 2014), computing and dropping the few columns past each row's end (`j >= ow`) and
//! below the last row. The samples' planes lie one after the other, so a chunk of
//! samples is one product. Where that waste is large (small planes: a 2x2 output in a
//! 4x4 padded plane is four times the work), the patch matrix of the chunk is built
//! instead ([`Mode::Patches`]), read by the same kernel with one tap per row.
//!
//! The micro-kernel holds an 8-channel x 48-column tile in 24 registers: each patch row
//! costs three loads of the input, eight broadcasts of the packed weight and 24 fused
//! multiply-adds. Only where the CPU has AVX-512F ([`available`]); elsewhere the plan
//! keeps im2col and the `gemm` crate.

use alloc::vec::Vec;

use super::conv::{ConvShape, im2col};
use super::rows::{copy, split_row};
use super::winograd;

/// Output channels per weight panel (rows of the micro-kernel's tile).
pub const MR: usize = 8;
/// Vectors of 16 columns per tile.
const NV: usize = 3;
/// Columns per tile.
const NR: usize = 16 * NV;
/// Output positions per tile of [`Mode::Channels`].
const CR: usize = 12;
/// Output channels per weight panel of [`Mode::Channels`]: one vector (two, so that each
/// broadcast fed two multiply-adds, were 10-30% slower on every resnet18 layer, `cargo
/// run --release -p tether-deploy --example conv_modes`).
const CP: usize = 16;
/// Most kernel taps the implicit mode handles (larger kernels build the patch matrix).
const MAX_TAPS: usize = 64;
/// Columns per sample from which a 1x1 convolution runs sample by sample on its input,
/// not folding the batch into a copy (the copy costs as much as a 16-channel product; 64
/// columns fill a 48-column tile and a 16-column one).
const UNFOLDED_COLUMNS: usize = 64;
/// Floats of input planes per chunk of samples: about half of a 1 MiB L2 cache, so a chunk
/// is read from L2 once per weight panel.
const CHUNK_FLOATS: usize = 128 << 10;

pub use super::activation::{Act, activate_in_place};

/// How the kernel reads the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Zero-padded phase planes, read through per-tap offsets.
    Planes,
    /// The chunk's patch matrix `[c kh kw, samples * oh * ow]` (a 1x1 convolution's is
    /// its input, transposed to channel-major).
    Patches,
    /// The phase planes (a 1x1 convolution: its input), with 16 output channels in the
    /// vector lanes and 12 output positions broadcast per tile, so that only outputs are
    /// computed: no dropped columns, no tile past the last output. For small planes (a
    /// 7x7 output is 81 plane columns, two 48-column tiles) and batch 1, where the other
    /// modes compute up to twice the outputs; the weight is packed by 32 channels.
    Channels,
    /// Winograd's F(2x2, 3x3) ([`super::winograd`]), for 3x3 stride-1 undilated kernels:
    /// 2.25x fewer multiply-adds, plus the transforms; the weight is packed transformed.
    Winograd,
}

/// True when the running CPU has the instructions [`conv`] uses.
pub fn available() -> bool {
    super::packed::available()
}

/// The geometry of the phase planes of one convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planes {
    /// Stride phases (rows, columns).
    pub(crate) s: [usize; 2],
    /// Height and width of one phase plane.
    pub(crate) ph: usize,
    pub(crate) pw: usize,
}

impl Planes {
    pub(crate) fn of(s: &ConvShape) -> Self {
        let ph = (s.h + s.pads[0] + s.pads[2]).div_ceil(s.stride[0]);
        let pw = if s.stride[1] == 1 {
            // One border shared by consecutive rows: a tap left of column 0 reads the row
            // above's right border, one right of the last column the row below's left
            // border, so a row is `w + max(left, right)` wide, not `w + left + right`
            // (a 3x3 layer on 32x32 computed 34 columns a row for 32 outputs, 33 now).
            s.w + s.pads[1].max(s.pads[3])
        } else {
            (s.w + s.pads[1] + s.pads[3]).div_ceil(s.stride[1])
        };
        Self {
            s: s.stride,
            ph,
            pw,
        }
    }

    /// Floats of one sample's planes of one channel.
    pub(crate) fn per_channel(&self) -> usize {
        self.s[0] * self.s[1] * self.ph * self.pw
    }
}

/// Estimated cycles of a tile's bookkeeping besides its multiply-adds (the column runs,
/// the activation, the stores), per 8-channel column tile ([`Mode::Planes`],
/// [`Mode::Patches`]) and per 16-channel tile of [`Mode::Channels`] (its transpose);
/// fitted to the thread CPU time of `cargo run --release -p tether-deploy --example
/// conv_modes` (a 16-channel 3x3 layer on 32x32 takes 86 channel tiles of 144 rows, and
/// lost 10 us of 55 to them).
const TILE_CYCLES: f64 = 330.0;
const CHANNEL_TILE_CYCLES: f64 = 365.0;
/// Cycles per row of a [`Mode::Channels`] tile: 12 multiply-adds, slowed by the index
/// load beside each broadcast (measured 5-10% slower than the column tiles per useful
/// lane on 32x32 to 56x56 planes), and more where a channel is one row (1x1 kernels:
/// 160 -> 960 channels on 7x7 took 234 us in channel tiles, 183 us in column tiles).
const CHANNEL_ROW_CYCLES: f64 = 13.2;
const CHANNEL_ROW_CYCLES_1X1: f64 = 16.0;
/// Cycles per float im2col copies (a 16-channel convolution spent as long in im2col as in
/// the product, `perf`).
const COPY_CYCLES: f64 = 2.0;

/// Column tiles and 16-column vectors [`conv`]'s column modes compute over `columns`
/// columns of samples `plane` columns apart, each with outputs up to column `last`: the
/// loop of `avx512::run`, counted.
fn column_work(columns: usize, plane: usize, last: usize) -> (usize, usize) {
    let (mut tiles, mut vectors, mut q0) = (0, 0, 0);
    while q0 < columns {
        let (b, rem) = (q0 / plane, q0 % plane);
        if rem >= last {
            q0 = (b + 1) * plane;
            continue;
        }
        let left = if (b + 1) * plane >= q0 + NR {
            b * plane + last - q0
        } else {
            columns - q0
        };
        let nv = if left > 32 { NV } else { left.div_ceil(16) };
        tiles += 1;
        vectors += nv;
        q0 += 16 * nv;
    }
    (tiles, vectors)
}

/// The mode [`conv`] runs fastest for `s` with `m` output channels on batches of
/// `images`, by a count of cycles per mode: the multiply-adds of every computed tile
/// (dropped columns, rows past `m`, positions past the last output included), the tiles'
/// bookkeeping and the patch matrix's copy.
pub fn mode(s: &ConvShape, m: usize, images: usize) -> Mode {
    mode_cycles(s, m, images).0
}

/// [`mode`] and its estimated cycles: what a sparse kernel's estimate is weighed against
/// ([`super::sparse_conv::cycles`]).
pub fn mode_cycles(s: &ConvShape, m: usize, images: usize) -> (Mode, f64) {
    let (oh, ow) = s.out();
    let p = oh * ow;
    let pl = Planes::of(s);
    let taps = s.k[0] * s.k[1];
    let k = s.patch() as f64;
    let images = images.max(1);
    // Each chunk of `nb` samples (and the last, smaller one) costs `per(cnt)`.
    let over_chunks = |mode: Mode, per: &dyn Fn(usize) -> f64| {
        let nb = chunk(s, mode, images);
        let full = images / nb;
        let rest = images % nb;
        full as f64 * per(nb) + if rest > 0 { per(rest) } else { 0.0 }
    };
    let column_cost = |(tiles, vectors): (usize, usize)| {
        m.div_ceil(MR) as f64 * (vectors as f64 * k * MR as f64 + tiles as f64 * TILE_CYCLES)
    };
    let planes = if taps > MAX_TAPS || taps == 1 {
        f64::INFINITY
    } else {
        over_chunks(Mode::Planes, &|cnt| {
            let plane = pl.ph * pl.pw;
            column_cost(column_work(cnt * plane, plane, (oh - 1) * pl.pw + ow))
        })
    };
    let patches = if s.is_pointwise() && (images == 1 || p >= UNFOLDED_COLUMNS) {
        images as f64 * column_cost(column_work(p, p, p))
    } else {
        over_chunks(Mode::Patches, &|cnt| {
            column_cost(column_work(cnt * p, p, p)) + k * (cnt * p) as f64 * COPY_CYCLES
        })
    };
    let channels = if taps > MAX_TAPS {
        f64::INFINITY
    } else {
        over_chunks(Mode::Channels, &|cnt| {
            // Full tiles of 12 positions, and the last one narrowed to 4 or 8.
            let (full, rest) = ((cnt * p) / CR, (cnt * p) % CR);
            let per_row = if taps == 1 {
                CHANNEL_ROW_CYCLES_1X1
            } else {
                CHANNEL_ROW_CYCLES
            };
            let row = |r: usize| k * per_row * r as f64 / CR as f64;
            let mut cycles = full as f64 * (row(CR) + CHANNEL_TILE_CYCLES);
            if rest > 0 {
                cycles += row(rest.div_ceil(4) * 4) + CHANNEL_TILE_CYCLES;
            }
            m.div_ceil(CP) as f64 * cycles
        })
    };
    let winograd = if winograd::applies(s) && winograd::available() {
        winograd::cycles(s, m, images)
    } else {
        f64::INFINITY
    };
    if winograd < planes && winograd < patches && winograd < channels {
        (Mode::Winograd, winograd)
    } else if channels < planes && channels < patches {
        (Mode::Channels, channels)
    } else if planes <= patches {
        (Mode::Planes, planes)
    } else {
        (Mode::Patches, patches)
    }
}

/// Floats of input one sample takes in `mode`.
fn per_sample(s: &ConvShape, mode: Mode) -> usize {
    let (oh, ow) = s.out();
    match mode {
        Mode::Planes | Mode::Channels => s.c * Planes::of(s).per_channel(),
        Mode::Patches => s.patch() * oh * ow,
        Mode::Winograd => unreachable!("the Winograd scratch is its own"),
    }
}

/// Samples per chunk for a batch of `n`.
fn chunk(s: &ConvShape, mode: Mode, n: usize) -> usize {
    (CHUNK_FLOATS / per_sample(s, mode).max(1)).clamp(1, n.max(1))
}

/// Floats of scratch [`conv`] needs for batches of up to `n` samples.
pub fn scratch(s: &ConvShape, mode: Mode, n: usize) -> usize {
    if mode == Mode::Winograd {
        return winograd::scratch(s, n);
    }
    chunk(s, mode, n) * per_sample(s, mode) + slack(s, mode)
}

/// Floats past the chunk's operand: a tile's loads run up to one tile past the last
/// column, shifted by at most one plane (the largest tap offset); the patch matrices are
/// built one sample at a time past the chunk's.
fn slack(s: &ConvShape, mode: Mode) -> usize {
    let (oh, ow) = s.out();
    NR + match mode {
        Mode::Patches => s.patch() * oh * ow,
        Mode::Planes | Mode::Channels => {
            let p = Planes::of(s);
            p.ph * p.pw
        }
        Mode::Winograd => 0,
    }
}

/// `w` (`[m, k]` row-major) as `ceil(m / r)` panels of `[k, r]` (rows past `m` zero),
/// `r` the channels of a tile of `mode` (8, or 16 for [`Mode::Channels`]).
pub fn pack(w: &[f32], m: usize, k: usize, mode: Mode) -> Vec<f32> {
    if mode == Mode::Winograd {
        return winograd::pack(w, m, k / 9);
    }
    let r = panel_rows(mode);
    let panels = m.div_ceil(r);
    let mut p = alloc::vec![0.0f32; panels * k * r];
    for row in 0..m {
        let (panel, i) = (row / r, row % r);
        for kk in 0..k {
            p[(panel * k + kk) * r + i] = w[row * k + kk];
        }
    }
    p
}

/// Output channels per weight panel in `mode`.
fn panel_rows(mode: Mode) -> usize {
    if mode == Mode::Channels { CP } else { MR }
}

/// Copies samples `x` (`n` of `[c, h, w]`) into phase planes, laid out
/// `[phase][c][sample][ph][pw]` with zero borders; returns the stride between channels.
fn fill_planes(x: &[f32], s: &ConvShape, n: usize, buf: &mut [f32]) -> usize {
    let p = Planes::of(s);
    let cstride = n * p.ph * p.pw;
    fill_planes_strided(x, s, n, cstride, buf);
    cstride
}

/// [`fill_planes`] with channels `cstride` floats apart (at least `n` planes): a caller
/// whose tap offsets were computed once for its largest chunk keeps them for a smaller
/// one ([`super::sparse_conv`]).
pub(crate) fn fill_planes_strided(
    x: &[f32],
    s: &ConvShape,
    n: usize,
    cstride: usize,
    buf: &mut [f32],
) {
    let p = Planes::of(s);
    let plane = p.ph * p.pw;
    assert!(cstride >= n * plane);
    let phase_stride = s.c * cstride;
    let phases = p.s[0] * p.s[1];
    // The planes' zero borders, and one row past them: the last row's right taps read
    // the next row's left border (see `Planes::of`).
    buf[..phases * phase_stride + p.pw].fill(0.0);
    let (top, left) = (s.pads[0], s.pads[1]);
    for ch in 0..s.c {
        for b in 0..n {
            let src = &x[(b * s.c + ch) * s.h * s.w..][..s.h * s.w];
            for r in 0..s.h {
                let pr = r + top;
                let (phase_r, row) = (pr % p.s[0], pr / p.s[0]);
                let src_row = &src[r * s.w..(r + 1) * s.w];
                let at = phase_r * p.s[1] * phase_stride + ch * cstride + b * plane + row * p.pw;
                split_row(src_row, left, p.s[1], phase_stride, &mut buf[at..]);
            }
        }
    }
}

/// `y = act(bias + w * x + residual)` for `n` samples: `x` is `n` of `[c, h, w]`, `y`
/// and `residual` `n` of `[m, oh, ow]`, `packed` the weight `[m, c kh kw]` packed by
/// [`pack`], `scratch` at least [`scratch`]`(s, mode, n)` floats.
///
/// The residual: a ResNet block's `relu(conv(x) + skip)` in the tile's epilogue, as
/// onnxruntime fuses it (`Conv` with `Sum` in MLAS's NCHWc kernels), instead of two more
/// passes over the output (the Add and the ReLU were 9% of a small ResNet's time).
///
/// # Panics
/// When [`available`] is false, or a slice is shorter than its shape.
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
    mode: Mode,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    if mode == Mode::Winograd {
        winograd::conv(packed, m, bias, act, residual, x, n, s, scratch, y);
        return;
    }
    let k = s.patch();
    let (oh, ow) = s.out();
    let p = oh * ow;
    let pr = panel_rows(mode);
    assert!(packed.len() >= m.div_ceil(pr) * k * pr);
    assert!(x.len() >= n * s.c * s.h * s.w && y.len() >= n * m * p);
    assert!(bias.is_none_or(|b| b.len() >= m));
    assert!(residual.is_none_or(|r| r.len() >= n * m * p));
    assert!(
        mode == Mode::Patches || s.k[0] * s.k[1] <= MAX_TAPS,
        "more taps than the plane modes take"
    );
    let direct = match mode {
        Mode::Patches => n == 1 || p >= UNFOLDED_COLUMNS,
        Mode::Channels => true,
        Mode::Planes | Mode::Winograd => false,
    };
    if s.is_pointwise() && direct {
        // A 1x1 convolution's input is its patch matrix: with enough columns per sample,
        // no copy (the masked loads stop at the end of the input).
        let g = Operand {
            channels: s.c,
            taps: 1,
            cstride: p,
            plane: p,
            pw: ow,
            last: p,
            columns: p,
        };
        for b in 0..n {
            let xb = &x[b * s.c * p..(b + 1) * s.c * p];
            let yb = &mut y[b * m * p..(b + 1) * m * p];
            let ep = Epilogue {
                act,
                residual: residual.map(|r| &r[b * m * p..(b + 1) * m * p]),
            };
            run(
                packed,
                m,
                k,
                bias,
                ep,
                &g,
                &[0; MAX_TAPS],
                xb,
                oh,
                ow,
                yb,
                mode,
            );
        }
        return;
    }
    let nb = chunk(s, mode, n);
    assert!(scratch.len() >= nb * per_sample(s, mode) + slack(s, mode));
    let mut b0 = 0;
    while b0 < n {
        let cnt = nb.min(n - b0);
        let xs = &x[b0 * s.c * s.h * s.w..(b0 + cnt) * s.c * s.h * s.w];
        let ys = &mut y[b0 * m * p..(b0 + cnt) * m * p];
        let mut taps = [0u32; MAX_TAPS];
        // The product's operand: rows `(channel, tap)` at `channel * cstride + taps[tap]`,
        // columns `q` of `cnt` samples of `plane` floats, row `q / pw` column `q % pw` of
        // a sample's output where `q % pw < ow` and `q / pw < oh`.
        let g = match mode {
            Mode::Winograd => unreachable!("run above"),
            Mode::Planes | Mode::Channels => {
                let pl = Planes::of(s);
                let cstride = fill_planes(xs, s, cnt, scratch);
                let phase_stride = s.c * cstride;
                for di in 0..s.k[0] {
                    for dj in 0..s.k[1] {
                        let (r, c) = (di * s.dilation[0], dj * s.dilation[1]);
                        let phase = (r % pl.s[0]) * pl.s[1] + c % pl.s[1];
                        taps[di * s.k[1] + dj] =
                            (phase * phase_stride + (r / pl.s[0]) * pl.pw + c / pl.s[1]) as u32;
                    }
                }
                Operand {
                    channels: s.c,
                    taps: s.k[0] * s.k[1],
                    cstride,
                    plane: pl.ph * pl.pw,
                    pw: pl.pw,
                    last: (oh - 1) * pl.pw + ow,
                    columns: cnt * pl.ph * pl.pw,
                }
            }
            Mode::Patches => {
                let q = cnt * p;
                if s.is_pointwise() {
                    for b in 0..cnt {
                        for ch in 0..s.c {
                            let src = &xs[(b * s.c + ch) * p..][..p];
                            copy(src, &mut scratch[ch * q + b * p..][..p]);
                        }
                    }
                } else if cnt == 1 {
                    im2col(xs, s, &mut scratch[..k * p]);
                } else {
                    // Each sample's patch matrix, then its rows moved into the chunk's.
                    let (all, one) = scratch.split_at_mut(k * q);
                    let one = &mut one[..k * p];
                    for b in 0..cnt {
                        im2col(&xs[b * s.c * s.h * s.w..(b + 1) * s.c * s.h * s.w], s, one);
                        for (r, src) in one.chunks_exact(p).enumerate() {
                            copy(src, &mut all[r * q + b * p..][..p]);
                        }
                    }
                }
                taps[0] = 0;
                Operand {
                    channels: k,
                    taps: 1,
                    cstride: q,
                    plane: p,
                    pw: ow,
                    last: p,
                    columns: q,
                }
            }
        };
        // SAFETY: AVX-512F is checked by `run`; the operand's reads stay inside the filled
        // part of `scratch` plus the slack `scratch()` adds (asserted above); the output
        // writes stay inside `ys` (the column mapping drops q outside the outputs).
        let ep = Epilogue {
            act,
            residual: residual.map(|r| &r[b0 * m * p..(b0 + cnt) * m * p]),
        };
        run(packed, m, k, bias, ep, &g, &taps, scratch, oh, ow, ys, mode);
        b0 += cnt;
    }
}

/// What a tile's outputs become before they are stored: `act(value + residual)`, the
/// residual laid out as the output (shared with the sparse convolution's tiles).
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // read by the AVX-512 kernel only
)]
#[derive(Clone, Copy)]
pub(super) struct Epilogue<'r> {
    pub(super) act: Act,
    pub(super) residual: Option<&'r [f32]>,
}

/// The product's right operand, as the micro-kernel reads it.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // read by the AVX-512 kernel only
)]
struct Operand {
    channels: usize,
    taps: usize,
    cstride: usize,
    /// Columns per sample, and per row of a sample.
    plane: usize,
    pw: usize,
    /// Columns of a sample up to its last output (the rows below are not computed).
    last: usize,
    /// Columns in all.
    columns: usize,
}

#[allow(clippy::too_many_arguments)]
fn run(
    packed: &[f32],
    m: usize,
    k: usize,
    bias: Option<&[f32]>,
    ep: Epilogue,
    g: &Operand,
    taps: &[u32; MAX_TAPS],
    xp: &[f32],
    oh: usize,
    ow: usize,
    y: &mut [f32],
    mode: Mode,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if available() {
        // SAFETY: AVX-512F is present; see `conv` for the bounds.
        unsafe {
            if mode == Mode::Channels {
                avx512::run_channels(packed, m, k, bias, ep, g, taps, xp, oh, ow, y);
            } else {
                avx512::run(packed, m, k, bias, ep, g, taps, xp, oh, ow, y);
            }
        }
        return;
    }
    let _ = (packed, m, k, bias, ep, g, taps, xp, oh, ow, y, mode);
    panic!("implicit_conv::conv needs AVX-512F (check implicit_conv::available)");
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use super::super::depthwise_lanes::avx512::transpose;
    use super::{Act, CP, CR, Epilogue, MAX_TAPS, MR, NR, NV, Operand};

    /// Floats of operand rows per block of columns that every weight panel passes over before
    /// the next block (a quarter of a 1 MiB L2 cache): an operand larger than L2 (a 1x1
    /// convolution on a 112x112 or 56x56 plane reads its input in place, 0.8-1.8 MB) was
    /// streamed from L3 once per panel of 8 output channels.
    const BLOCK_FLOATS: usize = 64 << 10;

    /// How far ahead along its rows a tile of the first panel prefetches a streamed
    /// operand: two tiles.
    const PREFETCH_COLUMNS: usize = 2 * NR;

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        packed: &[f32],
        m: usize,
        k: usize,
        bias: Option<&[f32]>,
        ep: Epilogue,
        g: &Operand,
        taps: &[u32; MAX_TAPS],
        xp: &[f32],
        oh: usize,
        ow: usize,
        y: &mut [f32],
    ) {
        let p = oh * ow;
        // Column blocks whose operand rows stay in L2 while every panel passes over them
        // (one block where the whole operand fits). A column reads `channels` floats (the
        // taps of a plane mode read the same plane, shifted).
        let block = if g.columns * g.channels <= BLOCK_FLOATS {
            g.columns
        } else {
            (BLOCK_FLOATS / g.channels.max(1)).max(4 * NR)
        };
        // An operand larger than the blocks comes from L3 or memory, one short piece of
        // each of its `channels` rows per block: more streams than the hardware prefetcher
        // follows, so the first panel's tiles prefetch their rows' next columns.
        let streamed = g.columns * g.channels > BLOCK_FLOATS && g.taps == 1;
        let mut qb = 0;
        while qb < g.columns {
            // The block ends where the tiles from qb first pass `block` columns.
            let mut qe = qb;
            while let Some((q0, nv)) = next_tile(g, qe) {
                qe = q0 + 16 * nv;
                if qe - qb >= block {
                    break;
                }
            }
            let qe = qe.min(g.columns).max(qb + 1);
            for panel in 0..m.div_ceil(MR) {
                let m0 = panel * MR;
                let rows = MR.min(m - m0);
                let w = &packed[panel * k * MR..(panel + 1) * k * MR];
                let mut bias_lanes = [0.0f32; MR];
                if let Some(b) = bias {
                    bias_lanes[..rows].copy_from_slice(&b[m0..m0 + rows]);
                }
                let mut from = qb;
                while let Some((q0, nv)) = next_tile(g, from) {
                    if q0 >= qe {
                        break;
                    }
                    // SAFETY: the tile's loads reach column q0 + NR - 1 of every row, inside
                    // `xp` by the slack `scratch()` adds; `w` holds k * MR floats.
                    let (acc3, acc2, acc1);
                    let x0 = xp.as_ptr();
                    let acc: &[[__m512; MR]] = unsafe {
                        match (nv, panel == 0 && streamed) {
                            (3, false) => {
                                acc3 = tile::<3, false>(w, &bias_lanes, g, taps, x0, q0);
                                &acc3
                            }
                            (3, true) => {
                                acc3 = tile::<3, true>(w, &bias_lanes, g, taps, x0, q0);
                                &acc3
                            }
                            (2, _) => {
                                acc2 = tile::<2, false>(w, &bias_lanes, g, taps, x0, q0);
                                &acc2
                            }
                            _ => {
                                acc1 = tile::<1, false>(w, &bias_lanes, g, taps, x0, q0);
                                &acc1
                            }
                        }
                    };
                    for (v, acc) in acc.iter().enumerate() {
                        let qv = q0 + 16 * v;
                        if qv >= g.columns {
                            break;
                        }
                        // SAFETY: the stores map columns to outputs inside `y`.
                        unsafe { store(acc, rows, ep, g, qv, m0, m, p, oh, ow, y) };
                    }
                    from = q0 + 16 * nv;
                }
            }
            qb = qe;
        }
    }

    /// The first tile at or after column `q0`: its first column and its vectors (`None`
    /// past the last column). Below a sample's last output row it moves on to the next
    /// sample; the last tile of a sample is narrower where fewer of its outputs are left
    /// and the next sample is out of reach (a 4x4 plane of one sample is one vector of
    /// work, not three).
    #[inline]
    fn next_tile(g: &Operand, mut q0: usize) -> Option<(usize, usize)> {
        while q0 < g.columns {
            let (b, rem) = (q0 / g.plane, q0 % g.plane);
            if rem >= g.last {
                q0 = (b + 1) * g.plane;
                continue;
            }
            let next = (b + 1) * g.plane;
            let left = if next >= q0 + NR {
                b * g.plane + g.last - q0
            } else {
                g.columns - q0
            };
            return Some((q0, if left > 32 { NV } else { left.div_ceil(16) }));
        }
        None
    }

    /// One tile of 8 channels x `16 V` columns: the panel's channels, columns from q0.
    #[allow(clippy::needless_range_loop)] // acc[v][r]: both axes indexed
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const V: usize, const PREFETCH: bool>(
        w: &[f32],
        bias: &[f32; MR],
        g: &Operand,
        taps: &[u32; MAX_TAPS],
        xp: *const f32,
        q0: usize,
    ) -> [[__m512; MR]; V] {
        // SAFETY (whole body): as the caller promises.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); MR]; V];
            for v in acc.iter_mut() {
                for (r, a) in v.iter_mut().enumerate() {
                    *a = _mm512_set1_ps(bias[r]);
                }
            }
            // Lanes of each vector inside the operand's columns.
            let mut masks = [0xffffu16; V];
            for (v, mk) in masks.iter_mut().enumerate() {
                let left = g.columns.saturating_sub(q0 + 16 * v);
                if left < 16 {
                    *mk = ((1u32 << left) - 1) as u16;
                }
            }
            let mut wp = w.as_ptr();
            for c in 0..g.channels {
                let base = xp.add(c * g.cstride + q0);
                if PREFETCH {
                    // Lines of this row `PREFETCH_COLUMNS` ahead (a prefetch never faults:
                    // past the operand it fetches nothing useful).
                    for v in 0..V {
                        let at = base.wrapping_add(PREFETCH_COLUMNS + 16 * v);
                        _mm_prefetch::<_MM_HINT_T0>(at as *const i8);
                    }
                }
                for &t in &taps[..g.taps] {
                    let xr = base.add(t as usize);
                    let mut xv = [_mm512_setzero_ps(); V];
                    for (v, x) in xv.iter_mut().enumerate() {
                        *x = _mm512_maskz_loadu_ps(masks[v], xr.add(16 * v));
                    }
                    for r in 0..MR {
                        let wv = _mm512_set1_ps(*wp.add(r));
                        for v in 0..V {
                            acc[v][r] = _mm512_fmadd_ps(wv, xv[v], acc[v][r]);
                        }
                    }
                    wp = wp.add(MR);
                }
            }
            acc
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn activate(v: __m512, act: Act) -> __m512 {
        match act {
            Act::None => v,
            // `vmaxps a, b` returns b when either is NaN: the value, NaN kept.
            Act::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
            Act::Clip(lo, hi) => {
                _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v))
            }
        }
    }

    /// [`Mode::Channels`]: tiles of 32 channels (two vectors) x 12 outputs, the outputs
    /// taken in order (sample, row, column) so that none is computed twice or dropped.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run_channels(
        packed: &[f32],
        m: usize,
        k: usize,
        bias: Option<&[f32]>,
        ep: Epilogue,
        g: &Operand,
        taps: &[u32; MAX_TAPS],
        xp: &[f32],
        oh: usize,
        ow: usize,
        y: &mut [f32],
    ) {
        let p = oh * ow;
        let samples = g.columns / g.plane;
        let total = samples * p;
        for panel in 0..m.div_ceil(CP) {
            let m0 = panel * CP;
            let rows = CP.min(m - m0);
            let w = &packed[panel * k * CP..(panel + 1) * k * CP];
            let mut bias_lanes = [0.0f32; CP];
            if let Some(b) = bias {
                bias_lanes[..rows].copy_from_slice(&b[m0..m0 + rows]);
            }
            // The next output: sample b, row i, column j.
            let (mut b, mut i, mut j) = (0, 0, 0);
            let mut done = 0;
            while done < total {
                let cnt = CR.min(total - done);
                let mut q = [0usize; CR];
                let mut at = [0usize; CR];
                for r in 0..CR {
                    // Past the last output, the tile repeats it (computed, not stored).
                    if r < cnt {
                        q[r] = b * g.plane + i * g.pw + j;
                        at[r] = (b * m + m0) * p + i * ow + j;
                        j += 1;
                        if j == ow {
                            (i, j) = (i + 1, 0);
                            if i == oh {
                                (b, i) = (b + 1, 0);
                            }
                        }
                    } else {
                        q[r] = q[cnt - 1];
                    }
                }
                // Runs: (first position, its offset in channel m0's plane, count).
                let mut runs = [(0usize, 0usize, 0usize); CR];
                let mut nruns = 0;
                let mut r0 = 0;
                for r in 1..=cnt {
                    if r == cnt || at[r] != at[r - 1] + 1 {
                        runs[nruns] = (r0, at[r0], r - r0);
                        nruns += 1;
                        r0 = r;
                    }
                }
                let xq = xp.as_ptr();
                // SAFETY: every q is an output's column, whose tap reads lie in `xp`; the
                // stores write outputs of channels m0..m0 + rows (the position mapping).                // Fewer positions left than a tile (a 2x2 plane at batch 1): a narrower
                // tile, not 12 multiply-adds per row for 4 outputs.
                let acc = unsafe {
                    match cnt {
                        1..=4 => tile_channels::<4>(w, &bias_lanes, g, taps, xq, &q),
                        5..=8 => tile_channels::<8>(w, &bias_lanes, g, taps, xq, &q),
                        _ => tile_channels::<CR>(w, &bias_lanes, g, taps, xq, &q),
                    }
                };
                // SAFETY: as above.
                unsafe { store_channels(&acc, rows, cnt, ep, &runs[..nruns], p, y) };
                done += cnt;
            }
        }
    }

    /// Channels out of the lanes by one 16x16 transpose, then each channel's positions
    /// stored in runs broken only between samples (a scalar store per channel and
    /// position, the planes 4 KiB apart on a 32x32 layer, was half the time of a
    /// 16-channel layer).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_channels(
        acc: &[__m512; CR],
        rows: usize,
        cnt: usize,
        ep: Epilogue,
        runs: &[(usize, usize, usize)],
        p: usize,
        y: &mut [f32],
    ) {
        let yp = y.as_mut_ptr();
        let mut v = [_mm512_setzero_ps(); 16];
        v[..cnt].copy_from_slice(&acc[..cnt]);
        if ep.residual.is_none() {
            for v in &mut v[..cnt] {
                *v = activate(*v, ep.act);
            }
        }
        transpose(&mut v);
        for (ch, v) in v.iter().enumerate().take(rows) {
            for &(first, at, n) in runs {
                let mask = (((1u32 << n) - 1) << first) as __mmask16;
                let at = at + ch * p;
                let v = match ep.residual {
                    // SAFETY: the residual has the output's layout: the same lanes.
                    Some(r) => activate(
                        _mm512_add_ps(*v, unsafe {
                            _mm512_maskz_loadu_ps(
                                mask,
                                r.as_ptr().wrapping_add(at).wrapping_sub(first),
                            )
                        }),
                        ep.act,
                    ),
                    None => *v,
                };
                let base = yp.wrapping_add(at).wrapping_sub(first);
                // SAFETY: the written lanes are outputs at..at + n of channel m0 + ch,
                // inside `y` (the caller's position mapping).
                unsafe { _mm512_mask_storeu_ps(base, mask, v) };
            }
        }
    }

    /// One tile of 16 channels x `R` outputs at operand columns `q` (the first `R`), in
    /// the first `R` of the 12 vectors returned.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile_channels<const R: usize>(
        w: &[f32],
        bias: &[f32; CP],
        g: &Operand,
        taps: &[u32; MAX_TAPS],
        xp: *const f32,
        q: &[usize; CR],
    ) -> [__m512; CR] {
        // SAFETY (whole body): as the caller promises; `w` holds k * 16 floats.
        unsafe {
            let bv = _mm512_loadu_ps(bias.as_ptr());
            let mut acc = [bv; R];
            let mut wp = w.as_ptr();
            for c in 0..g.channels {
                let base = xp.add(c * g.cstride);
                for &t in &taps[..g.taps] {
                    let wv = _mm512_loadu_ps(wp);
                    let xr = base.add(t as usize);
                    for (a, &qr) in acc.iter_mut().zip(&q[..R]) {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(*xr.add(qr)), wv, *a);
                    }
                    wp = wp.add(CP);
                }
            }
            let mut out = [bv; CR];
            out[..R].copy_from_slice(&acc);
            out
        }
    }

    /// Stores rows `m0..m0 + rows` of the 16 columns from `qv`: one masked store per row
    /// where they are one run of outputs, else lane runs through a spill.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(
        acc: &[__m512; MR],
        rows: usize,
        ep: Epilogue,
        g: &Operand,
        qv: usize,
        m0: usize,
        m: usize,
        p: usize,
        oh: usize,
        ow: usize,
        y: &mut [f32],
    ) {
        // Runs of lanes: (first lane, output offset of row m0, count).
        let mut runs = [(0usize, 0usize, 0usize); 16];
        let mut nruns = 0;
        let end = (qv + 16).min(g.columns);
        let mut q = qv;
        if g.pw == ow && g.plane == p {
            // No dropped columns (the patch matrix, a 1x1 input): a sample's outputs are
            // its columns in order, so runs break only between samples (row by row, a 2x2
            // plane's vector was eight stores per channel).
            let (mut b, mut rem) = (q / g.plane, q % g.plane);
            while q < end {
                let cnt = (g.plane - rem).min(end - q);
                runs[nruns] = (q - qv, (b * m + m0) * p + rem, cnt);
                nruns += 1;
                q += cnt;
                (b, rem) = (b + 1, 0);
            }
        }
        while q < end {
            let (b, rem) = (q / g.plane, q % g.plane);
            let (i, j) = (rem / g.pw, rem % g.pw);
            let run = (g.pw - j).min(end - q).min(g.plane - rem);
            if i < oh && j < ow {
                let cnt = run.min(ow - j);
                runs[nruns] = (q - qv, (b * m + m0) * p + i * ow + j, cnt);
                nruns += 1;
            }
            q += run;
        }
        let yp = y.as_mut_ptr();
        for (r, a) in acc.iter().enumerate().take(rows) {
            let v = if ep.residual.is_none() {
                activate(*a, ep.act)
            } else {
                *a
            };
            for &(lane, at, cnt) in &runs[..nruns] {
                // Lanes lane..lane + cnt to outputs at..at + cnt of row m0 + r: one masked
                // store whose base sits `lane` floats before them (the lanes below are
                // masked off, never written; a copy through memory called `memmove` per
                // run, a tenth of a MobileNet's batch-32 time).
                let mask = (((1u32 << cnt) - 1) << lane) as __mmask16;
                let v = match ep.residual {
                    // SAFETY: the residual has the output's layout: the same lanes, read
                    // (the others masked off).
                    Some(res) => activate(
                        _mm512_add_ps(v, unsafe {
                            _mm512_maskz_loadu_ps(
                                mask,
                                res.as_ptr().wrapping_add(at + r * p).wrapping_sub(lane),
                            )
                        }),
                        ep.act,
                    ),
                    None => v,
                };
                let base = yp.wrapping_add(at + r * p).wrapping_sub(lane);
                // SAFETY: the written lanes are outputs at..at + cnt of row m0 + r, inside
                // `y` (the column mapping above).
                unsafe { _mm512_mask_storeu_ps(base, mask, v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;

    /// The definition of a convolution, in f64, then the activation.
    fn reference(
        w: &[f32],
        bias: &[f32],
        x: &[f32],
        n: usize,
        m: usize,
        s: &ConvShape,
        act: Act,
    ) -> Vec<f32> {
        let (oh, ow) = s.out();
        let mut y = alloc::vec![0.0; n * m * oh * ow];
        for b in 0..n {
            for o in 0..m {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut sum = bias[o] as f64;
                        for c in 0..s.c {
                            for di in 0..s.k[0] {
                                for dj in 0..s.k[1] {
                                    let yi = (i * s.stride[0] + di * s.dilation[0]) as isize
                                        - s.pads[0] as isize;
                                    let xj = (j * s.stride[1] + dj * s.dilation[1]) as isize
                                        - s.pads[1] as isize;
                                    if yi < 0 || xj < 0 || yi >= s.h as isize || xj >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((b * s.c + c) * s.h + yi as usize) * s.w + xj as usize];
                                    let wv = w[((o * s.c + c) * s.k[0] + di) * s.k[1] + dj];
                                    sum += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((b * m + o) * oh + i) * ow + j] = act.apply(sum as f32);
                    }
                }
            }
        }
        y
    }

    /// Every mode against the definition (Winograd where it applies, through this
    /// module's `pack`, `scratch` and `conv`): strides, dilations, asymmetric padding, 1x1
    /// kernels, channel counts around the 8-channel panels, planes around the 48-column
    /// tiles, batches folded and chunked, operands split into column blocks, each
    /// activation.
    #[test]
    fn matches_the_definition_on_every_geometry() {
        if !available() {
            return;
        }
        let cases = [
            // (c, h, w, m, k, stride, pads, dilation, n)
            (3, 9, 9, 8, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            (4, 7, 11, 13, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 3),
            (2, 10, 6, 5, [5, 2], [2, 3], [2, 0, 1, 3], [2, 1], 2),
            (16, 4, 4, 17, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 5),
            (5, 8, 9, 11, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 3),
            (6, 9, 9, 9, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 2),
            (5, 2, 2, 24, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 7),
            (3, 12, 12, 4, [3, 3], [1, 1], [3, 3, 3, 3], [3, 3], 1),
            (1, 28, 28, 6, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 2),
            (3, 16, 16, 8, [7, 7], [2, 2], [3, 3, 3, 3], [1, 1], 2),
            (2, 40, 40, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 70),
            // Stride 1 with unequal left and right padding: the rows' shared border.
            (3, 7, 9, 5, [3, 3], [1, 1], [0, 2, 1, 0], [1, 1], 2),
            (2, 6, 5, 9, [3, 4], [1, 1], [1, 0, 1, 2], [1, 2], 3),
            (4, 5, 5, 3, [3, 3], [1, 1], [2, 3, 2, 1], [1, 1], 4),
            // An operand larger than a column block (`BLOCK_FLOATS`): a 1x1 input read in
            // place (the first panel's tiles prefetching it), and its patch matrix of two
            // samples.
            (24, 60, 60, 20, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 2),
        ];
        for (i, &(c, h, w, m, k, stride, pads, dilation, n)) in cases.iter().enumerate() {
            let s = ConvShape {
                c,
                h,
                w,
                k,
                stride,
                pads,
                dilation,
            };
            let kk = s.patch();
            let (wt, x, b) = (lcg(m * kk, 1 + i as u32), lcg(n * c * h * w, 2), lcg(m, 3));
            let (oh, ow) = s.out();
            for mode in [Mode::Planes, Mode::Patches, Mode::Channels, Mode::Winograd] {
                if mode != Mode::Patches && k[0] * k[1] > MAX_TAPS
                    || mode == Mode::Winograd && !winograd::applies(&s)
                {
                    continue;
                }
                let packed = pack(&wt, m, kk, mode);
                // A residual added before the activation, as a ResNet block's.
                let res = lcg(n * m * oh * ow, 4 + i as u32);
                let plain = reference(&wt, &b, &x, n, m, &s, Act::None);
                for act in [Act::None, Act::Relu, Act::Clip(-0.1, 0.2)] {
                    for residual in [None, Some(&res[..])] {
                        let want: Vec<f32> = plain
                            .iter()
                            .enumerate()
                            .map(|(at, &v)| act.apply(v + residual.map_or(0.0, |r| r[at])))
                            .collect();
                        let mut sc = alloc::vec![f32::NAN; scratch(&s, mode, n)];
                        let mut y = alloc::vec![f32::NAN; n * m * oh * ow + 1];
                        y[n * m * oh * ow] = 7.0;
                        conv(
                            &packed,
                            m,
                            Some(&b),
                            act,
                            residual,
                            &x,
                            n,
                            &s,
                            mode,
                            &mut sc,
                            &mut y,
                        );
                        assert_eq!(y[n * m * oh * ow], 7.0, "case {i}: wrote past the output");
                        for (at, (g, e)) in y.iter().zip(&want).enumerate() {
                            assert!(
                                (g - e).abs() < 1e-5,
                                "case {i} {mode:?} {act:?} residual {}: at {at} {g} vs {e}",
                                residual.is_some()
                            );
                        }
                    }
                }
            }
        }
    }

    /// The cycle count picks Winograd's F(2x2, 3x3) for the 3x3 stride-1 layers where
    /// `cargo run --release -p tether-deploy --example conv_modes` measured it fastest (a
    /// third or more faster than every other mode), and never for other kernels.
    #[test]
    fn mode_picks_winograd_where_it_was_measured_fastest() {
        if !winograd::available() {
            return;
        }
        for (c, hw, m, n) in [
            (16, 32, 16, 1),
            (32, 16, 32, 32),
            (64, 56, 64, 1),
            (512, 7, 512, 1),
        ] {
            let s = ConvShape::square(c, hw, hw, 3, 1, 1);
            assert_eq!(mode(&s, m, n), Mode::Winograd, "{c} {hw} {m} {n}");
        }
        for s in [
            ConvShape::square(16, 32, 32, 3, 2, 1),
            ConvShape::square(16, 32, 32, 5, 1, 2),
            ConvShape::square(16, 32, 32, 1, 1, 0),
        ] {
            assert_ne!(mode(&s, 16, 1), Mode::Winograd, "{s:?}");
        }
    }

    /// The phase split against its definition: every length around the 16- and 32-float
    /// steps, both parities of the padding, strides 1 to 3.
    #[test]
    fn split_row_puts_each_column_in_its_phase() {
        for stride in 1usize..=3 {
            for left in 0usize..4 {
                for n in 0usize..70 {
                    let src: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
                    let ps = (n + left).div_ceil(stride) + 1;
                    let mut dst = alloc::vec![0.0; stride * ps + 1];
                    split_row(&src, left, stride, ps, &mut dst);
                    let mut want = alloc::vec![0.0; stride * ps + 1];
                    for (c, &v) in src.iter().enumerate() {
                        let pc = c + left;
                        want[(pc % stride) * ps + pc / stride] = v;
                    }
                    assert_eq!(dst, want, "stride {stride} left {left} n {n}");
                }
            }
        }
    }

    /// A NaN or an infinity in the input reaches the outputs whose patches hold it, through
    /// the activations (0 * inf is NaN, as in the dense product).
    #[test]
    fn non_finite_inputs_propagate() {
        if !available() {
            return;
        }
        let s = ConvShape::square(2, 6, 6, 3, 1, 1);
        let (m, kk) = (3, s.patch());
        let wt = lcg(m * kk, 5);
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = lcg(2 * 36, 6);
            x[36 + 2 * 6 + 3] = bad;
            for mode in [Mode::Planes, Mode::Patches, Mode::Channels, Mode::Winograd] {
                let packed = pack(&wt, m, kk, mode);
                for act in [Act::Relu, Act::Clip(0.0, 6.0)] {
                    let want = reference(&wt, &[0.0; 3], &x, 1, m, &s, act);
                    let mut sc = alloc::vec![0.0; scratch(&s, mode, 1)];
                    let mut y = alloc::vec![0.0; m * 36];
                    conv(
                        &packed, m, None, act, None, &x, 1, &s, mode, &mut sc, &mut y,
                    );
                    for (g, e) in y.iter().zip(&want) {
                        assert!(
                            g.to_bits() == e.to_bits()
                                || (g.is_nan() && e.is_nan())
                                || (g - e).abs() < 1e-5,
                            "{bad} {mode:?} {act:?}: {g} vs {e}"
                        );
                    }
                    assert!(y.iter().any(|v| v.is_nan()) || bad.is_infinite());
                }
            }
        }
    }
}
