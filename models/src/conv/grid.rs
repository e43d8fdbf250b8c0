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

    /// Reads input pixels back out of a phase buffer into `plane`.
    #[inline(always)]
    fn gather(&self, phases: &[f32], plane: &mut [f32]) {
        let g = &self.geo;
        if g.stride[1] == 1 {
            for y in 0..g.h {
                let at = self.phase_index(y, 0);
                plane[y * g.w..][..g.w].copy_from_slice(&phases[at..at + g.w]);
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

    /// `y = ep(conv(x, w) + b)`.
    #[inline(always)]
    pub fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>, ep: Epilogue<'_>) -> Vec<f32> {
        let g = &self.geo;
        let (hw, p, kk, n) = (g.hw(), g.p(), g.kh * g.kw, self.grid_len());
        let mut y = vec![0.0f32; g.sizes().2];
        // Padding is written once: scatter only overwrites the image's pixels.
        let mut phases = vec![0.0f32; self.phases_len()];
        let mut acc = vec![0.0f32; n];
        for s in 0..g.batch {
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
                let out = &mut y[at..][..p];
                for (oy, (line, row)) in out
                    .chunks_exact_mut(g.ow)
                    .zip(acc.chunks_exact(self.wq))
                    .enumerate()
                {
                    ep.write(line, row, 0.0, at + oy * g.ow);
                }
            }
        }
        y
    }

    /// The gradients `(dx, dw)` of `sum(dy * conv(x, w))`, each only when asked for.
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
        let (hw, p, kk, n) = (g.hw(), g.p(), g.kh * g.kw, self.grid_len());
        let (x_len, w_len, _) = g.sizes();
        let mut dx = want_dx.then(|| vec![0.0f32; x_len]);
        let mut dw = want_dw.then(|| vec![0.0f32; w_len]);
        let mut phases = vec![0.0f32; self.phases_len()];
        let mut dphases = vec![0.0f32; self.phases_len()];
        // dY on the grid; the extra columns stay zero, so they add nothing below.
        let mut grad = vec![0.0f32; n];
        for s in 0..g.batch {
            for c in 0..g.c_in {
                let src = &dy[(s * g.c_out + c) * p..][..p];
                for (row, line) in grad.chunks_exact_mut(self.wq).zip(src.chunks_exact(g.ow)) {
                    row[..g.ow].copy_from_slice(line);
                }
                let plane = (s * g.c_in + c) * hw;
                if let Some(dx) = dx.as_mut() {
                    dphases.fill(0.0);
                    for (t, &wt) in w[c * kk..][..kk].iter().enumerate() {
                        let dst = &mut dphases[self.tap_offset(t)..][..n];
                        for (d, v) in dst.iter_mut().zip(&grad) {
                            *d += wt * v;
                        }
                    }
                    self.gather(&dphases, &mut dx[plane..][..hw]);
                }
                if let Some(dw) = dw.as_mut() {
                    self.scatter(&x[plane..][..hw], &mut phases);
                    for (t, d) in dw[c * kk..][..kk].iter_mut().enumerate() {
                        *d += dot(&grad, &phases[self.tap_offset(t)..][..n]);
                    }
                }
            }
        }
        (dx, dw)
    }
}
