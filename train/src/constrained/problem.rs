//! What a constrained problem is: a function of the model (and a batch) that returns the
//! objective and the observed constraints. *What* to solve lives here; *how* (formulation,
//! multipliers, update scheme) lives elsewhere.

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, backend::AutodiffBackend};

use super::constraint::{ConstraintId, ConstraintState};

/// The objective and the constraints observed at the current primal point.
#[derive(Clone, Debug)]
pub struct CmpState<B: AutodiffBackend> {
    /// The objective to minimise, shape `[1]`.
    pub loss: Tensor<B, 1>,
    /// The constraints observed this step (a subset of the set's constraints).
    pub observed: Vec<(ConstraintId, ConstraintState<B>)>,
}

impl<B: AutodiffBackend> CmpState<B> {
    /// A state with an objective and no constraints yet.
    pub fn new(loss: Tensor<B, 1>) -> Self {
        Self {
            loss,
            observed: Vec::new(),
        }
    }

    /// Adds an observed constraint.
    pub fn with(mut self, id: ConstraintId, state: ConstraintState<B>) -> Self {
        self.observed.push((id, state));
        self
    }
}

/// A constrained minimisation problem `min_x f(x) s.t. g(x) <= 0, h(x) = 0` over the
/// parameters of a burn module.
pub trait ConstrainedProblem<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// What one step sees (a batch, or `()` for full-batch problems).
    type Input;

    /// Evaluates the objective and the constraints at `model`.
    fn compute_cmp_state(&self, model: &M, input: &Self::Input) -> CmpState<B>;

    /// Evaluates only what the dual step needs (used after the primal step by the
    /// alternating primal-dual scheme). Override when the loss is expensive and the
    /// constraints are not.
    fn compute_violations(&self, model: &M, input: &Self::Input) -> CmpState<B> {
        self.compute_cmp_state(model, input)
    }
}
