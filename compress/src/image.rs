//! 8-bit RGB images: loading with validation, box downscaling, saving, PSNR.
//!
//! PSNR follows the convention of every Kodak figure the project compares with (COIN,
//! CompressAI's curves): MSE over all pixels and all three channels of the 8-bit images,
//! `PSNR = 10 log10(255^2 / MSE)`.

use std::path::Path;

use crate::error::CompressError;

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

    /// Reads any format the `image` crate decodes (PNG, JPEG), converted to 8-bit RGB.
    ///
    /// # Errors
    /// An unreadable file, an undecodable image, or one with a zero dimension.
    pub fn load(path: &Path) -> Result<Self, CompressError> {
        let bytes = std::fs::read(path).map_err(|e| CompressError::io(path, e))?;
        Self::decode(&bytes).map_err(|e| match e {
            CompressError::Decode(msg) => {
                CompressError::Decode(format!("{}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// Decodes an encoded image (PNG, JPEG) from memory.
    ///
    /// # Errors
    /// Bytes the `image` crate cannot decode, or a zero-size image.
    pub fn decode(bytes: &[u8]) -> Result<Self, CompressError> {
        if bytes.is_empty() {
            return Err(CompressError::Decode("the file is empty".into()));
        }
        let img = image::load_from_memory(bytes)
            .map_err(|e| CompressError::Decode(e.to_string()))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        Self::new(w as usize, h as usize, img.into_raw())
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
