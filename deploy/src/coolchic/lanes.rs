//! The codec's networks evaluated in SIMD lanes, bit for bit as [`Mlp::forward`] does.
//!
//! Why this is exact: [`Mlp::forward`] computes every output as `bias`, then `+ w * x`
//! for each input in order, in `f32` with no fused multiply-add (Rust never contracts
//! float expressions). Vectorising *within* one output's sum would reorder it and change
//! the bits; vectorising *across* independent sums does not. So:
//! - [`PackedMlp::forward_one`] (the ARM, once per latent, sequential because each latent's
//!   context holds the one decoded just before it) runs 8 outputs side by side, on a
//!   transposed `[inputs][outputs]` weight padded to lanes of 8 and held in registers;
//! - [`PackedMlp::forward_batch`] (the synthesis, independent per pixel) runs [`BATCH`]
//!   pixels side by side, each lane the same sequence of operations as the reference.
//!
//! Every lane performs exactly the reference's additions and multiplications in the
//! reference's order, so host and microcontroller (where the lanes are scalar code) give
//! the same bits; `tests` check it against [`Mlp::forward`]. With `std` on x86-64 the
//! loops are also compiled for AVX2 and picked at run time (AVX2 only, no FMA: a fused
//! multiply-add rounds once and would change the bits).

use alloc::vec;
use alloc::vec::Vec;

use super::Mlp;

/// Lanes of one vector: 8 `f32` (an AVX2 register; two SSE registers; scalar on a
/// Cortex-M4).
pub const LANES: usize = 8;
/// Pixels evaluated side by side by [`PackedMlp::forward_batch`]: 8 vectors of
/// accumulators, which fit the 16 AVX2 registers with room for the operands.
pub const BATCH: usize = 64;

type Lane = [f32; LANES];

/// One layer: the reference's weights transposed and padded for both evaluations.
#[derive(Clone, Debug)]
struct PackedLayer {
    inputs: usize,
    outputs: usize,
    /// `ceil(outputs / LANES)`.
    groups: usize,
    /// `[inputs][groups]` lanes: `wt[i * groups + g][k]` is `w[g * LANES + k][i]` (zero
    /// past `outputs`).
    wt: Vec<Lane>,
    /// `groups` lanes of biases (zero past `outputs`).
    bias: Vec<Lane>,
    /// The reference's row-major `[outputs][inputs]` weights (for the batch).
    w: Vec<f32>,
    /// The reference's biases.
    b: Vec<f32>,
}

/// An [`Mlp`] laid out for lane-parallel evaluation. Same results as the [`Mlp`].
#[derive(Clone, Debug)]
pub struct PackedMlp {
    layers: Vec<PackedLayer>,
    /// Widest layer, rounded up to whole lanes.
    width: usize,
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    avx2: bool,
}

/// Scratch for [`PackedMlp::forward_one`] and [`PackedMlp::forward_batch`].
#[derive(Clone, Debug)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl PackedMlp {
    /// Packs `mlp` (which must have at least one layer).
    pub fn new(mlp: &Mlp) -> Self {
        let layers: Vec<PackedLayer> = mlp
            .layers
            .iter()
            .map(|l| {
                let groups = l.outputs.div_ceil(LANES);
                let mut wt = vec![[0.0; LANES]; l.inputs * groups];
                let mut bias = vec![[0.0; LANES]; groups];
                for o in 0..l.outputs {
                    bias[o / LANES][o % LANES] = l.bias[o];
                    for i in 0..l.inputs {
                        wt[i * groups + o / LANES][o % LANES] = l.weight[o * l.inputs + i];
                    }
                }
                PackedLayer {
                    inputs: l.inputs,
                    outputs: l.outputs,
                    groups,
                    wt,
                    bias,
                    w: l.weight.clone(),
                    b: l.bias.clone(),
                }
            })
            .collect();
        let width = layers
            .iter()
            .map(|l| l.inputs.max(l.groups * LANES))
            .max()
            .unwrap_or(0);
        Self {
            layers,
            width,
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            avx2: std::is_x86_feature_detected!("avx2"),
        }
    }

    /// Inputs of the first layer.
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// Outputs of the last layer.
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Scratch big enough for both evaluations.
    pub fn scratch(&self) -> Scratch {
        let n = self.width.max(1) * BATCH;
        Scratch {
            a: vec![0.0; n],
            b: vec![0.0; n],
        }
    }

    /// The network on one input `x` ([`PackedMlp::inputs`] values); the outputs are the
    /// first [`PackedMlp::outputs`] values of the result.
    pub fn forward_one<'s>(&self, x: &[f32], s: &'s mut Scratch) -> &'s [f32] {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 (checked in `new`).
            return unsafe { avx2::forward_one(self, x, s) };
        }
        forward_one_body(self, x, s)
    }

    /// The network on [`BATCH`] inputs side by side: input `i` of position `p` is
    /// `x[i * stride + p]` (`stride >= BATCH`: e.g. one plane per input), the result
    /// `[outputs][BATCH]`.
    ///
    /// # Panics
    /// When `x` is shorter than `(inputs - 1) * stride + BATCH` or `stride < BATCH`.
    pub fn forward_batch<'s>(&self, x: &[f32], stride: usize, s: &'s mut Scratch) -> &'s [f32] {
        assert!(stride >= BATCH && x.len() >= (self.inputs().max(1) - 1) * stride + BATCH);
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 (checked in `new`).
            return unsafe { avx2::forward_batch(self, x, stride, s) };
        }
        forward_batch_body(self, x, stride, s)
    }
}

/// The reference's ReLU (`acc < 0 -> 0`; NaN and -0 pass unchanged), as it is written there.
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// `acc = bias; acc += wt[i] * x[i]` for every input, `G` lanes of outputs held in
/// registers (a constant `G` lets the compiler keep them there).
#[inline(always)]
fn layer_one<const G: usize>(l: &PackedLayer, x: &[f32], relu_out: bool, out: &mut [f32]) {
    let mut acc = [[0.0f32; LANES]; G];
    acc.copy_from_slice(&l.bias[..G]);
    for (w, &xi) in l.wt.chunks_exact(G).zip(&x[..l.inputs]) {
        for g in 0..G {
            for k in 0..LANES {
                acc[g][k] += w[g][k] * xi;
            }
        }
    }
    for (o, a) in out.chunks_exact_mut(LANES).zip(&acc) {
        for k in 0..LANES {
            o[k] = if relu_out { relu(a[k]) } else { a[k] };
        }
    }
}

/// [`layer_one`] for any number of lanes (wide layers: the accumulators stay in memory).
#[inline(always)]
fn layer_one_any(l: &PackedLayer, x: &[f32], relu_out: bool, out: &mut [f32]) {
    let g = l.groups;
    let acc = &mut out[..g * LANES];
    for (a, b) in acc.chunks_exact_mut(LANES).zip(&l.bias) {
        a.copy_from_slice(b);
    }
    for (w, &xi) in l.wt.chunks_exact(g).zip(&x[..l.inputs]) {
        for (a, wg) in acc.chunks_exact_mut(LANES).zip(w) {
            for k in 0..LANES {
                a[k] += wg[k] * xi;
            }
        }
    }
    if relu_out {
        acc.iter_mut().for_each(|v| *v = relu(*v));
    }
}

#[inline(always)]
fn forward_one_body<'s>(m: &PackedMlp, x: &[f32], s: &'s mut Scratch) -> &'s [f32] {
    let (mut src, mut dst) = (&mut s.a[..m.width], &mut s.b[..m.width]);
    let last = m.layers.len() - 1;
    for (k, l) in m.layers.iter().enumerate() {
        let r = k < last;
        // The first layer reads the input where it is.
        let input: &[f32] = if k == 0 { x } else { src };
        match l.groups {
            1 => layer_one::<1>(l, input, r, dst),
            2 => layer_one::<2>(l, input, r, dst),
            3 => layer_one::<3>(l, input, r, dst),
            4 => layer_one::<4>(l, input, r, dst),
            _ => layer_one_any(l, input, r, dst),
        }
        core::mem::swap(&mut src, &mut dst);
    }
    &src[..m.outputs()]
}

#[inline(always)]
fn forward_batch_body<'s>(
    m: &PackedMlp,
    x: &[f32],
    stride: usize,
    s: &'s mut Scratch,
) -> &'s [f32] {
    let n = m.width * BATCH;
    let (mut src, mut dst) = (&mut s.a[..n], &mut s.b[..n]);
    let last = m.layers.len() - 1;
    for (k, l) in m.layers.iter().enumerate() {
        let r = k < last;
        // The first layer reads the input where it is.
        let (input, step): (&[f32], usize) = if k == 0 { (x, stride) } else { (src, BATCH) };
        for (o, (row, &bias)) in l.w.chunks_exact(l.inputs).zip(&l.b).enumerate() {
            let mut acc = [bias; BATCH];
            for (i, &w) in row.iter().enumerate() {
                let xi = &input[i * step..i * step + BATCH];
                for p in 0..BATCH {
                    acc[p] += w * xi[p];
                }
            }
            let out = &mut dst[o * BATCH..(o + 1) * BATCH];
            for p in 0..BATCH {
                out[p] = if r { relu(acc[p]) } else { acc[p] };
            }
        }
        core::mem::swap(&mut src, &mut dst);
    }
    &src[..m.outputs() * BATCH]
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod avx2 {
    //! The same arithmetic with AVX2 intrinsics (separate multiply and add, no FMA: see the
    //! module's documentation). The one-position loop is written out because the compiler
    //! does not vectorise its accumulators across lanes by itself (measured: scalar
    //! `vmulss`/`vaddss` with spills).

    use core::arch::x86_64::{
        __m256, _CMP_LT_OQ, _mm256_add_ps, _mm256_andnot_ps, _mm256_cmp_ps, _mm256_loadu_ps,
        _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::{BATCH, LANES, PackedLayer, PackedMlp, Scratch, layer_one_any};

    /// `v < 0 ? 0 : v` per lane (NaN and -0 pass, as in the reference).
    #[target_feature(enable = "avx2")]
    fn relu(v: __m256) -> __m256 {
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
        _mm256_andnot_ps(neg, v)
    }

    #[target_feature(enable = "avx2")]
    fn layer<const G: usize>(l: &PackedLayer, x: &[f32], relu_out: bool, out: &mut [f32]) {
        assert!(l.groups == G && l.wt.len() == l.inputs * G && x.len() >= l.inputs);
        assert!(out.len() >= G * LANES);
        // SAFETY: every load reads one whole `[f32; 8]` lane of `l.bias` / `l.wt`
        // (lengths checked above), every store 8 floats of `out` (long enough, above).
        unsafe {
            let mut acc = [_mm256_setzero_ps(); G];
            for (a, b) in acc.iter_mut().zip(&l.bias) {
                *a = _mm256_loadu_ps(b.as_ptr());
            }
            for (i, &xi) in x[..l.inputs].iter().enumerate() {
                let xb = _mm256_set1_ps(xi);
                let w = l.wt.as_ptr().add(i * G);
                for (g, a) in acc.iter_mut().enumerate() {
                    *a =
                        _mm256_add_ps(*a, _mm256_mul_ps(_mm256_loadu_ps((*w.add(g)).as_ptr()), xb));
                }
            }
            for (g, a) in acc.iter().enumerate() {
                let v = if relu_out { relu(*a) } else { *a };
                _mm256_storeu_ps(out.as_mut_ptr().add(g * LANES), v);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn forward_one<'s>(m: &PackedMlp, x: &[f32], s: &'s mut Scratch) -> &'s [f32] {
        let (mut src, mut dst) = (&mut s.a[..m.width], &mut s.b[..m.width]);
        let last = m.layers.len() - 1;
        for (k, l) in m.layers.iter().enumerate() {
            let r = k < last;
            let input: &[f32] = if k == 0 { x } else { src };
            match l.groups {
                1 => layer::<1>(l, input, r, dst),
                2 => layer::<2>(l, input, r, dst),
                3 => layer::<3>(l, input, r, dst),
                4 => layer::<4>(l, input, r, dst),
                _ => layer_one_any(l, input, r, dst),
            }
            core::mem::swap(&mut src, &mut dst);
        }
        &src[..m.outputs()]
    }

    /// One layer on [`BATCH`] positions: per output, 8 vectors of accumulators held in
    /// registers across the whole input loop (the compiler's version of the portable loop
    /// kept them on the stack: measured, a store-forwarding round trip per add).
    #[target_feature(enable = "avx2")]
    fn batch_layer(l: &PackedLayer, input: &[f32], step: usize, relu_out: bool, out: &mut [f32]) {
        const V: usize = BATCH / LANES;
        assert!(l.inputs == 0 || input.len() >= (l.inputs - 1) * step + BATCH);
        assert!(out.len() >= l.outputs * BATCH && l.w.len() == l.inputs * l.outputs);
        // SAFETY: input `i`'s loads read `input[i * step..i * step + BATCH]` (in bounds,
        // checked above), output `o`'s stores `out[o * BATCH..(o + 1) * BATCH]` (likewise).
        unsafe {
            for (o, (row, &bias)) in l.w.chunks_exact(l.inputs.max(1)).zip(&l.b).enumerate() {
                let mut acc = [_mm256_set1_ps(bias); V];
                for (i, &w) in row.iter().enumerate().take(l.inputs) {
                    let wb = _mm256_set1_ps(w);
                    let x = input.as_ptr().add(i * step);
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a =
                            _mm256_add_ps(*a, _mm256_mul_ps(wb, _mm256_loadu_ps(x.add(k * LANES))));
                    }
                }
                let y = out.as_mut_ptr().add(o * BATCH);
                for (k, a) in acc.iter().enumerate() {
                    let v = if relu_out { relu(*a) } else { *a };
                    _mm256_storeu_ps(y.add(k * LANES), v);
                }
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn forward_batch<'s>(
        m: &PackedMlp,
        x: &[f32],
        stride: usize,
        s: &'s mut Scratch,
    ) -> &'s [f32] {
        let n = m.width * BATCH;
        let (mut src, mut dst) = (&mut s.a[..n], &mut s.b[..n]);
        let last = m.layers.len() - 1;
        for (k, l) in m.layers.iter().enumerate() {
            let (input, step): (&[f32], usize) = if k == 0 { (x, stride) } else { (src, BATCH) };
            batch_layer(l, input, step, k < last, dst);
            core::mem::swap(&mut src, &mut dst);
        }
        &src[..m.outputs() * BATCH]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights and inputs of several magnitudes, many sums that round differently in
    /// another order (and some negative, for the ReLU).
    fn random_mlp(inputs: usize, hidden: &[usize], outputs: usize, seed: u32) -> Mlp {
        let mut m = Mlp::zeros(inputs, hidden, outputs);
        let mut s = seed;
        for l in &mut m.layers {
            for v in l.weight.iter_mut().chain(l.bias.iter_mut()) {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *v = ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
                    * [1.0, 3.7, 0.013][(s % 3) as usize];
            }
        }
        m
    }

    fn inputs(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) % 127) as f32 - 63.0 + (s % 7) as f32 / 7.0
            })
            .collect()
    }

    const SHAPES: [(usize, &[usize], usize); 6] = [
        (12, &[24, 24], 2),
        (7, &[32, 32], 3),
        (4, &[], 2),
        (6, &[8], 3),
        (12, &[40, 128], 2),
        (3, &[5, 9, 17, 33], 3),
    ];

    #[test]
    fn one_position_gives_the_reference_bits() {
        for (seed, &(i, h, o)) in SHAPES.iter().enumerate() {
            let m = random_mlp(i, h, o, seed as u32 + 1);
            let p = PackedMlp::new(&m);
            let mut s = p.scratch();
            let (mut a, mut b) = (vec![0.0; m.max_width()], vec![0.0; m.max_width()]);
            for t in 0..200 {
                let x = inputs(i, 1000 * seed as u32 + t);
                let want: Vec<u32> = m
                    .forward(&x, &mut a, &mut b)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let got: Vec<u32> = p
                    .forward_one(&x, &mut s)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got, want, "shape {i}->{h:?}->{o}, input {t}");
            }
        }
    }

    #[test]
    fn a_batch_gives_the_reference_bits_for_every_position() {
        for (seed, &(i, h, o)) in SHAPES.iter().enumerate() {
            let m = random_mlp(i, h, o, seed as u32 + 7);
            let p = PackedMlp::new(&m);
            let mut s = p.scratch();
            let xs = inputs(i * BATCH, 77 + seed as u32);
            // Position-major for the reference, input-major for the batch.
            let mut batch = vec![0.0; i * BATCH];
            for q in 0..BATCH {
                for k in 0..i {
                    batch[k * BATCH + q] = xs[q * i + k];
                }
            }
            let got = p.forward_batch(&batch, BATCH, &mut s).to_vec();
            let (mut a, mut b) = (vec![0.0; m.max_width()], vec![0.0; m.max_width()]);
            for q in 0..BATCH {
                let want = m.forward(&xs[q * i..(q + 1) * i], &mut a, &mut b);
                for (c, w) in want.iter().enumerate() {
                    assert_eq!(
                        got[c * BATCH + q].to_bits(),
                        w.to_bits(),
                        "{i}->{h:?}->{o} at {q}"
                    );
                }
            }
        }
    }
}
