//! 2-D transposed convolution (ONNX `ConvTranspose`, PyTorch `ConvTranspose2d`): the
//! adjoint of a strided convolution. Each input pixel scatters its kernel, weighted, into
//! the output: `y[oc, i s + k d - pad] += w[ic, oc, k] x[ic, i]` along both axes, in
//! groups. [`conv_transpose_gemm`] (what the plan runs) computes every pixel's
//! contributions at once as a matrix product, `cols[oc k, pixel] = W^T[oc k, ic]
//! x[ic, pixel]`, then adds them into place (col2im, the adjoint of a convolution's
//! im2col); [`conv_transpose`] is the direct scatter, no scratch. Every product is added,
//! zeros included, so a NaN or an infinity in the input reaches every output it touches
//! (IEEE, as the dense convolution).

use crate::format::ConvTransposeGeom;
use crate::kernels::dense;

/// The extents of one transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeconvShape {
    /// Input channels (all groups).
    pub c_in: usize,
    /// Output channels per group.
    pub oc_per_group: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel (h, w).
    pub k: [usize; 2],
    /// Output height and width.
    pub out: [usize; 2],
    /// Strides, cropping, dilation, groups.
    pub geom: ConvTransposeGeom,
}

/// The input indices `i` in `0..n` whose output `i s + off - pad` lies in `0..n_out`.
fn span(n: usize, s: usize, off: usize, pad: usize, n_out: usize) -> (usize, usize) {
    let lo = if pad > off {
        (pad - off).div_ceil(s)
    } else {
        0
    };
    let hi = if n_out + pad > off {
        ((n_out + pad - off - 1) / s + 1).min(n)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// One image: `x` `[c_in, h, w]`, weight `[c_in, oc_per_group, kh, kw]`, bias
/// `[groups oc_per_group]`; `y` `[groups oc_per_group, oh, ow]`.
pub fn conv_transpose(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &DeconvShape,
    y: &mut [f32],
) {
    let g = s.geom;
    let [oh, ow] = s.out;
    let plane = oh * ow;
    let oc_total = s.oc_per_group * g.group;
    for oc in 0..oc_total {
        let b = bias.map_or(0.0, |b| b[oc]);
        y[oc * plane..(oc + 1) * plane].fill(b);
    }
    let ic_per_group = s.c_in / g.group;
    let [kh, kw] = s.k;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    for ic in 0..s.c_in {
        let group = ic / ic_per_group;
        let xc = &x[ic * s.h * s.w..(ic + 1) * s.h * s.w];
        for o in 0..s.oc_per_group {
            let oc = group * s.oc_per_group + o;
            let yc = &mut y[oc * plane..(oc + 1) * plane];
            let wk = &weight[(ic * s.oc_per_group + o) * kh * kw..][..kh * kw];
            for a in 0..kh {
                let (i_lo, i_hi) = span(s.h, sh, a * dh, g.pads[0], oh);
                for bb in 0..kw {
                    let wv = wk[a * kw + bb];
                    let (j_lo, j_hi) = span(s.w, sw, bb * dw, g.pads[1], ow);
                    for i in i_lo..i_hi {
                        let oy = i * sh + a * dh - g.pads[0];
                        let xr = &xc[i * s.w..(i + 1) * s.w];
                        let yr = &mut yc[oy * ow..(oy + 1) * ow];
                        if sw == 1 {
                            let ox0 = j_lo + bb * dw - g.pads[1];
                            for (yv, &xv) in
                                yr[ox0..ox0 + (j_hi - j_lo)].iter_mut().zip(&xr[j_lo..j_hi])
                            {
                                *yv += wv * xv;
                            }
                        } else {
                            for (j, &xv) in xr.iter().enumerate().take(j_hi).skip(j_lo) {
                                yr[j * sw + bb * dw - g.pads[1]] += wv * xv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A weight `[c_in, oc_per_group, kh, kw]` as the matrices [`conv_transpose_gemm`] reads:
/// per group, `[oc_per_group kh kw, c_in / groups]` (the group's rows transposed), groups
/// back to back.
pub fn transpose_weight(weight: &[f32], s: &DeconvShape, out: &mut [f32]) {
    let icg = s.c_in / s.geom.group;
    let cols = s.oc_per_group * s.k[0] * s.k[1];
    for g in 0..s.geom.group {
        let w = &weight[g * icg * cols..(g + 1) * icg * cols];
        let o = &mut out[g * icg * cols..(g + 1) * icg * cols];
        for i in 0..icg {
            for c in 0..cols {
                o[c * icg + i] = w[i * cols + c];
            }
        }
    }
}

/// Floats of scratch [`conv_transpose_gemm`] needs: one group's `[oc kh kw, h w]`.
pub fn gemm_scratch(s: &DeconvShape) -> usize {
    s.oc_per_group * s.k[0] * s.k[1] * s.h * s.w
}

/// One image as [`conv_transpose`], through a matrix product per group: `wt` from
/// [`transpose_weight`], `cols` at least [`gemm_scratch`] floats.
pub fn conv_transpose_gemm(
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    s: &DeconvShape,
    cols: &mut [f32],
    y: &mut [f32],
) {
    let g = s.geom;
    let [oh, ow] = s.out;
    let plane = oh * ow;
    let ocg = s.oc_per_group;
    for oc in 0..ocg * g.group {
        let b = bias.map_or(0.0, |b| b[oc]);
        y[oc * plane..(oc + 1) * plane].fill(b);
    }
    let icg = s.c_in / g.group;
    let [kh, kw] = s.k;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let hw = s.h * s.w;
    let rows = ocg * kh * kw;
    let cols = &mut cols[..rows * hw];
    for grp in 0..g.group {
        let xg = &x[grp * icg * hw..(grp + 1) * icg * hw];
        let wg = &wt[grp * rows * icg..(grp + 1) * rows * icg];
        dense::matmul_rows(wg, None, xg, rows, icg, hw, cols);
        for o in 0..ocg {
            let oc = grp * ocg + o;
            let yc = &mut y[oc * plane..(oc + 1) * plane];
            for a in 0..kh {
                let (i_lo, i_hi) = span(s.h, sh, a * dh, g.pads[0], oh);
                for b in 0..kw {
                    let (j_lo, j_hi) = span(s.w, sw, b * dw, g.pads[1], ow);
                    let row = &cols[((o * kh + a) * kw + b) * hw..][..hw];
                    for i in i_lo..i_hi {
                        let oy = i * sh + a * dh - g.pads[0];
                        let src = &row[i * s.w..(i + 1) * s.w];
                        let dst = &mut yc[oy * ow..(oy + 1) * ow];
                        if sw == 1 {
                            let ox0 = j_lo + b * dw - g.pads[1];
                            for (d, &v) in dst[ox0..ox0 + (j_hi - j_lo)]
                                .iter_mut()
                                .zip(&src[j_lo..j_hi])
                            {
                                *d += v;
                            }
                        } else {
                            for (j, &v) in src.iter().enumerate().take(j_hi).skip(j_lo) {
                                dst[j * sw + b * dw - g.pads[1]] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::lcg;
    use alloc::vec;

    /// The definition, term by term, with signed arithmetic.
    fn reference(x: &[f32], w: &[f32], b: &[f32], s: &DeconvShape) -> alloc::vec::Vec<f32> {
        let g = s.geom;
        let [oh, ow] = s.out;
        let ocg = s.oc_per_group;
        let mut y = vec![0.0; ocg * g.group * oh * ow];
        for (oc, plane) in y.chunks_mut(oh * ow).enumerate() {
            plane.fill(b[oc]);
        }
        let icg = s.c_in / g.group;
        for ic in 0..s.c_in {
            for o in 0..ocg {
                let oc = ic / icg * ocg + o;
                for i in 0..s.h {
                    for j in 0..s.w {
                        for a in 0..s.k[0] {
                            for c in 0..s.k[1] {
                                let oy = (i * g.stride[0] + a * g.dilation[0]) as isize
                                    - g.pads[0] as isize;
                                let ox = (j * g.stride[1] + c * g.dilation[1]) as isize
                                    - g.pads[1] as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let wv = w[((ic * ocg + o) * s.k[0] + a) * s.k[1] + c];
                                y[(oc * oh + oy as usize) * ow + ox as usize] +=
                                    wv * x[(ic * s.h + i) * s.w + j];
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_definition_over_strides_pads_dilations_and_groups() {
        let cases = [
            ([1, 1], [0, 0, 0, 0], [1, 1], 1, [0, 0], [3, 3]),
            ([2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1], [3, 3]),
            ([3, 2], [0, 1, 2, 0], [2, 1], 2, [1, 0], [2, 3]),
            ([2, 1], [1, 0, 0, 1], [1, 2], 2, [1, 0], [4, 2]),
        ];
        for (stride, pads, dilation, group, output_padding, k) in cases {
            let geom = ConvTransposeGeom {
                stride,
                pads,
                dilation,
                group,
                output_padding,
            };
            let (c_in, ocg, h, w) = (4, 3, 5, 6);
            let out = [geom.out(0, h, k[0]).unwrap(), geom.out(1, w, k[1]).unwrap()];
            let s = DeconvShape {
                c_in,
                oc_per_group: ocg,
                h,
                w,
                k,
                out,
                geom,
            };
            let x = lcg(c_in * h * w, 1);
            let wt = lcg(c_in * ocg * k[0] * k[1], 2);
            let b = lcg(ocg * group, 3);
            let mut y = vec![0.0; ocg * group * out[0] * out[1]];
            conv_transpose(&x, &wt, Some(&b), &s, &mut y);
            let r = reference(&x, &wt, &b, &s);
            for (a, e) in y.iter().zip(&r) {
                assert!((a - e).abs() <= 1e-5, "{stride:?} {pads:?}: {a} vs {e}");
            }
            let mut t = vec![0.0; wt.len()];
            transpose_weight(&wt, &s, &mut t);
            let mut cols = vec![0.0; gemm_scratch(&s)];
            conv_transpose_gemm(&x, &t, Some(&b), &s, &mut cols, &mut y);
            for (a, e) in y.iter().zip(&r) {
                assert!(
                    (a - e).abs() <= 1e-5,
                    "gemm {stride:?} {pads:?}: {a} vs {e}"
                );
            }
        }
    }

    #[test]
    fn a_nan_pixel_reaches_its_kernel_footprint() {
        let geom = ConvTransposeGeom {
            stride: [2, 2],
            pads: [0; 4],
            dilation: [1, 1],
            group: 1,
            output_padding: [0, 0],
        };
        let s = DeconvShape {
            c_in: 1,
            oc_per_group: 1,
            h: 2,
            w: 2,
            k: [2, 2],
            out: [4, 4],
            geom,
        };
        let x = [f32::NAN, 1.0, 1.0, 1.0];
        let mut y = [0.0; 16];
        conv_transpose(&x, &[0.0, 1.0, 1.0, 1.0], None, &s, &mut y);
        // Pixel (0, 0) writes the top-left 2x2 block, a zero weight included (0 * NaN).
        for (i, v) in y.iter().enumerate() {
            assert_eq!(v.is_nan(), i / 4 < 2 && i % 4 < 2, "{i}: {v}");
        }
    }
}
