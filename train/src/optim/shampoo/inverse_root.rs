//! Matrix inverse roots `(A + eps I)^(-1/p)` of a symmetric positive semi-definite factor,
//! in f64 on the host (Shi et al. 2023, §3.1 and Appendix; Shampoo's preconditioner is
//! `L^(-1/2k)` for a block of order `k`).
//!
//! Two methods, as the reference offers:
//! - [`RootMethod::Eigen`]: symmetric eigendecomposition (faer), `Q diag((l + eps)^(-1/p)) Q^T`.
//!   Exact up to rounding; the default.
//! - [`RootMethod::CoupledNewton`]: the coupled inverse Newton iteration (Guo & Higham 2006,
//!   "A Schur–Newton method for the matrix p-th root and its inverse"), matrix products only.

use faer::{Mat, Side};

/// How the inverse root is computed.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RootMethod {
    /// Symmetric eigendecomposition.
    Eigen,
    /// Coupled inverse Newton iteration; stops when `max |M_k - I| <= tolerance`.
    CoupledNewton {
        /// Iteration cap (the reference's default: 100).
        max_iterations: usize,
        /// Stopping tolerance on the infinity norm of `M_k - I` (reference: 1e-6).
        tolerance: f64,
    },
}

impl RootMethod {
    /// The coupled Newton iteration with the reference's defaults.
    pub fn coupled_newton() -> Self {
        Self::CoupledNewton {
            max_iterations: 100,
            tolerance: 1e-6,
        }
    }
}

/// Why an inverse root could not be computed (the caller keeps the previous root).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RootError {
    /// The factor holds NaN or infinity.
    #[error("the factor matrix holds a non-finite value")]
    NonFiniteInput,
    /// The eigendecomposition did not converge.
    #[error("the eigendecomposition did not converge")]
    EigenFailed,
    /// The Newton iteration did not reach its tolerance.
    #[error(
        "the coupled Newton iteration stopped at error {error:e} after {iterations} iterations"
    )]
    NewtonNotConverged {
        /// Iterations run.
        iterations: usize,
        /// Final `max |M - I|`.
        error: f64,
    },
    /// The result holds NaN or infinity.
    #[error("the inverse root is not finite")]
    NonFiniteOutput,
}

/// `(a + eps I)^(-multiplier/root)` for the symmetric `n x n` matrix `a` (row-major),
/// row-major out. `multiplier` must be 1 for the Newton method (the config checks it).
///
/// Eigen path, as the reference: rounding can leave a PSD factor with a slightly negative
/// smallest eigenvalue `l_min`; all eigenvalues are shifted up by `-min(l_min, 0)` (keeping
/// the matrix positive semi-definite), then `eps` is added to them (the same as `+ eps I`),
/// so every power is finite. An all-zero factor gives `eps^(-1/root) I`.
pub fn inverse_root(
    a: &[f64],
    n: usize,
    root: f64,
    multiplier: f64,
    eps: f64,
    method: RootMethod,
) -> Result<Vec<f64>, RootError> {
    assert_eq!(a.len(), n * n, "inverse_root: a is not n x n");
    if a.iter().any(|v| !v.is_finite()) {
        return Err(RootError::NonFiniteInput);
    }
    // Symmetrise (the factor is symmetric up to rounding in its accumulation).
    let m = Mat::<f64>::from_fn(n, n, |i, j| 0.5 * (a[i * n + j] + a[j * n + i]));
    let out = match method {
        RootMethod::Eigen => eigen_root(&m, root / multiplier, eps)?,
        RootMethod::CoupledNewton {
            max_iterations,
            tolerance,
        } => newton_root(&m, root, eps, max_iterations, tolerance)?,
    };
    let v: Vec<f64> = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| out[(i, j)])
        .collect();
    if v.iter().any(|x| !x.is_finite()) {
        return Err(RootError::NonFiniteOutput);
    }
    Ok(v)
}

fn eigen_root(m: &Mat<f64>, root: f64, eps: f64) -> Result<Mat<f64>, RootError> {
    let n = m.nrows();
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| RootError::EigenFailed)?;
    let (s, u) = (e.S(), e.U());
    let shift = -(0..n).map(|i| s[i]).fold(0.0f64, f64::min);
    let powered: Vec<f64> = (0..n)
        .map(|i| (s[i] + shift + eps).powf(-1.0 / root))
        .collect();
    // U diag(p) U^T
    let scaled = Mat::<f64>::from_fn(n, n, |i, j| u[(i, j)] * powered[j]);
    Ok(&scaled * u.transpose())
}

/// Coupled Newton for `A^(-1/p)`, `A = m + eps I`: with `z = (p + 1) / (2 ||A||_F)`,
/// `X_0 = z^(1/p) I`, `M_0 = z A`, iterate `T = ((p + 1) I - M_k) / p`, `X_{k+1} = X_k T`,
/// `M_{k+1} = T^p M_k`; `M_k -> I` and `X_k -> A^(-1/p)` (Guo & Higham 2006, eq. 3.1
/// with the scaling of their §4; the reference's initialisation).
fn newton_root(
    m: &Mat<f64>,
    root: f64,
    eps: f64,
    max_iterations: usize,
    tolerance: f64,
) -> Result<Mat<f64>, RootError> {
    let n = m.nrows();
    let p = root.round() as u32;
    let identity = Mat::<f64>::identity(n, n);
    let a = m + Mat::<f64>::identity(n, n) * faer::Scale(eps);
    let z = (root + 1.0) / (2.0 * a.norm_l2());
    let mut x = Mat::<f64>::identity(n, n) * faer::Scale(z.powf(1.0 / root));
    let mut mk = a * faer::Scale(z);
    let err = |mk: &Mat<f64>| (mk - &identity).norm_max();
    let mut error = err(&mk);
    let mut iterations = 0;
    while error > tolerance && iterations < max_iterations {
        iterations += 1;
        let t = (&identity * faer::Scale(root + 1.0) - &mk) * faer::Scale(1.0 / root);
        x = &x * &t;
        let mut tp = t.clone();
        for _ in 1..p {
            tp = &tp * &t;
        }
        mk = &tp * &mk;
        error = err(&mk);
        if !error.is_finite() {
            return Err(RootError::NonFiniteOutput);
        }
    }
    if error > tolerance {
        return Err(RootError::NewtonNotConverged { iterations, error });
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random SPD-ish factor: `G G^T / cols` plus a small ridge, like Shampoo's statistics.
    fn factor(n: usize, cols: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::data::batches::SplitMix64(seed);
        let g: Vec<f64> = (0..n * cols).map(|_| rng.next_unit() * 2.0 - 1.0).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..cols)
                    .map(|k| g[i * cols + k] * g[j * cols + k])
                    .sum::<f64>()
                    / cols as f64;
            }
        }
        a
    }

    fn to_mat(v: &[f64], n: usize) -> Mat<f64> {
        Mat::from_fn(n, n, |i, j| v[i * n + j])
    }

    /// `|| R^p (A + eps I) - I ||` is tiny for both methods, for the roots Shampoo uses
    /// (p = 2 for a vector, 4 for a matrix, 6 for a 3-d block).
    #[test]
    fn inverse_root_residual_is_small() {
        for (n, cols, seed) in [(5, 3, 1), (12, 40, 2), (30, 10, 3)] {
            let a = factor(n, cols, seed);
            let eps = 1e-3;
            for root in [2.0, 4.0, 6.0] {
                for method in [RootMethod::Eigen, RootMethod::coupled_newton()] {
                    let r = to_mat(&inverse_root(&a, n, root, 1.0, eps, method).unwrap(), n);
                    let mut rp = Mat::<f64>::identity(n, n);
                    for _ in 0..root as usize {
                        rp = &rp * &r;
                    }
                    let shifted = to_mat(&a, n) + Mat::<f64>::identity(n, n) * faer::Scale(eps);
                    let residual = (&rp * &shifted - Mat::<f64>::identity(n, n)).norm_max();
                    let tol = match method {
                        RootMethod::Eigen => 1e-6,
                        // Newton stops at 1e-6 on M; the residual inherits that.
                        RootMethod::CoupledNewton { .. } => 1e-4,
                    };
                    assert!(
                        residual < tol,
                        "n {n} root {root} {method:?}: residual {residual:e}"
                    );
                }
            }
        }
    }

    /// The two methods agree, and both agree with the closed form on a diagonal matrix.
    #[test]
    fn methods_agree_with_the_closed_form() {
        let a = [4.0, 0.0, 0.0, 0.0, 16.0, 0.0, 0.0, 0.0, 0.0];
        for method in [RootMethod::Eigen, RootMethod::coupled_newton()] {
            let r = inverse_root(&a, 3, 2.0, 1.0, 1e-8, method).unwrap();
            assert!((r[0] - 0.5).abs() < 1e-6, "{method:?}: {r:?}");
            assert!((r[4] - 0.25).abs() < 1e-6, "{method:?}: {r:?}");
            // A zero eigenvalue gives eps^(-1/2).
            assert!((r[8] - 1e4).abs() < 1e-2 * 1e4, "{method:?}: {r:?}");
            assert!(r[1].abs() < 1e-9);
        }
    }

    #[test]
    fn non_finite_input_is_an_error() {
        let a = [1.0, f64::NAN, f64::NAN, 1.0];
        assert_eq!(
            inverse_root(&a, 2, 2.0, 1.0, 1e-6, RootMethod::Eigen),
            Err(RootError::NonFiniteInput)
        );
        let r = inverse_root(
            &[1.0, 0.0, 0.0, 1e12],
            2,
            4.0,
            1.0,
            1e-12,
            RootMethod::CoupledNewton {
                max_iterations: 3,
                tolerance: 1e-12,
            },
        );
        assert!(
            matches!(r, Err(RootError::NewtonNotConverged { .. })),
            "{r:?}"
        );
    }
}
