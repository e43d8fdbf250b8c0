//! im2col and its adjoint col2im, for a chunk of samples folded into the columns: the
//! matrix `cols [cin_g kh kw, nb oh ow]` of one group, row `(c, i, j)`, column
//! `(n, oy, ox)` holding `x[n, c, oy s + i d - p, ox s + j d - p]` (zero outside). A
//! convolution is then one GEMM `W [cout_g, cin_g kh kw] . cols` (Chellapilla et al.
//! 2006), with the batch in the GEMM's N dimension so that it is wide even when the
//! feature map is small.

use super::geometry::Geometry;

/// Fills `cols` (`k x nb p`, row-major) from samples `n0..n0 + nb`, group `g`, of `x`.
pub fn im2col(geo: &Geometry, x: &[f32], n0: usize, nb: usize, g: usize, cols: &mut [f32]) {
    let (p, hw, width) = (geo.p(), geo.hw(), nb * geo.p());
    let [sy, sx] = geo.stride;
    let [py, px] = geo.pad;
    let [dy, dx] = geo.dil;
    for c in 0..geo.cin_g() {
        let channel = g * geo.cin_g() + c;
        for i in 0..geo.kh {
            let (oy_lo, oy_hi) = Geometry::valid(geo.h, geo.oh, sy, i, dy, py);
            for j in 0..geo.kw {
                let (ox_lo, ox_hi) = Geometry::valid(geo.w, geo.ow, sx, j, dx, px);
                let row = &mut cols[((c * geo.kh + i) * geo.kw + j) * width..][..width];
                for n in 0..nb {
                    let plane = &x[((n0 + n) * geo.c_in + channel) * hw..][..hw];
                    let out = &mut row[n * p..][..p];
                    for oy in 0..geo.oh {
                        let line = &mut out[oy * geo.ow..][..geo.ow];
                        if oy < oy_lo || oy >= oy_hi || ox_lo >= ox_hi {
                            line.fill(0.0);
                            continue;
                        }
                        let iy = oy * sy + i * dy - py;
                        let src = &plane[iy * geo.w..][..geo.w];
                        line[..ox_lo].fill(0.0);
                        line[ox_hi..].fill(0.0);
                        let x0 = ox_lo * sx + j * dx - px;
                        if sx == 1 {
                            line[ox_lo..ox_hi].copy_from_slice(&src[x0..x0 + ox_hi - ox_lo]);
                        } else {
                            for (k, v) in line[ox_lo..ox_hi].iter_mut().enumerate() {
                                *v = src[x0 + k * sx];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `cols` back into samples `n0..n0 + nb`, group `g`, of
/// `dx` (overlapping windows sum).
pub fn col2im(geo: &Geometry, cols: &[f32], n0: usize, nb: usize, g: usize, dx_out: &mut [f32]) {
    let (p, hw, width) = (geo.p(), geo.hw(), nb * geo.p());
    let [sy, sx] = geo.stride;
    let [py, px] = geo.pad;
    let [dy, dx] = geo.dil;
    for c in 0..geo.cin_g() {
        let channel = g * geo.cin_g() + c;
        for i in 0..geo.kh {
            let (oy_lo, oy_hi) = Geometry::valid(geo.h, geo.oh, sy, i, dy, py);
            for j in 0..geo.kw {
                let (ox_lo, ox_hi) = Geometry::valid(geo.w, geo.ow, sx, j, dx, px);
                if ox_lo >= ox_hi {
                    continue;
                }
                let row = &cols[((c * geo.kh + i) * geo.kw + j) * width..][..width];
                for n in 0..nb {
                    let plane = &mut dx_out[((n0 + n) * geo.c_in + channel) * hw..][..hw];
                    let src = &row[n * p..][..p];
                    for oy in oy_lo..oy_hi {
                        let line = &src[oy * geo.ow..][..geo.ow];
                        let iy = oy * sy + i * dy - py;
                        let dst = &mut plane[iy * geo.w..][..geo.w];
                        let x0 = ox_lo * sx + j * dx - px;
                        if sx == 1 {
                            let n = ox_hi - ox_lo;
                            for (d, s) in dst[x0..x0 + n].iter_mut().zip(&line[ox_lo..ox_hi]) {
                                *d += s;
                            }
                        } else {
                            for (k, s) in line[ox_lo..ox_hi].iter().enumerate() {
                                dst[x0 + k * sx] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}
