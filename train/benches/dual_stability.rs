//! Stability of the multiplier updates: gradient ascent, augmented Lagrangian and nuPI on
//! the Iris hard-margin SVM with a dual step large enough to make gradient ascent ring.
//!
//! For each method it reports, on the signal `m(t) = max_i g_i(t)` (the largest margin
//! violation; the constraints are met when `m <= 0`, and the support vectors sit at 0):
//! - overshoot: the largest `m(t)` after the run first comes within 1% of feasibility
//!   (`m <= 0.01`), i.e. how far it swings back into infeasibility;
//! - settle step: the first step after which `m(t) <= 0.01` for good;
//! - the distance of the final multipliers to the exact QP multipliers.
//!
//! Writes `out/bench/dual_stability.csv` (trajectories), `dual_stability.json` (figures)
//! and `dual_stability.png` (multiplier trajectories and `m(t)`).
//!
//! Run: `cargo bench -p tether-train --bench dual_stability`

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use tether_train::constrained::{DualOptimizer, NuPiConfig, UpdateScheme};
use tether_train::data::iris::Iris;
use tether_train::io::{csv, write_atomic};
use tether_train::plot::{Panel, Series, line_chart};
use tether_train::tasks::svm::{SvmFitConfig, exact_svm, fit_svm, iris_setosa_versicolor};

const STEPS: usize = 4000;
const LR: f64 = 0.1;
const TOLERANCE: f64 = 0.01;
/// Steps shown in the plot (the transient; afterwards the settled methods are flat).
const PLOTTED: usize = 600;

struct Method {
    name: &'static str,
    dual: DualOptimizer,
    augmented: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let iris = match Iris::load() {
        Ok(iris) => iris,
        Err(e) => {
            eprintln!("dual_stability: SKIPPED: {e}");
            return Ok(());
        }
    };
    let (x, y) = iris_setosa_versicolor(&iris);
    let exact = exact_svm(&x, &y).map_err(anyhow::Error::msg)?;
    let tracked = (0..y.len())
        .max_by(|&a, &b| exact.lambda[a].total_cmp(&exact.lambda[b]))
        .expect("non-empty");
    let methods = [
        Method {
            name: "GA",
            dual: DualOptimizer::gradient_ascent(LR),
            augmented: None,
        },
        Method {
            name: "AL (c=1)",
            dual: DualOptimizer::gradient_ascent(LR),
            augmented: Some(1.0),
        },
        Method {
            name: "nuPI (kp=5)",
            dual: DualOptimizer::NuPi(NuPiConfig::new(LR).with_kp(5.0)),
            augmented: None,
        },
    ];

    let mut signals = Vec::new();
    let mut alphas = Vec::new();
    let mut figures = Vec::new();
    println!(
        "| method | overshoot of max_i g_i | settle step (<= {TOLERANCE}) | max abs(alpha - alpha*) |"
    );
    println!("|---|---|---|---|");
    for m in &methods {
        let cfg = SvmFitConfig {
            dual: m.dual.clone(),
            augmented: m.augmented,
            scheme: UpdateScheme::Simultaneous,
            primal_lr: LR,
            steps: STEPS,
        };
        let mut signal = Vec::with_capacity(STEPS);
        let mut alpha_t = Vec::with_capacity(STEPS);
        let fit = fit_svm::<Autodiff<Flex>>(
            &x,
            &y,
            &cfg,
            &Default::default(),
            None,
            true,
            |_, _, v, a| {
                signal.push(v);
                alpha_t.push(a.expect("recorded")[tracked]);
            },
        )?;
        let first = signal.iter().position(|&v| v <= TOLERANCE);
        let overshoot = first.map(|f| {
            signal[f..]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        });
        let settle = signal
            .iter()
            .rposition(|&v| v > TOLERANCE)
            .map_or(0, |p| p + 1);
        let settled = settle < STEPS;
        let dalpha = fit
            .alpha
            .iter()
            .zip(&exact.lambda)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "| {} | {} | {} | {dalpha:.2e} |",
            m.name,
            overshoot.map_or("never feasible".into(), |o| format!("{o:.4}")),
            if settled {
                settle.to_string()
            } else {
                format!("not within {STEPS}")
            },
        );
        figures.push(serde_json::json!({
            "method": m.name, "overshoot": overshoot, "settle_step": settled.then_some(settle),
            "max_abs_alpha_error": dalpha, "steps": STEPS, "dual_lr": LR, "primal_lr": LR,
        }));
        signals.push(signal);
        alphas.push(alpha_t);
    }

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/bench");
    let mut header = vec!["step".to_string()];
    for m in &methods {
        header.push(format!("{} max_violation", m.name));
        header.push(format!("{} alpha_{tracked}", m.name));
    }
    let rows: Vec<Vec<f64>> = (0..STEPS)
        .map(|t| {
            let mut r = vec![t as f64];
            for k in 0..methods.len() {
                r.push(signals[k][t]);
                r.push(alphas[k][t]);
            }
            r
        })
        .collect();
    write_atomic(
        &out.join("dual_stability.csv"),
        csv(&header, &rows).as_bytes(),
    )?;
    write_atomic(
        &out.join("dual_stability.json"),
        serde_json::to_string_pretty(&figures)?.as_bytes(),
    )?;
    let lines = |data: &Vec<Vec<f64>>| -> Vec<Series> {
        methods
            .iter()
            .zip(data)
            .map(|(m, d)| Series {
                label: m.name.to_string(),
                points: d
                    .iter()
                    .take(PLOTTED)
                    .enumerate()
                    .map(|(t, &v)| (t as f64, v))
                    .collect(),
            })
            .collect()
    };
    let mut alpha_lines = lines(&alphas);
    alpha_lines.push(Series {
        label: format!("exact alpha* = {:.4}", exact.lambda[tracked]),
        points: vec![
            (0.0, exact.lambda[tracked]),
            (PLOTTED as f64, exact.lambda[tracked]),
        ],
    });
    line_chart(
        &out.join("dual_stability.png"),
        &[
            Panel {
                title: format!("Multiplier of support vector {tracked} (Iris SVM, dual step {LR})"),
                x_label: "step".into(),
                y_label: "alpha".into(),
                series: alpha_lines,
            },
            Panel {
                title: "Largest margin violation max_i g_i (feasible when <= 0)".into(),
                x_label: "step".into(),
                y_label: "max_i g_i".into(),
                series: lines(&signals),
            },
        ],
    )?;
    println!("wrote out/bench/dual_stability.{{csv,json,png}}");
    Ok(())
}
