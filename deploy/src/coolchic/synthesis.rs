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

use super::file::CoolChic;
use super::{Arch, CodecError, Mlp};

/// The two source indices and the weight of the second, for output `i` of a level
/// `n` long upsampled by `2^l`.
pub fn taps(i: usize, n: usize, l: usize) -> (usize, usize, f32) {
    let scale = (1u32 << l) as f32;
    let u = ((i as f32 + 0.5) / scale - 0.5).clamp(0.0, (n - 1) as f32);
    let i0 = u as usize;
    let i1 = (i0 + 1).min(n - 1);
    (i0, i1, u - i0 as f32)
}

/// Level `l` (`rows x cols` values, row-major) upsampled to `height x width`, added into
/// `planes` as plane `l` (pixel-major: `planes[p * levels + l]`).
/// Where a level goes: the image's size and the pixel-major planes.
struct Planes<'a> {
    width: usize,
    height: usize,
    levels: usize,
    data: &'a mut [f32],
}

fn upsample_into(level: &[f32], rows: usize, cols: usize, l: usize, out: &mut Planes<'_>) {
    let (width, height, levels) = (out.width, out.height, out.levels);
    // Horizontal pass: rows x width.
    let xt: Vec<_> = (0..width).map(|x| taps(x, cols, l)).collect();
    let mut wide = vec![0.0f32; rows * width];
    for r in 0..rows {
        let src = &level[r * cols..(r + 1) * cols];
        for (x, &(a, b, f)) in xt.iter().enumerate() {
            wide[r * width + x] = src[a] * (1.0 - f) + src[b] * f;
        }
    }
    // Vertical pass.
    for y in 0..height {
        let (a, b, f) = taps(y, rows, l);
        for x in 0..width {
            out.data[(y * width + x) * levels + l] =
                wide[a * width + x] * (1.0 - f) + wide[b * width + x] * f;
        }
    }
}

/// Every pixel's latent values, pixel-major (`[pixel][level]`).
pub fn upsample(c: &CoolChic) -> Vec<f32> {
    let (w, h) = (c.header.width, c.header.height);
    let levels = c.header.arch.levels;
    let mut planes = vec![0.0f32; w * h * levels];
    let mut out = Planes {
        width: w,
        height: h,
        levels,
        data: &mut planes,
    };
    for (l, level) in c.latents.iter().enumerate() {
        let (rows, cols) = Arch::level_size(w, h, l);
        let values: Vec<f32> = level.iter().map(|&v| v as f32).collect();
        upsample_into(&values, rows, cols, l, &mut out);
    }
    planes
}

/// A float in `[0, 1]` (nominally) to an 8-bit value, rounding half up.
fn to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 1.0) * 255.0 + 0.5;
    // NaN clamps to NaN and casts to 0.
    v as u8
}

/// The decoded image: RGB, row-major, 8 bits per channel.
///
/// # Errors
/// Networks that do not fit the header's shape.
pub fn render(c: &CoolChic) -> Result<Vec<u8>, CodecError> {
    let synth: Mlp = c.synthesis_mlp()?;
    let levels = c.header.arch.levels;
    let planes = upsample(c);
    let width = synth.max_width();
    let (mut a, mut b) = (vec![0.0; width], vec![0.0; width]);
    let mut rgb = Vec::with_capacity(planes.len() / levels * 3);
    for px in planes.chunks_exact(levels) {
        let out = synth.forward(px, &mut a, &mut b);
        rgb.extend(out.iter().map(|&v| to_u8(v)));
    }
    Ok(rgb)
}

/// Decodes a file to `(width, height, rgb)`.
///
/// # Errors
/// A file that is not whole and intact ([`super::decode`]).
pub fn decode_image(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), CodecError> {
    let c = super::decode(bytes)?;
    let rgb = render(&c)?;
    Ok((c.header.width, c.header.height, rgb))
}
