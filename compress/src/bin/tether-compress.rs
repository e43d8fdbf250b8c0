//! `tether-compress`: compress images into tiny SIREN weight files (COIN / L0onie), decode
//! them with `tether-deploy`, and measure rate-distortion against JPEG and published codecs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Parser, Subcommand};
use tether_compress::codec::{EncodeOptions, Encoded, Method, encode};
use tether_compress::fit::{FitSettings, L0onieSettings};
use tether_compress::rd::{Curve, CurvePoint, plot_rd};
use tether_compress::render::decode_file;
use tether_compress::{Image, baselines, jpeg};
use tether_train::constrained::{DualOptimizer, NuPiConfig};
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::io::write_atomic;
use tether_train::plot::{Panel, Series, line_chart};

#[derive(Parser)]
#[command(
    name = "tether-compress",
    version,
    about = "Compress images into SIREN weight files (COIN / L0onie) and decode them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a SIREN to an image under a bit budget and write the compressed file.
    Encode(EncodeArgs),
    /// Decode a compressed file to a PNG (through the tether-deploy runtime).
    Decode(DecodeArgs),
    /// Encode every image of a folder at several rates; write a rate-distortion CSV and
    /// plot with JPEG at matched bpp and the published curves.
    Eval(EvalArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Dual {
    /// nuPI (Sohrabi et al. 2024).
    Nupi,
    /// Projected gradient ascent.
    Ga,
}

/// The knobs of a fit, shared by `encode` and `eval`.
#[derive(Args, Clone, Debug)]
struct CodecArgs {
    /// COIN (a dense network that fits) or L0onie (an over-parameterised network pruned to
    /// fit by a constraint).
    #[arg(long, value_enum, default_value_t = Method::L0onie)]
    method: Method,
    /// Full-batch training steps (COIN's paper: 50000).
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Adam learning rate of the weights (COIN's paper: 2e-4, for 50k steps; short CPU
    /// runs learn faster at 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// L0onie: Adam learning rate of the gate locations.
    #[arg(long, default_value_t = 0.05)]
    gate_lr: f64,
    /// L0onie: the starting network has about this many times the weights the budget
    /// holds (1.3 beat 1.6 at 0.6 bpp and lost at 0.15, and 2.0 with deterministic gates
    /// lost at both, on two Kodak images at 192x128; BENCHMARKS.md).
    #[arg(long, default_value_t = 1.3)]
    overparam: f64,
    /// L0onie: bits per stored weight. 16 stores f16 (COIN's and the L0onie paper's
    /// format); fewer quantise each layer uniformly (one f16 scale per layer) and fine-tune
    /// quantisation-aware, so the budget holds more weights. 12 bits gained 0.4-1.4 dB over
    /// f16 on the 24 Kodak images at 192x128 (BENCHMARKS.md). Default: 12 for L0onie; COIN
    /// always stores f16.
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=16))]
    value_bits: Option<u8>,
    /// L0onie: the multiplier's update rule.
    #[arg(long, value_enum, default_value_t = Dual::Nupi)]
    dual: Dual,
    /// L0onie: the multiplier's step size. Smaller steps meet the budget later: at 0.01 a
    /// 96x64 image at 0.6 bpp had not met it when pruning ended (400 steps; the magnitude
    /// fallback did), at 0.05 it met it by step 104 and decoded 0.9 dB better.
    #[arg(long, default_value_t = 0.05)]
    dual_lr: f64,
    /// L0onie: nuPI's proportional gain.
    #[arg(long, default_value_t = 2.0)]
    kp: f64,
    /// L0onie: fraction of the steps spent pruning; the rest fine-tunes the kept weights
    /// with the sparsity pattern frozen.
    #[arg(long, default_value_t = 0.5)]
    prune_fraction: f64,
    /// L0onie: train through the deterministic gates instead of sampling them.
    #[arg(long)]
    no_gate_noise: bool,
    /// L0onie: initial drop probability of the gates.
    #[arg(long, default_value_t = 0.05)]
    gate_init_drop: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

impl CodecArgs {
    fn options(&self, bpp: f64, progress: bool) -> anyhow::Result<EncodeOptions> {
        anyhow::ensure!(
            bpp.is_finite() && bpp > 0.0,
            "--bpp must be a positive number, got {bpp}"
        );
        anyhow::ensure!(
            self.gate_init_drop > 0.0 && self.gate_init_drop < 1.0,
            "--gate-init-drop must lie in (0, 1), got {}",
            self.gate_init_drop
        );
        let dual = match self.dual {
            Dual::Ga => DualOptimizer::gradient_ascent(self.dual_lr),
            Dual::Nupi => DualOptimizer::NuPi(NuPiConfig::new(self.dual_lr).with_kp(self.kp)),
        };
        dual.validate()?;
        let value_bits = match (self.method, self.value_bits) {
            (Method::Coin, None) => 16,
            (Method::Coin, Some(b)) => {
                anyhow::ensure!(
                    b == 16,
                    "COIN stores f16 weights: --value-bits must be 16, got {b}"
                );
                16
            }
            (Method::L0onie, b) => b.unwrap_or(12),
        };
        Ok(EncodeOptions {
            method: self.method,
            bpp,
            fit: FitSettings {
                steps: self.steps,
                lr: self.lr,
                progress,
            },
            l0onie: L0onieSettings {
                value_bits,
                gate_lr: self.gate_lr,
                dual,
                init_drop_rate: self.gate_init_drop,
                init_spread: 0.5,
                eval_every: 10,
                prune_fraction: self.prune_fraction,
                sample_gates: !self.no_gate_noise,
            },
            overparam: self.overparam,
            value_bits,
            seed: self.seed,
        })
    }
}

#[derive(Args)]
struct EncodeArgs {
    /// The image (PNG or JPEG).
    image: PathBuf,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Target bits per pixel of the whole file (header and checksum included).
    #[arg(long, default_value_t = 0.3)]
    bpp: f64,
    /// Downscale the image by this integer factor first (box filter).
    #[arg(long, default_value_t = 1)]
    downscale: usize,
    /// Also write the decoded image here (PNG).
    #[arg(long)]
    decoded: Option<PathBuf>,
    /// Also write the fit's log here (CSV: step, PSNR of the training pass, bpp of the
    /// file the network would make), and its plot beside it (same name, .png).
    #[arg(long)]
    log: Option<PathBuf>,
    #[command(flatten)]
    codec: CodecArgs,
}

#[derive(Args)]
struct DecodeArgs {
    /// A file written by `encode`.
    input: PathBuf,
    /// Output PNG.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    /// A folder of images (every .png in it, by name), e.g. the 24 Kodak photos the
    /// published curves were measured on.
    #[arg(value_name = "IMAGES_DIR")]
    dir: PathBuf,
    /// Target rates, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.07,0.15,0.3,0.6")]
    bpp: Vec<f64>,
    /// Methods, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "coin,l0onie")]
    methods: Vec<Method>,
    /// Downscale every image by this integer factor first (box filter).
    #[arg(long, default_value_t = 1)]
    downscale: usize,
    /// Use only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// A folder of published curves (JSON, CompressAI's format) to draw beside the
    /// results instead of the Kodak curves built into the binary (COIN, JPEG, JPEG2000,
    /// BPG, VTM and three learned codecs, measured on the 24 full-size Kodak photos).
    /// Either is drawn only at full size (--downscale 1), since the curves were measured
    /// on full-size images.
    #[arg(long, value_name = "DIR")]
    published: Option<PathBuf>,
    /// Output folder: results.csv (one row per image, method and rate; a rerun skips the
    /// rows already there), summary.csv and rd.png.
    #[arg(long, default_value = "out/compress-eval")]
    out: PathBuf,
    #[command(flatten)]
    codec: CodecArgs,
}

struct EncodeTask<'a> {
    image: &'a Image,
    options: EncodeOptions,
}

impl BackendTask for EncodeTask<'_> {
    type Output = Result<Encoded, tether_compress::CompressError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        encode::<B>(self.image, &self.options, &device)
    }
}

fn load(path: &Path, downscale: usize) -> anyhow::Result<Image> {
    anyhow::ensure!(downscale >= 1, "--downscale must be at least 1");
    let img = Image::load(path)?;
    Ok(if downscale > 1 {
        img.downscale(downscale)?
    } else {
        img
    })
}

fn run_encode(args: EncodeArgs) -> anyhow::Result<()> {
    let options = args.codec.options(args.bpp, true)?;
    let image = load(&args.image, args.downscale)?;
    let started = Instant::now();
    let out = run_on(
        args.codec.device.device,
        EncodeTask {
            image: &image,
            options,
        },
    )??;
    write_atomic(&args.output, &out.bytes).with_context(|| args.output.display().to_string())?;
    if let Some(path) = &args.decoded {
        out.decoded.save_png(path)?;
    }
    if out.fitted.magnitude_pruned > 0 {
        eprintln!(
            "warning: the gates had not met the budget when pruning ended; {} weights were \
             removed by magnitude to fit (more --steps or a larger --gate-lr avoid this)",
            out.fitted.magnitude_pruned
        );
    }
    if let Some(path) = &args.log {
        let rows: Vec<Vec<f64>> = out
            .fitted
            .history
            .iter()
            .map(|p| vec![p.step as f64, p.psnr, p.bpp])
            .collect();
        let header = ["step".into(), "psnr".into(), "bpp".into()];
        write_atomic(path, tether_train::io::csv(&header, &rows).as_bytes())?;
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
    }
    println!(
        "{}: {}x{} -> {} bytes, {:.4} bpp (COIN's convention {:.4}), PSNR {:.2} dB; \
         {}x{} SIREN, {} nonzero weights, kept step {}, {:.1} s",
        args.output.display(),
        image.width,
        image.height,
        out.bytes.len(),
        out.bpp,
        out.coin_bpp,
        out.psnr,
        out.arch.layers,
        out.arch.width,
        out.nonzero_weights,
        out.fitted.step,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_decode(args: DecodeArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.input).with_context(|| args.input.display().to_string())?;
    let started = Instant::now();
    let image = decode_file(&bytes).with_context(|| args.input.display().to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    image.save_png(&args.output)?;
    println!(
        "{} -> {} ({}x{}, decoded in {:.3} s)",
        args.input.display(),
        args.output.display(),
        image.width,
        image.height,
        seconds
    );
    Ok(())
}

const RESULTS_HEADER: &str =
    "image,method,target_bpp,bpp,coin_bpp,psnr,bytes,layers,width,nonzero,kept_step,seconds";

/// One row of results.csv.
struct Row {
    image: String,
    method: String,
    target: f64,
    bpp: f64,
    coin_bpp: f64,
    psnr: f64,
}

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

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.bpp.is_empty(), "--bpp needs at least one rate");
    for &b in &args.bpp {
        args.codec.options(b, false)?;
    }
    // Read the published curves now, so a bad --published folder fails before hours of
    // encoding rather than after.
    let published = match &args.published {
        Some(dir) => baselines::load_published(dir).context("--published")?,
        None => baselines::kodak(),
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| args.dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    paths.sort();
    if let Some(n) = args.limit {
        paths.truncate(n);
    }
    anyhow::ensure!(
        !paths.is_empty(),
        "no .png images in {}",
        args.dir.display()
    );
    let images: Vec<(String, Image)> = paths
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into());
            load(p, args.downscale).map(|img| (name, img))
        })
        .collect::<anyhow::Result<_>>()?;
    let results = args.out.join("results.csv");
    let (mut lines, mut rows) = read_rows(&results)?;
    let total = images.len() * args.methods.len() * args.bpp.len();
    let mut done = 0;
    for (name, image) in &images {
        for &method in &args.methods {
            for &target in &args.bpp {
                done += 1;
                let key = |r: &Row| {
                    r.image == *name && r.method == method.to_string() && r.target == target
                };
                if rows.iter().any(key) {
                    continue;
                }
                let mut codec = args.codec.clone();
                codec.method = method;
                if method == Method::Coin {
                    codec.value_bits = None; // COIN's format is f16; --value-bits is L0onie's
                }
                let options = codec.options(target, false)?;
                let started = Instant::now();
                let out = run_on(codec.device.device, EncodeTask { image, options })?
                    .with_context(|| format!("{name} {method} {target} bpp"))?;
                let seconds = started.elapsed().as_secs_f64();
                let line = format!(
                    "{name},{method},{target},{},{},{},{},{},{},{},{},{seconds:.1}",
                    out.bpp,
                    out.coin_bpp,
                    out.psnr,
                    out.bytes.len(),
                    out.arch.layers,
                    out.arch.width,
                    out.nonzero_weights,
                    out.fitted.step
                );
                eprintln!(
                    "[{done}/{total}] {name} {method} {target} bpp: {:.4} bpp, {:.2} dB ({seconds:.0} s)",
                    out.bpp, out.psnr
                );
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
    summarise(&args, &images, &rows, published)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n as f64
}

fn summarise(
    args: &EvalArgs,
    images: &[(String, Image)],
    rows: &[Row],
    published: Vec<Curve>,
) -> anyhow::Result<()> {
    let names: Vec<&str> = images.iter().map(|(n, _)| n.as_str()).collect();
    // JPEG: averaged over the same images at equal quality, then interpolated at each
    // method's average rate (how the published JPEG curve was made).
    let imgs: Vec<Image> = images.iter().map(|(_, i)| i.clone()).collect();
    let qualities: Vec<u8> = (1..=95).collect();
    let jpeg = Curve::new(
        "JPEG 4:2:0 (same images)",
        jpeg::jpeg_curve(&imgs, &qualities)?,
    );
    // Per method and rate: the averages, then the curves they make.
    struct Point {
        method: Method,
        target: f64,
        images: usize,
        bpp: f64,
        coin_bpp: f64,
        psnr: f64,
        ratio_min: f64,
        ratio_max: f64,
    }
    let mut points = Vec::new();
    for &method in &args.methods {
        for &target in &args.bpp {
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
            points.push(Point {
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
    let mut curves: Vec<Curve> = args.methods.iter().map(|&m| curve(m)).collect();
    // Each method against JPEG and COIN at its own rate (interpolated on their curves;
    // n/a outside them).
    let coin = curve(Method::Coin);
    let at = |c: &Curve, bpp: f64| {
        c.interpolate_psnr(bpp)
            .map_or_else(|| "n/a".to_string(), |p| format!("{p:.3}"))
    };
    let mut summary = String::from(
        "method,target_bpp,images,bpp,coin_bpp,psnr,jpeg_psnr_at_bpp,coin_psnr_at_bpp,min_bpp_over_target,max_bpp_over_target\n",
    );
    for p in &points {
        summary.push_str(&format!(
            "{},{},{},{:.5},{:.5},{:.3},{},{},{:.4},{:.4}\n",
            p.method,
            p.target,
            p.images,
            p.bpp,
            p.coin_bpp,
            p.psnr,
            at(&jpeg, p.bpp),
            at(&coin, p.bpp),
            p.ratio_min,
            p.ratio_max
        ));
    }
    write_atomic(&args.out.join("summary.csv"), summary.as_bytes())?;
    print!("{summary}");
    curves.push(jpeg);
    if args.downscale == 1 {
        curves.extend(published.into_iter().map(|mut c| {
            c.name = format!("{} (published)", c.name);
            c
        }));
    }
    let title = format!(
        "{} images{}",
        images.len(),
        if args.downscale > 1 {
            format!(", downscaled {}x", args.downscale)
        } else {
            String::new()
        }
    );
    // Draw the reference curves only over the rates measured (and a little beyond), so the
    // region that matters is not squeezed into a corner by JPEG's 4 bpp end.
    let max_bpp = 1.5 * args.bpp.iter().copied().fold(0.0, f64::max);
    for c in &mut curves {
        c.points.retain(|p| p.bpp <= max_bpp);
    }
    curves.retain(|c| !c.points.is_empty());
    plot_rd(&args.out.join("rd.png"), &curves, &title)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Encode(a) => run_encode(a),
        Command::Decode(a) => run_decode(a),
        Command::Eval(a) => run_eval(a),
    }
}
