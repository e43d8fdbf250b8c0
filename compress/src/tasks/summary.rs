//! `eval`'s summary: per method and rate, the averages over the images, against JPEG,
//! WebP and AVIF (with the `avif` feature) on the same images and COIN at the same rate
//! (`summary.csv`), and the rate-distortion plot with the published curves (`rd.png`).

use std::io::Write;

use tether_train::io::write_atomic;

use super::config::EvalConfig;
use crate::classic;
use crate::codec::Method;
use crate::image::Image;
use crate::rd::{Curve, CurvePoint, plot_rd};

/// One row of `results.csv`: an image encoded with one method at one target rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The image's name (its file stem).
    pub image: String,
    /// The method's name.
    pub method: String,
    /// The target rate.
    pub target: f64,
    /// The file's rate.
    pub bpp: f64,
    /// The rate by COIN's convention.
    pub coin_bpp: f64,
    /// The decoder's PSNR (dB).
    pub psnr: f64,
}

/// One method at one target rate, averaged over the images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SummaryPoint {
    /// The method.
    pub method: Method,
    /// The target rate.
    pub target: f64,
    /// Images averaged.
    pub images: usize,
    /// Mean rate.
    pub bpp: f64,
    /// Mean rate by COIN's convention.
    pub coin_bpp: f64,
    /// Mean PSNR (dB).
    pub psnr: f64,
    /// Smallest rate over the target.
    pub ratio_min: f64,
    /// Largest rate over the target.
    pub ratio_max: f64,
}

/// What `eval` measured: its points and `summary.csv`'s text.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Per method and rate, in the order of the config's methods and rates.
    pub points: Vec<SummaryPoint>,
    /// `summary.csv`.
    pub csv: String,
}

/// `webp`, `avif`: a codec's name as a CSV column's prefix (its first word, lower case).
fn column_name(curve_name: &str) -> String {
    curve_name
        .split_whitespace()
        .next()
        .unwrap_or("codec")
        .to_lowercase()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n as f64
}

/// Averages `rows` (those of `images`) per method and rate, writes `summary.csv` and
/// prints it to `out`, then draws `rd.png`: each method's curve, JPEG's, WebP's and AVIF's
/// on the same images (averaged at equal quality, how the published JPEG curve was made)
/// and, at full size,
/// the `published` curves, all over the rates measured.
///
/// # Errors
/// A classical codec failing on an image, or an output that cannot be written.
pub fn summarise(
    config: &EvalConfig,
    images: &[(String, Image)],
    rows: &[Row],
    published: Vec<Curve>,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let names: Vec<&str> = images.iter().map(|(n, _)| n.as_str()).collect();
    // JPEG: averaged over the same images at equal quality, then interpolated at each
    // method's average rate (how the published JPEG curve was made).
    // WebP and AVIF (with the `avif` feature) likewise.
    let imgs: Vec<Image> = images.iter().map(|(_, i)| i.clone()).collect();
    let classics = classic::all()
        .iter()
        .map(|codec| {
            let points = classic::curve(codec.as_ref(), &imgs, &codec.curve_qualities())?;
            Ok(Curve::new(
                format!("{} (same images)", codec.name()),
                points,
            ))
        })
        .collect::<Result<Vec<Curve>, crate::error::CompressError>>()?;
    #[cfg(not(feature = "avif"))]
    writeln!(
        out,
        "(AVIF is not in this build: build tether-compress with `--features avif`, which \
         needs the dav1d library, e.g. Debian's libdav1d-dev)"
    )?;
    // Per method and rate: the averages, then the curves they make.
    let mut points = Vec::new();
    for &method in &config.methods {
        for &target in &config.bpp {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| {
                    r.method == method.to_string()
                        && r.target == target
                        && names.contains(&r.image.as_str())
                })
                .collect();
            if sel.is_empty() {
                continue;
            }
            let ratios = || sel.iter().map(|r| r.bpp / target);
            points.push(SummaryPoint {
                method,
                target,
                images: sel.len(),
                bpp: mean(sel.iter().map(|r| r.bpp)),
                coin_bpp: mean(sel.iter().map(|r| r.coin_bpp)),
                psnr: mean(sel.iter().map(|r| r.psnr)),
                ratio_min: ratios().fold(f64::INFINITY, f64::min),
                ratio_max: ratios().fold(0.0, f64::max),
            });
        }
    }
    let curve = |m: Method| {
        Curve::new(
            format!("tether {m}"),
            points
                .iter()
                .filter(|p| p.method == m)
                .map(|p| CurvePoint {
                    bpp: p.bpp,
                    psnr: p.psnr,
                })
                .collect(),
        )
    };
    let mut curves: Vec<Curve> = config.methods.iter().map(|&m| curve(m)).collect();
    // Each method against JPEG and COIN at its own rate (interpolated on their curves;
    // n/a outside them).
    let coin = curve(Method::Coin);
    let at = |c: &Curve, bpp: f64| {
        c.interpolate_psnr(bpp)
            .map_or_else(|| "n/a".to_string(), |p| format!("{p:.3}"))
    };
    // The classical codecs' columns follow the rest (JPEG's keeps its place).
    let (jpeg, others) = classics.split_first().expect("JPEG is always built");
    let mut summary = String::from(
        "method,target_bpp,images,bpp,coin_bpp,psnr,jpeg_psnr_at_bpp,coin_psnr_at_bpp,min_bpp_over_target,max_bpp_over_target",
    );
    for c in others {
        summary.push_str(&format!(",{}_psnr_at_bpp", column_name(&c.name)));
    }
    summary.push('\n');
    for p in &points {
        summary.push_str(&format!(
            "{},{},{},{:.5},{:.5},{:.3},{},{},{:.4},{:.4}",
            p.method,
            p.target,
            p.images,
            p.bpp,
            p.coin_bpp,
            p.psnr,
            at(jpeg, p.bpp),
            at(&coin, p.bpp),
            p.ratio_min,
            p.ratio_max
        ));
        for c in others {
            summary.push_str(&format!(",{}", at(c, p.bpp)));
        }
        summary.push('\n');
    }
    write_atomic(&config.out.join("summary.csv"), summary.as_bytes())?;
    write!(out, "{summary}")?;
    curves.extend(classics);
    if config.downscale == 1 {
        curves.extend(published.into_iter().map(|mut c| {
            c.name = format!("{} (published)", c.name);
            c
        }));
    }
    let title = format!(
        "{} images{}",
        images.len(),
        if config.downscale > 1 {
            format!(", downscaled {}x", config.downscale)
        } else {
            String::new()
        }
    );
    // Draw the reference curves only over the rates measured (and a little beyond), so the
    // region that matters is not squeezed into a corner by JPEG's 4 bpp end.
    let max_bpp = 1.5 * config.bpp.iter().copied().fold(0.0, f64::max);
    for c in &mut curves {
        c.points.retain(|p| p.bpp <= max_bpp);
    }
    curves.retain(|c| !c.points.is_empty());
    plot_rd(&config.out.join("rd.png"), &curves, &title)?;
    Ok(Summary {
        points,
        csv: summary,
    })
}
