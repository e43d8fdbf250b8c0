//! The phase-plane layout of the undilated depthwise kernels ([`super::depthwise`]).
//!
//! A plane `x [h, w]` zero-padded to `[hp, wp]` and split by the stride `(sy, sx)` into
//! phases `P_ab[u, v] = xpad[u sy + a, v sx + b]` of `[hq, wq]` (`hq = ceil(hp / sy)`).
//! Tap `(i, j)` of output `(oy, ox)` reads `xpad[oy sy + i, ox sx + j]`, which is
//! `P_{i mod sy, j mod sx}[oy + i / sy, ox + j / sx]`: on an output grid `[oh, wq]`
//! (index `q = oy wq + ox`) that is the phase at `q + (i / sy) wq + j / sx`, one offset
//! for the whole plane. Valid outputs (`ox < ow`) never read past their phase row, since
//! `(ow - 1) sx + kw <= wp`; the grid's extra columns read garbage and are dropped (or,
//! in the backward pass, carry zeros).

use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::parts;
use super::simd::vectorized;

/// The layout of one layer; `None` from [`Grid::new`] for dilated layers.
pub struct Grid {
    geo: Geometry,
    /// Phase plane size `[hq, wq]`.
    hq: usize,
    wq: usize,
}

/// Sums `a[q] * b[q]` in 16 interleaved partial sums (vectorisable).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl Grid {
    /// The layout of a depthwise `geo`, when undilated.
    pub fn new(geo: &Geometry) -> Option<Self> {
        if geo.dil != [1, 1] {
            return None;
        }
        let [sy, sx] = geo.stride;
        let (hp, wp) = (geo.h + 2 * geo.pad[0], geo.w + 2 * geo.pad[1]);
        Some(Self {
            geo: *geo,
            hq: hp.div_ceil(sy),
            wq: wp.div_ceil(sx),
        })
    }

    /// Floats of all phases, plus the slack the grid's last garbage columns read.
    fn phases_len(&self) -> usize {
        let [sy, sx] = self.geo.stride;
        sy * sx * self.hq * self.wq + self.geo.kw / sx + 1
    }

    /// Output grid size `oh wq`.
    fn grid_len(&self) -> usize {
        self.geo.oh * self.wq
    }

    /// Index in the phase buffer of input pixel `(y, x)`.
    #[inline(always)]
    fn phase_index(&self, y: usize, x: usize) -> usize {
        let [sy, sx] = self.geo.stride;
        let (yy, xx) = (y + self.geo.pad[0], x + self.geo.pad[1]);
        let phase = (yy % sy) * sx + xx % sx;
        (phase * self.hq + yy / sy) * self.wq + xx / sx
    }

    /// Start, in the phase buffer, of tap `t`'s reads for grid index 0.
    #[inline(always)]
    fn tap_offset(&self, t: usize) -> usize {
        let [sy, sx] = self.geo.stride;
        let (i, j) = (t / self.geo.kw, t % self.geo.kw);
        let phase = (i % sy) * sx + j % sx;
        (phase * self.hq + i / sy) * self.wq + j / sx
    }

    /// Writes `plane` into the zeroed-or-padded buffer `phases` (padding stays as it is).
    #[inline(always)]
    fn scatter(&self, plane: &[f32], phases: &mut [f32]) {
        let g = &self.geo;
        if g.stride[1] == 1 {
            for y in 0..g.h {
                let at = self.phase_index(y, 0);
                phases[at..at + g.w].copy_from_slice(&plane[y * g.w..][..g.w]);
            }
        } else if g.stride[1] == 2 && g.w >= 2 {
            for y in 0..g.h {
                let row = &plane[y * g.w..][..g.w];
                let (even, odd) = self.column_phases(y, phases);
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
                    *e = pair[0];
                    *o = pair[1];
                }
                if g.w % 2 == 1 {
                    even[g.w / 2] = row[g.w - 1];
                }
            }
        } else {
            for y in 0..g.h {
                let row = &plane[y * g.w..][..g.w];
                for b in 0..g.stride[1] {
                    let (x0, at) = self.phase_start(y, b);
                    let dst = &mut phases[at..];
                    for (d, v) in dst
                        .iter_mut()
                        .zip(row[x0.min(g.w)..].iter().step_by(g.stride[1]))
                    {
                        *d = *v;
                    }
                }
            }
        }
    }

    /// For input row `y` and column phase `b`: the first input column `x0` of that phase
    /// and its index in the phase buffer (the phase's later columns follow contiguously).
    #[inline(always)]
    fn phase_start(&self, y: usize, b: usize) -> (usize, usize) {
        let sx = self.geo.stride[1];
        let x0 = (b + sx - self.geo.pad[1] % sx) % sx;
        (x0, self.phase_index(y, x0.min(self.geo.w.max(1) - 1)))
    }

    /// For stride 2 along columns: where input row `y`'s even columns (`0, 2, ...`, of
    /// which there are `ceil(w / 2)`) and odd columns (`floor(w / 2)`) lie in the phase
    /// buffer, as two disjoint slices of those lengths. Splitting a row into the two at
    /// once is one interleaved load per pair of vectors; the general path's strided
    /// copy, one phase at a time, was scalar.
    #[inline(always)]
    fn column_phases<'p>(&self, y: usize, phases: &'p mut [f32]) -> (&'p mut [f32], &'p mut [f32]) {
        let w = self.geo.w;
        let (at_even, at_odd) = self.even_odd_starts(y);
        // The two starts are in different phase planes, so the slices do not overlap.
        if at_even < at_odd {
            let (lo, hi) = phases.split_at_mut(at_odd);
            (&mut lo[at_even..][..w.div_ceil(2)], &mut hi[..w / 2])
        } else {
            let (lo, hi) = phases.split_at_mut(at_even);
            (&mut hi[..w.div_ceil(2)], &mut lo[at_odd..][..w / 2])
        }
    }

    /// [`Self::column_phases`], read-only.
    #[inline(always)]
    fn column_phases_ref<'p>(&self, y: usize, phases: &'p [f32]) -> (&'p [f32], &'p [f32]) {
        let w = self.geo.w;
        let (at_even, at_odd) = self.even_odd_starts(y);
        (
            &phases[at_even..][..w.div_ceil(2)],
            &phases[at_odd..][..w / 2],
        )
    }

    /// The phase-buffer indices of input row `y`'s columns 0 and 1 (stride 2, `w >= 2`).
    #[inline(always)]
    fn even_odd_starts(&self, y: usize) -> (usize, usize) {
        (self.phase_index(y, 0), self.phase_index(y, 1))
    }

    /// Reads input pixels back out of a phase buffer into `plane`.
    #[inline(always)]
    fn gather(&self, phases: &[f32], plane: &mut [f32]) {
        let g = &self.geo;
        if g.stride[1] == 1 {
            for y in 0..g.h {
                let at = self.phase_index(y, 0);
                plane[y * g.w..][..g.w].copy_from_slice(&phases[at..at + g.w]);
            }
        } else if g.stride[1] == 2 && g.w >= 2 {
            for y in 0..g.h {
                let row = &mut plane[y * g.w..][..g.w];
                let (even, odd) = self.column_phases_ref(y, phases);
                for ((e, o), pair) in even.iter().zip(odd).zip(row.chunks_exact_mut(2)) {
                    pair[0] = *e;
                    pair[1] = *o;
                }
                if g.w % 2 == 1 {
                    row[g.w - 1] = even[g.w / 2];
                }
            }
        } else {
            for y in 0..g.h {
                let row = &mut plane[y * g.w..][..g.w];
                for b in 0..g.stride[1] {
                    let (x0, at) = self.phase_start(y, b);
                    let src = &phases[at..];
                    for (d, v) in row[x0.min(g.w)..].iter_mut().step_by(g.stride[1]).zip(src) {
                        *d = *v;
                    }
                }
            }
        }
    }

    /// `y = ep(conv(x, w) + b)`, the samples split over rayon's threads.
    #[inline(always)]
    pub fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>, ep: Epilogue<'_>) -> Vec<f32> {
        let g = &self.geo;
        let mut y = vec![0.0f32; g.sizes().2];
        parts::split(&mut y, g.c_out * g.p(), |s0, ys| {
            vectorized(
                #[inline(always)]
                || self.forward_part(s0, x, w, b, ep, ys),
            )
        });
        y
    }

    /// [`Self::forward`] of the samples from `s0` whose outputs are `ys`.
    #[inline(always)]
    fn forward_part(
        &self,
        s0: usize,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        ep: Epilogue<'_>,
        ys: &mut [f32],
    ) {
        let g = &self.geo;
        let (hw, p, kk, n) = (g.hw(), g.p(), g.kh * g.kw, self.grid_len());
        // Padding is written once: scatter only overwrites the image's pixels.
        let mut phases = vec![0.0f32; self.phases_len()];
        let mut acc = vec![0.0f32; n];
        for (i, ysample) in ys.chunks_exact_mut(g.c_out * p).enumerate() {
            let s = s0 + i;
            for c in 0..g.c_in {
                self.scatter(&x[(s * g.c_in + c) * hw..][..hw], &mut phases);
                acc.fill(b.map_or(0.0, |b| b[c]));
                for (t, &wt) in w[c * kk..][..kk].iter().enumerate() {
                    let src = &phases[self.tap_offset(t)..][..n];
                    for (a, v) in acc.iter_mut().zip(src) {
                        *a += wt * v;
                    }
                }
                let at = (s * g.c_out + c) * p;
                let out = &mut ysample[c * p..][..p];
                for (oy, (line, row)) in out
                    .chunks_exact_mut(g.ow)
                    .zip(acc.chunks_exact(self.wq))
                    .enumerate()
                {
                    ep.write(line, row, 0.0, at + oy * g.ow);
                }
            }
        }
    }

    /// The gradients `(dx, dw)` of `sum(dy * conv(x, w))`, each only when asked for, the
    /// samples split over rayon's threads (each part its own partial `dw`).
    #[inline(always)]
    pub fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        want_dx: bool,
        want_dw: bool,
    ) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
        let g = &self.geo;
        let (x_len, w_len, _) = g.sizes();
        let mut dx = want_dx.then(|| vec![0.0f32; x_len]);
        let acc_len = if want_dw { w_len } else { 0 };
        let item = g.c_in * g.hw();
        let dw = parts::split_sum(
            g.batch,
            item,
            dx.as_deref_mut(),
            acc_len,
            |s0, count, dxs, dws| {
                vectorized(
                    #[inline(always)]
                    || self.backward_part(s0, count, x, w, dy, dxs, want_dw.then_some(dws)),
                )
            },
        );
        (dx, want_dw.then_some(dw))
    }

    /// [`Self::backward`] of `count` samples from `s0`: their input gradient into `dx`
    /// (when asked for), their weight gradient added to `dw` (when asked for).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward_part(
        &self,
        s0: usize,
        count: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        mut dx: Option<&mut [f32]>,
        mut dw: Option<&mut [f32]>,
    ) {
        let g = &self.geo;
        let (hw, p, kk, n) = (g.hw(), g.p(), g.kh * g.kw, self.grid_len());
        let mut phases = vec![0.0f32; self.phases_len()];
        let mut dphases = vec![0.0f32; self.phases_len()];
        // dY on the grid; the extra columns stay zero, so they add nothing below.
        let mut grad = vec![0.0f32; n];
        for i in 0..count {
            let s = s0 + i;
            for c in 0..g.c_in {
                let src = &dy[(s * g.c_out + c) * p..][..p];
                for (row, line) in grad.chunks_exact_mut(self.wq).zip(src.chunks_exact(g.ow)) {
                    row[..g.ow].copy_from_slice(line);
                }
                if let Some(dx) = dx.as_deref_mut() {
                    dphases.fill(0.0);
                    for (t, &wt) in w[c * kk..][..kk].iter().enumerate() {
                        let dst = &mut dphases[self.tap_offset(t)..][..n];
                        for (d, v) in dst.iter_mut().zip(&grad) {
                            *d += wt * v;
                        }
                    }
                    self.gather(&dphases, &mut dx[(i * g.c_in + c) * hw..][..hw]);
                }
                if let Some(dw) = dw.as_deref_mut() {
                    self.scatter(&x[(s * g.c_in + c) * hw..][..hw], &mut phases);
                    for (t, d) in dw[c * kk..][..kk].iter_mut().enumerate() {
                        *d += dot(&grad, &phases[self.tap_offset(t)..][..n]);
                    }
                }
            }
        }
    }
}
