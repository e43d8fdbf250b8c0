//! The Cool-chic file (version 3; versions 1 and 2 are still read):
//!
//! ```text
//! "CC" version:u8  width:varint height:varint
//! levels:u8 context:u8 n_arm:u8 arm_widths:u8*n_arm n_syn:u8 syn_widths:u8*n_syn
//! rANS stream                                            (the rest but the last 4 bytes)
//! CRC-32 (little-endian) of every byte before it
//! ```
//!
//! The rANS stream holds, in decoding order: for each tensor of the ARM then of the
//! synthesis (layer by layer, weight then bias) its step exponent `e` (uniform on 0..16,
//! step `2^-e`), its Laplace scale index `k` (uniform on 0..32, scale `2^(k/4 - 1)`
//! steps) and its integer codes (Laplace at 0 over `-1023..=1023`); from version 3, a
//! flag (uniform bit: 1 = no upsampling filters, all zero) and, unless flagged, one more
//! tensor coded the same way, the upsampling pre-filters (`[k1, k2]` of each level from
//! 1 up, [`super::synthesis::prefilter`]; versions 1 and 2 have none, i.e. zeros);
//! then for each latent
//! level a flag (uniform bit: 1 = the level is all zeros and has no codes) and, unless
//! flagged, its integers in raster order, each under the Laplace the ARM computes from its
//! decoded causal neighbours. The versions differ only in how the Laplace tables are
//! computed ([`Cdf`]): version 1 with `libm::expf` and a division per CDF, versions 2 and 3
//! with [`super::laplace::exp_poly`] and one reciprocal per table (the same model and
//! image; the tables, hence the bytes, differ by rounding); version 3 adds the learned
//! upsampling. Every symbol is in the one stream, so the fields cost what
//! their information is (an all-zero level: 1 bit).
//!
//! An image has at most [`MAX_PIXELS`] pixels (each side at most [`MAX_SIDE`]); the
//! decoder checks the header's size against its limit ([`decode_with_limit`]) before it
//! allocates anything that size drives, since an all-zero level costs one bit however
//! large it is.

use alloc::vec;
use alloc::vec::Vec;

use super::lanes::PackedMlp;
use super::laplace::{Cdf, Laplace};
use super::rans::{RansDecoder, RansEncoder};
use super::{
    Arch, CONTEXT, CodecError, LATENT_MAX, LatentModel, MAX_PIXELS, MAX_SIDE, Mlp, WEIGHT_MAX,
};

/// The first bytes of every file.
pub const MAGIC: [u8; 2] = *b"CC";
/// The format version this code writes (and the newest it reads).
pub const VERSION: u8 = 3;
/// The first version with learned upsampling filters.
pub const UPSAMPLING_VERSION: u8 = 3;
/// The oldest version this code reads.
pub const OLDEST_VERSION: u8 = 1;

/// The tables of format `version`, `None` for a version this code does not read.
pub fn tables(version: u8) -> Option<Cdf> {
    match version {
        1 => Some(Cdf::Libm),
        2 | 3 => Some(Cdf::Poly),
        _ => None,
    }
}
/// Exponents of the weights' steps: `0..WEIGHT_EXPONENTS`.
pub const WEIGHT_EXPONENTS: u32 = 16;
/// Scale indices of the weights' Laplace: `0..WEIGHT_SCALES`.
const WEIGHT_SCALES: u32 = 32;

/// The image size and the model's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// The networks' shapes.
    pub arch: Arch,
}

/// A quantised tensor: `codes[i] * 2^-exponent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QTensor {
    /// The step is `2^-exponent` (`0..16`).
    pub exponent: u32,
    /// Integers in `-WEIGHT_MAX..=WEIGHT_MAX`.
    pub codes: Vec<i32>,
}

impl QTensor {
    /// `values` rounded to the step `2^-exponent`, with the exponent lowered (a coarser
    /// step) until every code fits in `-WEIGHT_MAX..=WEIGHT_MAX`.
    pub fn quantise(values: &[f32], exponent: u32) -> Self {
        let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let mut e = exponent.min(WEIGHT_EXPONENTS - 1);
        while e > 0 && libm::roundf(max * (1u32 << e) as f32) > WEIGHT_MAX as f32 {
            e -= 1;
        }
        let s = (1u32 << e) as f32;
        let codes = values
            .iter()
            .map(|v| (libm::roundf(v * s) as i32).clamp(-WEIGHT_MAX, WEIGHT_MAX))
            .collect();
        Self { exponent: e, codes }
    }

    /// The values the codes stand for (exact: a power-of-two step).
    pub fn values(&self) -> Vec<f32> {
        let s = 1.0 / (1u32 << self.exponent) as f32;
        self.codes.iter().map(|&c| c as f32 * s).collect()
    }
}

/// Everything a file holds, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct CoolChic {
    /// Size and shape.
    pub header: Header,
    /// The ARM's tensors (layer by layer, weight then bias), quantised.
    pub arm: Vec<QTensor>,
    /// The synthesis' tensors, likewise.
    pub synthesis: Vec<QTensor>,
    /// Each level's integers, row-major.
    pub latents: Vec<Vec<i32>>,
    /// The upsampling pre-filters, `[k1, k2]` of level 1, then of level 2, ...
    /// ([`Arch::upsampling_len`] codes; all zero, the identity, in versions 1 and 2).
    pub upsampling: QTensor,
}

/// `mlp`'s weights and biases replaced by `tensors` (layer by layer, weight then bias).
fn fill(mut mlp: Mlp, tensors: &[QTensor]) -> Result<Mlp, CodecError> {
    if tensors.len() != 2 * mlp.layers.len() {
        return Err(CodecError::Model(
            "a network with the wrong number of tensors",
        ));
    }
    for (l, t) in mlp.layers.iter_mut().zip(tensors.chunks(2)) {
        if t[0].codes.len() != l.weight.len() || t[1].codes.len() != l.bias.len() {
            return Err(CodecError::Model("a tensor of the wrong size"));
        }
        l.weight = t[0].values();
        l.bias = t[1].values();
    }
    Ok(mlp)
}

impl CoolChic {
    /// The ARM with its dequantised weights.
    ///
    /// # Errors
    /// Tensors that do not fit the header's shape.
    pub fn arm_mlp(&self) -> Result<Mlp, CodecError> {
        fill(self.header.arch.arm(), &self.arm)
    }

    /// The synthesis with its dequantised weights.
    ///
    /// # Errors
    /// Tensors that do not fit the header's shape.
    pub fn synthesis_mlp(&self) -> Result<Mlp, CodecError> {
        fill(self.header.arch.synthesis(), &self.synthesis)
    }

    /// The pre-filter `[k1, k2]` of level `l` (`[0, 0]`, the identity, for level 0 and
    /// for a tensor of the wrong length, which [`encode`] refuses).
    pub fn upsampling_kernel(&self, l: usize) -> [f32; 2] {
        if l == 0 || self.upsampling.codes.len() != self.header.arch.upsampling_len() {
            return [0.0, 0.0];
        }
        let v = self.upsampling.values();
        [v[2 * (l - 1)], v[2 * (l - 1) + 1]]
    }

    /// A file's upsampling with no pre-filter (versions 1 and 2), for `arch`.
    pub fn no_upsampling(arch: &Arch) -> QTensor {
        QTensor {
            exponent: 0,
            codes: vec![0; arch.upsampling_len()],
        }
    }
}

fn varint(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.bytes.get(self.at).ok_or(CodecError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<usize, CodecError> {
        let mut v = 0usize;
        for shift in (0..21).step_by(7) {
            let b = self.byte()?;
            v |= usize::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt("an image size"))
    }

    fn widths(&mut self) -> Result<Vec<usize>, CodecError> {
        let n = usize::from(self.byte()?);
        if n > super::MAX_HIDDEN {
            return Err(CodecError::Corrupt("the number of hidden layers"));
        }
        (0..n).map(|_| self.byte().map(usize::from)).collect()
    }
}

fn weight_scale(k: u32) -> f32 {
    libm::exp2f(k as f32 / 4.0 - 1.0)
}

fn encode_tensor(t: &QTensor, cdf: Cdf, enc: &mut RansEncoder) -> Result<(), CodecError> {
    // The scale index that codes these integers in the fewest bits.
    let bits = |k: u32| -> f64 {
        let d = Laplace::with_cdf(0.0, weight_scale(k), WEIGHT_MAX, cdf);
        t.codes.iter().map(|&c| d.bits(c)).sum()
    };
    let k = (0..WEIGHT_SCALES)
        .min_by(|&a, &b| bits(a).total_cmp(&bits(b)))
        .expect("scales");
    enc.put_uniform(t.exponent, WEIGHT_EXPONENTS)?;
    enc.put_uniform(k, WEIGHT_SCALES)?;
    let d = Laplace::with_cdf(0.0, weight_scale(k), WEIGHT_MAX, cdf);
    for &c in &t.codes {
        if c.abs() > WEIGHT_MAX {
            return Err(CodecError::Model("a weight code out of range"));
        }
        d.encode(c, enc)?;
    }
    Ok(())
}

fn decode_tensor(len: usize, cdf: Cdf, dec: &mut RansDecoder<'_>) -> Result<QTensor, CodecError> {
    let exponent = dec.get_uniform(WEIGHT_EXPONENTS)?;
    let d = Laplace::with_cdf(
        0.0,
        weight_scale(dec.get_uniform(WEIGHT_SCALES)?),
        WEIGHT_MAX,
        cdf,
    );
    let codes = (0..len).map(|_| d.decode(dec)).collect::<Result<_, _>>()?;
    Ok(QTensor { exponent, codes })
}

fn tensor_lengths(mlp: &Mlp) -> Vec<usize> {
    mlp.layers
        .iter()
        .flat_map(|l| [l.weight.len(), l.bias.len()])
        .collect()
}

/// Walks a level in decoding order, giving each latent's distribution from the ARM on the
/// (already known) earlier latents: `visit(distribution, index)` codes or decodes the
/// latent at `index` and returns its value, which is stored for later contexts.
///
/// The level is kept with a border of zeros (2 rows above, 2 columns each side), so every
/// context is the same fixed offsets into it, with no bounds checks: the values are those
/// of [`super::context_of`] (zeros outside the grid). The ARM runs in lanes
/// ([`PackedMlp::forward_one`], the reference's bits); the tables are the version's `cdf`.
fn walk_level(
    arm: &PackedMlp,
    cdf: Cdf,
    context: usize,
    rows: usize,
    cols: usize,
    mut visit: impl FnMut(&Laplace, usize) -> Result<i32, CodecError>,
) -> Result<Vec<i32>, CodecError> {
    const PAD: usize = 2;
    let stride = cols + 2 * PAD;
    let mut grid = vec![0.0f32; (rows + PAD) * stride];
    let offsets: Vec<isize> = CONTEXT[..context]
        .iter()
        .map(|&(dy, dx)| dy as isize * stride as isize + dx as isize)
        .collect();
    let mut values = vec![0i32; rows * cols];
    let model = LatentModel::with_cdf(cdf);
    let mut scratch = arm.scratch();
    let mut ctx = vec![0.0; context];
    for y in 0..rows {
        for x in 0..cols {
            let at = (y + PAD) * stride + x + PAD;
            for (c, &o) in ctx.iter_mut().zip(&offsets) {
                *c = grid[at.wrapping_add_signed(o)];
            }
            let d = model.distribution(arm.forward_one(&ctx, &mut scratch));
            let i = y * cols + x;
            let v = visit(&d, i)?;
            values[i] = v;
            grid[at] = v as f32;
        }
    }
    Ok(values)
}

/// Writes `c` as a file (of [`VERSION`]).
///
/// # Errors
/// A shape the format cannot hold, tensors that do not fit it, or latents out of range.
pub fn encode(c: &CoolChic) -> Result<Vec<u8>, CodecError> {
    encode_version(c, VERSION)
}

/// [`encode`] as format `version` writes it (an older one: for tests of the readers of
/// old files).
///
/// # Errors
/// As [`encode`], and a version this code does not write.
pub fn encode_version(c: &CoolChic, version: u8) -> Result<Vec<u8>, CodecError> {
    let cdf = tables(version).ok_or(CodecError::UnsupportedVersion(version))?;
    let h = &c.header;
    let arch = &h.arch;
    arch.validate()
        .map_err(|_| CodecError::Model("a shape the format cannot hold"))?;
    if !(1..=MAX_SIDE).contains(&h.width)
        || !(1..=MAX_SIDE).contains(&h.height)
        || h.width * h.height > MAX_PIXELS
    {
        return Err(CodecError::Model("an image size the format cannot hold"));
    }
    if c.latents.len() != arch.levels {
        return Err(CodecError::Model("latents of the wrong number of levels"));
    }
    let arm = PackedMlp::new(&c.arm_mlp()?);
    c.synthesis_mlp()?;
    if c.upsampling.codes.len() != arch.upsampling_len() {
        return Err(CodecError::Model("upsampling filters of the wrong size"));
    }
    let learned = version >= UPSAMPLING_VERSION;
    if !learned && c.upsampling.codes.iter().any(|&v| v != 0) {
        return Err(CodecError::Model(
            "learned upsampling needs format version 3",
        ));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.push(version);
    varint(&mut out, h.width);
    varint(&mut out, h.height);
    out.push(arch.levels as u8);
    out.push(arch.context as u8);
    for hidden in [&arch.arm_hidden, &arch.synth_hidden] {
        out.push(hidden.len() as u8);
        out.extend(hidden.iter().map(|&w| w as u8));
    }
    let mut enc = RansEncoder::new();
    for t in c.arm.iter().chain(&c.synthesis) {
        encode_tensor(t, cdf, &mut enc)?;
    }
    if learned {
        // A flag (uniform bit: 1 = no filters, all zero), then the filters unless flagged.
        let none = c.upsampling.codes.iter().all(|&v| v == 0);
        enc.put_uniform(u32::from(none), 2)?;
        if !none {
            encode_tensor(&c.upsampling, cdf, &mut enc)?;
        }
    }
    for (l, level) in c.latents.iter().enumerate() {
        let (rows, cols) = Arch::level_size(h.width, h.height, l);
        if level.len() != rows * cols {
            return Err(CodecError::Model("a latent level of the wrong size"));
        }
        if level.iter().any(|v| v.abs() > LATENT_MAX) {
            return Err(CodecError::Model("a latent out of range"));
        }
        let zero = level.iter().all(|&v| v == 0);
        enc.put_uniform(u32::from(zero), 2)?;
        if !zero {
            walk_level(&arm, cdf, arch.context, rows, cols, |d, i| {
                d.encode(level[i], &mut enc)?;
                Ok(level[i])
            })?;
        }
    }
    out.extend_from_slice(&enc.finish());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads a file written by [`encode`].
///
/// # Errors
/// Anything but a whole, intact file of a version this code reads, or an image of more than
/// [`MAX_PIXELS`] pixels.
pub fn decode(bytes: &[u8]) -> Result<CoolChic, CodecError> {
    decode_with_limit(bytes, MAX_PIXELS)
}

/// [`decode`] of an image of at most `max_pixels` pixels (and [`MAX_PIXELS`]): the
/// header's size is checked before anything is allocated for it, so a forged header
/// costs a few bytes of reading, not memory. The largest allocation is then about
/// `40 * max_pixels` bytes (the latents, and the upsampled planes of
/// [`super::synthesis::render`]).
///
/// # Errors
/// As [`decode`]; [`CodecError::TooLarge`] for an image over the limit.
pub fn decode_with_limit(bytes: &[u8], max_pixels: usize) -> Result<CoolChic, CodecError> {
    if bytes.len() < MAGIC.len() || bytes[..2] != MAGIC {
        return Err(if bytes.len() < 2 && MAGIC.starts_with(bytes) {
            CodecError::Truncated
        } else {
            CodecError::BadMagic
        });
    }
    let mut r = Reader { bytes, at: 2 };
    let version = r.byte()?;
    let cdf = tables(version).ok_or(CodecError::UnsupportedVersion(version))?;
    let (width, height) = (r.varint()?, r.varint()?);
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(CodecError::Corrupt("the image size"));
    }
    let limit = max_pixels.min(MAX_PIXELS);
    if width * height > limit {
        return Err(CodecError::TooLarge {
            pixels: width * height,
            limit,
        });
    }
    let levels = usize::from(r.byte()?);
    let context = usize::from(r.byte()?);
    let arm_hidden = r.widths()?;
    let synth_hidden = r.widths()?;
    let arch = Arch {
        levels,
        context,
        arm_hidden,
        synth_hidden,
    };
    arch.validate()?;
    if bytes.len() < r.at + 4 {
        return Err(CodecError::Truncated);
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(CodecError::BadChecksum);
    }
    let mut dec = RansDecoder::new(&body[r.at..])?;
    let arm_tensors = tensor_lengths(&arch.arm())
        .into_iter()
        .map(|n| decode_tensor(n, cdf, &mut dec))
        .collect::<Result<Vec<_>, _>>()?;
    let synth_tensors = tensor_lengths(&arch.synthesis())
        .into_iter()
        .map(|n| decode_tensor(n, cdf, &mut dec))
        .collect::<Result<Vec<_>, _>>()?;
    let upsampling = if version >= UPSAMPLING_VERSION && dec.get_uniform(2)? == 0 {
        decode_tensor(arch.upsampling_len(), cdf, &mut dec)?
    } else {
        CoolChic::no_upsampling(&arch)
    };
    let mut c = CoolChic {
        header: Header {
            width,
            height,
            arch,
        },
        arm: arm_tensors,
        synthesis: synth_tensors,
        latents: Vec::new(),
        upsampling,
    };
    let arm = PackedMlp::new(
        &c.arm_mlp()
            .map_err(|_| CodecError::Corrupt("the networks"))?,
    );
    for l in 0..c.header.arch.levels {
        let (rows, cols) = Arch::level_size(width, height, l);
        let level = if dec.get_uniform(2)? == 1 {
            vec![0; rows * cols]
        } else {
            walk_level(&arm, cdf, c.header.arch.context, rows, cols, |d, _| {
                d.decode(&mut dec)
            })?
        };
        c.latents.push(level);
    }
    dec.finish()?;
    Ok(c)
}
