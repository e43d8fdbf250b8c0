//! The classical codecs every learned one is judged against (JPEG, WebP, AVIF), measured
//! one way: encode at a quality, keep the whole file's size (headers included), decode it
//! with the format's own decoder and take the PSNR of what a viewer would show
//! ([`crate::image::psnr`], as for every codec here).
//!
//! Each runs at its best setting for rate-distortion, not its fastest (a weak baseline
//! flatters nobody): WebP at libwebp's slowest method, AVIF at rav1e's slowest speed with
//! 10-bit 4:4:4 (ravif's best), JPEG as the published Kodak curve was made (see
//! [`jpeg`] for why its Huffman tables are the standard ones).

pub mod jpeg;
pub mod webp;

#[cfg(feature = "avif")]
pub mod avif;

use crate::error::CompressError;
use crate::image::{Image, psnr};
use crate::rd::CurvePoint;

/// A classical image codec driven by one quality knob (file size grows with it).
pub trait ClassicCodec {
    /// The name on plots and in tables.
    fn name(&self) -> &'static str;

    /// The qualities the knob takes, lowest (smallest file) first.
    fn qualities(&self) -> std::ops::RangeInclusive<u8>;

    /// The qualities a rate-distortion curve samples: every one by default; a slow
    /// encoder samples fewer.
    fn curve_qualities(&self) -> Vec<u8> {
        self.qualities().collect()
    }

    /// The whole file for `img` at `quality`.
    ///
    /// # Errors
    /// A quality outside [`qualities`](Self::qualities), an image the format cannot
    /// hold, or an encoder failure.
    fn encode(&self, img: &Image, quality: u8) -> Result<Vec<u8>, CompressError>;

    /// The file decoded by the format's decoder.
    ///
    /// # Errors
    /// A file that does not decode.
    fn decode(&self, bytes: &[u8]) -> Result<Image, CompressError>;
}

/// The result of encoding one image at one quality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The quality setting.
    pub quality: u8,
    /// Size of the whole file in bytes.
    pub bytes: usize,
    /// `bytes * 8 / pixels`: the rate, comparable with any codec's file size.
    pub bpp: f64,
    /// PSNR in dB of the decoded file against the original.
    pub psnr: f64,
}

fn check_quality(codec: &dyn ClassicCodec, quality: u8) -> Result<(), CompressError> {
    let range = codec.qualities();
    if range.contains(&quality) {
        Ok(())
    } else {
        Err(CompressError::Invalid(format!(
            "{} quality must be in {}..={}, got {quality}",
            codec.name(),
            range.start(),
            range.end()
        )))
    }
}

/// Encodes `img` at `quality`, decodes the file and measures its rate and PSNR.
///
/// # Errors
/// As [`ClassicCodec::encode`]; a decoded image of another size than the input (a bug,
/// reported as [`CompressError::Decode`]).
pub fn encode_at_quality(
    codec: &dyn ClassicCodec,
    img: &Image,
    quality: u8,
) -> Result<Point, CompressError> {
    check_quality(codec, quality)?;
    let bytes = codec.encode(img, quality)?;
    let decoded = codec.decode(&bytes)?;
    Ok(Point {
        quality,
        bytes: bytes.len(),
        bpp: bytes.len() as f64 * 8.0 / img.pixels() as f64,
        psnr: psnr(img, &decoded)?,
    })
}

/// The highest quality whose whole file fits in `target_bpp`: the codec given the same
/// bit budget as another, for a per-image comparison at matched rate.
///
/// Binary search over the qualities, which assumes file size grows with quality (true of
/// these encoders up to a few bytes); whatever the search returns was measured and is
/// within budget. `Ok(None)` when even the lowest quality is over budget (JPEG's headers
/// alone cost about 0.3 bpp on a 192x128 image).
///
/// # Errors
/// As [`encode_at_quality`]; a non-finite or negative `target_bpp`.
pub fn encode_at_bpp(
    codec: &dyn ClassicCodec,
    img: &Image,
    target_bpp: f64,
) -> Result<Option<Point>, CompressError> {
    if !(target_bpp.is_finite() && target_bpp >= 0.0) {
        return Err(CompressError::Invalid(format!(
            "a bpp budget must be finite and non-negative, got {target_bpp}"
        )));
    }
    let range = codec.qualities();
    let (mut lo, mut hi) = (*range.start(), *range.end());
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let point = encode_at_quality(codec, img, mid)?;
        if point.bpp <= target_bpp {
            best = Some(point);
            lo = mid + 1;
        } else if mid == *range.start() {
            break;
        } else {
            hi = mid - 1;
        }
    }
    Ok(best)
}

/// The rate-distortion curve of a set of images: at each quality, bpp and PSNR each
/// averaged over the images (the way the published Kodak curves were made; note that
/// this averages PSNR, not MSE). One point per quality, sorted by increasing bpp.
///
/// # Errors
/// No images, or any encoding failure (see [`encode_at_quality`]).
pub fn curve(
    codec: &dyn ClassicCodec,
    images: &[Image],
    qualities: &[u8],
) -> Result<Vec<CurvePoint>, CompressError> {
    if images.is_empty() {
        return Err(CompressError::Invalid(format!(
            "a {} curve needs at least one image",
            codec.name()
        )));
    }
    let n = images.len() as f64;
    let mut points = qualities
        .iter()
        .map(|&q| {
            let (mut bpp, mut db) = (0.0, 0.0);
            for img in images {
                let p = encode_at_quality(codec, img, q)?;
                bpp += p.bpp;
                db += p.psnr;
            }
            Ok(CurvePoint {
                bpp: bpp / n,
                psnr: db / n,
            })
        })
        .collect::<Result<Vec<_>, CompressError>>()?;
    points.sort_by(|a, b| a.bpp.total_cmp(&b.bpp));
    Ok(points)
}

/// Every classical codec this build has: JPEG and WebP always, AVIF with the `avif`
/// feature (its decoder, dav1d, is a system library).
pub fn all() -> Vec<Box<dyn ClassicCodec>> {
    let codecs: Vec<Box<dyn ClassicCodec>> = vec![Box::new(jpeg::Jpeg), Box::new(webp::WebP)];
    #[cfg(feature = "avif")]
    let codecs = {
        let mut codecs = codecs;
        codecs.push(Box::new(avif::Avif));
        codecs
    };
    codecs
}

#[cfg(test)]
pub(crate) mod test_images {
    use crate::image::Image;

    /// The developers' shared Kodak photo kodim01 (users do not have it): `None`, with a
    /// message, where it is absent.
    pub fn kodim01() -> Option<Image> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/kodak/kodim01.png");
        if !path.exists() {
            eprintln!("skipped: {} is absent", path.display());
            return None;
        }
        Some(Image::load(&path).unwrap())
    }

    /// A smooth colour image with some texture: gradients plus low-frequency waves.
    pub fn smooth(width: usize, height: usize) -> Image {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f64 / width as f64, y as f64 / height as f64);
                let wave = (fx * 9.0).sin() * (fy * 7.0).cos();
                rgb.push((40.0 + 170.0 * fx + 30.0 * wave) as u8);
                rgb.push((60.0 + 140.0 * fy - 25.0 * wave) as u8);
                rgb.push((128.0 + 90.0 * (fx - fy) + 20.0 * wave) as u8);
            }
        }
        Image::new(width, height, rgb).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_images::smooth;
    use super::*;

    /// What every codec must do: PSNR and size rise with quality, the budget search
    /// stays within budget, bad arguments are errors.
    fn contract(codec: &dyn ClassicCodec) {
        let img = smooth(96, 64);
        let range = codec.qualities();
        let qs = [*range.start() + 4, 30, 60, 90];
        let points: Vec<Point> = qs
            .iter()
            .map(|&q| encode_at_quality(codec, &img, q).unwrap())
            .collect();
        for w in points.windows(2) {
            assert!(w[1].psnr > w[0].psnr, "{}: {w:?}", codec.name());
            assert!(w[1].bytes > w[0].bytes, "{}: {w:?}", codec.name());
        }
        assert!(points[3].psnr > 35.0, "{}: {:?}", codec.name(), points[3]);
        let mid = points[1];
        let fit = encode_at_bpp(codec, &img, mid.bpp).unwrap().unwrap();
        assert!(fit.bpp <= mid.bpp && fit.quality >= mid.quality, "{fit:?}");
        assert_eq!(encode_at_bpp(codec, &img, 0.001).unwrap(), None);
        assert!(encode_at_bpp(codec, &img, f64::NAN).is_err());
        assert!(
            encode_at_quality(codec, &img, range.end().saturating_add(1)).is_err()
                || *range.end() == u8::MAX
        );
        assert!(codec.decode(&[]).is_err());
        assert!(codec.decode(b"not an image at all").is_err());
        let odd = smooth(33, 17);
        let bytes = codec.encode(&odd, 50).unwrap();
        let back = codec.decode(&bytes).unwrap();
        assert_eq!((back.width, back.height), (33, 17), "{}", codec.name());
    }

    #[test]
    fn every_codec_keeps_the_contract() {
        for codec in all() {
            contract(codec.as_ref());
        }
    }

    #[test]
    fn curve_averages_at_equal_quality_and_sorts_by_bpp() {
        let images = [smooth(48, 32), smooth(40, 40)];
        for codec in all() {
            let c = codec.as_ref();
            let curve = curve(c, &images, &[90, 10, 50]).unwrap();
            assert_eq!(curve.len(), 3);
            assert!(
                curve.windows(2).all(|w| w[0].bpp < w[1].bpp),
                "{}",
                c.name()
            );
            let a = encode_at_quality(c, &images[0], 50).unwrap();
            let b = encode_at_quality(c, &images[1], 50).unwrap();
            assert!((curve[1].bpp - (a.bpp + b.bpp) / 2.0).abs() < 1e-12);
            assert!((curve[1].psnr - (a.psnr + b.psnr) / 2.0).abs() < 1e-12);
            assert!(super::curve(c, &[], &[50]).is_err());
        }
    }
}
