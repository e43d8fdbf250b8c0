//! Published rate-distortion curves on Kodak (COIN, JPEG, JPEG2000, BPG, VTM and the
//! CompressAI learned codecs), read from the JSON files CompressAI publishes, so a figure
//! can set the project's results against them without retyping numbers.
//!
//! Each file is `{"name", "description", "results": {"bpp": [...], "psnr": [...], ...}}`;
//! other metrics in `results` (MS-SSIM, timings) are ignored.
//!
//! The Kodak curves ship inside the crate (`compress/baselines/kodak/`, each one's source
//! in the README there) and are compiled into it, [`kodak`]: an installed binary has them
//! with no repository or data folder beside it. [`load_published`] reads another folder.

use std::path::Path;

use serde::Deserialize;

use crate::error::CompressError;
use crate::rd::{Curve, CurvePoint};

/// The files of `compress/baselines/kodak/`, by file name (the order of the legend), with
/// their contents.
const KODAK: [(&str, &str); 8] = [
    (
        "bpg_444_x265_ycbcr.json",
        include_str!("../baselines/kodak/bpg_444_x265_ycbcr.json"),
    ),
    ("coin.json", include_str!("../baselines/kodak/coin.json")),
    (
        "compressai-bmshj2018-hyperprior.json",
        include_str!("../baselines/kodak/compressai-bmshj2018-hyperprior.json"),
    ),
    (
        "compressai-cheng2020-anchor.json",
        include_str!("../baselines/kodak/compressai-cheng2020-anchor.json"),
    ),
    (
        "compressai-mbt2018.json",
        include_str!("../baselines/kodak/compressai-mbt2018.json"),
    ),
    ("jpeg.json", include_str!("../baselines/kodak/jpeg.json")),
    (
        "jpeg2000.json",
        include_str!("../baselines/kodak/jpeg2000.json"),
    ),
    ("vtm.json", include_str!("../baselines/kodak/vtm.json")),
];

/// The published Kodak curves compiled into the crate (768x512 images, the average over
/// the 24), in the order [`load_published`] would read their folder. They are fixed at
/// build time and a unit test parses every one, so this cannot fail at run time.
pub fn kodak() -> Vec<Curve> {
    KODAK
        .iter()
        .map(|(file, text)| {
            parse_curve(text, file).unwrap_or_else(|e| panic!("embedded Kodak curve: {e}"))
        })
        .collect()
}

#[derive(Deserialize)]
struct Published {
    name: String,
    results: Results,
}

#[derive(Deserialize)]
struct Results {
    bpp: Vec<f64>,
    psnr: Vec<f64>,
}

/// Reads one published curve; its points are sorted by bpp (see [`Curve::new`]).
///
/// # Errors
/// The file cannot be read ([`CompressError::Io`]), or it is not such a JSON file, its
/// `bpp` and `psnr` lists differ in length, or it has no points
/// ([`CompressError::Invalid`], naming the file).
pub fn load_curve(path: &Path) -> Result<Curve, CompressError> {
    let text = std::fs::read_to_string(path).map_err(|e| CompressError::io(path, e))?;
    parse_curve(&text, &path.display().to_string())
}

/// Parses one published curve from its JSON text; `source` names it in errors.
fn parse_curve(text: &str, source: &str) -> Result<Curve, CompressError> {
    let bad = |why: String| CompressError::Invalid(format!("{source}: {why}"));
    let p: Published = serde_json::from_str(text)
        .map_err(|e| bad(format!("not a published rate-distortion curve: {e}")))?;
    let Results { bpp, psnr } = p.results;
    if bpp.len() != psnr.len() {
        return Err(bad(format!(
            "{} bpp values but {} PSNR values",
            bpp.len(),
            psnr.len()
        )));
    }
    if bpp.is_empty() {
        return Err(bad("the curve has no points".into()));
    }
    let points = bpp
        .into_iter()
        .zip(psnr)
        .map(|(bpp, psnr)| CurvePoint { bpp, psnr })
        .collect();
    Ok(Curve::new(p.name, points))
}

/// Reads every `*.json` curve in `dir`, in order of file name (so a figure's legend is
/// the same from run to run). A folder with no JSON files gives an empty list.
///
/// # Errors
/// The folder cannot be read, an absent one included ([`CompressError::Io`]: the caller
/// decides whether to go on without the baselines), or any file fails [`load_curve`].
pub fn load_published(dir: &Path) -> Result<Vec<Curve>, CompressError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CompressError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| CompressError::io(dir, e))?.path();
        if path.is_file() && path.extension().is_some_and(|x| x == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| load_curve(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kodak_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/kodak")
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-bl-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_embedded_curves_are_the_folder() {
        // Every file of the folder is compiled in (a file added there and not to KODAK
        // fails here), and each parses.
        assert_eq!(kodak(), load_published(&kodak_dir()).unwrap());
    }

    #[test]
    fn published_kodak_curves() {
        let curves = kodak();
        assert_eq!(curves.len(), KODAK.len());
        for c in &curves {
            assert!(!c.points.is_empty(), "{}", c.name);
            assert!(
                c.points.windows(2).all(|w| w[0].bpp <= w[1].bpp),
                "{}",
                c.name
            );
        }
        let find = |name: &str| curves.iter().find(|c| c.name == name).unwrap();
        let coin = find("COIN");
        assert!((coin.interpolate_psnr(0.3074).unwrap() - 26.41).abs() < 0.01);
        let jpeg = find("JPEG");
        let at_03 = jpeg.interpolate_psnr(0.3).unwrap();
        assert!((at_03 - 26.0).abs() < 0.3, "JPEG at 0.3 bpp: {at_03}");
        // JPEG's curve starts above 0.2 bpp: nothing to read at COIN's lowest rates.
        assert_eq!(jpeg.interpolate_psnr(0.1), None);
    }

    #[test]
    fn a_file_listed_high_to_low_is_sorted() {
        let dir = temp_dir("sort");
        let path = dir.join("x.json");
        std::fs::write(
            &path,
            r#"{"name": "X", "description": "d",
                "results": {"bpp": [2.0, 1.0], "psnr": [40.0, 30.0], "ms-ssim": [0.9, 0.8]}}"#,
        )
        .unwrap();
        let c = load_curve(&path).unwrap();
        assert_eq!(c.name, "X");
        assert_eq!(
            c.points[0],
            CurvePoint {
                bpp: 1.0,
                psnr: 30.0
            }
        );
        assert_eq!(c.interpolate_psnr(1.5), Some(35.0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let dir = temp_dir("bad");
        std::fs::write(
            dir.join("a.json"),
            r#"{"name": "A", "results": {"bpp": [1.0], "psnr": [30.0]}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("b.json"), r#"{"name": "B", "results": {"bpp": [1"#).unwrap();
        let err = load_published(&dir).unwrap_err().to_string();
        assert!(err.contains("b.json"), "{err}");

        std::fs::write(
            dir.join("b.json"),
            r#"{"name": "B", "results": {"bpp": [1.0, 2.0], "psnr": [30.0]}}"#,
        )
        .unwrap();
        let err = load_published(&dir).unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("2 bpp"), "{err}");

        std::fs::write(
            dir.join("b.json"),
            r#"{"name": "B", "results": {"bpp": [], "psnr": []}}"#,
        )
        .unwrap();
        assert!(load_published(&dir).is_err());

        // Other files are ignored; a valid folder loads in file-name order.
        std::fs::remove_file(dir.join("b.json")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a curve").unwrap();
        let curves = load_published(&dir).unwrap();
        assert_eq!(curves.len(), 1);
        assert_eq!(curves[0].name, "A");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_absent_folder_is_an_io_error() {
        let dir = std::env::temp_dir().join("tether-bl-no-such-folder-7f3a");
        assert!(matches!(
            load_published(&dir),
            Err(CompressError::Io { .. })
        ));
    }
}
