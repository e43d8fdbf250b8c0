//! im2col and its adjoint col2im, for a chunk of samples folded into the columns: the
//! matrix `cols [cin_g kh kw, nb oh ow]` of one group, row `(c, i, j)`, column
//! `(n, oy, ox)` holding `x[n, c, oy s + i d - p, ox s + j d - p]` (zero outside). A
//! convolution is then one GEMM `W [cout_g, cin_g kh kw] . cols` (Chellapilla et al.
//! 2006), with the batch in the GEMM's N dimension so that it is wide even when the
//! feature map is small.

use super::geometry::Geometry;

/// Fills `cols` (`k x nb p`, row-major) from samples `n0..n0 + nb`, group `g`, of `x`.
#[inline(always)]
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
                    if let Some(shift) = shift(geo, i, j) {
                        // One copy of the valid rows, then zeros over what wrapped in
                        // from the neighbouring rows and over the rows outside the image.
                        let (lo, hi) = (oy_lo * geo.ow, oy_hi * geo.ow);
                        out[..lo].fill(0.0);
                        out[hi.max(lo)..].fill(0.0);
                        if lo < hi {
                            let (a, b) = inside(lo, hi, shift, hw);
                            out[lo..a].fill(0.0);
                            out[b..hi].fill(0.0);
                            let start = a.wrapping_add_signed(shift);
                            out[a..b].copy_from_slice(&plane[start..start + b - a]);
                            zero_wrapped(&mut out[lo..hi], geo.ow, ox_lo, ox_hi);
                        }
                        continue;
                    }
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

/// Where rows and columns line up (stride 1 and `ow == w`, e.g. a "same" 3x3 or any 1x1
/// without padding): the offset of tap `(i, j)`'s input from its output, `x[q + shift]`
/// feeding `out[q]` over whole rows, so that a plane's valid rows move as one block
/// instead of one short copy per row (short `memcpy` calls were most of im2col's time).
#[inline(always)]
fn shift(geo: &Geometry, i: usize, j: usize) -> Option<isize> {
    if geo.stride != [1, 1] || geo.ow != geo.w {
        return None;
    }
    let row = (i * geo.dil[0]) as isize - geo.pad[0] as isize;
    let col = (j * geo.dil[1]) as isize - geo.pad[1] as isize;
    Some(row * geo.w as isize + col)
}

/// The part `a..b` of `lo..hi` whose input `q + shift` lies inside the plane (`0..hw`);
/// the rest are wrapped columns at the ends, zero in the im2col matrix.
#[inline(always)]
fn inside(lo: usize, hi: usize, shift: isize, hw: usize) -> (usize, usize) {
    let a = (lo as isize).max(-shift).min(hi as isize) as usize;
    let b = (hi as isize).min(hw as isize - shift).max(a as isize) as usize;
    (a, b)
}

/// Zeros the columns outside `lo..hi` of each row (length `ow`) of `block`, column by
/// column (strided stores: per-row `fill`s of one or two floats became `memset` calls).
#[inline(always)]
fn zero_wrapped(block: &mut [f32], ow: usize, lo: usize, hi: usize) {
    let (lo, hi) = (lo.min(ow), hi.max(lo).min(ow));
    for col in (0..lo).chain(hi..ow) {
        for v in block[col..].iter_mut().step_by(ow) {
            *v = 0.0;
        }
    }
}

/// The adjoint of [`im2col`]: adds `cols` back into samples `n0..n0 + nb`, group `g`, of
/// `dx` (overlapping windows sum). `cols` is scratch: where [`shift`] applies, the
/// entries that fall outside the image are zeroed so that whole rows add at once.
#[inline(always)]
pub fn col2im(
    geo: &Geometry,
    cols: &mut [f32],
    n0: usize,
    nb: usize,
    g: usize,
    dx_out: &mut [f32],
) {
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
                let row = &mut cols[((c * geo.kh + i) * geo.kw + j) * width..][..width];
                for n in 0..nb {
                    let plane = &mut dx_out[((n0 + n) * geo.c_in + channel) * hw..][..hw];
                    let src = &mut row[n * p..][..p];
                    if let Some(shift) = shift(geo, i, j) {
                        let (lo, hi) = (oy_lo * geo.ow, oy_hi * geo.ow);
                        if lo < hi {
                            zero_wrapped(&mut src[lo..hi], geo.ow, ox_lo, ox_hi);
                            let (a, b) = inside(lo, hi, shift, hw);
                            let start = a.wrapping_add_signed(shift);
                            for (d, s) in plane[start..start + b - a].iter_mut().zip(&src[a..b]) {
                                *d += s;
                            }
                        }
                        continue;
                    }
                    let src = &*src;
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
