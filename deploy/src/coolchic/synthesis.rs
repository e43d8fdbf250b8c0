//! From latents to pixels: every level upsampled to full resolution, then the synthesis
//! network on each pixel's `levels` values (Cool-chic's "upsampling then synthesis",
//! Ladune et al. 2023, Fig. 2).
//!
//! The upsampling of level `l >= 1` is a learned, symmetric 5-tap pre-filter on the
//! level's own grid ([`prefilter`], format version 3), then bilinear interpolation. The
//! learned part follows the later Cool-chic's learned upsampling (Philippe et al. 2024,
//! "Upsampling Improvement for Overfitted Neural Coding": separable, symmetric learned
//! filters, fitted per image and coded in the file, 4.7% rate saved; C3, Kim et al. 2024,
//! likewise learns its upsampling), initialised to the fixed filter so that it can only
//! help: bilinear after a 5-tap filter is a piecewise-linear interpolation kernel over 6 source
//! samples, which holds the sharpening lobes of bicubic or the extra smoothing a coarse
//! level may want. The filter is `c x[i] + k1 (x[i-1] + x[i+1]) + k2 (x[i-2] + x[i+2])`
//! with `c = 1 - 2 k1 - 2 k2` (unit gain), edges clamped, rows then columns; two numbers
//! per level, `k = 0` being the identity (versions 1 and 2 have no filter).
//!
//! The bilinear sample positions are those of a half-pixel-centred grid: full-resolution
//! pixel `i` sits at `(i + 1/2) / 2^l - 1/2` in level `l`, clamped to the level's edge.
//! Exact in `f32` (a power-of-two scale), so the encoder's training builds the same
//! interpolation weights ([`taps`], [`prefilter_taps`]).

use alloc::vec;
use alloc::vec::Vec;

#[cfg(doc)]
use super::Mlp;
use super::file::CoolChic;
use super::lanes::{BATCH, PackedMlp};
use super::{Arch, CodecError};

/// The two source indices and the weight of the second, for output `i` of a level
/// `n` long upsampled by `2^l`.
pub fn taps(i: usize, n: usize, l: usize) -> (usize, usize, f32) {
    let scale = (1u32 << l) as f32;
    let u = ((i as f32 + 0.5) / scale - 0.5).clamp(0.0, (n - 1) as f32);
    let i0 = u as usize;
    let i1 = (i0 + 1).min(n - 1);
    (i0, i1, u - i0 as f32)
}

/// The source indices of the pre-filter's output `i` of a level `n` long:
/// `[i - 1, i + 1, i - 2, i + 2]`, clamped to `0..n`.
pub fn prefilter_taps(i: usize, n: usize) -> [usize; 4] {
    let last = n - 1;
    [
        i.saturating_sub(1),
        (i + 1).min(last),
        i.saturating_sub(2),
        (i + 2).min(last),
    ]
}

/// One pass of the pre-filter over `n` values at stride `step` from `src` into `dst`
/// (same layout), in one fixed order of `f32` operations (the decoders must agree).
fn filter_line(src: &[f32], dst: &mut [f32], n: usize, step: usize, c: f32, k: [f32; 2]) {
    for i in 0..n {
        let [a, b, p, q] = prefilter_taps(i, n);
        let near = src[a * step] + src[b * step];
        let far = src[p * step] + src[q * step];
        dst[i * step] = c * src[i * step] + (k[0] * near + k[1] * far);
    }
}

/// `level` (`rows x cols`, row-major) through the pre-filter `k = [k1, k2]` (module
/// docs): rows, then columns.
pub fn prefilter(level: &[f32], rows: usize, cols: usize, k: [f32; 2]) -> Vec<f32> {
    let c = 1.0 - 2.0 * k[0] - 2.0 * k[1];
    let mut wide = vec![0.0f32; rows * cols];
    for (src, dst) in level.chunks_exact(cols).zip(wide.chunks_exact_mut(cols)) {
        filter_line(src, dst, cols, 1, c, k);
    }
    let mut out = vec![0.0f32; rows * cols];
    for x in 0..cols {
        filter_line(&wide[x..], &mut out[x..], rows, cols, c, k);
    }
    out
}

/// Level `l` (`rows x cols` values, row-major) upsampled to the `width x height` of
/// `plane` (row-major): a horizontal pass, then a vertical one, each output
/// `a * (1 - f) + b * f` (the vertical pass is contiguous in memory, so it vectorises).
fn upsample_into(
    level: &[f32],
    rows: usize,
    cols: usize,
    l: usize,
    width: usize,
    plane: &mut [f32],
) {
    let height = plane.len() / width;
    // Horizontal pass: rows x width.
    let xt: Vec<_> = (0..width).map(|x| taps(x, cols, l)).collect();
    let mut wide = vec![0.0f32; rows * width];
    for (src, dst) in level.chunks_exact(cols).zip(wide.chunks_exact_mut(width)) {
        for (d, &(a, b, f)) in dst.iter_mut().zip(&xt) {
            *d = src[a] * (1.0 - f) + src[b] * f;
        }
    }
    // Vertical pass.
    for (y, out) in plane.chunks_exact_mut(width).enumerate().take(height) {
        let (a, b, f) = taps(y, rows, l);
        let (ra, rb) = (
            &wide[a * width..(a + 1) * width],
            &wide[b * width..(b + 1) * width],
        );
        let g = 1.0 - f;
        for ((o, &va), &vb) in out.iter_mut().zip(ra).zip(rb) {
            *o = va * g + vb * f;
        }
    }
}

/// Every level upsampled to full resolution, level-major (`[level][pixel]`, pixels
/// row-major): the synthesis' inputs for a run of pixels are contiguous in every plane.
pub fn upsample(c: &CoolChic) -> Vec<f32> {
    let (w, h) = (c.header.width, c.header.height);
    let mut planes = vec![0.0f32; w * h * c.header.arch.levels];
    for ((l, level), plane) in c
        .latents
        .iter()
        .enumerate()
        .zip(planes.chunks_exact_mut(w * h))
    {
        let (rows, cols) = Arch::level_size(w, h, l);
        let mut values: Vec<f32> = level.iter().map(|&v| v as f32).collect();
        let k = c.upsampling_kernel(l);
        if k != [0.0, 0.0] {
            values = prefilter(&values, rows, cols, k);
        }
        upsample_into(&values, rows, cols, l, w, plane);
    }
    planes
}

/// A float in `[0, 1]` (nominally) to an 8-bit value, rounding half up.
fn to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 1.0) * 255.0 + 0.5;
    // NaN clamps to NaN and casts to 0.
    v as u8
}

/// The decoded image: RGB, row-major, 8 bits per channel. The synthesis runs on
/// [`BATCH`] pixels at a time ([`PackedMlp::forward_batch`]: each pixel's arithmetic is
/// [`Mlp::forward`]'s, so the image is the same bits as one pixel at a time).
///
/// # Errors
/// Networks that do not fit the header's shape.
pub fn render(c: &CoolChic) -> Result<Vec<u8>, CodecError> {
    let synth = PackedMlp::new(&c.synthesis_mlp()?);
    let levels = c.header.arch.levels;
    let planes = upsample(c);
    let n = c.header.width * c.header.height;
    let mut scratch = synth.scratch();
    // The last, partial run of pixels is copied out with zeros after it.
    let mut tail = vec![0.0f32; levels * BATCH];
    let mut rgb = vec![0u8; n * 3];
    for start in (0..n).step_by(BATCH) {
        let count = BATCH.min(n - start);
        let out = if count == BATCH {
            synth.forward_batch(&planes[start..], n, &mut scratch)
        } else {
            for (dst, plane) in tail.chunks_exact_mut(BATCH).zip(planes.chunks_exact(n)) {
                dst[..count].copy_from_slice(&plane[start..]);
            }
            synth.forward_batch(&tail, BATCH, &mut scratch)
        };
        for (p, px) in rgb[start * 3..(start + count) * 3]
            .chunks_exact_mut(3)
            .enumerate()
        {
            for (ch, v) in px.iter_mut().enumerate() {
                *v = to_u8(out[ch * BATCH + p]);
            }
        }
    }
    Ok(rgb)
}

/// Decodes a file to `(width, height, rgb)`.
///
/// # Errors
/// A file that is not whole and intact ([`super::decode`]).
pub fn decode_image(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), CodecError> {
    decode_image_with_limit(bytes, super::MAX_PIXELS)
}

/// [`decode_image`] of an image of at most `max_pixels` pixels
/// ([`super::decode_with_limit`]).
///
/// # Errors
/// As [`decode_image`]; [`CodecError::TooLarge`] for an image over the limit.
pub fn decode_image_with_limit(
    bytes: &[u8],
    max_pixels: usize,
) -> Result<(usize, usize, Vec<u8>), CodecError> {
    let c = super::decode_with_limit(bytes, max_pixels)?;
    let rgb = render(&c)?;
    Ok((c.header.width, c.header.height, rgb))
}
