//! Convergence to the KKT point of a convex QP, checked against its hand-derived
//! solution and an interior-point solve (`clarabel`), for every formulation and scheme.
//!
//! ```text
//! min 1/2 |x - c|^2,  c = (1, 2, 3)
//! s.t. x0 + x1 <= 1      (active,   lambda_1 = 2)
//!      x2 <= 10          (inactive, lambda_2 = 0)
//!      x0 - x2 = 0       (mu = -2)
//! ```
//! Stationarity `x - c + lambda_1 (1,1,0) + mu (1,0,-1) = 0` with both active rows gives
//! `x* = (1, 0, 1)`.

use burn::optim::SgdConfig;

use burn::tensor::backend::AutodiffBackend;

use super::*;
use crate::reference::Qp;

const C: [f64; 3] = [1.0, 2.0, 3.0];
const X_STAR: [f64; 3] = [1.0, 0.0, 1.0];
const LAMBDA_STAR: [f64; 2] = [2.0, 0.0];
const MU_STAR: f64 = -2.0;

struct QuadraticProgram {
    ineq: ConstraintId,
    eq: ConstraintId,
}

impl<B: AutodiffBackend> ConstrainedProblem<B, Point<B>> for QuadraticProgram {
    type Input = ();
    fn compute_cmp_state(&self, m: &Point<B>, _: &()) -> CmpState<B> {
        let x = m.x.val();
        let device = x.device();
        let c = vec_tensor::<B>(&C, &device);
        let loss = (x.clone() - c).powi_scalar(2).sum().mul_scalar(0.5);
        let xs = |i: usize| x.clone().narrow(0, i, 1);
        let g = Tensor::cat(
            vec![(xs(0) + xs(1)).sub_scalar(1.0), xs(2).sub_scalar(10.0)],
            0,
        );
        let h = xs(0) - xs(2);
        CmpState::new(loss)
            .with(self.ineq, ConstraintState::new(g))
            .with(self.eq, ConstraintState::new(h))
    }
}

struct Outcome {
    x: Vec<f64>,
    lambda: Vec<f64>,
    mu: Vec<f64>,
}

fn solve<B: AutodiffBackend>(
    ineq: FormulationConfig,
    eq: FormulationConfig,
    scheme: UpdateScheme,
    steps: usize,
) -> Outcome {
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let problem = QuadraticProgram {
        ineq: set
            .add("ineq", ConstraintKind::Inequality, 2, ineq)
            .unwrap(),
        eq: set.add("eq", ConstraintKind::Equality, 1, eq).unwrap(),
    };
    let mut model = Point::<B>::new(&[0.0, 0.0, 0.0], &device);
    let read = |set: &ConstraintSet<B>, id| {
        set.get(id)
            .unwrap()
            .formulation()
            .multiplier()
            .map(|m| m.to_vec())
            .unwrap_or_default()
    };
    let mut opt = ConstrainedOptimizer::new(SgdConfig::new().init(), 0.05, scheme);
    for _ in 0..steps {
        model = opt.roll(model, &mut set, &problem, &()).unwrap().model;
    }
    Outcome {
        x: host(&model.x.val()),
        lambda: read(&set, problem.ineq),
        mu: read(&set, problem.eq),
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < tol,
            "{what}: got {got:?}, want {want:?} (tol {tol})"
        );
    }
}

fn lagrangian(m: MultiplierConfig) -> FormulationConfig {
    FormulationConfig::Lagrangian(m)
}

#[test]
fn the_interior_point_reference_agrees_with_the_hand_solution() {
    let s = Qp {
        p: vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ],
        q: C.iter().map(|c| -c).collect(),
        a_eq: vec![vec![1.0, 0.0, -1.0]],
        b_eq: vec![0.0],
        a_in: vec![vec![1.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]],
        b_in: vec![1.0, 10.0],
    }
    .solve()
    .unwrap();
    assert_close("x", &s.x, &X_STAR, 1e-7);
    assert_close("lambda", &s.lambda, &LAMBDA_STAR, 1e-7);
    assert_close("mu", &s.mu, &[MU_STAR], 1e-7);
}

fn lagrangian_reaches_the_kkt_point_under_every_update_scheme<B: AutodiffBackend>() {
    for scheme in [
        UpdateScheme::Simultaneous,
        UpdateScheme::AlternatingDualPrimal,
        UpdateScheme::AlternatingPrimalDual,
        UpdateScheme::Extragradient,
    ] {
        let o = solve::<B>(lagrangian(ga(0.05)), lagrangian(ga(0.05)), scheme, 4000);
        assert_close(&format!("{scheme:?} x"), &o.x, &X_STAR, 1e-3);
        assert_close(&format!("{scheme:?} lambda"), &o.lambda, &LAMBDA_STAR, 1e-3);
        assert_close(&format!("{scheme:?} mu"), &o.mu, &[MU_STAR], 1e-3);
    }
}

fn nupi_reaches_the_kkt_point<B: AutodiffBackend>() {
    let pi = || nupi(NuPiConfig::new(0.05).with_kp(2.0).with_nu(0.5));
    for scheme in [
        UpdateScheme::Simultaneous,
        UpdateScheme::AlternatingDualPrimal,
    ] {
        let o = solve::<B>(lagrangian(pi()), lagrangian(pi()), scheme, 4000);
        assert_close(&format!("{scheme:?} x"), &o.x, &X_STAR, 1e-3);
        assert_close(&format!("{scheme:?} lambda"), &o.lambda, &LAMBDA_STAR, 1e-3);
        assert_close(&format!("{scheme:?} mu"), &o.mu, &[MU_STAR], 1e-3);
    }
}

fn augmented_lagrangian_reaches_the_kkt_point<B: AutodiffBackend>() {
    let al = |growth: bool| {
        let penalty = PenaltyConfig::fixed(1.0);
        FormulationConfig::AugmentedLagrangian {
            multiplier: ga(0.05),
            penalty: if growth {
                penalty.with_growth(1.001, 1e-4, 4.0)
            } else {
                penalty
            },
        }
    };
    for growth in [false, true] {
        let o = solve::<B>(al(growth), al(growth), UpdateScheme::Simultaneous, 4000);
        assert_close("AL x", &o.x, &X_STAR, 1e-3);
        assert_close("AL lambda", &o.lambda, &LAMBDA_STAR, 1e-3);
        assert_close("AL mu", &o.mu, &[MU_STAR], 1e-3);
    }
}

/// With a fixed coefficient rho the quadratic penalty minimises
/// `1/2|x-c|^2 + rho/2 (x0+x1-1)^2 + rho/2 (x0-x2)^2` (the inactive row stays inactive):
/// the linear system `(I + rho a a' + rho e e') x = c + rho a` is solved here directly.
fn quadratic_penalty_reaches_the_penalised_optimum<B: AutodiffBackend>() {
    let rho = 4.0;
    let (a, e) = ([1.0, 1.0, 0.0], [1.0, 0.0, -1.0]);
    let mut m = [[0.0; 4]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = f64::from(i == j) + rho * (a[i] * a[j] + e[i] * e[j]);
        }
        m[i][3] = C[i] + rho * a[i];
    }
    for col in 0..3 {
        for row in col + 1..3 {
            let pivot = m[col];
            let f = m[row][col] / pivot[col];
            for (v, p) in m[row].iter_mut().zip(pivot).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut want = [0.0; 3];
    for i in (0..3).rev() {
        want[i] = (m[i][3] - (i + 1..3).map(|k| m[i][k] * want[k]).sum::<f64>()) / m[i][i];
    }
    let qp = || FormulationConfig::QuadraticPenalty(PenaltyConfig::fixed(rho));
    let o = solve::<B>(qp(), qp(), UpdateScheme::Simultaneous, 3000);
    assert_close("penalty x", &o.x, &want, 1e-3);
    assert!(o.lambda.is_empty() && o.mu.is_empty());
    // The penalised optimum is infeasible by O(1/rho): the exact KKT point is not reached.
    assert!((o.x[0] + o.x[1] - 1.0) > 0.05, "{:?}", o.x);
}

backend_tests!(
    lagrangian_reaches_the_kkt_point_under_every_update_scheme,
    nupi_reaches_the_kkt_point,
    augmented_lagrangian_reaches_the_kkt_point,
    quadratic_penalty_reaches_the_penalised_optimum
);
