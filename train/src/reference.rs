//! Exact references for checking the iterative constrained solvers: a convex QP solved by
//! an interior-point method (the `clarabel` crate), with its KKT multipliers.
//!
//! ```text
//! min_x 1/2 x'Px + q'x   s.t.   A_eq x = b_eq,   A_in x <= b_in
//! ```
//!
//! At the solution `Px + q + A_eq' mu + A_in' lambda = 0` with `lambda >= 0`: `mu` and
//! `lambda` are exactly the Lagrange multipliers of [`crate::constrained`]'s Lagrangian
//! `f(x) + mu' (A_eq x - b_eq) + lambda' (A_in x - b_in)`.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus, ZeroConeT,
};

/// A dense convex QP.
#[derive(Clone, Debug, Default)]
pub struct Qp {
    /// Hessian (symmetric positive semidefinite), `n x n`.
    pub p: Vec<Vec<f64>>,
    /// Linear term, `n`.
    pub q: Vec<f64>,
    /// Equality rows.
    pub a_eq: Vec<Vec<f64>>,
    /// Equality right-hand sides.
    pub b_eq: Vec<f64>,
    /// Inequality rows (`a x <= b`).
    pub a_in: Vec<Vec<f64>>,
    /// Inequality right-hand sides.
    pub b_in: Vec<f64>,
}

/// The optimum of a [`Qp`] and its KKT multipliers.
#[derive(Clone, Debug)]
pub struct QpSolution {
    /// Primal solution.
    pub x: Vec<f64>,
    /// Multipliers of the equalities.
    pub mu: Vec<f64>,
    /// Multipliers of the inequalities (>= 0).
    pub lambda: Vec<f64>,
    /// Objective value.
    pub objective: f64,
}

impl Qp {
    /// Solves to high accuracy; an error when the solver does not reach an optimum.
    pub fn solve(&self) -> Result<QpSolution, String> {
        let n = self.q.len();
        let (mut ri, mut ci, mut v) = (vec![], vec![], vec![]);
        for (i, row) in self.p.iter().enumerate() {
            for (j, &pij) in row.iter().enumerate().skip(i) {
                if pij != 0.0 {
                    ri.push(i);
                    ci.push(j);
                    v.push(pij);
                }
            }
        }
        let p = CscMatrix::new_from_triplets(n, n, ri, ci, v);
        let rows: Vec<&Vec<f64>> = self.a_eq.iter().chain(&self.a_in).collect();
        let m = rows.len();
        let (mut ri, mut ci, mut v) = (vec![], vec![], vec![]);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n {
                return Err(format!(
                    "constraint row {i} has {} entries, expected {n}",
                    row.len()
                ));
            }
            for (j, &a) in row.iter().enumerate() {
                if a != 0.0 {
                    ri.push(i);
                    ci.push(j);
                    v.push(a);
                }
            }
        }
        let a = CscMatrix::new_from_triplets(m, n, ri, ci, v);
        let b: Vec<f64> = self.b_eq.iter().chain(&self.b_in).copied().collect();
        let mut cones = vec![];
        if !self.a_eq.is_empty() {
            cones.push(ZeroConeT(self.a_eq.len()));
        }
        if !self.a_in.is_empty() {
            cones.push(NonnegativeConeT(self.a_in.len()));
        }
        let settings = DefaultSettingsBuilder::default()
            .verbose(false)
            .tol_gap_abs(1e-12)
            .tol_gap_rel(1e-12)
            .tol_feas(1e-12)
            .tol_ktratio(1e-10)
            .build()
            .map_err(|e| format!("clarabel settings: {e:?}"))?;
        let mut solver = DefaultSolver::new(&p, &self.q, &a, &b, &cones, settings)
            .map_err(|e| format!("clarabel setup: {e}"))?;
        solver.solve();
        let s = &solver.solution;
        if !matches!(s.status, SolverStatus::Solved | SolverStatus::AlmostSolved) {
            return Err(format!("clarabel: {:?}", s.status));
        }
        let ne = self.a_eq.len();
        Ok(QpSolution {
            x: s.x.clone(),
            mu: s.z[..ne].to_vec(),
            lambda: s.z[ne..].to_vec(),
            objective: s.obj_val,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// min 1/2 |x|^2 - x_0 - x_1 s.t. x_0 + x_1 <= 1: by symmetry x = (1/2, 1/2) and
    /// stationarity x - 1 + lambda = 0 gives lambda = 1/2.
    #[test]
    fn matches_a_hand_solved_qp() {
        let qp = Qp {
            p: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            q: vec![-1.0, -1.0],
            a_in: vec![vec![1.0, 1.0]],
            b_in: vec![1.0],
            ..Default::default()
        };
        let s = qp.solve().unwrap();
        for (got, want) in s.x.iter().chain(&s.lambda).zip([0.5, 0.5, 0.5]) {
            assert!((got - want).abs() < 1e-8, "{s:?}");
        }
    }
}
