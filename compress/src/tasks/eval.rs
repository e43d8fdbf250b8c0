//! `eval`: every image of a folder encoded at several rates and methods, one row each in
//! `results.csv` (a rerun resumes: the rows already there are kept), then summarised
//! against JPEG and the published curves ([`super::summary`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use tether_train::device::run_on;
use tether_train::io::write_atomic;

use super::config::EvalConfig;
use super::encode::{EncodeTask, dropped_warning, load_image};
use super::summary::{Row, Summary, summarise};
use crate::baselines;
use crate::codec::Method;
use crate::image::Image;

/// The header of `results.csv`.
pub const RESULTS_HEADER: &str =
    "image,method,target_bpp,bpp,coin_bpp,psnr,bytes,layers,width,nonzero,kept_step,seconds";

/// The lines of an existing `results.csv` (header excluded) and their rows; none when
/// there is no such file.
fn read_rows(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        anyhow::ensure!(
            c.len() == 12,
            "{}:{}: expected 12 columns (delete the file to start over)",
            path.display(),
            i + 1
        );
        let num = |k: usize| -> anyhow::Result<f64> {
            c[k].parse()
                .with_context(|| format!("{}:{}: column {}", path.display(), i + 1, k + 1))
        };
        rows.push(Row {
            image: c[0].to_string(),
            method: c[1].to_string(),
            target: num(2)?,
            bpp: num(3)?,
            coin_bpp: num(4)?,
            psnr: num(5)?,
        });
        lines.push(line.to_string());
    }
    Ok((lines, rows))
}

/// The `.png` images of `dir`, by name (the first `limit`), each named by its stem and
/// downscaled by `downscale`.
fn load_images(
    dir: &Path,
    limit: Option<usize>,
    downscale: usize,
    strict_input: bool,
    progress: bool,
) -> anyhow::Result<Vec<(String, Image)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    paths.sort();
    if let Some(n) = limit {
        paths.truncate(n);
    }
    anyhow::ensure!(!paths.is_empty(), "no .png images in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into());
            let (img, dropped) = load_image(p, downscale, strict_input)?;
            if let Some(warning) = dropped_warning(p, &dropped).filter(|_| progress) {
                eprintln!("{warning}");
            }
            Ok((name, img))
        })
        .collect()
}

/// Encodes every image of `config.dir` at every rate with every method (skipping the rows
/// `results.csv` already holds, writing it after each), then writes `summary.csv`, prints
/// it to `out` and draws `rd.png` ([`summarise`]). With `progress`, a line per encoding,
/// the folder written, and what an image lost in its conversion to 8-bit RGB go to
/// stderr.
///
/// # Errors
/// A setting out of range, a bad `published` folder (checked before any encoding), no
/// images (or, with `strict_input`, one that loses something in the conversion to 8-bit
/// RGB), a `results.csv` that is not this command's, a failed encoding, or an output
/// that cannot be written.
pub fn run(config: &EvalConfig, out: &mut dyn Write, progress: bool) -> anyhow::Result<Summary> {
    anyhow::ensure!(!config.bpp.is_empty(), "--bpp needs at least one rate");
    for &b in &config.bpp {
        config.codec.options(b, false)?;
    }
    // Read the published curves now, so a bad --published folder fails before hours of
    // encoding rather than after.
    let published = match &config.published {
        Some(dir) => baselines::load_published(dir).context("--published")?,
        None => baselines::kodak(),
    };
    let images = load_images(
        &config.dir,
        config.limit,
        config.downscale,
        config.strict_input,
        progress,
    )?;
    let results = config.out.join("results.csv");
    let (mut lines, mut rows) = read_rows(&results)?;
    let total = images.len() * config.methods.len() * config.bpp.len();
    let mut done = 0;
    for (name, image) in &images {
        for &method in &config.methods {
            for &target in &config.bpp {
                done += 1;
                let key = |r: &Row| {
                    r.image == *name && r.method == method.to_string() && r.target == target
                };
                if rows.iter().any(key) {
                    continue;
                }
                let mut codec = config.codec.clone();
                codec.method = method;
                if method == Method::Coin {
                    codec.value_bits = None; // COIN's format is f16; --value-bits is L0onie's
                }
                let options = codec.options(target, false)?;
                let started = Instant::now();
                let out = run_on(codec.device, EncodeTask { image, options })?
                    .with_context(|| format!("{name} {method} {target} bpp"))?;
                let seconds = started.elapsed().as_secs_f64();
                let line = format!(
                    "{name},{method},{target},{},{},{},{},{},{},{},{},{seconds:.1}",
                    out.bpp,
                    out.coin_bpp,
                    out.psnr,
                    out.bytes.len(),
                    out.layers(),
                    out.width(),
                    out.nonzero_weights,
                    out.kept_step()
                );
                if progress {
                    eprintln!(
                        "[{done}/{total}] {name} {method} {target} bpp: {:.4} bpp, {:.2} dB ({seconds:.0} s)",
                        out.bpp, out.psnr
                    );
                }
                rows.push(Row {
                    image: name.clone(),
                    method: method.to_string(),
                    target,
                    bpp: out.bpp,
                    coin_bpp: out.coin_bpp,
                    psnr: out.psnr,
                });
                lines.push(line);
                let mut text = format!("{RESULTS_HEADER}\n");
                for l in &lines {
                    text.push_str(l);
                    text.push('\n');
                }
                write_atomic(&results, text.as_bytes())?;
            }
        }
    }
    let summary = summarise(config, &images, &rows, published, out)?;
    if progress {
        eprintln!("wrote {}", config.out.display());
    }
    Ok(summary)
}
