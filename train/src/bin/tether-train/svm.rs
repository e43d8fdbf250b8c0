//! `tether-train svm`.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use tether_train::constrained::{DualOptimizer, NuPiConfig, UpdateScheme};
use tether_train::data::iris::Iris;
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::io::{csv, write_atomic};
use tether_train::plot::{Panel, Series, line_chart};
use tether_train::reference::QpSolution;
use tether_train::tasks::svm::{SvmFitConfig, exact_svm, fit_svm, iris_setosa_versicolor};

/// Which multiplier update to use.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Dual {
    /// Projected gradient ascent.
    Ga,
    /// The nuPI controller.
    Nupi,
}

/// Update scheme names for the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
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

#[derive(Clone, Debug, clap::Args)]
pub struct SvmArgs {
    /// Multiplier update rule.
    #[arg(long, value_enum, default_value_t = Dual::Nupi)]
    dual: Dual,
    /// Dual step size.
    #[arg(long, default_value_t = 0.1)]
    dual_lr: f64,
    /// nuPI proportional gain kappa_p.
    #[arg(long, default_value_t = 5.0)]
    kp: f64,
    /// nuPI EMA coefficient nu, in (-1, 1).
    #[arg(long, default_value_t = 0.0)]
    nu: f64,
    /// Use the augmented Lagrangian with this penalty coefficient.
    #[arg(long)]
    augmented: Option<f64>,
    /// Update scheme.
    #[arg(long, value_enum, default_value_t = Scheme::Simultaneous)]
    scheme: Scheme,
    /// Primal (SGD) learning rate.
    #[arg(long, default_value_t = 0.1)]
    primal_lr: f64,
    /// Number of full-batch steps.
    #[arg(long, default_value_t = 4000)]
    steps: usize,
    /// Output folder for metrics.csv and multipliers.png.
    #[arg(long, default_value = "out/svm")]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: SvmArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let iris = Iris::load()?;
    let (x, y) = iris_setosa_versicolor(&iris);
    let exact = exact_svm(&x, &y)
        .map_err(anyhow::Error::msg)
        .context("exact QP solve")?;
    let dual = match args.dual {
        Dual::Ga => DualOptimizer::gradient_ascent(args.dual_lr),
        Dual::Nupi => DualOptimizer::NuPi(
            NuPiConfig::new(args.dual_lr)
                .with_kp(args.kp)
                .with_nu(args.nu),
        ),
    };
    dual.validate()?;
    let cfg = SvmFitConfig {
        dual,
        augmented: args.augmented,
        scheme: match args.scheme {
            Scheme::Simultaneous => UpdateScheme::Simultaneous,
            Scheme::PrimalDual => UpdateScheme::AlternatingPrimalDual,
            Scheme::DualPrimal => UpdateScheme::AlternatingDualPrimal,
            Scheme::Extragradient => UpdateScheme::Extragradient,
        },
        primal_lr: args.primal_lr,
        steps: args.steps,
    };
    let device = args.device.device;
    run_on(
        device,
        Task {
            x,
            y,
            cfg,
            exact,
            out: args.out,
            label: format!("svm on {device}"),
        },
    )?
}

struct Task {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    cfg: SvmFitConfig,
    exact: QpSolution,
    out: PathBuf,
    label: String,
}

impl BackendTask for Task {
    type Output = anyhow::Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let support: Vec<usize> = (0..self.y.len())
            .filter(|&i| self.exact.lambda[i] > 1e-6)
            .collect();
        let mut rows = Vec::with_capacity(self.cfg.steps);
        let fit = fit_svm::<B>(
            &self.x,
            &self.y,
            &self.cfg,
            &device,
            Some(self.label),
            true,
            |s, loss, v, alpha| {
                let alpha = alpha.expect("recorded");
                let mut row = vec![s as f64, loss, v];
                row.extend(support.iter().map(|&i| alpha[i]));
                row.push(alpha.iter().sum());
                rows.push(row);
            },
        )?;

        let mut header: Vec<String> = ["step", "loss", "max_violation"].map(String::from).to_vec();
        header.extend(support.iter().map(|i| format!("alpha_{i}")));
        header.push("alpha_sum".into());
        write_atomic(
            &self.out.join("metrics.csv"),
            csv(&header, &rows).as_bytes(),
        )?;
        let series = |col: usize, label: String| Series {
            label,
            points: rows.iter().map(|r| (r[0], r[col])).collect(),
        };
        let mut multipliers: Vec<Series> = support
            .iter()
            .enumerate()
            .map(|(k, i)| {
                series(
                    3 + k,
                    format!("alpha_{i} (exact {:.4})", self.exact.lambda[*i]),
                )
            })
            .collect();
        multipliers.push(series(3 + support.len(), "sum of all multipliers".into()));
        line_chart(
            &self.out.join("multipliers.png"),
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
        )?;

        let mut wb = fit.w.clone();
        wb.push(fit.b);
        let diff = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        println!(
            "w, b       {:?}",
            wb.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>()
        );
        println!(
            "exact QP   {:?}",
            self.exact
                .x
                .iter()
                .map(|v| format!("{v:.6}"))
                .collect::<Vec<_>>()
        );
        println!(
            "max |w - w*| = {:.2e}, max |alpha - alpha*| = {:.2e} ({} support vectors)",
            diff(&wb, &self.exact.x),
            diff(&fit.alpha, &self.exact.lambda),
            support.len()
        );
        println!(
            "wrote {} and {}",
            self.out.join("metrics.csv").display(),
            self.out.join("multipliers.png").display()
        );
        Ok(())
    }
}
