//! 8-bit RGB images: loading with validation (and a report of what the conversion to 8-bit
//! RGB lost: [`Dropped`]), box downscaling, saving, PSNR.
//!
//! PSNR follows the convention of every Kodak figure the project compares with (COIN,
//! CompressAI's curves): MSE over all pixels and all three channels of the 8-bit images,
//! `PSNR = 10 log10(255^2 / MSE)`.

use std::path::Path;

use crate::error::CompressError;

/// Bits per pixel of the pixels uncompressed, 8-bit RGB: the codec's input. A rate at or
/// above it makes a file no smaller than the raw pixels.
pub const RAW_BPP: f64 = 24.0;

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height * width * 3` bytes, row by row, R G B.
    pub rgb: Vec<u8>,
}

impl Image {
    /// An image from its pixels.
    ///
    /// # Errors
    /// A zero dimension, or `rgb` not `width * height * 3` long.
    pub fn new(width: usize, height: usize, rgb: Vec<u8>) -> Result<Self, CompressError> {
        if width == 0 || height == 0 {
            return Err(CompressError::EmptyImage);
        }
        if rgb.len() != width * height * 3 {
            return Err(CompressError::Invalid(format!(
                "{width}x{height} RGB needs {} bytes, got {}",
                width * height * 3,
                rgb.len()
            )));
        }
        Ok(Self { width, height, rgb })
    }

    /// Reads any format the `image` crate decodes (PNG, JPEG), converted to 8-bit RGB
    /// whatever it lost ([`load_reporting`](Self::load_reporting) says what).
    ///
    /// # Errors
    /// An unreadable file, an undecodable image, or one with a zero dimension.
    pub fn load(path: &Path) -> Result<Self, CompressError> {
        Self::load_reporting(path).map(|(image, _)| image)
    }

    /// [`load`](Self::load), and what the conversion to 8-bit RGB dropped.
    ///
    /// # Errors
    /// An unreadable file, an undecodable image, or one with a zero dimension.
    pub fn load_reporting(path: &Path) -> Result<(Self, Dropped), CompressError> {
        let bytes = std::fs::read(path).map_err(|e| CompressError::io(path, e))?;
        Self::decode_reporting(&bytes).map_err(|e| match e {
            CompressError::Decode(msg) => {
                CompressError::Decode(format!("{}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// Decodes an encoded image (PNG, JPEG) from memory, converted to 8-bit RGB.
    ///
    /// # Errors
    /// Bytes the `image` crate cannot decode, or a zero-size image.
    pub fn decode(bytes: &[u8]) -> Result<Self, CompressError> {
        Self::decode_reporting(bytes).map(|(image, _)| image)
    }

    /// [`decode`](Self::decode), and what the conversion to 8-bit RGB dropped.
    ///
    /// # Errors
    /// Bytes the `image` crate cannot decode, or a zero-size image.
    pub fn decode_reporting(bytes: &[u8]) -> Result<(Self, Dropped), CompressError> {
        if bytes.is_empty() {
            return Err(CompressError::Decode("the file is empty".into()));
        }
        let img =
            image::load_from_memory(bytes).map_err(|e| CompressError::Decode(e.to_string()))?;
        let dropped = Dropped::of(&img);
        let rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        Ok((Self::new(w as usize, h as usize, rgb.into_raw())?, dropped))
    }

    /// Writes a PNG (temporary file, then rename: never a half-written image).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_png(&self, path: &Path) -> Result<(), CompressError> {
        let mut bytes = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut bytes),
            &self.rgb,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| CompressError::Invalid(format!("PNG encoding failed: {e}")))?;
        tether_train::io::write_atomic(path, &bytes).map_err(|e| CompressError::io(path, e))
    }

    /// Pixels.
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }

    /// Downscales by an integer `factor` by averaging `factor x factor` boxes (an exact
    /// area filter: no ringing, the standard way to make a small test set from Kodak).
    /// Trailing rows and columns that do not fill a box are dropped.
    ///
    /// # Errors
    /// `factor` is 0 or larger than a side.
    pub fn downscale(&self, factor: usize) -> Result<Self, CompressError> {
        if factor == 0 || factor > self.width || factor > self.height {
            return Err(CompressError::Invalid(format!(
                "cannot downscale {}x{} by {factor}",
                self.width, self.height
            )));
        }
        let (w, h) = (self.width / factor, self.height / factor);
        let n = (factor * factor) as u32;
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in 0..factor {
                        let row = (y * factor + dy) * self.width;
                        for dx in 0..factor {
                            sum += u32::from(self.rgb[(row + x * factor + dx) * 3 + c]);
                        }
                    }
                    rgb.push(((sum + n / 2) / n) as u8);
                }
            }
        }
        Self::new(w, h, rgb)
    }

    /// Channel values scaled to `[0, 1]`, row-major `[pixels, 3]`.
    pub fn to_unit(&self) -> Vec<f32> {
        self.rgb.iter().map(|&v| f32::from(v) / 255.0).collect()
    }

    /// An image from values in `[0, 1]` (clamped, then rounded to 8 bits).
    ///
    /// # Errors
    /// A zero dimension or a length that does not match.
    pub fn from_unit(width: usize, height: usize, values: &[f32]) -> Result<Self, CompressError> {
        let rgb = values.iter().map(|&v| to_u8(v)).collect();
        Self::new(width, height, rgb)
    }
}

/// What converting a decoded image to 8-bit RGB lost. A conversion that loses nothing is
/// not reported: an alpha channel that is opaque everywhere, 16-bit values that are all
/// exact 8-bit levels (multiples of 257), grey levels copied to three channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Pixels whose alpha was not fully opaque, and the image's pixels. The alpha channel
    /// is dropped, not composited: such a pixel is coded with the colour stored under it.
    pub translucent: Option<(usize, usize)>,
    /// Bits per channel of an image whose values were rounded to 8 bits (16; 32 for
    /// floating point).
    pub bits: Option<u8>,
}

impl Dropped {
    /// What converting `img` to 8-bit RGB loses.
    fn of(img: &image::DynamicImage) -> Self {
        use image::DynamicImage as D;
        /// Pixels of `raw` (`channels` a pixel, alpha last) whose alpha is not `opaque`.
        fn translucent<T: PartialEq + Copy>(raw: &[T], channels: usize, opaque: T) -> usize {
            raw.chunks_exact(channels)
                .filter(|p| p[channels - 1] != opaque)
                .count()
        }
        /// Whether a colour value of `raw` (`channels` a pixel, the first `colour` of them
        /// colour) is not an exact 8-bit level.
        fn inexact(raw: &[u16], channels: usize, colour: usize) -> bool {
            raw.chunks_exact(channels)
                .any(|p| p[..colour].iter().any(|v| v % 257 != 0))
        }
        let translucent = match img {
            D::ImageLumaA8(b) => translucent(b.as_raw(), 2, u8::MAX),
            D::ImageRgba8(b) => translucent(b.as_raw(), 4, u8::MAX),
            D::ImageLumaA16(b) => translucent(b.as_raw(), 2, u16::MAX),
            D::ImageRgba16(b) => translucent(b.as_raw(), 4, u16::MAX),
            D::ImageRgba32F(b) => translucent(b.as_raw(), 4, 1.0),
            _ => 0,
        };
        let inexact16 = match img {
            D::ImageLuma16(b) => inexact(b.as_raw(), 1, 1),
            D::ImageLumaA16(b) => inexact(b.as_raw(), 2, 1),
            D::ImageRgb16(b) => inexact(b.as_raw(), 3, 3),
            D::ImageRgba16(b) => inexact(b.as_raw(), 4, 3),
            _ => false,
        };
        let float = matches!(img, D::ImageRgb32F(_) | D::ImageRgba32F(_));
        let pixels = img.width() as usize * img.height() as usize;
        Self {
            translucent: (translucent > 0).then_some((translucent, pixels)),
            bits: if float {
                Some(32)
            } else {
                inexact16.then_some(16)
            },
        }
    }

    /// Whether nothing was lost.
    pub fn is_empty(&self) -> bool {
        self.translucent.is_none() && self.bits.is_none()
    }
}

impl std::fmt::Display for Dropped {
    /// What is lost, e.g. "alpha channel dropped: 12 of 64 pixels are not fully opaque
    /// (the colour stored under them is coded, not composited over a background)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((n, of)) = self.translucent {
            parts.push(format!(
                "alpha channel dropped: {n} of {of} pixels are not fully opaque (the colour \
                 stored under them is coded, not composited over a background)"
            ));
        }
        if let Some(bits) = self.bits {
            parts.push(format!("{bits}-bit channels rounded to 8 bits"));
        }
        if parts.is_empty() {
            return f.write_str("nothing lost");
        }
        f.write_str(&parts.join("; "))
    }
}

/// A value in `[0, 1]` (clamped; NaN is 0) as an 8-bit level.
pub fn to_u8(v: f32) -> u8 {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    (v * 255.0).round() as u8
}

/// Mean squared error over all channels of two 8-bit images, in 8-bit levels squared.
///
/// # Errors
/// Images of different sizes.
pub fn mse(a: &Image, b: &Image) -> Result<f64, CompressError> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(CompressError::Invalid(format!(
            "images differ in size: {}x{} vs {}x{}",
            a.width, a.height, b.width, b.height
        )));
    }
    let sum: u64 = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| {
            let d = i64::from(x) - i64::from(y);
            (d * d) as u64
        })
        .sum();
    Ok(sum as f64 / a.rgb.len() as f64)
}

/// PSNR in dB of two 8-bit images (infinite when they are identical).
///
/// # Errors
/// Images of different sizes.
pub fn psnr(a: &Image, b: &Image) -> Result<f64, CompressError> {
    Ok(psnr_from_mse(mse(a, b)?))
}

/// PSNR in dB from an MSE in 8-bit levels squared.
pub fn psnr_from_mse(mse: f64) -> f64 {
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        let a = Image::new(2, 1, vec![0, 0, 0, 10, 10, 10]).unwrap();
        let b = Image::new(2, 1, vec![1, 1, 1, 10, 10, 10]).unwrap();
        // MSE = 3 / 6 = 0.5
        assert!((mse(&a, &b).unwrap() - 0.5).abs() < 1e-12);
        let expected = 10.0 * (255.0f64 * 255.0 / 0.5).log10();
        assert!((psnr(&a, &b).unwrap() - expected).abs() < 1e-12);
        assert!(psnr(&a, &a).unwrap().is_infinite());
    }

    #[test]
    fn downscale_averages_boxes() {
        let rgb: Vec<u8> = (0..4 * 2 * 3).map(|i| i as u8).collect();
        let img = Image::new(4, 2, rgb).unwrap();
        let small = img.downscale(2).unwrap();
        assert_eq!((small.width, small.height), (2, 1));
        // Box of pixels (0,0),(1,0),(0,1),(1,1), red channel: 0, 3, 12, 15 -> 7.5 -> 8.
        assert_eq!(small.rgb[0], 8);
        assert!(img.downscale(3).is_err());
        assert!(img.downscale(0).is_err());
    }

    #[test]
    fn bad_images_are_errors() {
        assert!(matches!(
            Image::new(0, 5, vec![]),
            Err(CompressError::EmptyImage)
        ));
        assert!(Image::new(2, 2, vec![0; 11]).is_err());
        assert!(matches!(Image::decode(&[]), Err(CompressError::Decode(_))));
        assert!(matches!(
            Image::decode(b"not an image at all"),
            Err(CompressError::Decode(_))
        ));
    }

    /// A PNG of `width` x 1 pixels of `color` from its raw bytes (16-bit values
    /// big-endian, as PNG stores them).
    fn png(width: u32, raw: &[u8], color: image::ExtendedColorType) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut bytes),
            raw,
            width,
            1,
            color,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn what_the_conversion_to_8_bit_rgb_loses_is_reported() {
        use image::ExtendedColorType as C;
        // RGBA, one pixel of three translucent: the alpha is dropped, the colour kept.
        let raw = [10, 20, 30, 255, 40, 50, 60, 0, 70, 80, 90, 128];
        let (img, dropped) = Image::decode_reporting(&png(3, &raw, C::Rgba8)).unwrap();
        assert_eq!(img.rgb, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
        assert_eq!(dropped.translucent, Some((2, 3)));
        assert_eq!(dropped.bits, None);
        assert!(
            dropped
                .to_string()
                .contains("2 of 3 pixels are not fully opaque")
        );
        // Opaque everywhere: nothing lost.
        let raw = [10, 20, 30, 255, 40, 50, 60, 255];
        let (_, dropped) = Image::decode_reporting(&png(2, &raw, C::Rgba8)).unwrap();
        assert!(dropped.is_empty(), "{dropped}");
        // Grey with alpha.
        let (_, dropped) = Image::decode_reporting(&png(2, &[9, 255, 9, 254], C::La8)).unwrap();
        assert_eq!(dropped.translucent, Some((1, 2)));
        // 16-bit RGB: values that are exact 8-bit levels (v * 257) lose nothing ...
        let exact: Vec<u8> = [0u16, 257, 255 * 257, 3 * 257, 4 * 257, 5 * 257]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let (img, dropped) = Image::decode_reporting(&png(2, &exact, C::Rgb16)).unwrap();
        assert!(dropped.is_empty(), "{dropped}");
        assert_eq!(img.rgb, [0, 1, 255, 3, 4, 5]);
        // ... one that is not is rounded, and said so.
        let mut inexact = exact.clone();
        inexact[3] += 1;
        let (_, dropped) = Image::decode_reporting(&png(2, &inexact, C::Rgb16)).unwrap();
        assert_eq!(dropped.bits, Some(16));
        assert_eq!(dropped.translucent, None);
        assert_eq!(dropped.to_string(), "16-bit channels rounded to 8 bits");
        // 16-bit grey and alpha: both at once.
        let raw: Vec<u8> = [1000u16, 65535, 2570, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let (_, dropped) = Image::decode_reporting(&png(2, &raw, C::La16)).unwrap();
        assert_eq!(dropped.bits, Some(16));
        assert_eq!(dropped.translucent, Some((1, 2)));
        // Plain 8-bit RGB and grey lose nothing.
        let (_, dropped) = Image::decode_reporting(&png(1, &[1, 2, 3], C::Rgb8)).unwrap();
        assert!(dropped.is_empty());
        let (img, dropped) = Image::decode_reporting(&png(1, &[7], C::L8)).unwrap();
        assert!(dropped.is_empty());
        assert_eq!(img.rgb, [7, 7, 7]);
    }

    #[test]
    fn png_round_trip() {
        let img = Image::new(3, 2, (0..18).map(|i| (i * 13) as u8).collect()).unwrap();
        let dir = std::env::temp_dir().join(format!("tether-img-{}", std::process::id()));
        let path = dir.join("x.png");
        img.save_png(&path).unwrap();
        assert_eq!(Image::load(&path).unwrap(), img);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
