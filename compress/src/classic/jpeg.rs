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

use super::ClassicCodec;
use crate::error::CompressError;
use crate::image::Image;

/// Baseline JPEG at 4:2:0 with IJG tables ([`encode_bytes`]), decoded by the `image` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Jpeg;

impl ClassicCodec for Jpeg {
    fn name(&self) -> &'static str {
        "JPEG 4:2:0"
    }

    fn qualities(&self) -> std::ops::RangeInclusive<u8> {
        1..=100
    }

    /// 1 to 95, as the published curve (above 95 the IJG tables stop paying).
    fn curve_qualities(&self) -> Vec<u8> {
        (1..=95).collect()
    }

    fn encode(&self, img: &Image, quality: u8) -> Result<Vec<u8>, CompressError> {
        encode_bytes(img, quality)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Image, CompressError> {
        Image::decode(bytes)
    }
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

#[cfg(test)]
mod tests {
    use super::super::test_images::{kodim01, smooth};
    use super::super::{curve, encode_at_bpp, encode_at_quality};
    use super::*;

    /// The (horizontal, vertical) sampling factors of each component, from the SOF0 marker.
    fn sampling_factors(jpeg: &[u8]) -> Vec<u8> {
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let n = jpeg[sof + 9] as usize;
        (0..n).map(|i| jpeg[sof + 10 + 3 * i + 1]).collect()
    }

    #[test]
    fn the_budget_search_reaches_the_top_quality_and_the_rate_counts_the_file() {
        let img = smooth(96, 64);
        let p = encode_at_quality(&Jpeg, &img, 50).unwrap();
        assert_eq!(p.quality, 50);
        assert!((p.bpp - p.bytes as f64 * 8.0 / (96.0 * 64.0)).abs() < 1e-12);
        assert!(p.psnr > 30.0, "{p:?}");
        // One quality more than the search's answer no longer fits.
        let fit = encode_at_bpp(&Jpeg, &img, p.bpp).unwrap().unwrap();
        if fit.quality < 100 {
            assert!(encode_at_quality(&Jpeg, &img, fit.quality + 1).unwrap().bpp > p.bpp);
        }
        assert_eq!(
            encode_at_bpp(&Jpeg, &img, 1e6).unwrap().unwrap().quality,
            100
        );
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
        let p = encode_at_quality(&Jpeg, &img, 90).unwrap();
        assert!(p.psnr > 25.0, "{p:?}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        let img = smooth(8, 8);
        assert!(encode_bytes(&img, 0).is_err());
        assert!(encode_bytes(&img, 101).is_err());
        let wide = Image::new(70_000, 1, vec![0; 70_000 * 3]).unwrap();
        assert!(encode_bytes(&wide, 50).is_err());
    }

    #[test]
    fn kodim01_at_quality_50() {
        let Some(img) = kodim01() else {
            return;
        };
        let p = encode_at_quality(&Jpeg, &img, 50).unwrap();
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
        let ours = curve(&Jpeg, &images, &[10, 20, 30, 40, 50, 60, 70, 80, 90]).unwrap();
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
