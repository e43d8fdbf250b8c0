//! Rate-distortion curves: PSNR against bits per pixel, the one figure every image codec
//! is judged by.
//!
//! A [`Curve`] is a codec's operating points; [`Curve::interpolate_psnr`] reads it at a bpp
//! no encoder hit exactly (so COIN at 0.3074 bpp can be set against JPEG at the same rate),
//! [`plot_rd`] draws several curves on one chart and [`write_csv`] keeps the numbers behind
//! the chart.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tether_train::plot::{Panel, Series, line_chart};

use crate::error::CompressError;

/// One operating point of a codec: its rate and its quality.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Bits per pixel of the whole compressed file (headers included).
    pub bpp: f64,
    /// PSNR in dB of the decoded image (see [`crate::image::psnr`]).
    pub psnr: f64,
}

/// A codec's rate-distortion curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Legend label (e.g. `"JPEG"`, `"COIN"`).
    pub name: String,
    /// Operating points, by increasing bpp when built with [`Curve::new`].
    pub points: Vec<CurvePoint>,
}

impl Curve {
    /// A curve from its points, sorted by increasing bpp (published files list them in
    /// either order: JPEG2000's runs from high to low bpp). Points with a non-finite bpp
    /// or PSNR are dropped: they cannot be plotted or interpolated.
    pub fn new(name: impl Into<String>, mut points: Vec<CurvePoint>) -> Self {
        points.retain(|p| p.bpp.is_finite() && p.psnr.is_finite());
        points.sort_by(|a, b| a.bpp.total_cmp(&b.bpp));
        Self {
            name: name.into(),
            points,
        }
    }

    /// The PSNR the codec would reach at `bpp`, interpolated linearly in bpp between the
    /// two neighbouring points; exact at a point. `None` outside `[lowest, highest]` bpp
    /// (extrapolating a codec's curve invents results it never produced) and for an empty
    /// curve. Works on unsorted points too (it sorts a copy).
    pub fn interpolate_psnr(&self, bpp: f64) -> Option<f64> {
        if !bpp.is_finite() {
            return None;
        }
        let mut pts: Vec<CurvePoint> = self.points.clone();
        pts.sort_by(|a, b| a.bpp.total_cmp(&b.bpp));
        let (first, last) = (pts.first()?, pts.last()?);
        if bpp < first.bpp || bpp > last.bpp {
            return None;
        }
        if let Some(p) = pts.iter().find(|p| p.bpp == bpp) {
            return Some(p.psnr);
        }
        pts.windows(2)
            .find(|w| w[0].bpp < bpp && bpp < w[1].bpp)
            .map(|w| {
                let t = (bpp - w[0].bpp) / (w[1].bpp - w[0].bpp);
                w[0].psnr + t * (w[1].psnr - w[0].psnr)
            })
    }

    /// The lowest and highest bpp of the curve (`None` when it has no points): the range
    /// [`Curve::interpolate_psnr`] answers in.
    pub fn bpp_range(&self) -> Option<(f64, f64)> {
        let lo = self.points.iter().map(|p| p.bpp).reduce(f64::min)?;
        let hi = self.points.iter().map(|p| p.bpp).reduce(f64::max)?;
        Some((lo, hi))
    }
}

/// Draws `curves` as PSNR (dB) against bits per pixel into a PNG at `path` (one panel,
/// one line per curve, legend from the names; written atomically by
/// [`tether_train::plot::line_chart`]).
///
/// # Errors
/// The chart cannot be drawn or written (reported as an I/O error on `path`).
pub fn plot_rd(path: &Path, curves: &[Curve], title: &str) -> Result<(), CompressError> {
    let series = curves
        .iter()
        .map(|c| {
            let mut points: Vec<(f64, f64)> = c.points.iter().map(|p| (p.bpp, p.psnr)).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: c.name.clone(),
                points,
            }
        })
        .collect();
    let panel = Panel {
        title: title.to_string(),
        x_label: "bits per pixel".into(),
        y_label: "PSNR (dB)".into(),
        series,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CompressError::io(parent, e))?;
    }
    line_chart(path, &[panel])
        .map_err(|e| CompressError::io(path, std::io::Error::other(e.to_string())))
}

/// `curves` as CSV in long form, one row per point: `curve,bpp,psnr` (names with a comma
/// or a quote are quoted), so a figure can be redrawn or checked without rerunning.
pub fn to_csv(curves: &[Curve]) -> String {
    let mut out = String::from("curve,bpp,psnr\n");
    for c in curves {
        let name = if c.name.contains([',', '"', '\n']) {
            format!("\"{}\"", c.name.replace('"', "\"\""))
        } else {
            c.name.clone()
        };
        for p in &c.points {
            out.push_str(&format!("{name},{},{}\n", p.bpp, p.psnr));
        }
    }
    out
}

/// Writes [`to_csv`] of `curves` to `path` (temporary file, then rename).
///
/// # Errors
/// The file cannot be written.
pub fn write_csv(path: &Path, curves: &[Curve]) -> Result<(), CompressError> {
    tether_train::io::write_atomic(path, to_csv(curves).as_bytes())
        .map_err(|e| CompressError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(bpp: f64, psnr: f64) -> CurvePoint {
        CurvePoint { bpp, psnr }
    }

    fn curve() -> Curve {
        Curve::new("c", vec![pt(0.5, 30.0), pt(0.1, 20.0), pt(1.0, 40.0)])
    }

    #[test]
    fn new_sorts_and_drops_non_finite() {
        let c = Curve::new("c", vec![pt(1.0, 3.0), pt(f64::NAN, 1.0), pt(0.2, 2.0)]);
        assert_eq!(c.points, vec![pt(0.2, 2.0), pt(1.0, 3.0)]);
        assert_eq!(c.bpp_range(), Some((0.2, 1.0)));
    }

    #[test]
    fn interpolation_is_exact_at_points() {
        let c = curve();
        assert_eq!(c.interpolate_psnr(0.1), Some(20.0));
        assert_eq!(c.interpolate_psnr(0.5), Some(30.0));
        assert_eq!(c.interpolate_psnr(1.0), Some(40.0));
    }

    #[test]
    fn interpolation_is_linear_between_points() {
        let c = curve();
        assert!((c.interpolate_psnr(0.3).unwrap() - 25.0).abs() < 1e-12);
        assert!((c.interpolate_psnr(0.75).unwrap() - 35.0).abs() < 1e-12);
        // Unsorted points give the same answer.
        let raw = Curve {
            name: "raw".into(),
            points: vec![pt(1.0, 40.0), pt(0.1, 20.0), pt(0.5, 30.0)],
        };
        assert_eq!(raw.interpolate_psnr(0.3), c.interpolate_psnr(0.3));
    }

    #[test]
    fn interpolation_is_none_outside_the_curve() {
        let c = curve();
        assert_eq!(c.interpolate_psnr(0.099), None);
        assert_eq!(c.interpolate_psnr(1.001), None);
        assert_eq!(c.interpolate_psnr(f64::NAN), None);
        assert_eq!(Curve::new("empty", vec![]).interpolate_psnr(0.5), None);
        assert_eq!(Curve::new("empty", vec![]).bpp_range(), None);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        let curves = [
            Curve::new("a,b", vec![pt(0.5, 30.0)]),
            Curve::new("JPEG", vec![pt(0.25, 28.5)]),
        ];
        assert_eq!(
            to_csv(&curves),
            "curve,bpp,psnr\n\"a,b\",0.5,30\nJPEG,0.25,28.5\n"
        );
    }

    #[test]
    fn plot_and_csv_write_files() {
        let dir = std::env::temp_dir().join(format!("tether-rd-{}", std::process::id()));
        let png = dir.join("rd.png");
        plot_rd(
            &png,
            &[
                curve(),
                Curve::new("flat", vec![pt(0.2, 25.0), pt(0.8, 25.0)]),
            ],
            "t",
        )
        .unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG");
        let csv = dir.join("rd.csv");
        write_csv(&csv, &[curve()]).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
