//! JPEG as a fair baseline: baseline JPEG with the settings of the published Kodak curve
//! (Pillow's defaults), measured the same way as every other codec here.
//!
//! The settings, and why:
//! - **4:2:0 chroma subsampling at every quality.** Pillow subsamples by default; the
//!   `jpeg-encoder` crate would switch to 4:4:4 at quality 90 and above, which costs bits
//!   and would make the high-quality end of the curve unlike the published one.
//! - **IJG quantisation tables scaled by quality** (the `jpeg-encoder` default, the same
//!   scaling as libjpeg's `jpeg_set_quality`).
//! - **Standard (Annex K) Huffman tables, not optimised ones.** Pillow does not optimise
//!   by default, and the `image` 0.25 decoder misreads `jpeg-encoder` files written with
//!   optimised tables.
//! - **Rate counts the whole file** (headers included), as for COIN's weight files.
//! - **Decoded by the `image` crate** ([`Image::decode`]), so PSNR is that of what a
//!   viewer would show, computed by [`crate::image::psnr`] like every other codec's.

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::error::CompressError;
use crate::image::{Image, psnr};
use crate::rd::CurvePoint;

/// The result of encoding one image at one quality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JpegPoint {
    /// The quality setting, 1 (smallest) to 100 (best).
    pub quality: u8,
    /// Size of the whole JPEG file in bytes.
    pub bytes: usize,
    /// `bytes * 8 / pixels`: the rate, comparable with any codec's file size.
    pub bpp: f64,
    /// PSNR in dB of the decoded file against the original.
    pub psnr: f64,
}

/// Encodes `img` as a baseline JPEG at `quality` with the fair settings of this module
/// (4:2:0, standard Huffman tables) and returns the file.
///
/// # Errors
/// `quality` outside `1..=100`, a side over 65535 pixels (JPEG's limit), or an encoder
/// failure.
pub fn encode_bytes(img: &Image, quality: u8) -> Result<Vec<u8>, CompressError> {
    if !(1..=100).contains(&quality) {
        return Err(CompressError::Invalid(format!(
            "JPEG quality must be in 1..=100, got {quality}"
        )));
    }
    let too_big = |side: usize| u16::try_from(side).map_err(|_| side);
    let (w, h) = match (too_big(img.width), too_big(img.height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(CompressError::Invalid(format!(
                "JPEG sides are at most 65535 pixels, the image is {}x{}",
                img.width, img.height
            )));
        }
    };
    let mut bytes = Vec::new();
    let mut encoder = Encoder::new(&mut bytes, quality);
    encoder.set_sampling_factor(SamplingFactor::F_2_2);
    encoder.set_optimized_huffman_tables(false);
    encoder
        .encode(&img.rgb, w, h, ColorType::Rgb)
        .map_err(|e| CompressError::Invalid(format!("JPEG encoding failed: {e}")))?;
    Ok(bytes)
}

/// Encodes `img` at `quality`, decodes the file and measures its rate and PSNR.
///
/// # Errors
/// As [`encode_bytes`]; or the file does not decode (a bug, reported as
/// [`CompressError::Decode`]).
pub fn encode_at_quality(img: &Image, quality: u8) -> Result<JpegPoint, CompressError> {
    let bytes = encode_bytes(img, quality)?;
    let decoded = Image::decode(&bytes)?;
    Ok(JpegPoint {
        quality,
        bytes: bytes.len(),
        bpp: bytes.len() as f64 * 8.0 / img.pixels() as f64,
        psnr: psnr(img, &decoded)?,
    })
}

/// The highest quality whose whole file fits in `target_bpp`: JPEG given the same bit
/// budget as another codec, for a per-image comparison at matched rate.
///
/// Binary search over qualities `1..=100`, which assumes file size grows with quality
/// (true of the IJG tables up to a few bytes); whatever the search returns was measured
/// and is within budget.
///
/// Returns `Ok(None)` when even quality 1 is over budget: JPEG's headers and DC
/// coefficients alone cost about 0.1-0.2 bpp on a Kodak image, so at the lowest rates
/// COIN reaches there is no JPEG point to compare with.
///
/// # Errors
/// As [`encode_at_quality`]; a non-finite or negative `target_bpp`.
pub fn encode_at_bpp(img: &Image, target_bpp: f64) -> Result<Option<JpegPoint>, CompressError> {
    if !(target_bpp.is_finite() && target_bpp >= 0.0) {
        return Err(CompressError::Invalid(format!(
            "a bpp budget must be finite and non-negative, got {target_bpp}"
        )));
    }
    let (mut lo, mut hi) = (1u8, 100u8);
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let point = encode_at_quality(img, mid)?;
        if point.bpp <= target_bpp {
            best = Some(point);
            lo = mid + 1;
        } else if mid == 1 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    Ok(best)
}

/// The JPEG rate-distortion curve of a set of images: at each quality, bpp and PSNR each
/// averaged over the images (the way the published Kodak JPEG curve was made; note that
/// this averages PSNR, not MSE). One point per quality, sorted by increasing bpp.
///
/// # Errors
/// No images, or any encoding failure (see [`encode_at_quality`]).
pub fn jpeg_curve(images: &[Image], qualities: &[u8]) -> Result<Vec<CurvePoint>, CompressError> {
    if images.is_empty() {
        return Err(CompressError::Invalid(
            "a JPEG curve needs at least one image".into(),
        ));
    }
    let n = images.len() as f64;
    let mut points = qualities
        .iter()
        .map(|&q| {
            let (mut bpp, mut db) = (0.0, 0.0);
            for img in images {
                let p = encode_at_quality(img, q)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth colour image with some texture: gradients plus low-frequency waves.
    fn smooth(width: usize, height: usize) -> Image {
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

    /// The (horizontal, vertical) sampling factors of each component, from the SOF0 marker.
    fn sampling_factors(jpeg: &[u8]) -> Vec<u8> {
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let n = jpeg[sof + 9] as usize;
        (0..n).map(|i| jpeg[sof + 10 + 3 * i + 1]).collect()
    }

    #[test]
    fn psnr_increases_with_quality() {
        let img = smooth(96, 64);
        let points: Vec<JpegPoint> = [5, 20, 50, 75, 95]
            .iter()
            .map(|&q| encode_at_quality(&img, q).unwrap())
            .collect();
        for w in points.windows(2) {
            assert!(w[1].psnr > w[0].psnr, "{w:?}");
            assert!(w[1].bytes > w[0].bytes, "{w:?}");
        }
        let p = points[2];
        assert_eq!(p.quality, 50);
        assert!((p.bpp - p.bytes as f64 * 8.0 / (96.0 * 64.0)).abs() < 1e-12);
        assert!(p.psnr > 30.0, "{p:?}");
    }

    #[test]
    fn encode_at_bpp_respects_the_budget() {
        let img = smooth(96, 64);
        let q50 = encode_at_quality(&img, 50).unwrap();
        let fit = encode_at_bpp(&img, q50.bpp).unwrap().unwrap();
        assert!(fit.bpp <= q50.bpp);
        assert!(fit.quality >= 50, "{fit:?}");
        // One quality more no longer fits (unless the search is at the top already).
        if fit.quality < 100 {
            assert!(encode_at_quality(&img, fit.quality + 1).unwrap().bpp > q50.bpp);
        }
        // A budget that even quality 1 exceeds.
        assert_eq!(encode_at_bpp(&img, 0.01).unwrap(), None);
        // A huge budget gives the top quality.
        assert_eq!(encode_at_bpp(&img, 1e6).unwrap().unwrap().quality, 100);
        assert!(encode_at_bpp(&img, f64::NAN).is_err());
    }

    #[test]
    fn chroma_is_4_2_0_at_every_quality_and_odd_sizes_work() {
        let img = smooth(33, 17);
        for q in [1, 50, 95, 100] {
            let bytes = encode_bytes(&img, q).unwrap();
            // Luma 2x2, both chroma components 1x1: 4:2:0.
            assert_eq!(
                sampling_factors(&bytes),
                vec![0x22, 0x11, 0x11],
                "quality {q}"
            );
            let decoded = Image::decode(&bytes).unwrap();
            assert_eq!((decoded.width, decoded.height), (33, 17));
        }
        let p = encode_at_quality(&img, 90).unwrap();
        assert!(p.psnr > 25.0, "{p:?}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        let img = smooth(8, 8);
        assert!(encode_bytes(&img, 0).is_err());
        assert!(encode_bytes(&img, 101).is_err());
        let wide = Image::new(70_000, 1, vec![0; 70_000 * 3]).unwrap();
        assert!(encode_bytes(&wide, 50).is_err());
        assert!(jpeg_curve(&[], &[50]).is_err());
    }

    #[test]
    fn curve_averages_at_equal_quality_and_sorts_by_bpp() {
        let images = [smooth(48, 32), smooth(40, 40)];
        let curve = jpeg_curve(&images, &[90, 10, 50]).unwrap();
        assert_eq!(curve.len(), 3);
        assert!(curve.windows(2).all(|w| w[0].bpp < w[1].bpp));
        let a = encode_at_quality(&images[0], 50).unwrap();
        let b = encode_at_quality(&images[1], 50).unwrap();
        assert!((curve[1].bpp - (a.bpp + b.bpp) / 2.0).abs() < 1e-12);
        assert!((curve[1].psnr - (a.psnr + b.psnr) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn kodim01_at_quality_50() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/kodak/kodim01.png");
        if !path.exists() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let img = Image::load(&path).unwrap();
        let p = encode_at_quality(&img, 50).unwrap();
        eprintln!("kodim01 JPEG q50: {p:?}");
        assert!(p.bpp > 0.5 && p.bpp < 2.0, "{p:?}");
        assert!(p.psnr > 25.0 && p.psnr < 35.0, "{p:?}");
    }

    /// The whole-Kodak curve against the published (Pillow) JPEG curve: the check that
    /// this baseline is fair. About 10 s; run with `--ignored`.
    #[test]
    #[ignore = "encodes all 24 Kodak images at 9 qualities"]
    fn kodak_curve_matches_the_published_jpeg() {
        // The photos are the developers' shared copy (users do not have it); the curve is
        // the one compiled into the crate.
        let kodak =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/kodak");
        if !kodak.exists() {
            eprintln!(
                "skipped: {} (the shared Kodak photos) is absent",
                kodak.display()
            );
            return;
        }
        let images: Vec<Image> = (1..=24)
            .map(|i| Image::load(&kodak.join(format!("kodim{i:02}.png"))).unwrap())
            .collect();
        let ours = jpeg_curve(&images, &[10, 20, 30, 40, 50, 60, 70, 80, 90]).unwrap();
        let theirs = crate::baselines::kodak()
            .into_iter()
            .find(|c| c.name == "JPEG")
            .unwrap();
        for p in &ours {
            let gap = theirs.interpolate_psnr(p.bpp).map(|t| p.psnr - t);
            eprintln!(
                "bpp {:.4} PSNR {:.3} dB, minus published: {gap:?}",
                p.bpp, p.psnr
            );
            if let Some(gap) = gap {
                assert!(gap.abs() < 0.5, "{p:?} is {gap} dB off the published curve");
            }
        }
    }
}
