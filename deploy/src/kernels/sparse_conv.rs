//! Sparse direct convolution over phase planes, with AVX-512: a pruned convolution of one
//! group at any kernel size, stride, padding and dilation, with no patch matrix.
//!
//! Why: at 90% sparsity the multiply-adds drop tenfold, but a sparse 3x3 convolution run
//! as the sparse weight times an im2col patch matrix (nine copies of the input) or against
//! dense Winograd (2.25x fewer multiply-adds, and the transformed weights dense again) gains
//! little. Elsen, Dukhan, Gale and Simonyan ("Fast Sparse ConvNets", CVPR 2020; XNNPACK's
//! SpMM) run a pruned 1x1 convolution in CHW layout as the sparse weight `[m, c]` times the
//! activations `[c, hw]`: for each output channel its nonzeros are walked once while a
//! register block of spatial positions accumulates. This kernel does that for every kernel
//! tap: the input is copied once into the zero-padded stride-phase planes of
//! [`super::implicit_conv`] (`[phase][c][sample][ph][pw]`, the samples of a chunk one after
//! the other), so a nonzero `w[o, c, di, dj]` adds `w` times the planes shifted by a fixed
//! offset to output channel `o`: one broadcast and one fused multiply-add per 16 output
//! positions, the offset computed once at plan time.
//!
//! A tile is one output channel by up to 8 vectors of 16 plane columns (eight independent
//! accumulators, enough to cover the fused multiply-add's latency), held in registers
//! across the channel's nonzeros and stored once with the bias, the residual and the
//! activation applied. Column tiles are the outer loop and the output channels the inner
//! one, so a tile's stretch of input planes is read from L1/L2 by every output channel.
//! Columns past a row's last output and rows below a sample's last are computed and
//! dropped, as in the dense plane mode.
//!
//! Numerics: pruned weights are skipped, which differs from the dense product only where
//! the input holds a NaN or an infinity (`0 * inf` is NaN); there the outputs are made the
//! dense product's ([`super::sparse::match_dense_on_non_finite`] on each such sample's
//! patch matrix) before the residual and the activation, as every other sparse kernel here.

use alloc::vec::Vec;

use super::activation::{Act, activate_in_place};
use super::conv::{ConvShape, im2col};
use super::implicit_conv::{Epilogue, Planes, fill_planes_strided};
use super::sparse;
use crate::format::Csr;

/// Vectors of 16 columns per tile, at most: eight independent accumulators.
const NV: usize = 8;
/// Columns per tile, at most.
const NR: usize = 16 * NV;
/// Floats of input planes per chunk of samples: about half of a 1 MiB L2 cache (as
/// [`super::implicit_conv`]'s chunks).
const CHUNK_FLOATS: usize = 128 << 10;

/// Estimated cycles per nonzero and 16-column vector: one fused multiply-add with its load
/// (unaligned, most crossing a cache line), the broadcast shared by the tile; fitted to the
/// thread CPU time of `cargo run --release -p tether-deploy --example conv_modes --
/// --sparse` in the units of [`super::implicit_conv::mode_cycles`] (2.1 to 3.5 on the
/// resnet18 layers at densities 0.05 to 0.35, 2.6 at 0.1: the loads, not the multiply-adds,
/// bound it, where the dense tiles reuse each load eight times).
const VECTOR_CYCLES: f64 = 2.6;
/// The same for a 1x1 kernel, whose nonzeros' rows share no cache lines (a 3x3 kernel's
/// taps read the same lines shifted) and whose small planes end in masked loads: 3.9 to
/// 6.5 measured on mobilenet_v2's 1x1 layers.
const VECTOR_CYCLES_1X1: f64 = 4.0;
/// Estimated cycles per output channel and tile besides its multiply-adds: the row's
/// bounds, the accumulators' bias.
const TILE_CYCLES: f64 = 40.0;
/// Estimated cycles per output channel and 16-column vector stored (the lane runs, the
/// residual and the activation; the output's write to memory): what bounds a 1x1 layer of
/// few input channels (16 -> 96 on 112x112 at density 0.2 took longer sparse than dense,
/// 631 against 516 us, with 3 nonzeros per output channel).
const STORE_CYCLES: f64 = 20.0;
/// Estimated cycles per float of the planes' copy.
const COPY_CYCLES: f64 = 1.0;

/// True when the running CPU has the instructions [`conv`] uses.
pub fn available() -> bool {
    super::packed::available()
}

/// A CSR convolution weight's nonzeros as places in a chunk's phase planes.
#[derive(Clone, Debug)]
pub struct SparseConv {
    /// Per nonzero: its plane row `phase * c + channel`, whose planes start `row *
    /// cstride` floats into the chunk (`cstride`, a channel's floats, is the chunk's).
    rows: Vec<u32>,
    /// Per nonzero: its tap's offset inside a plane.
    within: Vec<u32>,
    /// The geometry the offsets were computed for.
    shape: ConvShape,
    /// Largest batch.
    batch: usize,
    /// Floats of scratch the kernel reads and writes at that batch.
    scratch: usize,
}

/// Samples per chunk of planes for batches of `n`.
fn chunk(s: &ConvShape, n: usize) -> usize {
    (CHUNK_FLOATS / (s.c * Planes::of(s).per_channel()).max(1)).clamp(1, n.max(1))
}

/// True where [`conv`] reads the input in place, sample by sample (a 1x1 convolution of
/// stride 1 without padding is its own plane) rather than copying it into planes: at batch 1,
/// or where a sample fills whole tiles.
fn in_place(s: &ConvShape, n: usize) -> bool {
    let (oh, ow) = s.out();
    s.is_pointwise() && (n == 1 || oh * ow >= NR)
}

impl SparseConv {
    /// The places of `a`'s nonzeros (`[m, c * kh * kw]`) for inputs of `shape` on batches
    /// of up to `batch` samples, or `None` where the kernel does not run (no AVX-512F, a
    /// weight of another geometry, planes too large for 32-bit offsets).
    pub fn new(a: &Csr, shape: &ConvShape, batch: usize) -> Option<Self> {
        if !available() || a.cols() != shape.patch() || shape.patch() == 0 {
            return None;
        }
        let s = shape;
        let pl = Planes::of(s);
        let plane = pl.ph.checked_mul(pl.pw)?;
        let phases = pl.s[0] * pl.s[1];
        let taps = s.k[0] * s.k[1];
        let mut tap_rows = Vec::with_capacity(taps);
        let mut tap_within = Vec::with_capacity(taps);
        for di in 0..s.k[0] {
            for dj in 0..s.k[1] {
                let (r, c) = (di * s.dilation[0], dj * s.dilation[1]);
                tap_rows.push((r % pl.s[0]) * pl.s[1] + c % pl.s[1]);
                tap_within.push((r / pl.s[0]) * pl.pw + c / pl.s[1]);
            }
        }
        let cstride = chunk(s, batch).checked_mul(plane)?;
        let planes = phases.checked_mul(s.c)?.checked_mul(cstride)?;
        let (oh, ow) = s.out();
        // Reads reach one tile past the last column of a chunk, shifted by the largest
        // offset; the planes' fill writes one row past them.
        let reach = planes.checked_add(plane + NR)?;
        u32::try_from(reach).ok()?;
        let scratch = reach
            .max(planes + pl.pw)
            .max(s.patch().checked_mul(oh * ow)?);
        let (mut rows, mut within) = (Vec::new(), Vec::new());
        for &k in a.col_idx() {
            let k = usize::from(k);
            let (c, t) = (k / taps, k % taps);
            rows.push((tap_rows[t] * s.c + c) as u32);
            within.push(tap_within[t] as u32);
        }
        Some(Self {
            rows,
            within,
            shape: *s,
            batch: batch.max(1),
            scratch,
        })
    }

    /// Floats of memory the places take.
    pub fn floats(&self) -> usize {
        2 * self.rows.len()
    }

    /// Floats of scratch [`conv`] needs.
    pub fn scratch(&self) -> usize {
        self.scratch
    }
}

/// Column tiles and 16-column vectors the kernel computes over `columns` columns of
/// samples `plane` columns apart, each with outputs up to column `last`: its loop, counted.
fn column_work(columns: usize, plane: usize, last: usize) -> (usize, usize) {
    let (mut tiles, mut vectors, mut q0) = (0, 0, 0);
    while q0 < columns {
        let (b, rem) = (q0 / plane, q0 % plane);
        if rem >= last {
            q0 = (b + 1) * plane;
            continue;
        }
        let nv = tile_vectors(q0, b, plane, last, columns);
        tiles += 1;
        vectors += nv;
        q0 += 16 * nv;
    }
    (tiles, vectors)
}

/// Vectors of the tile at column `q0` (of sample `b`): up to [`NV`], fewer where fewer of
/// the sample's outputs are left and the next sample is out of reach.
fn tile_vectors(q0: usize, b: usize, plane: usize, last: usize, columns: usize) -> usize {
    let left = if (b + 1) * plane >= q0 + NR {
        b * plane + last - q0
    } else {
        columns - q0
    };
    left.div_ceil(16).min(NV)
}

/// Estimated cycles of [`conv`] for `s` with `m` output channels, `nonzeros` stored
/// weights, on batches of `images` (the units of
/// [`super::implicit_conv::mode_cycles`], which the plan weighs it against).
pub fn cycles(s: &ConvShape, m: usize, nonzeros: usize, images: usize) -> f64 {
    let pl = Planes::of(s);
    let plane = pl.ph * pl.pw;
    let (oh, ow) = s.out();
    let last = (oh - 1) * pl.pw + ow;
    let images = images.max(1);
    let per_vector = if s.k == [1, 1] {
        VECTOR_CYCLES_1X1
    } else {
        VECTOR_CYCLES
    };
    let work = |(tiles, vectors): (usize, usize)| {
        nonzeros as f64 * vectors as f64 * per_vector
            + (m * tiles) as f64 * TILE_CYCLES
            + (m * vectors) as f64 * STORE_CYCLES
    };
    if in_place(s, images) {
        return images as f64 * work(column_work(oh * ow, oh * ow, oh * ow));
    }
    let nb = chunk(s, images);
    let per = |cnt: usize| {
        work(column_work(cnt * plane, plane, last))
            + (cnt * s.c * pl.per_channel()) as f64 * COPY_CYCLES
    };
    let (full, rest) = (images / nb, images % nb);
    full as f64 * per(nb) + if rest > 0 { per(rest) } else { 0.0 }
}

/// `y = act(bias + a * x + residual)` for `n` samples: `x` is `n` of `[c, h, w]`, `y` and
/// `residual` `n` of `[m, oh, ow]`, `a` the weight `[m, c kh kw]` and `d` its offsets,
/// `scratch` at least [`SparseConv::scratch`] floats.
///
/// # Panics
/// When [`available`] is false, `d` was built for another weight or geometry or for
/// smaller batches, or a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    a: &Csr,
    d: &SparseConv,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    x: &[f32],
    n: usize,
    s: &ConvShape,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    assert_eq!(d.rows.len(), a.values().len(), "places of another weight");
    let g = &d.shape;
    assert!(
        (g.c, g.h, g.w, g.k, g.stride, g.pads, g.dilation)
            == (s.c, s.h, s.w, s.k, s.stride, s.pads, s.dilation),
        "places of another geometry"
    );
    assert!(n <= d.batch, "a batch larger than planned");
    let m = a.rows();
    let (oh, ow) = s.out();
    let (p, per_in) = (oh * ow, s.c * s.h * s.w);
    assert!(x.len() >= n * per_in && y.len() >= n * m * p);
    assert!(bias.is_none_or(|b| b.len() >= m));
    assert!(residual.is_none_or(|r| r.len() >= n * m * p));
    assert!(
        scratch.len() >= d.scratch,
        "scratch smaller than SparseConv::scratch"
    );
    let pl = Planes::of(s);
    let plane = pl.ph * pl.pw;
    // A NaN or an infinity facing a pruned weight: the plain sums first, made the dense
    // product's below, then the residual and the activation.
    let finite = sparse::all_finite(&x[..n * per_in]);
    let (act_k, residual_k) = if finite {
        (act, residual)
    } else {
        (Act::None, None)
    };
    let places = Places {
        rows: &d.rows,
        within: &d.within,
    };
    if in_place(s, n) {
        // Each sample's input is its own plane: channels `p` floats apart, no copy; the
        // last tile's loads are masked at the input's end.
        for b in 0..n {
            let cols = Columns {
                plane: p,
                pw: ow,
                last: p,
                columns: p,
                cstride: p,
                m,
                oh,
                ow,
            };
            let ep = Epilogue {
                act: act_k,
                residual: residual_k.map(|r| &r[b * m * p..(b + 1) * m * p]),
            };
            let (xb, yb) = (
                &x[b * per_in..(b + 1) * per_in],
                &mut y[b * m * p..(b + 1) * m * p],
            );
            run(a, &places, bias, ep, &cols, xb, yb);
        }
    } else {
        let nb = chunk(s, n);
        let mut b0 = 0;
        while b0 < n {
            let cnt = nb.min(n - b0);
            let cstride = cnt * plane;
            fill_planes_strided(
                &x[b0 * per_in..(b0 + cnt) * per_in],
                s,
                cnt,
                cstride,
                scratch,
            );
            let cols = Columns {
                plane,
                pw: pl.pw,
                last: (oh - 1) * pl.pw + ow,
                columns: cstride,
                cstride,
                m,
                oh,
                ow,
            };
            let ep = Epilogue {
                act: act_k,
                residual: residual_k.map(|r| &r[b0 * m * p..(b0 + cnt) * m * p]),
            };
            let ys = &mut y[b0 * m * p..(b0 + cnt) * m * p];
            run(a, &places, bias, ep, &cols, scratch, ys);
            b0 += cnt;
        }
    }
    if finite {
        return;
    }
    for b in 0..n {
        let xb = &x[b * per_in..(b + 1) * per_in];
        if sparse::all_finite(xb) {
            continue;
        }
        let cols = &mut scratch[..s.patch() * p];
        im2col(xb, s, cols);
        let yb = &mut y[b * m * p..(b + 1) * m * p];
        sparse::match_dense_on_non_finite(a, bias, cols, p, yb, p, 1);
    }
    let y = &mut y[..n * m * p];
    if let Some(r) = residual {
        for (y, r) in y.iter_mut().zip(r) {
            *y += r;
        }
    }
    activate_in_place(y, act);
}

/// The nonzeros' places: plane row and offset inside the plane.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // read by the AVX-512 kernel only
)]
struct Places<'p> {
    rows: &'p [u32],
    within: &'p [u32],
}

/// The columns of one chunk and where they go.
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(dead_code) // read by the AVX-512 kernel only
)]
struct Columns {
    /// Columns per sample, and per row of a sample.
    plane: usize,
    pw: usize,
    /// Columns of a sample up to its last output.
    last: usize,
    /// Columns in all: the operand's reads stop there (masked).
    columns: usize,
    /// Floats between consecutive plane rows (a channel of one phase).
    cstride: usize,
    /// Output channels, rows and columns.
    m: usize,
    oh: usize,
    ow: usize,
}

fn run(
    a: &Csr,
    places: &Places,
    bias: Option<&[f32]>,
    ep: Epilogue,
    g: &Columns,
    xp: &[f32],
    y: &mut [f32],
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if available() {
        assert!(places.rows.len() == a.values().len() && places.within.len() == a.values().len());
        // SAFETY: AVX-512F is present; the places were built for this geometry (checked by
        // `conv`), so every read `row * cstride + within + q` for a column q below
        // `columns` (the loads past it are masked) lies inside `xp`: the chunk's planes
        // in `scratch` (`SparseConv::scratch`), or the sample's input read in place (one
        // phase, `within` 0); the column mapping writes outputs of `y` only.
        unsafe { avx512::run(a, places, bias, ep, g, xp, y) };
        return;
    }
    let _ = (a, places, bias, ep, g, xp, y);
    panic!("sparse_conv::conv needs AVX-512F (check sparse_conv::available)");
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx512 {
    use core::arch::x86_64::*;

    use super::{Act, Columns, Csr, Epilogue, NV, Places, tile_vectors};

    /// Runs of a vector's lanes that are outputs: (first lane, output offset in channel 0,
    /// count).
    type Runs = ([(usize, usize, usize); 16], usize);

    /// What every channel's tile at one column shares.
    struct Tile<'t> {
        /// The operand's column q0, of plane row 0.
        base: *const f32,
        cstride: usize,
        /// Per vector, its lanes below the operand's last column.
        masks: [u16; NV],
        runs: &'t [Runs; NV],
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        a: &Csr,
        places: &Places,
        bias: Option<&[f32]>,
        ep: Epilogue,
        g: &Columns,
        xp: &[f32],
        y: &mut [f32],
    ) {
        let mut q0 = 0;
        while q0 < g.columns {
            let (b, rem) = (q0 / g.plane, q0 % g.plane);
            if rem >= g.last {
                q0 = (b + 1) * g.plane;
                continue;
            }
            let nv = tile_vectors(q0, b, g.plane, g.last, g.columns);
            let mut runs = [([(0usize, 0usize, 0usize); 16], 0usize); NV];
            let mut masks = [0xffffu16; NV];
            for v in 0..nv {
                runs[v] = lane_runs(g, q0 + 16 * v);
                let left = g.columns.saturating_sub(q0 + 16 * v);
                if left < 16 {
                    masks[v] = ((1u32 << left) - 1) as u16;
                }
            }
            let t = Tile {
                base: xp.as_ptr().wrapping_add(q0),
                cstride: g.cstride,
                masks,
                runs: &runs,
            };
            let masked = q0 + 16 * nv > g.columns;
            // SAFETY: as `super::run` promises.
            unsafe {
                match (nv, masked) {
                    (8, false) => channels::<8, false>(a, places, bias, ep, g, &t, y),
                    (8, true) => channels::<8, true>(a, places, bias, ep, g, &t, y),
                    (7, false) => channels::<7, false>(a, places, bias, ep, g, &t, y),
                    (7, true) => channels::<7, true>(a, places, bias, ep, g, &t, y),
                    (6, false) => channels::<6, false>(a, places, bias, ep, g, &t, y),
                    (6, true) => channels::<6, true>(a, places, bias, ep, g, &t, y),
                    (5, false) => channels::<5, false>(a, places, bias, ep, g, &t, y),
                    (5, true) => channels::<5, true>(a, places, bias, ep, g, &t, y),
                    (4, false) => channels::<4, false>(a, places, bias, ep, g, &t, y),
                    (4, true) => channels::<4, true>(a, places, bias, ep, g, &t, y),
                    (3, false) => channels::<3, false>(a, places, bias, ep, g, &t, y),
                    (3, true) => channels::<3, true>(a, places, bias, ep, g, &t, y),
                    (2, false) => channels::<2, false>(a, places, bias, ep, g, &t, y),
                    (2, true) => channels::<2, true>(a, places, bias, ep, g, &t, y),
                    (_, false) => channels::<1, false>(a, places, bias, ep, g, &t, y),
                    (_, true) => channels::<1, true>(a, places, bias, ep, g, &t, y),
                }
            }
            q0 += 16 * nv;
        }
    }

    /// The output runs of the 16 columns from `qv`.
    fn lane_runs(g: &Columns, qv: usize) -> Runs {
        let mut runs = [(0usize, 0usize, 0usize); 16];
        let mut n = 0;
        let p = g.oh * g.ow;
        let end = (qv + 16).min(g.columns);
        let mut q = qv;
        while q < end {
            let (b, rem) = (q / g.plane, q % g.plane);
            let (i, j) = (rem / g.pw, rem % g.pw);
            let run = (g.pw - j).min(end - q).min(g.plane - rem);
            if i < g.oh && j < g.ow {
                runs[n] = (q - qv, b * g.m * p + i * g.ow + j, run.min(g.ow - j));
                n += 1;
            }
            q += run;
        }
        (runs, n)
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

    /// Vector `v` of the tile at `x` (a nonzero's plane row and tap), masked where `M`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load<const M: bool>(x: *const f32, t: &Tile, v: usize) -> __m512 {
        // SAFETY: the caller's bounds.
        unsafe {
            if M {
                _mm512_maskz_loadu_ps(t.masks[v], x.add(16 * v))
            } else {
                _mm512_loadu_ps(x.add(16 * v))
            }
        }
    }

    /// Every output channel's tile of `V` vectors: its nonzeros walked once, each a
    /// broadcast and `V` fused multiply-adds, then the stores. `M`: the tile crosses the
    /// operand's last column (its loads masked).
    #[target_feature(enable = "avx512f")]
    unsafe fn channels<const V: usize, const M: bool>(
        a: &Csr,
        places: &Places,
        bias: Option<&[f32]>,
        ep: Epilogue,
        g: &Columns,
        t: &Tile,
        y: &mut [f32],
    ) {
        let (row_ptr, values) = (a.row_ptr(), a.values());
        let row = |o: usize| row_ptr[o] as usize..row_ptr[o + 1] as usize;
        let at = |i: usize| {
            t.base
                .wrapping_add(places.rows[i] as usize * t.cstride + places.within[i] as usize)
        };
        let bias_of = |o: usize| _mm512_set1_ps(bias.map_or(0.0, |b| b[o]));
        let mut o = 0;
        // Tiles of 4 vectors or fewer: two channels at a time, their nonzeros walked
        // side by side, so that 2 V sums are in flight (a 7x7 plane is 4 vectors).
        while V <= NV / 2 && o + 1 < g.m {
            let (r0, r1) = (row(o), row(o + 1));
            let mut acc0 = [bias_of(o); V];
            let mut acc1 = [bias_of(o + 1); V];
            let common = r0.len().min(r1.len());
            for i in 0..common {
                let (i0, i1) = (r0.start + i, r1.start + i);
                let (w0, w1) = (_mm512_set1_ps(values[i0]), _mm512_set1_ps(values[i1]));
                let (x0, x1) = (at(i0), at(i1));
                for v in 0..V {
                    // SAFETY: the caller's bounds.
                    let (l0, l1) = unsafe { (load::<M>(x0, t, v), load::<M>(x1, t, v)) };
                    acc0[v] = _mm512_fmadd_ps(w0, l0, acc0[v]);
                    acc1[v] = _mm512_fmadd_ps(w1, l1, acc1[v]);
                }
            }
            // SAFETY: as above.
            unsafe {
                accumulate::<V, M>(&mut acc0, r0.start + common..r0.end, values, &at, t);
                accumulate::<V, M>(&mut acc1, r1.start + common..r1.end, values, &at, t);
                store(&acc0, o, ep, g, t.runs, y);
                store(&acc1, o + 1, ep, g, t.runs, y);
            }
            o += 2;
        }
        while o < g.m {
            let mut acc = [bias_of(o); V];
            // SAFETY: as above.
            unsafe {
                accumulate::<V, M>(&mut acc, row(o), values, &at, t);
                store(&acc, o, ep, g, t.runs, y);
            }
            o += 1;
        }
    }

    /// Adds `w * x` over the nonzeros `nz` (value `values[i]`, operand at `at(i)`) to the
    /// tile's `V` vectors.
    ///
    /// # Safety
    /// AVX-512F; every nonzero's `V` vectors (masked where `M`) lie inside the operand.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn accumulate<const V: usize, const M: bool>(
        acc: &mut [__m512; V],
        nz: core::ops::Range<usize>,
        values: &[f32],
        at: &impl Fn(usize) -> *const f32,
        t: &Tile,
    ) {
        for i in nz {
            let w = _mm512_set1_ps(values[i]);
            let x = at(i);
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: the caller's bounds.
                *acc = _mm512_fmadd_ps(w, unsafe { load::<M>(x, t, v) }, *acc);
            }
        }
    }

    /// Stores channel `o`'s tile: each vector's runs of output lanes, `act(value +
    /// residual)`.
    ///
    /// # Safety
    /// AVX-512F; `runs` are [`lane_runs`] of the tile's vectors for `g`, and `y` (and the
    /// residual) hold the chunk's outputs.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store<const V: usize>(
        acc: &[__m512; V],
        o: usize,
        ep: Epilogue,
        g: &Columns,
        runs: &[Runs; NV],
        y: &mut [f32],
    ) {
        let p = g.oh * g.ow;
        let yp = y.as_mut_ptr();
        for (acc, (runs, nruns)) in acc.iter().zip(runs) {
            for &(lane, at, cnt) in &runs[..*nruns] {
                let mask = (((1u32 << cnt) - 1) << lane) as __mmask16;
                let at = at + o * p;
                let v = match ep.residual {
                    // SAFETY: the residual has the output's layout: the same lanes, read
                    // (the others masked off).
                    Some(r) => _mm512_add_ps(*acc, unsafe {
                        _mm512_maskz_loadu_ps(mask, r.as_ptr().wrapping_add(at).wrapping_sub(lane))
                    }),
                    None => *acc,
                };
                // SAFETY: the written lanes are outputs at..at + cnt of channel o, inside
                // `y` (the column mapping of `lane_runs`).
                unsafe {
                    _mm512_mask_storeu_ps(
                        yp.wrapping_add(at).wrapping_sub(lane),
                        mask,
                        activate(v, ep.act),
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;
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

    /// The definition of a convolution in f64 (every weight, pruned ones included, so
    /// `0 * inf` is NaN as in the dense product), then the residual and the activation.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        a: &Csr,
        bias: &[f32],
        x: &[f32],
        n: usize,
        s: &ConvShape,
        residual: Option<&[f32]>,
        act: Act,
    ) -> Vec<f32> {
        let (m, k) = (a.rows(), s.patch());
        let mut w = vec![0.0f64; m * k];
        for r in 0..m {
            let (c, v) = a.row(r);
            for (&c, &v) in c.iter().zip(v) {
                w[r * k + usize::from(c)] = f64::from(v);
            }
        }
        let (oh, ow) = s.out();
        let mut y = vec![0.0; n * m * oh * ow];
        for b in 0..n {
            for o in 0..m {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut sum = f64::from(bias[o]);
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
                                    let wv = w[o * k + (c * s.k[0] + di) * s.k[1] + dj];
                                    sum += f64::from(xv) * wv;
                                }
                            }
                        }
                        let at = ((b * m + o) * oh + i) * ow + j;
                        y[at] =
                            act.apply((sum + residual.map_or(0.0, |r| f64::from(r[at]))) as f32);
                    }
                }
            }
        }
        y
    }

    fn same(g: f32, e: f32) -> bool {
        (g.is_nan() && e.is_nan()) || g == e || (g - e).abs() <= 1e-5 * (1.0 + e.abs())
    }

    /// Against the definition: strides, dilations, asymmetric padding, 1x1 (copied and read
    /// in place) and 7x7 kernels, planes around the 128-column tiles, batches folded and chunked (the
    /// 40x40 case takes two chunks of 70 samples), a run of fewer samples than planned,
    /// empty output channels, each activation, with and without a residual.
    #[test]
    fn matches_the_definition_on_every_geometry() {
        if !available() {
            return;
        }
        // (c, h, w, m, k, stride, pads, dilation, planned batch, run batch, density)
        #[rustfmt::skip]
        let cases = [
            (3, 9, 9, 8, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0.3),
            (4, 7, 11, 13, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 3, 3, 0.2),
            (2, 10, 6, 5, [5, 2], [2, 3], [2, 0, 1, 3], [2, 1], 4, 2, 0.5),
            (16, 4, 4, 17, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 5, 5, 0.1),
            // 1x1 read in place: at batch 1, and samples of 169 columns (the last tile's
            // loads masked at the input's end).
            (16, 4, 4, 17, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1, 1, 0.2),
            (5, 13, 13, 7, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 3, 3, 0.4),
            (6, 9, 9, 9, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 2, 2, 0.3),
            (5, 2, 2, 24, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 7, 7, 0.1),
            (3, 12, 12, 4, [3, 3], [1, 1], [3, 3, 3, 3], [3, 3], 1, 1, 0.4),
            (3, 16, 16, 8, [7, 7], [2, 2], [3, 3, 3, 3], [1, 1], 2, 2, 0.2),
            (2, 40, 40, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 70, 70, 0.5),
            (2, 40, 40, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 70, 40, 0.5),
            (3, 7, 9, 5, [3, 3], [1, 1], [0, 2, 1, 0], [1, 1], 2, 2, 0.3),
            (8, 24, 24, 6, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1, 1, 0.05),
        ];
        for (i, &(c, h, w, m, k, stride, pads, dilation, planned, n, density)) in
            cases.iter().enumerate()
        {
            let s = ConvShape {
                c,
                h,
                w,
                k,
                stride,
                pads,
                dilation,
            };
            let (rp, ci, vals) = csr(m, s.patch(), density, 11 + i as u32);
            let a = Csr::new(m, s.patch(), &rp, &ci, &vals).expect("valid csr");
            let d = SparseConv::new(&a, &s, planned).expect("runs");
            let (oh, ow) = s.out();
            let out = n * m * oh * ow;
            let (x, b) = (lcg(n * c * h * w, 2 + i as u32), lcg(m, 3));
            let res = lcg(out, 4 + i as u32);
            for act in [Act::None, Act::Relu, Act::Clip(-0.1, 0.2)] {
                for residual in [None, Some(&res[..])] {
                    let want = reference(&a, &b, &x, n, &s, residual, act);
                    let mut sc = vec![f32::NAN; d.scratch()];
                    let mut y = vec![f32::NAN; out + 1];
                    y[out] = 7.0;
                    conv(&a, &d, Some(&b), act, residual, &x, n, &s, &mut sc, &mut y);
                    assert_eq!(y[out], 7.0, "case {i}: wrote past the output");
                    for (at, (&g, &e)) in y.iter().zip(&want).enumerate() {
                        assert!(
                            same(g, e),
                            "case {i} {act:?} residual {}: at {at} {g} vs {e}",
                            residual.is_some()
                        );
                    }
                }
            }
        }
    }

    /// A NaN or an infinity in the input: the outputs are the dense product's (NaN where
    /// a pruned weight faces it, an infinity where only stored weights do), through the
    /// residual and the activations, in one sample of a batch, the others untouched.
    #[test]
    fn non_finite_inputs_give_the_dense_products_outputs() {
        if !available() {
            return;
        }
        let s = ConvShape::square(3, 6, 6, 3, 1, 1);
        let m = 4;
        let (rp, ci, vals) = csr(m, s.patch(), 0.4, 5);
        let a = Csr::new(m, s.patch(), &rp, &ci, &vals).expect("valid csr");
        let d = SparseConv::new(&a, &s, 3).expect("runs");
        let out = 3 * m * 36;
        let res = lcg(out, 9);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = lcg(3 * 3 * 36, 6);
            x[108 + 36 + 2 * 6 + 3] = bad;
            for act in [Act::None, Act::Relu, Act::Clip(0.0, 6.0)] {
                for residual in [None, Some(&res[..])] {
                    let want = reference(&a, &[0.5; 4], &x, 3, &s, residual, act);
                    let mut sc = vec![0.0; d.scratch()];
                    let mut y = vec![0.0; out];
                    conv(
                        &a,
                        &d,
                        Some(&[0.5; 4]),
                        act,
                        residual,
                        &x,
                        3,
                        &s,
                        &mut sc,
                        &mut y,
                    );
                    for (at, (&g, &e)) in y.iter().zip(&want).enumerate() {
                        assert!(same(g, e), "{bad} {act:?}: at {at} {g} vs {e}");
                    }
                    assert!(want.iter().any(|v| !v.is_finite()) || act == Act::Clip(0.0, 6.0));
                }
            }
        }
    }

    /// The cycle estimate grows with the nonzeros and the batch; a 90%-pruned resnet18
    /// layer (256 channels on 14x14) is estimated under the dense modes' best, as measured
    /// (`conv_modes --sparse`: 485 us sparse, 929 us Winograd), and a 35%-dense one on
    /// 28x28 over it (1243 against 727 us).
    #[test]
    fn cycles_scale_with_the_work() {
        let s = ConvShape::square(256, 14, 14, 3, 1, 1);
        let k = s.patch();
        assert!(cycles(&s, 256, k * 256 / 10, 1) < cycles(&s, 256, k * 256 / 5, 1));
        assert!(cycles(&s, 256, k * 256 / 10, 1) < cycles(&s, 256, k * 256 / 10, 8));
        let dense = super::super::implicit_conv::mode_cycles(&s, 256, 1).1;
        assert!(cycles(&s, 256, k * 256 / 10, 1) < dense);
        let s = ConvShape::square(128, 28, 28, 3, 1, 1);
        let dense = super::super::implicit_conv::mode_cycles(&s, 128, 1).1;
        assert!(cycles(&s, 128, s.patch() * 128 * 35 / 100, 1) > dense);
    }
}
