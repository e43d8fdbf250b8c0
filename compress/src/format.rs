//! The compressed file (spec: `compress/FORMAT.md`): a few header bytes, then a bit stream
//! of each layer's sparsity pattern (Rice-coded gaps, or nothing for a dense layer) and its
//! f16 values, then a CRC-32.
//!
//! Every byte counts: at 0.07 bpp a 192x128 image gets 215 bytes in all, so the header is
//! variable-length integers and flags, and dense layers spend one bit on their "mask".
//! The decoder validates everything (magic, version, sizes, each code against its layer,
//! every value finite, the checksum): a truncated or corrupt file is an error.

use half::f16;

use crate::bitstream::{BitReader, BitWriter, rice_len};
use crate::error::CompressError;
use crate::weights::{Architecture, D_INPUT, D_OUTPUT, LayerWeights, SirenWeights};

/// The first two bytes of every file.
pub const MAGIC: [u8; 2] = *b"TC";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Largest image side accepted.
pub const MAX_SIDE: usize = 1 << 15;
/// Most sine layers accepted.
pub const MAX_LAYERS: usize = 64;
/// Widest sine layer accepted.
pub const MAX_WIDTH: usize = 4096;
/// Largest Rice parameter.
const MAX_RICE_K: u32 = 15;

const FLAG_DEFAULT_FREQUENCIES: u8 = 1;
const FLAG_QUANTISED: u8 = 2;

/// An image compressed into a SIREN.
#[derive(Clone, Debug, PartialEq)]
pub struct CompressedImage {
    /// Image columns.
    pub width: usize,
    /// Image rows.
    pub height: usize,
    /// Bits per stored weight value: 16 stores IEEE half precision (COIN's format); 2 to
    /// 15 store signed integers times a per-layer f16 scale (uniform quantisation).
    /// Biases are f16 either way.
    pub value_bits: u8,
    /// The network; [`CompressedImage::stored`] is what the file holds of it.
    pub weights: SirenWeights,
}

/// One layer's weights as the file stores them: the scale (f16 bits; absent for f16
/// values) and each weight's code.
struct StoredLayer {
    scale: Option<u16>,
    /// f16 bits, or the quantised integer (two's complement in `value_bits` bits).
    codes: Vec<u32>,
    /// The values the codes decode to (0 where the code is 0).
    values: Vec<f32>,
}

/// Quantises `weight` to `bits`-bit integers times one f16 scale, chosen so the largest
/// magnitude maps to (about) the largest code. Exactly what the decoder reconstructs.
fn quantise(weight: &[f32], bits: u8) -> StoredLayer {
    let qmax = ((1u32 << (bits - 1)) - 1) as f32;
    let max = weight.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
    // The f16 scale is rounded up, so no weight maps past the largest code and every
    // weight is within half a step of its value.
    let ideal = max / qmax;
    let mut scale = f16::from_f32(ideal);
    if scale.to_f32() < ideal {
        scale = f16::from_bits(scale.to_bits() + 1);
    }
    let s = scale.to_f32();
    let mask = (1u32 << bits) - 1;
    let (codes, values) = weight
        .iter()
        .map(|&w| {
            let q = if s > 0.0 {
                (w / s).round().clamp(-qmax, qmax)
            } else {
                0.0
            };
            ((q as i32 as u32) & mask, q * s)
        })
        .unzip();
    StoredLayer {
        scale: Some(scale.to_bits()),
        codes,
        values,
    }
}

fn half_layer(weight: &[f32]) -> StoredLayer {
    let (codes, values) = weight
        .iter()
        .map(|&w| {
            let h = f16::from_f32(w);
            // -0.0 and values that round to zero are stored as zeros.
            if h.to_f32() == 0.0 {
                (0, 0.0)
            } else {
                (u32::from(h.to_bits()), h.to_f32())
            }
        })
        .unzip();
    StoredLayer {
        scale: None,
        codes,
        values,
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

fn read_varint(bytes: &[u8], at: &mut usize, what: &str) -> Result<usize, CompressError> {
    let mut v = 0usize;
    for shift in (0..35).step_by(7) {
        let b = *bytes
            .get(*at)
            .ok_or_else(|| CompressError::Corrupt(format!("the header ends inside {what}")))?;
        *at += 1;
        v |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CompressError::Corrupt(format!(
        "{what} is not a valid integer"
    )))
}

/// How a layer's sparsity pattern is coded: `None` = dense (every weight stored), or the
/// Rice parameter of the gap code, whichever is smaller.
fn mask_code(weight: &[f32], value_bits: u32) -> (Option<u32>, usize) {
    let n = weight.len();
    let gaps = gaps(weight);
    let value_bits = value_bits as usize;
    let dense_bits = value_bits * n;
    let nnz = gaps.len() - 1;
    (0..=MAX_RICE_K)
        .map(|k| {
            let bits = 4 + gaps.iter().map(|&g| rice_len(g, k)).sum::<usize>() + value_bits * nnz;
            (Some(k), bits)
        })
        .chain(std::iter::once((None, dense_bits)))
        .min_by_key(|&(_, bits)| bits)
        .expect("non-empty")
}

/// Zeros before each nonzero, then the zeros after the last one (the terminator).
fn gaps(weight: &[f32]) -> Vec<u32> {
    let mut gaps = Vec::new();
    let mut run = 0u32;
    for &w in weight {
        if w == 0.0 {
            run += 1;
        } else {
            gaps.push(run);
            run = 0;
        }
    }
    gaps.push(run);
    gaps
}

fn f16_bits(v: f32) -> u32 {
    u32::from(f16::from_f32(v).to_bits())
}

fn check_shape(
    width: usize,
    height: usize,
    layers: usize,
    units: usize,
) -> Result<(), CompressError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(CompressError::Corrupt(format!(
            "image size {width}x{height} outside 1..={MAX_SIDE}"
        )));
    }
    if layers == 0 || layers > MAX_LAYERS || units == 0 || units > MAX_WIDTH {
        return Err(CompressError::Corrupt(format!(
            "network {layers}x{units} outside 1..={MAX_LAYERS} layers, 1..={MAX_WIDTH} units"
        )));
    }
    Ok(())
}

impl CompressedImage {
    /// The file's bytes. Weights are rounded to f16; a weight that rounds to zero is
    /// stored as a zero (it costs nothing in a sparse layer).
    ///
    /// # Errors
    /// A size outside the format's limits, or layers that do not match the architecture.
    pub fn encode(&self) -> Result<Vec<u8>, CompressError> {
        let arch = self.weights.arch;
        check_shape(self.width, self.height, arch.layers, arch.width)
            .map_err(|e| CompressError::Invalid(e.to_string()))?;
        let dims = arch.layer_dims();
        if dims.len() != self.weights.layers.len()
            || dims
                .iter()
                .zip(&self.weights.layers)
                .any(|(&(i, o), l)| (i, o) != (l.d_in, l.d_out) || l.weight.len() != i * o)
        {
            return Err(CompressError::Invalid(
                "the weights do not match their architecture".into(),
            ));
        }
        if !(2..=16).contains(&self.value_bits) {
            return Err(CompressError::Invalid(format!(
                "values take 2 to 16 bits, not {}",
                self.value_bits
            )));
        }
        let mut out = header(&arch, self.width, self.height, self.value_bits);
        let bits = u32::from(self.value_bits);
        let mut w = BitWriter::new();
        for (layer, stored) in self.weights.layers.iter().zip(self.stored_layers()) {
            if let Some(scale) = stored.scale {
                w.bits(u32::from(scale), 16);
            }
            match mask_code(&stored.values, bits).0 {
                None => {
                    w.bit(false);
                    for &c in &stored.codes {
                        w.bits(c, bits);
                    }
                }
                Some(k) => {
                    w.bit(true);
                    w.bits(k, 4);
                    for g in gaps(&stored.values) {
                        w.rice(g, k);
                    }
                    for (&c, _) in stored
                        .codes
                        .iter()
                        .zip(&stored.values)
                        .filter(|(_, v)| **v != 0.0)
                    {
                        w.bits(c, bits);
                    }
                }
            }
            for &b in &layer.bias {
                w.bits(f16_bits(b), 16);
            }
        }
        out.extend_from_slice(&w.finish());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    fn stored_layers(&self) -> Vec<StoredLayer> {
        self.weights
            .layers
            .iter()
            .map(|l| {
                if self.value_bits < 16 {
                    quantise(&l.weight, self.value_bits)
                } else {
                    half_layer(&l.weight)
                }
            })
            .collect()
    }

    /// The network exactly as the file stores it (what a decoder gets back): weights
    /// rounded to f16 or quantised, biases rounded to f16.
    pub fn stored(&self) -> SirenWeights {
        let mut out = self.weights.rounded_to_f16();
        for (l, s) in out.layers.iter_mut().zip(self.stored_layers()) {
            l.weight = s.values;
        }
        out
    }

    /// Parses and validates a file.
    ///
    /// # Errors
    /// [`CompressError::Corrupt`] for anything that is not a valid file of this version:
    /// too short, wrong magic or version, a checksum mismatch, sizes outside the limits,
    /// position codes that run past their layer, non-finite values, trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CompressError> {
        let corrupt = |m: &str| CompressError::Corrupt(m.into());
        if bytes.len() < MAGIC.len() + 2 + 4 {
            return Err(corrupt("the file is too short to be a tether image"));
        }
        if bytes[..2] != MAGIC {
            return Err(corrupt("not a tether image (wrong magic bytes)"));
        }
        if bytes[2] != VERSION {
            return Err(CompressError::Corrupt(format!(
                "format version {} is not supported (this build reads {VERSION})",
                bytes[2]
            )));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != crc {
            return Err(corrupt(
                "checksum mismatch (the file is damaged or truncated)",
            ));
        }
        let flags = body[3];
        if flags & !(FLAG_DEFAULT_FREQUENCIES | FLAG_QUANTISED) != 0 {
            return Err(corrupt("unknown header flags"));
        }
        let mut at = 4;
        let width = read_varint(body, &mut at, "the width")?;
        let height = read_varint(body, &mut at, "the height")?;
        let layers = read_varint(body, &mut at, "the layer count")?;
        let units = read_varint(body, &mut at, "the layer width")?;
        check_shape(width, height, layers, units)?;
        let mut arch = Architecture::new(layers, units);
        if flags & FLAG_DEFAULT_FREQUENCIES == 0 {
            let f = |at: usize| -> Result<f32, CompressError> {
                let b = body
                    .get(at..at + 2)
                    .ok_or_else(|| corrupt("the header ends inside the frequencies"))?;
                let v = f16::from_le_bytes([b[0], b[1]]).to_f32();
                if v.is_finite() && v > 0.0 {
                    Ok(v)
                } else {
                    Err(corrupt("a SIREN frequency is not a positive number"))
                }
            };
            arch.w0_initial = f(at)?;
            arch.w0 = f(at + 2)?;
            at += 4;
        }
        let value_bits = if flags & FLAG_QUANTISED != 0 {
            let b = *body
                .get(at)
                .ok_or_else(|| corrupt("the header ends inside the value width"))?;
            at += 1;
            if !(2..=15).contains(&b) {
                return Err(corrupt("quantised values must take 2 to 15 bits"));
            }
            b
        } else {
            16
        };
        let mut r = BitReader::new(&body[at..]);
        let value = |r: &mut BitReader<'_>| -> Result<f32, CompressError> {
            let v = f16::from_bits(r.bits(16)? as u16).to_f32();
            if v.is_finite() {
                Ok(v)
            } else {
                Err(corrupt("a weight is not a finite number"))
            }
        };
        let bits = u32::from(value_bits);
        let mut out = Vec::new();
        for (d_in, d_out) in arch.layer_dims() {
            let n = d_in * d_out;
            let scale = if value_bits < 16 {
                let s = f16::from_bits(r.bits(16)? as u16).to_f32();
                if !(s.is_finite() && s >= 0.0) {
                    return Err(corrupt("a layer's scale is not a finite number >= 0"));
                }
                Some(s)
            } else {
                None
            };
            let weight_value = |r: &mut BitReader<'_>| -> Result<f32, CompressError> {
                match scale {
                    None => value(r),
                    Some(s) => {
                        let c = r.bits(bits)?;
                        // Sign-extend the two's complement code.
                        let q = ((c << (32 - bits)) as i32) >> (32 - bits);
                        if q == -(1 << (bits - 1)) {
                            return Err(corrupt("a quantised weight is out of range"));
                        }
                        Ok(q as f32 * s)
                    }
                }
            };
            let mut weight = vec![0.0f32; n];
            if r.bit()? {
                let k = r.bits(4)?;
                let mut pos = 0usize;
                loop {
                    let gap = r.rice(k, (n - pos) as u32)? as usize;
                    pos += gap;
                    if pos == n {
                        break;
                    }
                    weight[pos] = 1.0; // marks a nonzero; the value follows the mask
                    pos += 1;
                }
                for w in weight.iter_mut().filter(|w| **w != 0.0) {
                    *w = weight_value(&mut r)?;
                }
            } else {
                for w in &mut weight {
                    *w = weight_value(&mut r)?;
                }
            }
            let bias = (0..d_out)
                .map(|_| value(&mut r))
                .collect::<Result<_, _>>()?;
            out.push(LayerWeights {
                d_in,
                d_out,
                weight,
                bias,
            });
        }
        // Only the zero padding of the last byte may remain.
        if r.position().div_ceil(8) != body.len() - at {
            return Err(corrupt("trailing bytes after the network"));
        }
        debug_assert_eq!(
            (out[0].d_in, out.last().map(|l| l.d_out)),
            (D_INPUT, Some(D_OUTPUT))
        );
        Ok(Self {
            width,
            height,
            value_bits,
            weights: SirenWeights { arch, layers: out },
        })
    }

    /// Bits per pixel of the real file: every byte, header and checksum included.
    pub fn bpp(file_bytes: usize, pixels: usize) -> f64 {
        (file_bytes * 8) as f64 / pixels as f64
    }
}

/// The header: magic, version, flags, sizes, and the frequencies and value width when
/// they are not the defaults.
fn header(arch: &Architecture, width: usize, height: usize, value_bits: u8) -> Vec<u8> {
    let quantised = value_bits < 16;
    let defaults = arch.w0 == 30.0 && arch.w0_initial == 30.0;
    let mut flags = 0;
    if defaults {
        flags |= FLAG_DEFAULT_FREQUENCIES;
    }
    if quantised {
        flags |= FLAG_QUANTISED;
    }
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(flags);
    varint(&mut out, width);
    varint(&mut out, height);
    varint(&mut out, arch.layers);
    varint(&mut out, arch.width);
    if !defaults {
        out.extend_from_slice(&f16::from_f32(arch.w0_initial).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(arch.w0).to_le_bytes());
    }
    if quantised {
        out.push(value_bits);
    }
    out
}

/// Bits of a file that do not depend on which weights are kept: header, checksum, and
/// per layer its mode bit, a Rice parameter (4 bits, counted for every layer: the
/// differentiable size estimate assumes sparse layers), the scale of quantised values,
/// and the f16 biases. The padding of the last byte is not counted.
pub fn fixed_bits(arch: &Architecture, width: usize, height: usize, value_bits: u8) -> usize {
    let scale = if value_bits < 16 { 16 } else { 0 };
    8 * (header(arch, width, height, value_bits).len() + 4)
        + arch
            .layer_dims()
            .iter()
            .map(|&(_, o)| 1 + 4 + scale + 16 * o)
            .sum::<usize>()
}

/// Exact size in bytes of the file of a *dense* network of shape `arch` with f16 values
/// for a `width x height` image (what COIN's architecture choice needs before any
/// training).
pub fn dense_file_bytes(arch: &Architecture, width: usize, height: usize) -> usize {
    let bits: usize = arch
        .layer_dims()
        .iter()
        .map(|&(i, o)| 1 + 16 * (i * o + o))
        .sum();
    header(arch, width, height, 16).len() + bits.div_ceil(8) + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_weights(arch: Architecture, density: f64, seed: u64) -> SirenWeights {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64) / f64::from(1u32 << 31)
        };
        let layers = arch
            .layer_dims()
            .into_iter()
            .map(|(i, o)| LayerWeights {
                d_in: i,
                d_out: o,
                weight: (0..i * o)
                    .map(|_| {
                        if next() < density {
                            (next() - 0.5) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                bias: (0..o).map(|_| (next() - 0.5) as f32).collect(),
            })
            .collect();
        SirenWeights { arch, layers }.rounded_to_f16()
    }

    #[test]
    fn dense_and_sparse_files_round_trip_exactly() {
        let _rng = crate::rng_lock();
        for (density, freq) in [(1.0, 30.0), (0.3, 30.0), (0.05, 20.0), (0.0, 30.0)] {
            let mut arch = Architecture::new(3, 12);
            arch.w0 = freq;
            let img = CompressedImage {
                width: 193,
                height: 130,
                value_bits: 16,
                weights: random_weights(arch, density, 7),
            };
            let bytes = img.encode().unwrap();
            assert_eq!(
                CompressedImage::decode(&bytes).unwrap(),
                img,
                "density {density}"
            );
        }
    }

    #[test]
    fn quantised_files_decode_to_exactly_what_stored_promises() {
        let _rng = crate::rng_lock();
        for bits in [2u8, 5, 8, 12, 15] {
            for density in [1.0, 0.3] {
                let img = CompressedImage {
                    width: 40,
                    height: 30,
                    value_bits: bits,
                    weights: random_weights(Architecture::new(3, 10), density, 9),
                };
                let decoded = CompressedImage::decode(&img.encode().unwrap()).unwrap();
                assert_eq!(decoded.value_bits, bits);
                assert_eq!(
                    decoded.weights,
                    img.stored(),
                    "{bits} bits, density {density}"
                );
                // The quantisation error is at most half a step of each layer's scale.
                for (a, b) in img.weights.layers.iter().zip(&decoded.weights.layers) {
                    let max = a.weight.iter().fold(0.0f32, |m, w| m.max(w.abs()));
                    let step = max / ((1u32 << (bits - 1)) - 1) as f32;
                    for (x, y) in a.weight.iter().zip(&b.weight) {
                        assert!((x - y).abs() <= 0.5 * step * 1.002 + 1e-7, "{x} vs {y}");
                    }
                }
            }
        }
        // Fewer bits, smaller files.
        let size = |bits| {
            CompressedImage {
                width: 40,
                height: 30,
                value_bits: bits,
                weights: random_weights(Architecture::new(3, 10), 1.0, 9),
            }
            .encode()
            .unwrap()
            .len()
        };
        assert!(size(8) < size(12) && size(12) < size(16));
    }

    #[test]
    fn fixed_bits_are_what_a_file_spends_besides_its_weights_and_mask() {
        let _rng = crate::rng_lock();
        for (layers, width, bits) in [(2, 6, 16u8), (10, 28, 16), (4, 13, 12), (9, 5, 8)] {
            let arch = Architecture::new(layers, width);
            let img = CompressedImage {
                width: 192,
                height: 128,
                value_bits: bits,
                weights: random_weights(arch, 1.0, 4),
            };
            // A dense file: fixed bits, minus the Rice parameters it does not write, plus
            // every weight, plus the padding of the last byte.
            let file_bits = 8 * img.encode().unwrap().len();
            let weights: usize = arch.layer_dims().iter().map(|&(i, o)| i * o).sum();
            let rest =
                fixed_bits(&arch, 192, 128, bits) - 4 * (layers + 1) + usize::from(bits) * weights;
            assert!(
                file_bits >= rest && file_bits < rest + 8,
                "{layers}x{width}/{bits}"
            );
        }
    }

    #[test]
    fn dense_size_formula_is_exact() {
        let _rng = crate::rng_lock();
        for (layers, width) in [(1, 1), (5, 20), (10, 28), (3, 7)] {
            let arch = Architecture::new(layers, width);
            let img = CompressedImage {
                width: 768,
                height: 512,
                value_bits: 16,
                weights: random_weights(arch, 1.0, 3),
            };
            assert_eq!(
                img.encode().unwrap().len(),
                dense_file_bytes(&arch, 768, 512)
            );
        }
    }

    #[test]
    fn sparse_layers_cost_about_the_entropy_of_their_mask() {
        let _rng = crate::rng_lock();
        let arch = Architecture::new(4, 64);
        let density = 0.2;
        let img = CompressedImage {
            width: 64,
            height: 64,
            value_bits: 16,
            weights: random_weights(arch, density, 11),
        };
        let bytes = img.encode().unwrap().len();
        let nnz = img.weights.nonzero_weights();
        let weights: usize = img.weights.layers.iter().map(|l| l.weight.len()).sum();
        let biases: usize = img.weights.layers.iter().map(|l| l.d_out).sum();
        let h = -(density * density.log2() + (1.0 - density) * (1.0 - density).log2());
        let mask_bits = bytes as f64 * 8.0 - 16.0 * (nnz + biases) as f64;
        let entropy_bits = h * weights as f64;
        // Rice codes come within a few percent of the entropy (plus the header).
        assert!(
            mask_bits < 1.06 * entropy_bits + 150.0,
            "{mask_bits} vs {entropy_bits}"
        );
        assert!(
            mask_bits > entropy_bits * 0.9,
            "{mask_bits} vs {entropy_bits}"
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let _rng = crate::rng_lock();
        let img = CompressedImage {
            width: 50,
            height: 40,
            value_bits: 10,
            weights: random_weights(Architecture::new(2, 6), 0.5, 5),
        };
        let bytes = img.encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    CompressedImage::decode(&bytes[..len]),
                    Err(CompressError::Corrupt(_))
                ),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5A;
            assert!(CompressedImage::decode(&bad).is_err(), "byte {i} flipped");
        }
        let mut other = bytes.clone();
        other[0] = b'P';
        let err = CompressedImage::decode(&other).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
    }

    #[test]
    fn hostile_headers_with_valid_checksums_are_errors() {
        let _rng = crate::rng_lock();
        // A valid checksum over nonsense: sizes out of range, a runaway code.
        let cases: Vec<Vec<u8>> = vec![
            vec![b'T', b'C', 1, 1, 0, 5, 2, 8],             // zero width
            vec![b'T', b'C', 1, 1, 5, 5, 200, 1, 8],        // 200 layers
            vec![b'T', b'C', 1, 1, 5, 5, 2, 8, 0xFF, 0xFF], // sparse flag, then ones
            vec![b'T', b'C', 1, 4, 5, 5, 2, 8],             // unknown flag
            vec![b'T', b'C', 1, 3, 5, 5, 2, 8, 16],         // quantised to 16 bits
            vec![b'T', b'C', 1, 3, 5, 5, 1, 1, 1],          // quantised to 1 bit
            vec![b'T', b'C', 1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], // huge width
        ];
        for mut body in cases {
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            assert!(
                matches!(
                    CompressedImage::decode(&body),
                    Err(CompressError::Corrupt(_))
                ),
                "{body:?}"
            );
        }
    }
}
