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
        let violation = (self.y.clone() * model.forward(self.x.clone()))
            .neg()
            .add_scalar(1.0);
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

/// How to solve the SVM with the constrained machinery.
#[derive(Clone, Debug)]
pub struct SvmFitConfig {
    /// The multipliers' update rule.
    pub dual: crate::constrained::DualOptimizer,
    /// `Some(c)`: augmented Lagrangian with penalty `c`; `None`: plain Lagrangian.
    pub augmented: Option<f64>,
    /// The update scheme.
    pub scheme: crate::constrained::UpdateScheme,
    /// Primal (SGD) learning rate.
    pub primal_lr: f64,
    /// Number of full-batch steps.
    pub steps: usize,
}

/// The result of [`fit_svm`].
#[derive(Clone, Debug)]
pub struct SvmFit {
    /// Weights.
    pub w: Vec<f64>,
    /// Bias.
    pub b: f64,
    /// The multipliers (one per sample).
    pub alpha: Vec<f64>,
}

/// Solves the SVM by constrained gradient descent-ascent (SGD on `(w, b)` from zero).
/// `on_step(step, max_violation, multipliers)` sees every step (for metrics and plots;
/// reading the multipliers back costs a device sync, so it is only done when
/// `record_multipliers` is set).
pub fn fit_svm<B: AutodiffBackend>(
    x: &[Vec<f64>],
    y: &[f64],
    cfg: &SvmFitConfig,
    device: &B::Device,
    progress: Option<String>,
    record_multipliers: bool,
    mut on_step: impl FnMut(usize, f64, f64, Option<Vec<f64>>),
) -> Result<SvmFit, crate::constrained::ConstrainedError> {
    use crate::constrained::*;
    let multiplier = MultiplierConfig::new(cfg.dual.clone());
    let formulation = match cfg.augmented {
        None => FormulationConfig::Lagrangian(multiplier),
        Some(c) => FormulationConfig::AugmentedLagrangian {
            multiplier,
            penalty: PenaltyConfig::fixed(c),
        },
    };
    let mut set = ConstraintSet::<B>::new(device);
    let margin = set.add("margin", ConstraintKind::Inequality, y.len(), formulation)?;
    let problem = SvmProblem::<B>::new(x, y, margin, device);
    let mut opt = ConstrainedOptimizer::new(
        burn::optim::SgdConfig::new().init(),
        cfg.primal_lr,
        cfg.scheme,
    );
    let model = crate::trainer::fit(
        LinearSvm::zeros(x.first().map_or(0, Vec::len), device),
        &mut opt,
        &mut set,
        &problem,
        &crate::trainer::FitOptions::new(cfg.steps, progress),
        |_| (),
        |info| {
            let v = &info.values.constraints[0].1;
            let max_violation = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let alpha = record_multipliers.then(|| {
                info.set
                    .get(margin)
                    .expect("registered")
                    .formulation()
                    .multiplier()
                    .expect("has one")
                    .to_vec()
            });
            on_step(info.step, info.values.loss, max_violation, alpha);
        },
    )?;
    let (w, b) = model.to_host();
    let alpha = set
        .get(margin)?
        .formulation()
        .multiplier()
        .expect("has one")
        .to_vec();
    Ok(SvmFit { w, b, alpha })
}

/// Iris setosa (-1) vs versicolor (+1) on the four standardised features: the data of the
/// reference problem.
pub fn iris_setosa_versicolor(iris: &crate::data::iris::Iris) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (mut x, y) = iris.binary(0, 1, &[0, 1, 2, 3]);
    crate::data::iris::standardize(&mut x);
    (x, y)
}
