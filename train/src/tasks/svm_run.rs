//! The SVM job end to end, as `tether-train svm` runs it: the hard-margin linear SVM on
//! Iris (setosa vs versicolor, one inequality per sample; [`super::svm`]) solved by
//! constrained gradient descent-ascent, compared with an exact QP solve, with the support
//! vectors' multipliers traced and plotted. The reference problem for the constrained
//! machinery: the multipliers must converge to the QP's KKT multipliers. [`SvmConfig`]
//! holds every setting (serde and clap, as [`super::fair_run::FairConfig`]), [`run`] is
//! the job, [`SvmReport`] what it found.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use tether_train::tasks::svm_run::{SvmConfig, run};
//!
//! let report = run::<Autodiff<Flex>>(&SvmConfig::default(), &Default::default(), true)?;
//! println!("max |alpha - alpha*| = {:.2e}", report.max_alpha_error);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Written under [`SvmConfig::out`]: `metrics.csv` (per step: loss, largest violation, the
//! support vectors' multipliers and the sum of all) and `multipliers.png`.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::constrained::{DualOptimizer, NuPiConfig, UpdateScheme};
use crate::data::iris::Iris;
use crate::denormals::FlushDenormals;
use crate::device::DeviceKind;
use crate::io::{csv, write_atomic};
use crate::plot::{Panel, Series, line_chart};
use crate::reference::QpSolution;
use crate::tasks::prune_run::DualUpdate;
use crate::tasks::svm::{SvmFitConfig, exact_svm, fit_svm, iris_setosa_versicolor};

/// Update scheme names for the command line and config files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Simultaneous gradient descent-ascent.
    Simultaneous,
    /// Primal step, then dual step.
    PrimalDual,
    /// Dual step, then primal step.
    DualPrimal,
    /// Extragradient.
    Extragradient,
}

impl From<Scheme> for UpdateScheme {
    fn from(s: Scheme) -> Self {
        match s {
            Scheme::Simultaneous => UpdateScheme::Simultaneous,
            Scheme::PrimalDual => UpdateScheme::AlternatingPrimalDual,
            Scheme::DualPrimal => UpdateScheme::AlternatingDualPrimal,
            Scheme::Extragradient => UpdateScheme::Extragradient,
        }
    }
}

/// Every setting of an SVM run. Each field is the `tether-train svm` flag of the same name
/// (dashes for underscores), and a config file's key; its doc is the flag's help. The
/// defaults are the flags' ([`Default`] parses an empty command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct SvmConfig {
    /// Multiplier update rule.
    #[arg(long, value_enum, default_value_t = DualUpdate::Nupi)]
    pub dual: DualUpdate,
    /// Dual step size.
    #[arg(long, default_value_t = 0.1)]
    pub dual_lr: f64,
    /// nuPI proportional gain kappa_p.
    #[arg(long, default_value_t = 5.0)]
    pub kp: f64,
    /// nuPI EMA coefficient nu, in (-1, 1).
    #[arg(long, default_value_t = 0.0)]
    pub nu: f64,
    /// Use the augmented Lagrangian with this penalty coefficient.
    #[arg(long)]
    pub augmented: Option<f64>,
    /// Update scheme.
    #[arg(long, value_enum, default_value_t = Scheme::Simultaneous)]
    pub scheme: Scheme,
    /// Primal (SGD) learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub primal_lr: f64,
    /// Number of full-batch steps.
    #[arg(long, default_value_t = 4000)]
    pub steps: usize,
    /// Output folder for metrics.csv and multipliers.png.
    #[arg(long, default_value = "out/svm")]
    pub out: PathBuf,
}

impl Default for SvmConfig {
    fn default() -> Self {
        crate::tasks::flag_defaults()
    }
}

impl SvmConfig {
    /// The multipliers' update rule these settings describe.
    pub fn dual_optimizer(&self) -> DualOptimizer {
        match self.dual {
            DualUpdate::Ga => DualOptimizer::gradient_ascent(self.dual_lr),
            DualUpdate::Nupi => DualOptimizer::NuPi(
                NuPiConfig::new(self.dual_lr)
                    .with_kp(self.kp)
                    .with_nu(self.nu),
            ),
        }
    }

    /// Checks every setting, so a bad one fails before the data is read.
    ///
    /// # Errors
    /// No steps, or a bad dual step size, gain or EMA coefficient.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.steps > 0, "--steps must be at least 1");
        self.dual_optimizer().validate()?;
        Ok(())
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct SvmReport {
    /// The weights and then the bias, as fitted.
    pub wb: Vec<f64>,
    /// The multipliers as fitted, one per sample.
    pub alpha: Vec<f64>,
    /// The exact QP solve (weights and bias in `x`, multipliers in `lambda`).
    pub exact: QpSolution,
    /// The support vectors: samples whose exact multiplier is positive.
    pub support: Vec<usize>,
    /// `max |(w, b) - (w*, b*)|`.
    pub max_weight_error: f64,
    /// `max |alpha - alpha*|`.
    pub max_alpha_error: f64,
    /// The files written, by name, under [`SvmConfig::out`].
    pub files: Vec<&'static str>,
}

/// Runs the SVM job on backend `B`: reads Iris (`scripts/fetch-data iris`), solves the QP
/// exactly, fits by gradient descent-ascent and writes the trace. `progress` shows a
/// progress bar; without it the run is silent. Subnormal floats are flushed throughout, as
/// under the CLI.
///
/// # Errors
/// A setting out of range ([`SvmConfig::validate`]), missing data, a failed QP solve, a
/// diverging fit, or an output that cannot be written.
pub fn run<B: AutodiffBackend>(
    config: &SvmConfig,
    device: &B::Device,
    progress: bool,
) -> anyhow::Result<SvmReport> {
    let _flush = FlushDenormals::new();
    config.validate()?;
    crate::io::check_output_dir(&config.out, "--out")?;
    let iris = Iris::load()?;
    let (x, y) = iris_setosa_versicolor(&iris);
    let exact = exact_svm(&x, &y)
        .map_err(anyhow::Error::msg)
        .context("exact QP solve")?;
    let cfg = SvmFitConfig {
        dual: config.dual_optimizer(),
        augmented: config.augmented,
        scheme: config.scheme.into(),
        primal_lr: config.primal_lr,
        steps: config.steps,
    };
    let support: Vec<usize> = (0..y.len()).filter(|&i| exact.lambda[i] > 1e-6).collect();
    let mut rows = Vec::with_capacity(cfg.steps);
    let fit = fit_svm::<B>(
        &x,
        &y,
        &cfg,
        device,
        progress.then(|| "svm".to_string()),
        true,
        |s, loss, v, alpha| {
            let alpha = alpha.expect("recorded");
            let mut row = vec![s as f64, loss, v];
            row.extend(support.iter().map(|&i| alpha[i]));
            row.push(alpha.iter().sum());
            rows.push(row);
        },
    )?;
    write_trace(config, &exact, &support, &rows)?;
    let mut wb = fit.w.clone();
    wb.push(fit.b);
    let diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    Ok(SvmReport {
        max_weight_error: diff(&wb, &exact.x),
        max_alpha_error: diff(&fit.alpha, &exact.lambda),
        wb,
        alpha: fit.alpha,
        exact,
        support,
        files: vec!["metrics.csv", "multipliers.png"],
    })
}

/// `metrics.csv` and `multipliers.png`: per step the loss, the largest violation, each
/// support vector's multiplier (against its exact value) and the sum of all.
fn write_trace(
    config: &SvmConfig,
    exact: &QpSolution,
    support: &[usize],
    rows: &[Vec<f64>],
) -> anyhow::Result<()> {
    let mut header: Vec<String> = ["step", "loss", "max_violation"].map(String::from).to_vec();
    header.extend(support.iter().map(|i| format!("alpha_{i}")));
    header.push("alpha_sum".into());
    write_atomic(
        &config.out.join("metrics.csv"),
        csv(&header, rows).as_bytes(),
    )?;
    let series = |col: usize, label: String| Series {
        label,
        points: rows.iter().map(|r| (r[0], r[col])).collect(),
    };
    let mut multipliers: Vec<Series> = support
        .iter()
        .enumerate()
        .map(|(k, i)| series(3 + k, format!("alpha_{i} (exact {:.4})", exact.lambda[*i])))
        .collect();
    multipliers.push(series(3 + support.len(), "sum of all multipliers".into()));
    line_chart(
        &config.out.join("multipliers.png"),
        &[
            Panel {
                title: "Multipliers of the support vectors".into(),
                x_label: "step".into(),
                y_label: "alpha".into(),
                series: multipliers,
            },
            Panel {
                title: "Largest margin violation".into(),
                x_label: "step".into(),
                y_label: "max_i g_i".into(),
                series: vec![series(2, "max violation".into())],
            },
        ],
    )
}

/// [`run`] as a [`crate::device::BackendTask`], for [`crate::device::run_on`].
pub struct SvmTask<'a> {
    /// The settings.
    pub config: &'a SvmConfig,
    /// Whether to show progress.
    pub progress: bool,
}

impl crate::device::BackendTask for SvmTask<'_> {
    type Output = anyhow::Result<SvmReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run::<B>(self.config, &device, self.progress)
    }
}

/// [`run`] on the backend `kind` names.
///
/// # Errors
/// The device is not compiled in or not present, or [`run`]'s errors.
pub fn run_on(kind: DeviceKind, config: &SvmConfig, progress: bool) -> anyhow::Result<SvmReport> {
    crate::device::run_on(kind, SvmTask { config, progress })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_round_trips_through_json_with_the_flags_defaults() {
        let d = SvmConfig::default();
        assert_eq!(
            (d.dual, d.scheme, d.steps),
            (DualUpdate::Nupi, Scheme::Simultaneous, 4000)
        );
        assert_eq!((d.kp, d.augmented), (5.0, None));
        let config = SvmConfig {
            scheme: Scheme::PrimalDual,
            augmented: Some(0.5),
            ..SvmConfig::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["scheme"], "primal-dual");
        assert_eq!(serde_json::from_value::<SvmConfig>(json).unwrap(), config);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = SvmConfig {
            steps: 0,
            ..SvmConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--steps must be at least 1"), "{e}");
        assert!(
            SvmConfig {
                dual_lr: -1.0,
                ..SvmConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
