//! The input gradient of a stride-1 convolution as a convolution of `dY` (Dumoulin &
//! Visin 2016, "A guide to convolution arithmetic", §4.1: the transpose of a unit-stride
//! convolution is a unit-stride convolution by the flipped kernel):
//!
//! ```text
//! dX[c, y, x] = sum over (o, i, j) of W[o, c, i, j] dY[o, y + p - i d, x + p - j d]
//!             = conv(dY, W')[c, y, x],  W'[c, o, i, j] = W[o, c, kh-1-i, kw-1-j],
//!               padding d (k - 1) - p, same dilation d
//! ```
//!
//! (per group, with `W'` grouped alike), applied to "same" convolutions. Through [`super::gemm_conv::forward`] this is one
//! GEMM `[c_in, c_out kh kw] . im2col(dY)` writing `dX` directly, against `W^T . dY` (a
//! `[c_in kh kw, width]` matrix with an inner dimension of only `c_out`) and its col2im,
//! whose scattered adds are the slower part.

use burn::tensor::ops::ConvOptions;

use super::epilogue::Epilogue;
use super::geometry::Geometry;

/// The transposed problem's geometry, when `geo` is a stride-1 "same" convolution
/// (`2 p = d (k - 1)`, so that the transposed one has the same padding). With less
/// padding the transposed convolution multiplies its wider zero border too: LeNet-5's
/// unpadded 5x5 layer took 2.25x the products and its step 1.19x the time (issue 33).
fn transposed(geo: &Geometry) -> Option<Geometry> {
    let same = |k: usize, d: usize, p: usize| 2 * p == d * (k - 1);
    if geo.stride != [1, 1]
        || !same(geo.kh, geo.dil[0], geo.pad[0])
        || !same(geo.kw, geo.dil[1], geo.pad[1])
    {
        return None;
    }
    let pad = geo.pad;
    let options = ConvOptions::new([1, 1], pad, geo.dil, geo.groups);
    let t = Geometry::new(
        [geo.batch, geo.c_out, geo.oh, geo.ow],
        [geo.c_in, geo.cout_g(), geo.kh, geo.kw],
        &options,
    )
    .ok()?;
    ((t.oh, t.ow) == (geo.h, geo.w)).then_some(t)
}

/// `dX` for `dY`, or `None` where the convolution is not one this applies to.
#[inline(always)]
pub fn input_grad(geo: &Geometry, w: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    let t = transposed(geo)?;
    let (cig, cog, kk) = (geo.cin_g(), geo.cout_g(), geo.kh * geo.kw);
    let mut wt = vec![0.0f32; w.len()];
    for g in 0..geo.groups {
        for o in 0..cog {
            for c in 0..cig {
                let src = &w[((g * cog + o) * cig + c) * kk..][..kk];
                let dst = &mut wt[((g * cig + c) * cog + o) * kk..][..kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
    Some(super::dense_forward(&t, dy, &wt, None, Epilogue::NONE))
}
