//! Depthwise convolution (one input and one output channel per group, MobileNet's 3x3
//! layers; Howard et al. 2017) as direct loops. Through im2col it would be `groups` GEMMs
//! with `M = 1`, all dispatch and no reuse.
//!
//! Undilated layers ([`super::grid`]): each (sample, channel) plane is zero-padded and
//! split into `stride^2` phase planes, so that every kernel tap reads one phase at a fixed
//! offset; on an output grid as wide as a phase row, a tap is then one long `acc[q] += w
//! x[q + off]` over the whole plane (the columns past the output width are discarded).
//! The first version looped per tap and output row, rows of 7-28 floats: that made the
//! depthwise layers a third of a MobileNet step. Dilated layers keep the row loops below.

use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::grid::Grid;

/// For each kernel tap `(i, j)` of one plane: the valid output rows and columns and the
/// input offset of the first valid column, and `f(tap, oy, ox_lo, ox_hi, iy, ix0)`.
#[inline(always)]
fn taps(geo: &Geometry, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
    let [sy, sx] = geo.stride;
    let [py, px] = geo.pad;
    let [dy, dx] = geo.dil;
    for i in 0..geo.kh {
        let (oy_lo, oy_hi) = Geometry::valid(geo.h, geo.oh, sy, i, dy, py);
        for j in 0..geo.kw {
            let (ox_lo, ox_hi) = Geometry::valid(geo.w, geo.ow, sx, j, dx, px);
            if ox_lo >= ox_hi {
                continue;
            }
            let ix0 = ox_lo * sx + j * dx - px;
            for oy in oy_lo..oy_hi {
                f(i * geo.kw + j, oy, ox_lo, ox_hi, oy * sy + i * dy - py, ix0);
            }
        }
    }
}

/// `y = ep(conv(x, w) + b)`.
#[inline(always)]
pub fn forward(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    ep: Epilogue<'_>,
) -> Vec<f32> {
    if let Some(grid) = Grid::new(geo) {
        return grid.forward(x, w, b, ep);
    }
    let (hw, p, kk, sx) = (geo.hw(), geo.p(), geo.kh * geo.kw, geo.stride[1]);
    let mut y = vec![0.0f32; geo.sizes().2];
    for n in 0..geo.batch {
        for c in 0..geo.c_in {
            let plane = &x[(n * geo.c_in + c) * hw..][..hw];
            let out = &mut y[(n * geo.c_out + c) * p..][..p];
            out.fill(b.map_or(0.0, |b| b[c]));
            let wc = &w[c * kk..][..kk];
            taps(geo, |t, oy, lo, hi, iy, ix0| {
                let (wt, line) = (wc[t], &mut out[oy * geo.ow..][lo..hi]);
                let src = &plane[iy * geo.w + ix0..];
                if sx == 1 {
                    for (d, s) in line.iter_mut().zip(src) {
                        *d += wt * s;
                    }
                } else {
                    for (k, d) in line.iter_mut().enumerate() {
                        *d += wt * src[k * sx];
                    }
                }
            });
            ep.apply(out, 0.0, (n * geo.c_out + c) * p);
        }
    }
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
    if let Some(grid) = Grid::new(geo) {
        return grid.backward(x, w, dy, want_dx, want_dw);
    }
    let (hw, p, kk, sx) = (geo.hw(), geo.p(), geo.kh * geo.kw, geo.stride[1]);
    let (x_len, w_len, _) = geo.sizes();
    let mut dx = want_dx.then(|| vec![0.0f32; x_len]);
    let mut dw = want_dw.then(|| vec![0.0f32; w_len]);
    for n in 0..geo.batch {
        for c in 0..geo.c_in {
            let plane = (n * geo.c_in + c) * hw;
            let grad = &dy[(n * geo.c_out + c) * p..][..p];
            if let Some(dx) = dx.as_mut() {
                let wc = &w[c * kk..][..kk];
                let dplane = &mut dx[plane..][..hw];
                taps(geo, |t, oy, lo, hi, iy, ix0| {
                    let (wt, line) = (wc[t], &grad[oy * geo.ow..][lo..hi]);
                    let dst = &mut dplane[iy * geo.w + ix0..];
                    if sx == 1 {
                        for (d, s) in dst.iter_mut().zip(line) {
                            *d += wt * s;
                        }
                    } else {
                        for (k, s) in line.iter().enumerate() {
                            dst[k * sx] += wt * s;
                        }
                    }
                });
            }
            if let Some(dw) = dw.as_mut() {
                let src_plane = &x[plane..][..hw];
                let dwc = &mut dw[c * kk..][..kk];
                taps(geo, |t, oy, lo, hi, iy, ix0| {
                    let line = &grad[oy * geo.ow..][lo..hi];
                    let src = &src_plane[iy * geo.w + ix0..];
                    let s: f32 = if sx == 1 {
                        line.iter().zip(src).map(|(g, v)| g * v).sum()
                    } else {
                        line.iter().enumerate().map(|(k, g)| g * src[k * sx]).sum()
                    };
                    dwc[t] += s;
                });
            }
        }
    }
    (dx, dw)
}
