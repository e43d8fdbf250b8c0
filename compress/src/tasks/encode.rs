//! `encode`: an image fitted under a bit budget and written as a compressed file (and,
//! optionally, the decoded image and the fit's log and plot).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use tether_train::device::{BackendTask, run_on};
use tether_train::io::{check_output_file, csv, write_atomic};
use tether_train::plot::{Panel, Series, line_chart};

use tether_train::resume::{RunControl, RunState, resolve_resume};

use super::config::EncodeConfig;
use crate::codec::{EncodeOptions, Encoded, encode};
use crate::error::CompressError;
use crate::fit::Checkpointing;
use crate::image::{Dropped, Image};

/// One encoding as a task for [`run_on`] (the backend is chosen at run time).
pub struct EncodeTask<'a> {
    /// The image.
    pub image: &'a Image,
    /// The encoder's options.
    pub options: EncodeOptions,
}

impl BackendTask for EncodeTask<'_> {
    type Output = Result<Encoded, CompressError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        encode::<B>(self.image, &self.options, &device)
    }
}

/// An image file, downscaled by `downscale` (1: as is), and what its conversion to 8-bit
/// RGB lost (for a warning). With `strict_input`, a conversion that loses anything (an
/// alpha channel not opaque everywhere, values beyond 8 bits) is an error instead.
///
/// # Errors
/// `downscale` 0, an unreadable image, one smaller than `downscale`, or, with
/// `strict_input`, one that does not convert to 8-bit RGB losslessly.
pub fn load_image(
    path: &Path,
    downscale: usize,
    strict_input: bool,
) -> anyhow::Result<(Image, Dropped)> {
    anyhow::ensure!(downscale >= 1, "--downscale must be at least 1");
    let (img, dropped) = Image::load_reporting(path)?;
    anyhow::ensure!(
        !strict_input || dropped.is_empty(),
        "{}: the image loses information as 8-bit RGB, the one format the codec codes \
         ({dropped}); --strict-input refuses such images (convert it to 8-bit RGB first, or \
         leave out --strict-input to encode it with a warning)",
        path.display()
    );
    let img = if downscale > 1 {
        img.downscale(downscale)?
    } else {
        img
    };
    Ok((img, dropped))
}

/// The warning for an image whose conversion to 8-bit RGB lost something (none when
/// nothing was).
pub fn dropped_warning(path: &Path, dropped: &Dropped) -> Option<String> {
    (!dropped.is_empty()).then(|| {
        format!(
            "warning: {}: {dropped}; the codec codes 8-bit RGB (--strict-input refuses \
             such images)",
            path.display()
        )
    })
}

/// What [`run`] wrote and measured.
#[derive(Clone, Debug)]
pub struct EncodeReport {
    /// The compressed file written.
    pub output: PathBuf,
    /// The image encoded (after downscaling), width and height.
    pub size: (usize, usize),
    /// The encoding: the file's bytes, its rate, the decoder's PSNR, the network.
    pub encoded: Encoded,
    /// Seconds, loading excluded.
    pub seconds: f64,
}

impl std::fmt::Display for EncodeReport {
    /// The line `tether-compress encode` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = &self.encoded;
        write!(
            f,
            "{}: {}x{} -> {} bytes, {:.4} bpp (COIN's convention {:.4}), PSNR {:.2} dB; \
             {}x{} {}, {} nonzero weights, kept step {}, {:.1} s",
            self.output.display(),
            self.size.0,
            self.size.1,
            out.bytes.len(),
            out.bpp,
            out.coin_bpp,
            out.psnr,
            out.layers(),
            out.width(),
            match out.fit {
                crate::codec::Fit::Siren { .. } => "SIREN",
                crate::codec::Fit::CoolChic(_) => "Cool-chic (hidden layers x widest)",
            },
            out.nonzero_weights,
            out.kept_step(),
            self.seconds
        )
    }
}

/// Encodes `config.image` under `config.bpp` and writes the file (and the decoded image
/// and the log, when asked); prints the report line to `out`. With `progress`, the fit
/// shows progress bars, and what the image lost in its conversion to 8-bit RGB and a
/// fallback to magnitude pruning are warned about on stderr.
///
/// # Errors
/// A setting out of range, an unreadable image (or, with `strict_input`, one that loses
/// something in the conversion to 8-bit RGB), a budget too small for any network, a
/// failed fit, or an output that cannot be written.
pub fn run(
    config: &EncodeConfig,
    out: &mut dyn Write,
    progress: bool,
) -> anyhow::Result<EncodeReport> {
    run_controlled(config, out, &RunControl::new(progress))
}

/// [`run`] with a [`RunControl`]: the fit checkpoints to [`EncodeConfig::checkpoint_dir`]
/// every [`EncodeConfig::checkpoint_every`] steps and when the interrupt is raised (then
/// it returns [`CompressError::Interrupted`]), and continues from
/// [`EncodeConfig::resume`]'s checkpoint.
///
/// # Errors
/// As [`run`]; a resume folder without a checkpoint of an encode with these settings.
pub fn run_controlled(
    config: &EncodeConfig,
    out: &mut dyn Write,
    control: &RunControl,
) -> anyhow::Result<EncodeReport> {
    let progress = control.progress;
    let mut options = config.codec.options(config.bpp, progress)?;
    // Every output can be written: checked before the fit, not after it.
    check_output_file(&config.output, "-o")?;
    for (path, flag) in [(&config.decoded, "--decoded"), (&config.log, "--log")] {
        if let Some(path) = path {
            check_output_file(path, flag)?;
        }
    }
    let resume = match &config.resume {
        Some(path) => {
            let dir = resolve_resume(path).or_else(|e| {
                // `--resume OUTPUT` names the output; its checkpoint sits beside it.
                let beside = EncodeConfig {
                    output: path.clone(),
                    ..config.clone()
                }
                .checkpoint_dir();
                resolve_resume(&beside).map_err(|_| e)
            })?;
            // Checked before the image is read and the fit starts.
            RunState::read(&dir, "encode")?.check_config(&config.resume_key(), &dir)?;
            Some(dir)
        }
        None => None,
    };
    options.fit.checkpoint = Some(Checkpointing {
        dir: config.checkpoint_dir(),
        every: config.checkpoint_every,
        interrupt: control.interrupt.clone(),
        resume,
        key: config.resume_key(),
    });
    let (image, dropped) = load_image(&config.image, config.downscale, config.strict_input)?;
    if let Some(warning) = dropped_warning(&config.image, &dropped).filter(|_| progress) {
        eprintln!("{warning}");
    }
    let started = Instant::now();
    let encoded = run_on(
        config.codec.device,
        EncodeTask {
            image: &image,
            options,
        },
    )??;
    write_atomic(&config.output, &encoded.bytes)
        .with_context(|| config.output.display().to_string())?;
    if let Some(path) = &config.decoded {
        encoded.decoded.save_png(path)?;
    }
    if progress && encoded.magnitude_pruned() > 0 {
        eprintln!(
            "warning: the constraint had not met the budget when the fit ended; {} {} \
             removed by magnitude to fit (more --steps or a larger --dual-lr avoid this)",
            encoded.magnitude_pruned(),
            if config.codec.method == crate::codec::Method::CoolChic {
                "latents were"
            } else {
                "weights were"
            }
        );
    }
    if let (true, crate::codec::Fit::CoolChic(c)) = (progress, &encoded.fit) {
        for s in &c.searches {
            eprintln!(
                "Cool-chic: the networks' steps searched at step {} (lambda {:.3}): {} -> {} bits",
                s.step, s.lambda, s.bits_before, s.bits_after
            );
        }
        eprintln!(
            "Cool-chic: refinements moved {} latents ({} of {} batches kept), {} moved to trim \
             an over-budget file",
            c.refined.moved, c.refined.kept, c.refined.tried, c.refined.trimmed
        );
    }
    if let Some(path) = &config.log {
        write_log(path, &encoded)?;
    }
    // Every output is written: nothing is left to resume.
    let checkpoint = config.checkpoint_dir();
    if checkpoint.exists() {
        std::fs::remove_dir_all(&checkpoint)
            .with_context(|| format!("removing {}", checkpoint.display()))?;
    }
    let report = EncodeReport {
        output: config.output.clone(),
        size: (image.width, image.height),
        encoded,
        seconds: started.elapsed().as_secs_f64(),
    };
    writeln!(out, "{report}")?;
    Ok(report)
}

/// The fit's log at `path` (CSV: step, PSNR of the training pass, bpp of the file the
/// network would make) and its plot beside it (same name, .png).
fn write_log(path: &Path, encoded: &Encoded) -> anyhow::Result<()> {
    let rows: Vec<Vec<f64>> = encoded
        .history()
        .iter()
        .map(|p| vec![p.step as f64, p.psnr, p.bpp])
        .collect();
    // Cool-chic's log has the rate its training pass estimates beside the real file's.
    let (header, table) = match &encoded.fit {
        crate::codec::Fit::CoolChic(c) => {
            let with: Vec<Vec<f64>> = rows
                .iter()
                .zip(c.estimated_bpp.iter().zip(&c.lambdas))
                .map(|(r, (&e, &l))| [r.as_slice(), &[e, l]].concat())
                .collect();
            let header = ["step", "psnr", "bpp", "estimated_bpp", "lambda"];
            (header.map(String::from).to_vec(), with)
        }
        crate::codec::Fit::Siren { .. } => (
            ["step", "psnr", "bpp"].map(String::from).to_vec(),
            rows.clone(),
        ),
    };
    write_atomic(path, csv(&header, &table).as_bytes())?;
    // The same log as a picture: PSNR and file rate over the steps.
    let series = |label: &str, col: usize| Series {
        label: label.into(),
        points: rows.iter().map(|r| (r[0], r[col])).collect(),
    };
    let panel = |title: &str, y: &str, s: Series| Panel {
        title: title.into(),
        x_label: "step".into(),
        y_label: y.into(),
        series: vec![s],
    };
    line_chart(
        &path.with_extension("png"),
        &[
            panel("PSNR of the training pass", "PSNR (dB)", series("PSNR", 1)),
            panel("file rate the network would make", "bpp", series("bpp", 2)),
        ],
    )?;
    Ok(())
}
