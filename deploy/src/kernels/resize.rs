//! Resizing a sample (ONNX `Resize` and `Upsample`): each output coordinate maps to an
//! input coordinate by the op's coordinate transformation
//! ([`ResizeGeom::source`]); nearest mode rounds it, linear mode interpolates between its two
//! neighbours along every axis (separable: bilinear on two axes), the coordinate clamped to
//! the input (the edge repeats, as onnxruntime and ONNX's reference compute). Both
//! neighbours are weighted even where a weight is 0, as onnxruntime and PyTorch do, so a NaN
//! reaches every output it is a neighbour of.

use crate::format::{CoordMode, MAX_RANK, NearestRound, ResizeGeom, ResizeMode};

/// One axis's taps for an output coordinate: the two input indices and the second's
/// weight (nearest: one index, weight 0).
#[derive(Clone, Copy)]
struct Taps {
    i0: usize,
    i1: usize,
    w: f32,
}

fn taps(g: &ResizeGeom, axis: usize, x: usize, n_in: usize) -> Taps {
    let src = g.source(axis, x, n_in);
    let last = (n_in - 1) as f64;
    match g.mode {
        ResizeMode::Nearest(round) => {
            let f = libm::floor(src);
            let frac = src - f;
            let r = match round {
                NearestRound::PreferFloor if frac <= 0.5 => f,
                NearestRound::PreferCeil if frac < 0.5 => f,
                NearestRound::PreferFloor | NearestRound::PreferCeil => f + 1.0,
                NearestRound::Floor => f,
                NearestRound::Ceil => libm::ceil(src),
            };
            let i = r.clamp(0.0, last) as usize;
            Taps {
                i0: i,
                i1: i,
                w: 0.0,
            }
        }
        ResizeMode::Linear => {
            let c = src.clamp(0.0, last);
            let i0 = libm::floor(c) as usize;
            Taps {
                i0,
                i1: (i0 + 1).min(n_in - 1),
                w: (c - i0 as f64) as f32,
            }
        }
    }
}

/// Output columns whose last-axis taps are computed once and reused by every row.
const CHUNK: usize = 64;

/// Resizes one sample `x` of shape `in_dims` (rank 1 to 4) to `g.out[..rank]` in `y`.
/// The last axis's taps are computed once per chunk of columns and reused for every row;
/// an axis that is not resized (same extent, scale 1, a transformation that maps `x` to
/// `x`, as the channels of an image) reads its own element, never a neighbour.
pub fn resize(x: &[f32], in_dims: &[usize], g: &ResizeGeom, y: &mut [f32]) {
    let r = in_dims.len();
    let lead = MAX_RANK - r;
    // Right-aligned rank-4 extents, strides and geometry axes (leading axes: extent 1).
    let mut din = [1usize; MAX_RANK];
    let mut dout = [1usize; MAX_RANK];
    din[lead..].copy_from_slice(in_dims);
    dout[lead..].copy_from_slice(&g.out[..r]);
    let mut stride = [0usize; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        stride[i] = acc;
        acc *= din[i];
    }
    let maps_to_itself = g.coord != CoordMode::TfHalfPixelForNearest;
    let identity: [bool; MAX_RANK] = core::array::from_fn(|a| {
        a < lead
            || (din[a] == dout[a]
                && (g.scales[a - lead] == 0.0 || g.scales[a - lead] == 1.0)
                && maps_to_itself)
    });
    let axis_taps = |a: usize, o: usize| {
        if identity[a] {
            Taps {
                i0: o,
                i1: o,
                w: 0.0,
            }
        } else {
            taps(g, a - lead, o, din[a])
        }
    };
    let linear = g.mode == ResizeMode::Linear;
    let width = dout[3];
    let mut t3 = [Taps {
        i0: 0,
        i1: 0,
        w: 0.0,
    }; CHUNK];
    for c0 in (0..width).step_by(CHUNK) {
        let cw = CHUNK.min(width - c0);
        for (j, t) in t3.iter_mut().enumerate().take(cw) {
            *t = axis_taps(3, c0 + j);
        }
        let mut row = 0;
        for o0 in 0..dout[0] {
            let t0 = axis_taps(0, o0);
            for o1 in 0..dout[1] {
                let t1 = axis_taps(1, o1);
                for o2 in 0..dout[2] {
                    let t2 = axis_taps(2, o2);
                    let at = row * width + c0;
                    let out = &mut y[at..at + cw];
                    if linear {
                        for (v, t) in out.iter_mut().zip(&t3) {
                            *v = interpolate(x, &[t0, t1, t2, *t], &stride);
                        }
                    } else {
                        let base = t0.i0 * stride[0] + t1.i0 * stride[1] + t2.i0 * stride[2];
                        for (v, t) in out.iter_mut().zip(&t3) {
                            *v = x[base + t.i0];
                        }
                    }
                    row += 1;
                }
            }
        }
    }
}

/// `sum over the 16 corners of prod_k (w_k or 1 - w_k) x[corner]`, axis by axis from the
/// last (the order onnxruntime interpolates in does not change the value beyond rounding).
/// An axis whose two taps are one element (clamped at the edge, or an axis of extent 1)
/// reads it once with weight 1, as PyTorch does: `1 x + 0 x` would turn an infinite `x`
/// into NaN.
fn interpolate(x: &[f32], t: &[Taps; MAX_RANK], stride: &[usize; MAX_RANK]) -> f32 {
    let mut v = 0.0f32;
    for a in 0..2 {
        let (ia, wa) = if a == 0 {
            (t[0].i0, 1.0 - t[0].w)
        } else {
            (t[0].i1, t[0].w)
        };
        if t[0].i0 == t[0].i1 && a == 1 {
            break;
        }
        let mut va = 0.0f32;
        for b in 0..2 {
            let (ib, wb) = if b == 0 {
                (t[1].i0, 1.0 - t[1].w)
            } else {
                (t[1].i1, t[1].w)
            };
            if t[1].i0 == t[1].i1 && b == 1 {
                break;
            }
            let mut vb = 0.0f32;
            for c in 0..2 {
                let (ic, wc) = if c == 0 {
                    (t[2].i0, 1.0 - t[2].w)
                } else {
                    (t[2].i1, t[2].w)
                };
                if t[2].i0 == t[2].i1 && c == 1 {
                    break;
                }
                let base = ia * stride[0] + ib * stride[1] + ic * stride[2];
                let row = if t[3].i0 == t[3].i1 {
                    x[base + t[3].i0 * stride[3]]
                } else {
                    x[base + t[3].i0 * stride[3]] * (1.0 - t[3].w)
                        + x[base + t[3].i1 * stride[3]] * t[3].w
                };
                vb += wc * row;
            }
            va += wb * vb;
        }
        v += wa * va;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(out: &[usize], scales: &[f32], mode: ResizeMode, coord: CoordMode) -> ResizeGeom {
        let mut g = ResizeGeom {
            out: [0; MAX_RANK],
            scales: [0.0; MAX_RANK],
            mode,
            coord,
        };
        g.out[..out.len()].copy_from_slice(out);
        g.scales[..scales.len()].copy_from_slice(scales);
        g
    }

    #[test]
    fn nearest_asymmetric_doubles_each_pixel() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let g = geom(
            &[1, 4, 4],
            &[1.0, 2.0, 2.0],
            ResizeMode::Nearest(NearestRound::Floor),
            CoordMode::Asymmetric,
        );
        let mut y = [0.0; 16];
        resize(&x, &[1, 2, 2], &g, &mut y);
        assert_eq!(
            y,
            [
                1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0
            ]
        );
    }

    /// PyTorch's `interpolate(scale_factor=2, mode="bilinear", align_corners=False)` of
    /// `[[1, 2], [3, 4]]`, first row: `1, 1.25, 1.75, 2`.
    #[test]
    fn bilinear_half_pixel_matches_pytorch() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let g = geom(
            &[4, 4],
            &[2.0, 2.0],
            ResizeMode::Linear,
            CoordMode::HalfPixel,
        );
        let mut y = [0.0; 16];
        resize(&x, &[2, 2], &g, &mut y);
        assert_eq!(&y[..4], &[1.0, 1.25, 1.75, 2.0]);
        assert_eq!(&y[4..8], &[1.5, 1.75, 2.25, 2.5]);
    }

    #[test]
    fn align_corners_keeps_the_corners_and_sizes_set_the_scale() {
        let x = [0.0, 3.0];
        let g = geom(&[4], &[0.0], ResizeMode::Linear, CoordMode::AlignCorners);
        let mut y = [0.0; 4];
        resize(&x, &[2], &g, &mut y);
        assert_eq!(y, [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn nan_reaches_the_outputs_it_neighbours() {
        let x = [1.0, f32::NAN, 3.0, 4.0];
        let g = geom(&[8], &[2.0], ResizeMode::Linear, CoordMode::HalfPixel);
        let mut y = [0.0; 8];
        resize(&x, &[4], &g, &mut y);
        // PyTorch's `interpolate(mode="linear")` gives NaN, NaN, NaN, NaN, NaN, 3.25,
        // 3.75, 4: output 0 reads element 0 with weight 1 and element 1 with weight 0.
        assert!(y[..5].iter().all(|v| v.is_nan()), "{y:?}");
        assert_eq!(&y[5..], &[3.25, 3.75, 4.0]);
        let g = geom(
            &[8],
            &[2.0],
            ResizeMode::Nearest(NearestRound::PreferFloor),
            CoordMode::Asymmetric,
        );
        resize(&x, &[4], &g, &mut y);
        assert!(y[2].is_nan() && y[3].is_nan());
        assert_eq!(y[4], 3.0);
    }
}
