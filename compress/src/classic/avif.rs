//! AVIF (AV1 still image in HEIF) at its best settings: ravif over rav1e at speed 1 (the
//! slowest), 10-bit 4:4:4 YCbCr (BT.601 matrix, full range), decoded by dav1d (the
//! reference AV1 decoder, a system library: Debian's `libdav1d-dev`) after the AV1 item
//! is read out of the container by `avif-parse`.
//!
//! The decoder here reads what this module writes (4:4:4, 8 or 10 bits, BT.601 full
//! range, ravif's only YCbCr form) and refuses other layouts, not every AVIF file.

use ravif::{BitDepth, ColorModel, Encoder, Img, RGB8};

use super::ClassicCodec;
use crate::error::CompressError;
use crate::image::Image;

/// ravif (rav1e) at speed 1, 10-bit 4:4:4, decoded by dav1d.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avif;

/// rav1e's slowest, best speed setting (`1..=10` in ravif).
const SPEED: u8 = 1;

/// BT.601 luma weights (Kr, Kg, Kb): the matrix ravif writes for YCbCr.
const BT601: [f64; 3] = [0.299, 0.587, 0.114];

impl ClassicCodec for Avif {
    fn name(&self) -> &'static str {
        "AVIF (rav1e speed 1, 4:4:4)"
    }

    fn qualities(&self) -> std::ops::RangeInclusive<u8> {
        1..=100
    }

    /// 1, then every fifth quality from 5 to 95: rav1e at speed 1 takes about a second
    /// per 192x128 image here, and the curve between its points is smooth.
    fn curve_qualities(&self) -> Vec<u8> {
        std::iter::once(1).chain((5..=95).step_by(5)).collect()
    }

    fn encode(&self, img: &Image, quality: u8) -> Result<Vec<u8>, CompressError> {
        let pixels: Vec<RGB8> = img
            .rgb
            .chunks_exact(3)
            .map(|p| RGB8::new(p[0], p[1], p[2]))
            .collect();
        let encoded = Encoder::new()
            .with_quality(f32::from(quality))
            .with_speed(SPEED)
            .with_bit_depth(BitDepth::Ten)
            .with_internal_color_model(ColorModel::YCbCr)
            .with_num_threads(Some(1))
            .encode_rgb(Img::new(pixels.as_slice(), img.width, img.height))
            .map_err(|e| CompressError::Invalid(format!("AVIF encoding failed: {e}")))?;
        Ok(encoded.avif_file)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Image, CompressError> {
        let bad = |what: String| CompressError::Decode(format!("AVIF: {what}"));
        let parsed = avif_parse::read_avif(&mut &bytes[..]).map_err(|e| bad(format!("{e:?}")))?;
        let av1: Vec<u8> = parsed.primary_item.to_vec();
        // One thread and no frame delay: the picture is out as soon as its data is in.
        let mut settings = dav1d::Settings::new();
        settings.set_n_threads(1);
        settings.set_max_frame_delay(1);
        let dav1d = |e: dav1d::Error| bad(format!("dav1d: {e}"));
        let mut decoder = dav1d::Decoder::with_settings(&settings).map_err(dav1d)?;
        let mut pending = match decoder.send_data(av1, None, None, None) {
            Ok(()) => false,
            Err(dav1d::Error::Again) => true,
            Err(e) => return Err(dav1d(e)),
        };
        let picture = loop {
            match decoder.get_picture() {
                Ok(picture) => break picture,
                Err(dav1d::Error::Again) if pending => {
                    pending = match decoder.send_pending_data() {
                        Ok(()) => false,
                        Err(dav1d::Error::Again) => true,
                        Err(e) => return Err(dav1d(e)),
                    };
                }
                Err(dav1d::Error::Again) => {
                    return Err(bad("the AV1 data ends before a picture".into()));
                }
                Err(e) => return Err(dav1d(e)),
            }
        };
        if picture.pixel_layout() != dav1d::PixelLayout::I444 {
            return Err(bad(format!(
                "{:?} chroma; this decoder reads the 4:4:4 files it writes",
                picture.pixel_layout()
            )));
        }
        let bits = picture
            .bits_per_component()
            .map(|b| b.0)
            .filter(|&b| b == 8 || b == 10)
            .ok_or_else(|| bad("only 8- and 10-bit pictures are read".into()))?;
        let (w, h) = (picture.width() as usize, picture.height() as usize);
        let planes = [
            dav1d::PlanarImageComponent::Y,
            dav1d::PlanarImageComponent::U,
            dav1d::PlanarImageComponent::V,
        ]
        .map(|c| (picture.plane(c), picture.stride(c) as usize));
        let sample = |plane: usize, x: usize, y: usize| -> f64 {
            let (data, stride) = &planes[plane];
            if bits == 8 {
                f64::from(data[y * stride + x])
            } else {
                let i = y * stride + 2 * x;
                f64::from(u16::from_le_bytes([data[i], data[i + 1]]))
            }
        };
        let max = f64::from((1u32 << bits) - 1);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] =
                    ycbcr_to_rgb(sample(0, x, y), sample(1, x, y), sample(2, x, y), max);
                rgb.extend([r, g, b]);
            }
        }
        Image::new(w, h, rgb)
    }
}

/// Full-range YCbCr of `max = 2^bits - 1` levels back to 8-bit RGB: the inverse of
/// ravif's forward transform (ITU-T H.273's equations for matrix 6, full range), which is
/// `Y = s (Kr R + Kg G + Kb B)`, `Cb = m + (s B - Y) / (2 (1 - Kb))` and
/// `Cr = m + (s R - Y) / (2 (1 - Kr))`, with `s = max / 255` and `m = round(max / 2)`.
fn ycbcr_to_rgb(y: f64, cb: f64, cr: f64, max: f64) -> [u8; 3] {
    let [kr, kg, kb] = BT601;
    let (scale, mid) = (max / 255.0, (max * 0.5).round());
    let r = y + 2.0 * (1.0 - kr) * (cr - mid);
    let b = y + 2.0 * (1.0 - kb) * (cb - mid);
    let g = (y - kr * r - kb * b) / kg;
    [r, g, b].map(|v| (v / scale).round().clamp(0.0, 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::super::encode_at_quality;
    use super::super::test_images::smooth;
    use super::*;

    /// The inverse transform undoes ravif's forward one exactly on every grey level and
    /// on the primaries (at 10 bits the round trip through integers loses nothing).
    #[test]
    fn the_colour_transform_round_trips_at_ten_bits() {
        let forward = |[r, g, b]: [u8; 3]| {
            let [kr, kg, kb] = BT601;
            let max = 1023.0;
            let s = max / 255.0;
            let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
            let y = s * (kr * r + kg * g + kb * b);
            let cb = (s * b - y) * 0.5 / (1.0 - kb) + (max * 0.5f64).round();
            let cr = (s * r - y) * 0.5 / (1.0 - kr) + (max * 0.5f64).round();
            [y.round(), cb.round(), cr.round()]
        };
        let mut colours: Vec<[u8; 3]> = (0..=255).map(|v| [v, v, v]).collect();
        colours.extend([[255, 0, 0], [0, 255, 0], [0, 0, 255], [12, 200, 99]]);
        for c in colours {
            let [y, cb, cr] = forward(c);
            assert_eq!(ycbcr_to_rgb(y, cb, cr, 1023.0), c);
        }
    }

    /// At the top quality the decoded image is near-lossless: the file, the container
    /// parsing and the colour transform are all right (a wrong matrix or a swapped
    /// chroma plane costs tens of dB).
    #[test]
    fn the_top_quality_is_near_lossless() {
        let img = smooth(64, 48);
        let p = encode_at_quality(&Avif, &img, 100).unwrap();
        assert!(p.psnr > 45.0, "{p:?}");
    }

    #[test]
    fn files_are_avif_and_bad_files_are_errors() {
        let bytes = Avif.encode(&smooth(40, 24), 60).unwrap();
        assert_eq!(&bytes[4..12], b"ftypavif");
        assert!(Avif.decode(&bytes[..bytes.len() / 2]).is_err());
        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 20..].iter_mut().for_each(|b| *b ^= 0xFF);
        // A damaged AV1 payload either fails or decodes to something else, never panics.
        let _ = Avif.decode(&flipped);
    }
}
