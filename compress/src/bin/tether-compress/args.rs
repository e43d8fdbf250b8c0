//! The command line: `tether-compress`'s flags (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tether_compress::codec::Method;
use tether_compress::coolchic::dual::RateDualConfig;
use tether_compress::tasks::config::Dual;
use tether_train::device::DeviceArgs;

#[derive(Parser)]
#[command(
    name = "tether-compress",
    version,
    about = "Compress images into SIREN weight files (COIN / L0onie) and decode them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Fit a SIREN to an image under a bit budget and write the compressed file.
    Encode(EncodeArgs),
    /// Decode a compressed file to a PNG (through the tether-deploy runtime).
    Decode(DecodeArgs),
    /// Encode every image of a folder at several rates; write a rate-distortion CSV and
    /// plot with JPEG at matched bpp and the published curves.
    Eval(EvalArgs),
}

/// The knobs of a fit, shared by `encode` and `eval`.
#[derive(Args, Clone, Debug)]
pub struct CodecArgs {
    /// COIN (a dense network that fits) or L0onie (an over-parameterised network pruned to
    /// fit by a constraint).
    #[arg(long, value_enum, default_value_t = Method::L0onie)]
    pub method: Method,
    /// Full-batch training steps (COIN's paper: 50000).
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Adam learning rate of the weights (COIN's paper: 2e-4, for 50k steps; short CPU
    /// runs learn faster at 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// L0onie: Adam learning rate of the gate locations.
    #[arg(long, default_value_t = 0.05)]
    pub gate_lr: f64,
    /// L0onie: the starting network has about this many times the weights the budget
    /// holds (1.3 beat 1.6 at 0.6 bpp and lost at 0.15, and 2.0 with deterministic gates
    /// lost at both, on two Kodak images at 192x128; BENCHMARKS.md).
    #[arg(long, default_value_t = 1.3)]
    pub overparam: f64,
    /// L0onie: bits per stored weight. 16 stores f16 (COIN's and the L0onie paper's
    /// format); fewer quantise each layer uniformly (one f16 scale per layer) and fine-tune
    /// quantisation-aware, so the budget holds more weights. 12 bits gained 0.4-1.4 dB over
    /// f16 on the 24 Kodak images at 192x128 (BENCHMARKS.md). Default: 12 for L0onie; COIN
    /// always stores f16.
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=16))]
    pub value_bits: Option<u8>,
    /// L0onie: the multiplier's update rule.
    #[arg(long, value_enum, default_value_t = Dual::Nupi)]
    pub dual: Dual,
    /// L0onie: the multiplier's step size. Smaller steps meet the budget later: at 0.01 a
    /// 96x64 image at 0.6 bpp had not met it when pruning ended (400 steps; the magnitude
    /// fallback did), at 0.05 it met it by step 104 and decoded 0.9 dB better.
    #[arg(long, default_value_t = 0.05)]
    pub dual_lr: f64,
    /// L0onie: nuPI's proportional gain.
    #[arg(long, default_value_t = 2.0)]
    pub kp: f64,
    /// L0onie: fraction of the steps spent pruning; the rest fine-tunes the kept weights
    /// with the sparsity pattern frozen.
    #[arg(long, default_value_t = 0.5)]
    pub prune_fraction: f64,
    /// L0onie: train through the deterministic gates instead of sampling them.
    #[arg(long)]
    pub no_gate_noise: bool,
    /// L0onie: initial drop probability of the gates.
    #[arg(long, default_value_t = 0.05)]
    pub gate_init_drop: f64,
    /// Cool-chic: Adam learning rate at the start of the soft-rounding phase, cosine-decayed
    /// (Ladune et al. 2023 and C3 use 1e-2).
    #[arg(long, default_value_t = 0.01)]
    pub coolchic_lr: f64,
    /// Cool-chic: share of the steps with soft-rounding and noise (the rest rounds).
    #[arg(long, default_value_t = 0.8)]
    pub coolchic_soft_fraction: f64,
    /// Cool-chic: the rounding phase's learning rate as a share of --coolchic-lr (0.2 and
    /// 0.5 let the file's size run away late in the phase, kodim01 and kodim02 at 192x128).
    #[arg(long, default_value_t = 0.05)]
    pub coolchic_round_lr: f64,
    /// Cool-chic: learn the upsampling pre-filters (format version 3) in the rounding
    /// phase. Off by default: +0.24 dB on 4 Kodak images at 192x128 (1000 steps), but
    /// 1-5 dB lost at 48x32 and 300 steps (BENCHMARKS.md, issue 27, seventh version).
    #[arg(long)]
    pub coolchic_learn_upsampling: bool,
    /// Cool-chic: the rate multiplier's starting value (dimensionless: the multiplier of
    /// `ln MSE + lambda bits / budget`).
    #[arg(long, default_value_t = RateDualConfig::default().init)]
    pub coolchic_dual_init: f64,
    /// Cool-chic: the rate multiplier's integral gain, on `ln(bits / budget)` (its
    /// controller moves `ln lambda`).
    #[arg(long, default_value_t = RateDualConfig::default().ki)]
    pub coolchic_dual_ki: f64,
    /// Cool-chic: the rate multiplier's proportional gain.
    #[arg(long, default_value_t = RateDualConfig::default().kp)]
    pub coolchic_dual_kp: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// How an image the codec cannot code exactly is treated, shared by `encode` and `eval`.
#[derive(Args, Clone, Debug)]
pub struct InputArgs {
    /// Refuse an image that loses something in its conversion to 8-bit RGB, the one format
    /// the codec codes, instead of warning and encoding it: an alpha channel not opaque
    /// everywhere (by default dropped, the colour stored under each pixel coded as is, not
    /// composited) or 16-bit channels (by default rounded to 8 bits). An opaque alpha
    /// channel and 16-bit values that are exact 8-bit levels lose nothing and pass.
    #[arg(long)]
    pub strict_input: bool,
}

#[derive(Args)]
pub struct EncodeArgs {
    /// The image (PNG or JPEG).
    pub image: PathBuf,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Target bits per pixel of the whole file (header and checksum included), below 24
    /// (the raw pixels, 8-bit RGB).
    #[arg(long, default_value_t = 0.3)]
    pub bpp: f64,
    /// Downscale the image by this integer factor first (box filter).
    #[arg(long, default_value_t = 1)]
    pub downscale: usize,
    /// Also write the decoded image here (PNG).
    #[arg(long)]
    pub decoded: Option<PathBuf>,
    /// Also write the fit's log here (CSV: step, PSNR of the training pass, bpp of the
    /// file the network would make), and its plot beside it (same name, .png).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Write a checkpoint of the fit to OUTPUT.checkpoint every N steps (0: only when
    /// interrupted). Ctrl-C, SIGTERM and SIGHUP write one after the step under way (a
    /// second signal stops at once); it is removed once the file is written.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Continue the fit whose checkpoint is in DIR (OUTPUT.checkpoint of an interrupted
    /// encode with the same settings); the file equals the uninterrupted fit's on CPU.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub codec: CodecArgs,
}

#[derive(Args)]
pub struct DecodeArgs {
    /// A file written by `encode`.
    pub input: PathBuf,
    /// Output PNG.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A folder of images (every .png in it, by name), e.g. the 24 Kodak photos the
    /// published curves were measured on.
    #[arg(value_name = "IMAGES_DIR")]
    pub dir: PathBuf,
    /// Target rates, comma-separated, each below 24 bits per pixel (the raw pixels).
    #[arg(long, value_delimiter = ',', default_value = "0.07,0.15,0.3,0.6")]
    pub bpp: Vec<f64>,
    /// Methods, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "coin,l0onie")]
    pub methods: Vec<Method>,
    /// Downscale every image by this integer factor first (box filter).
    #[arg(long, default_value_t = 1)]
    pub downscale: usize,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A folder of published curves (JSON, CompressAI's format) to draw beside the
    /// results instead of the Kodak curves built into the binary (COIN, JPEG, JPEG2000,
    /// BPG, VTM and three learned codecs, measured on the 24 full-size Kodak photos).
    /// Either is drawn only at full size (--downscale 1), since the curves were measured
    /// on full-size images.
    #[arg(long, value_name = "DIR")]
    pub published: Option<PathBuf>,
    /// Output folder: results.csv (one row per image, method and rate; a rerun skips the
    /// rows already there), summary.csv and rd.png.
    #[arg(long, default_value = "out/compress-eval")]
    pub out: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub codec: CodecArgs,
}
