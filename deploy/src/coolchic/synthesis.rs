//! From latents to pixels: every level upsampled to full resolution (bilinear, separable),
//! then the synthesis network on each pixel's `levels` values (Cool-chic's "upsampling
//! then synthesis", Ladune et al. 2023, Fig. 2; the first version's bilinear upsampling,
//! not the later learned filters).
//!
//! The upsampling's sample positions are those of a half-pixel-centred grid: full-resolution
//! pixel `i` sits at `(i + 1/2) / 2^l - 1/2` in level `l`, clamped to the level's edge.
//! Exact in `f32` (a power-of-two scale), so the encoder's training builds the same
//! interpolation weights ([`taps`]).

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
        let values: Vec<f32> = level.iter().map(|&v| v as f32).collect();
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
