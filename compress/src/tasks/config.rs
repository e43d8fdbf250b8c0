//! The settings of each command: [`CodecConfig`] (the knobs of a fit, shared by encode and
//! eval) and one config per subcommand.

use std::path::PathBuf;

use tether_train::constrained::{DualOptimizer, NuPiConfig};
use tether_train::device::DeviceKind;

use crate::codec::{EncodeOptions, Method};
use crate::coolchic::dual::RateDualConfig;
use crate::coolchic::fit::CoolChicSettings;
use crate::fit::{FitSettings, L0onieSettings};
use crate::image::RAW_BPP;

/// L0onie's multiplier update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dual {
    /// nuPI (Sohrabi et al. 2024).
    Nupi,
    /// Projected gradient ascent.
    Ga,
}

/// The knobs of a fit, shared by `encode` and `eval` (the CLI's defaults in
/// [`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CodecConfig {
    /// COIN, L0onie or Cool-chic.
    pub method: Method,
    /// Full-batch training steps.
    pub steps: usize,
    /// Adam learning rate of the weights.
    pub lr: f64,
    /// L0onie: Adam learning rate of the gate locations.
    pub gate_lr: f64,
    /// L0onie: the starting network has about this many times the weights the budget
    /// holds.
    pub overparam: f64,
    /// L0onie: bits per stored weight (2 to 16; 12 when `None`). COIN stores f16: `None` or
    /// 16.
    pub value_bits: Option<u8>,
    /// L0onie: the multiplier's update rule.
    pub dual: Dual,
    /// L0onie: the multiplier's step size.
    pub dual_lr: f64,
    /// L0onie: nuPI's proportional gain.
    pub kp: f64,
    /// L0onie: fraction of the steps spent pruning; the rest fine-tunes the kept weights.
    pub prune_fraction: f64,
    /// L0onie: train through the deterministic gates instead of sampling them.
    pub no_gate_noise: bool,
    /// L0onie: initial drop probability of the gates, in (0, 1).
    pub gate_init_drop: f64,
    /// Cool-chic: Adam learning rate at the start of the soft-rounding phase.
    pub coolchic_lr: f64,
    /// Cool-chic: share of the steps with soft-rounding and noise (the rest rounds).
    pub coolchic_soft_fraction: f64,
    /// Cool-chic: the rounding phase's learning rate as a share of `coolchic_lr`.
    pub coolchic_round_lr: f64,
    /// Cool-chic: learn the upsampling filters ([`CoolChicSettings::learn_upsampling`]).
    pub coolchic_learn_upsampling: bool,
    /// Cool-chic: the rate multiplier's controller.
    pub coolchic_dual: RateDualConfig,
    /// Seed.
    pub seed: u64,
    /// The backend the fit runs on.
    pub device: DeviceKind,
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            method: Method::L0onie,
            steps: 2000,
            lr: 1e-3,
            gate_lr: 0.05,
            overparam: 1.3,
            value_bits: None,
            dual: Dual::Nupi,
            dual_lr: 0.05,
            kp: 2.0,
            prune_fraction: 0.5,
            no_gate_noise: false,
            gate_init_drop: 0.05,
            coolchic_lr: 1e-2,
            coolchic_soft_fraction: 0.8,
            coolchic_round_lr: 0.05,
            coolchic_learn_upsampling: false,
            coolchic_dual: RateDualConfig::default(),
            seed: 0,
            device: DeviceKind::Flex,
        }
    }
}

impl CodecConfig {
    /// The encoder's options at `bpp` (`progress`: progress bars during the fit).
    ///
    /// # Errors
    /// `bpp` not a positive number below [`RAW_BPP`], `gate_init_drop` outside (0, 1), a
    /// dual optimizer setting out of range, or COIN with `value_bits` other than 16.
    pub fn options(&self, bpp: f64, progress: bool) -> anyhow::Result<EncodeOptions> {
        anyhow::ensure!(
            bpp.is_finite() && bpp > 0.0,
            "--bpp must be a positive number, got {bpp}"
        );
        anyhow::ensure!(
            bpp < RAW_BPP,
            "--bpp {bpp} is at or above the size of the raw pixels ({RAW_BPP} bits per pixel, \
             8-bit RGB): the file would be no smaller than the image uncompressed; give a \
             rate below {RAW_BPP}"
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
            // Cool-chic quantises its own way (power-of-two steps, searched per tensor).
            (Method::CoolChic, _) => 16,
        };
        anyhow::ensure!(
            self.coolchic_lr.is_finite() && self.coolchic_lr > 0.0,
            "--coolchic-lr must be a positive number, got {}",
            self.coolchic_lr
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.coolchic_soft_fraction)
                && self.coolchic_round_lr.is_finite()
                && self.coolchic_round_lr >= 0.0,
            "--coolchic-soft-fraction must be in [0, 1] and --coolchic-round-lr >= 0, got {} and {}",
            self.coolchic_soft_fraction,
            self.coolchic_round_lr
        );
        self.coolchic_dual
            .validate()
            .map_err(|e| anyhow::anyhow!("--coolchic-dual-*: {e}"))?;
        Ok(EncodeOptions {
            method: self.method,
            bpp,
            fit: FitSettings {
                steps: self.steps,
                lr: self.lr,
                progress,
                checkpoint: None,
            },
            l0onie: L0onieSettings {
                value_bits,
                gate_lr: self.gate_lr,
                dual: dual.clone(),
                init_drop_rate: self.gate_init_drop,
                init_spread: 0.5,
                eval_every: 10,
                prune_fraction: self.prune_fraction,
                sample_gates: !self.no_gate_noise,
            },
            overparam: self.overparam,
            value_bits,
            coolchic: CoolChicSettings {
                lr: self.coolchic_lr,
                round_lr: self.coolchic_round_lr,
                learn_upsampling: self.coolchic_learn_upsampling,
                noise_fraction: self.coolchic_soft_fraction,
                temperature: (0.3, 0.1),
                kumaraswamy: (2.0, 1.0),
                dual: self.coolchic_dual.clone(),
                eval_every: 10,
                weight_exponent: 8,
                search_at: 0.5,
            },
            seed: self.seed,
        })
    }
}

/// The settings of [`encode::run`](super::encode::run) (`tether-compress encode`).
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeConfig {
    /// The image (PNG or JPEG).
    pub image: PathBuf,
    /// The compressed file to write.
    pub output: PathBuf,
    /// Target bits per pixel of the whole file (header and checksum included).
    pub bpp: f64,
    /// Downscale the image by this integer factor first (box filter; 1: as is).
    pub downscale: usize,
    /// Also write the decoded image here (PNG).
    pub decoded: Option<PathBuf>,
    /// Also write the fit's log here (CSV), and its plot beside it (same name, .png).
    pub log: Option<PathBuf>,
    /// Refuse an image that loses something in its conversion to 8-bit RGB (an alpha
    /// channel not opaque everywhere, values beyond 8 bits) instead of warning.
    pub strict_input: bool,
    /// Checkpoint the fit to `OUTPUT.checkpoint` every this many steps (0: only when
    /// interrupted); removed once the file is written.
    pub checkpoint_every: usize,
    /// Continue the fit whose checkpoint is in this folder (`OUTPUT.checkpoint` of an
    /// interrupted encode with the same settings).
    pub resume: Option<PathBuf>,
    /// The fit.
    pub codec: CodecConfig,
}

impl EncodeConfig {
    /// The folder the fit checkpoints to: beside the output, `OUTPUT.checkpoint`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        let mut name = self
            .output
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "encode".into());
        name.push(".checkpoint");
        self.output.with_file_name(name)
    }

    /// The settings a resumed fit must share with the interrupted one: all but where the
    /// outputs go and how often it checkpoints.
    pub fn resume_key(&self) -> serde_json::Value {
        let c = &self.codec;
        serde_json::json!({
            "image": self.image.display().to_string(),
            "bpp": self.bpp,
            "downscale": self.downscale,
            "method": c.method.to_string(),
            "steps": c.steps,
            "lr": c.lr,
            "gate_lr": c.gate_lr,
            "overparam": c.overparam,
            "value_bits": c.value_bits,
            "dual": format!("{:?}", c.dual),
            "dual_lr": c.dual_lr,
            "kp": c.kp,
            "prune_fraction": c.prune_fraction,
            "no_gate_noise": c.no_gate_noise,
            "gate_init_drop": c.gate_init_drop,
            "coolchic_lr": c.coolchic_lr,
            "coolchic_soft_fraction": c.coolchic_soft_fraction,
            "coolchic_round_lr": c.coolchic_round_lr,
            "coolchic_learn_upsampling": c.coolchic_learn_upsampling,
            "coolchic_dual": format!("{:?}", c.coolchic_dual),
            "seed": c.seed,
            "device": format!("{:?}", c.device),
        })
    }
}

/// The settings of [`decode::run`](super::decode::run) (`tether-compress decode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeConfig {
    /// A file written by `encode`.
    pub input: PathBuf,
    /// The PNG to write.
    pub output: PathBuf,
}

/// The settings of [`eval::run`](super::eval::run) (`tether-compress eval`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalConfig {
    /// A folder of images (every .png in it, by name).
    pub dir: PathBuf,
    /// Target rates.
    pub bpp: Vec<f64>,
    /// Methods.
    pub methods: Vec<Method>,
    /// Downscale every image by this integer factor first (box filter; 1: as is).
    pub downscale: usize,
    /// Use only the first N images.
    pub limit: Option<usize>,
    /// A folder of published curves (JSON, CompressAI's format) instead of the Kodak curves
    /// built in.
    pub published: Option<PathBuf>,
    /// Output folder: `results.csv`, `summary.csv` and `rd.png`.
    pub out: PathBuf,
    /// Refuse an image that loses something in its conversion to 8-bit RGB instead of
    /// warning.
    pub strict_input: bool,
    /// The fit (its method and, for COIN, its value bits are set per job).
    pub codec: CodecConfig,
}
