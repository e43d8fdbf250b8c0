//! Real data, exact reference: a hard-margin linear SVM on Iris (setosa vs versicolor,
//! four standardised features) solved by the constrained machinery, compared with an
//! interior-point QP solve of the same problem. The learned multipliers are the SVM's
//! dual coefficients; they and the weights must match within 1e-3.

use burn::backend::{Autodiff, Flex};
use tether_train::constrained::{DualOptimizer, NuPiConfig, UpdateScheme};
use tether_train::data::iris::Iris;
use tether_train::tasks::svm::{SvmFitConfig, exact_svm, fit_svm, iris_setosa_versicolor};

type B = Autodiff<Flex>;

/// Iris from the data cache; `None` (with a message) when it was not fetched, unless CI
/// requires the data.
fn iris() -> Option<Iris> {
    match Iris::load() {
        Ok(iris) => Some(iris),
        Err(e) if tether_train::data::may_skip("iris") => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("TETHER_REQUIRE_DATA requires Iris: {e}"),
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn config(dual: DualOptimizer, lr: f64, steps: usize) -> SvmFitConfig {
    SvmFitConfig {
        dual,
        augmented: None,
        scheme: UpdateScheme::Simultaneous,
        primal_lr: lr,
        steps,
    }
}

#[test]
fn multipliers_and_weights_match_an_exact_qp_solve() {
    let Some(iris) = iris() else { return };
    let (x, y) = iris_setosa_versicolor(&iris);
    assert_eq!(x.len(), 100);
    let exact = exact_svm(&x, &y).unwrap();
    let support = exact.lambda.iter().filter(|&&a| a > 1e-6).count();
    // Fewer support vectors than unknowns (w, b): the dual solution is unique, so the
    // comparison is well posed.
    assert!((2..=5).contains(&support), "{support} support vectors");

    for (name, cfg) in [
        (
            "gradient ascent",
            config(DualOptimizer::gradient_ascent(0.05), 0.05, 5000),
        ),
        (
            "nuPI",
            config(
                DualOptimizer::NuPi(NuPiConfig::new(0.1).with_kp(5.0)),
                0.1,
                4000,
            ),
        ),
    ] {
        let fit = fit_svm::<B>(
            &x,
            &y,
            &cfg,
            &Default::default(),
            None,
            false,
            |_, _, _, _| {},
        )
        .unwrap();
        let mut wb = fit.w.clone();
        wb.push(fit.b);
        let dw = max_abs_diff(&wb, &exact.x);
        let da = max_abs_diff(&fit.alpha, &exact.lambda);
        assert!(
            dw < 1e-3,
            "{name}: weights differ by {dw:.2e}: {wb:?} vs {:?}",
            exact.x
        );
        assert!(da < 1e-3, "{name}: multipliers differ by {da:.2e}");
    }
}

/// The stability claim of nuPI on this problem: with the dual step doubled to 0.1, plain
/// gradient ascent keeps oscillating (the margin constraints stay violated) while nuPI
/// with the same step settles on the exact solution.
#[test]
fn nupi_settles_where_gradient_ascent_oscillates() {
    let Some(iris) = iris() else { return };
    let (x, y) = iris_setosa_versicolor(&iris);
    let steps = 4000;
    let tail_violation = |dual| {
        let mut worst: f64 = 0.0;
        fit_svm::<B>(
            &x,
            &y,
            &config(dual, 0.1, steps),
            &Default::default(),
            None,
            false,
            |s, _, v, _| {
                if s >= steps - 500 {
                    worst = worst.max(v);
                }
            },
        )
        .unwrap();
        worst
    };
    let ga = tail_violation(DualOptimizer::gradient_ascent(0.1));
    let pi = tail_violation(DualOptimizer::NuPi(NuPiConfig::new(0.1).with_kp(5.0)));
    assert!(
        ga > 0.1,
        "gradient ascent settled (max violation {ga:.2e} over the last 500 steps)"
    );
    assert!(pi < 1e-3, "nuPI did not settle (max violation {pi:.2e})");
}
