//! WebP (lossy, VP8) through libwebp, the reference encoder and decoder (the `webp`
//! crate builds libwebp from its bundled sources: no system library).
//!
//! The settings, and why:
//! - **method 6**, libwebp's slowest and best rate-distortion search (`cwebp -m 6`); the
//!   default 4 is a speed trade a baseline should not make;
//! - the other settings libwebp's defaults (`cwebp -q Q -m 6`): 4:2:0, the photo-tuned
//!   spatial noise shaping and loop filter;
//! - **decoded by libwebp** (`WebPDecodeRGB`, its fancy chroma upsampling, what browsers
//!   show), the rate the whole RIFF file.

use super::ClassicCodec;
use crate::error::CompressError;
use crate::image::Image;

/// libwebp's lossy WebP at method 6.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebP;

/// libwebp's slowest, best method (`0..=6`).
const METHOD: i32 = 6;

impl ClassicCodec for WebP {
    fn name(&self) -> &'static str {
        "WebP (libwebp -m 6)"
    }

    fn qualities(&self) -> std::ops::RangeInclusive<u8> {
        0..=100
    }

    /// Every other quality: about 10 ms a 192x128 image at method 6.
    fn curve_qualities(&self) -> Vec<u8> {
        (0..=100).step_by(2).collect()
    }

    fn encode(&self, img: &Image, quality: u8) -> Result<Vec<u8>, CompressError> {
        const MAX_SIDE: usize = 16383;
        if img.width > MAX_SIDE || img.height > MAX_SIDE {
            return Err(CompressError::Invalid(format!(
                "WebP sides are at most {MAX_SIDE} pixels, the image is {}x{}",
                img.width, img.height
            )));
        }
        let mut config = webp::WebPConfig::new()
            .map_err(|()| CompressError::Invalid("libwebp rejected its default config".into()))?;
        config.quality = f32::from(quality);
        config.method = METHOD;
        // The sides were checked against WebP's limit above.
        let (w, h) = (img.width as u32, img.height as u32);
        let encoded = webp::Encoder::from_rgb(&img.rgb, w, h)
            .encode_advanced(&config)
            .map_err(|e| CompressError::Invalid(format!("WebP encoding failed: {e:?}")))?;
        Ok(encoded.to_vec())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Image, CompressError> {
        let decoded = webp::Decoder::new(bytes)
            .decode()
            .ok_or_else(|| CompressError::Decode("not a WebP file libwebp can decode".into()))?;
        let (w, h) = (decoded.width() as usize, decoded.height() as usize);
        let rgb = match decoded.layout() {
            webp::PixelLayout::Rgb => decoded.to_vec(),
            webp::PixelLayout::Rgba => decoded
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
        };
        Image::new(w, h, rgb)
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode_at_quality;
    use super::super::test_images::{kodim01, smooth};
    use super::*;

    /// The file is a RIFF WEBP of the lossy kind (a `VP8 ` chunk, not `VP8L`).
    #[test]
    fn files_are_lossy_webp() {
        let bytes = WebP.encode(&smooth(64, 48), 75).unwrap();
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WEBP");
        assert_eq!(&bytes[12..16], b"VP8 ");
    }

    #[test]
    fn truncated_and_oversized_input_are_errors() {
        let bytes = WebP.encode(&smooth(64, 48), 75).unwrap();
        assert!(WebP.decode(&bytes[..bytes.len() / 2]).is_err());
        let wide = Image::new(20_000, 1, vec![0; 20_000 * 3]).unwrap();
        assert!(WebP.encode(&wide, 50).is_err());
    }

    #[test]
    fn kodim01_at_quality_75() {
        let Some(img) = kodim01() else {
            return;
        };
        let p = encode_at_quality(&WebP, &img, 75).unwrap();
        eprintln!("kodim01 WebP q75: {p:?}");
        assert!(p.bpp > 0.5 && p.bpp < 2.5, "{p:?}");
        assert!(p.psnr > 26.0 && p.psnr < 36.0, "{p:?}");
    }
}
