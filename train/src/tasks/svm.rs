//! A hard-margin linear SVM as a constrained problem: one inequality per sample.
//!
//! ```text
//! min_{w,b} 1/2 |w|^2   s.t.   g_i(w, b) = 1 - y_i (w . x_i + b) <= 0,   i = 1..n
//! ```
//!
//! Its KKT multipliers are the SVM's dual coefficients `alpha_i` (non-zero only on the
//! support vectors), so an exact QP solve ([`exact_svm`]) is an independent reference for
//! both the weights and the multipliers the Lagrangian solvers learn.

use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::{Tensor, TensorData, backend::AutodiffBackend, backend::Backend};

use crate::constrained::{CmpState, ConstrainedProblem, ConstraintId, ConstraintState};
use crate::reference::{Qp, QpSolution};

/// `f(x) = w . x + b`.
#[derive(Module, Debug)]
pub struct LinearSvm<B: Backend> {
    /// Weights, `[d]`.
    pub w: Param<Tensor<B, 1>>,
    /// Bias, `[1]`.
    pub b: Param<Tensor<B, 1>>,
}

impl<B: Backend> LinearSvm<B> {
    /// Zero weights and bias (a deterministic start, so runs are comparable).
    pub fn zeros(dim: usize, device: &B::Device) -> Self {
        Self {
            w: Param::from_tensor(Tensor::zeros([dim], device)),
            b: Param::from_tensor(Tensor::zeros([1], device)),
        }
    }

    /// Decision values `[n]` for inputs `[n, d]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let w = self.w.val().unsqueeze_dim::<2>(1);
        x.matmul(w).squeeze_dim::<1>(1) + self.b.val()
    }

    /// `(w, b)` read back to the host.
    pub fn to_host(&self) -> (Vec<f64>, f64) {
        let w = crate::constrained::tensor_to_f64(&self.w.val());
        let b = crate::constrained::tensor_to_f64(&self.b.val())[0];
        (w, b)
    }
}

/// The SVM problem on a fixed (full) batch.
pub struct SvmProblem<B: Backend> {
    x: Tensor<B, 2>,
    y: Tensor<B, 1>,
    /// The margin constraints (one entry per sample).
    pub margin: ConstraintId,
}

impl<B: Backend> SvmProblem<B> {
    /// Puts the data on `device`; `margin` must have been registered with `y.len()` entries.
    pub fn new(x: &[Vec<f64>], y: &[f64], margin: ConstraintId, device: &B::Device) -> Self {
        let n = x.len();
        let d = x.first().map_or(0, Vec::len);
        let flat: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
        let yv: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        Self {
            x: Tensor::from_data(TensorData::new(flat, [n, d]), device),
            y: Tensor::from_data(TensorData::new(yv, [n]), device),
            margin,
        }
    }
}

impl<B: AutodiffBackend> ConstrainedProblem<B, LinearSvm<B>> for SvmProblem<B>
where
    LinearSvm<B>: AutodiffModule<B>,
{
    type Input = ();

    fn compute_cmp_state(&self, model: &LinearSvm<B>, _input: &()) -> CmpState<B> {
        let w = model.w.val();
        let loss = (w.clone() * w).sum().mul_scalar(0.5);
        let violation = (self.y.clone() * model.forward(self.x.clone())).neg().add_scalar(1.0);
        CmpState::new(loss).with(self.margin, ConstraintState::new(violation))
    }
}

/// The exact hard-margin SVM: `x = (w, b)` and the multipliers `alpha`.
pub fn exact_svm(x: &[Vec<f64>], y: &[f64]) -> Result<QpSolution, String> {
    let d = x.first().map_or(0, Vec::len);
    let mut p = vec![vec![0.0; d + 1]; d + 1];
    for (i, row) in p.iter_mut().enumerate().take(d) {
        row[i] = 1.0;
    }
    // 1 - y_i (w.x_i + b) <= 0   <=>   -y_i x_i . w - y_i b <= -1
    let a_in = x
        .iter()
        .zip(y)
        .map(|(xi, &yi)| xi.iter().map(|&v| -yi * v).chain([-yi]).collect())
        .collect();
    Qp {
        p,
        q: vec![0.0; d + 1],
        a_in,
        b_in: vec![-1.0; x.len()],
        ..Default::default()
    }
    .solve()
}
