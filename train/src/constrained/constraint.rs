//! Constraints and their per-step observations.
//!
//! As in Cooper, the long-lived [`Constraint`](super::set::ConstraintSet) (kind,
//! formulation, multiplier) is kept apart from the [`ConstraintState`] made fresh at
//! every step from the current model.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

/// Whether a constraint reads `g(x) <= 0` or `h(x) = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintKind {
    /// `g(x) <= 0`: the multiplier is projected onto `[0, upper_bound]`.
    Inequality,
    /// `h(x) = 0`: the multiplier is free (optionally clamped to `[-ub, ub]`).
    Equality,
}

/// A handle to a constraint registered in a [`ConstraintSet`](super::ConstraintSet).
///
/// The handle remembers which set issued it: using it with another set is an error,
/// not a silent update of whichever constraint happens to share the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConstraintId {
    pub(crate) set: u64,
    pub(crate) index: usize,
}

impl core::fmt::Display for ConstraintId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#{} of set {:x}", self.index, self.set)
    }
}

/// One observation of a constraint at the current primal point.
///
/// `violation` is differentiable and drives the primal step. `strict_violation`, when
/// present, is the quantity that is actually constrained (an accuracy, a true count of
/// non-zero weights, ...): it may be non-differentiable, and it drives the dual step and
/// the feasibility tests (the *proxy-constraint* pattern of Cotter et al., 2019).
#[derive(Clone, Debug)]
pub struct ConstraintState<B: Backend> {
    /// Differentiable violation, one entry per observed constraint.
    pub violation: Tensor<B, 1>,
    /// Non-differentiable violation used for the dual update; same shape as `violation`.
    pub strict_violation: Option<Tensor<B, 1>>,
    /// For indexed constraints: which multipliers the entries of `violation` belong to.
    pub indices: Option<Vec<usize>>,
    /// Whether this observation enters the primal Lagrangian (default `true`).
    pub contributes_to_primal: bool,
    /// Whether this observation updates the multipliers (default `true`).
    pub contributes_to_dual: bool,
}

impl<B: Backend> ConstraintState<B> {
    /// An observation of a dense constraint.
    pub fn new(violation: Tensor<B, 1>) -> Self {
        Self {
            violation,
            strict_violation: None,
            indices: None,
            contributes_to_primal: true,
            contributes_to_dual: true,
        }
    }

    /// An observation of an indexed constraint: `violation[k]` belongs to multiplier
    /// `indices[k]`. Only those multipliers are updated this step.
    pub fn indexed(violation: Tensor<B, 1>, indices: Vec<usize>) -> Self {
        Self {
            indices: Some(indices),
            ..Self::new(violation)
        }
    }

    /// Attach the strict (non-differentiable) violation that drives the dual update.
    pub fn with_strict_violation(mut self, strict: Tensor<B, 1>) -> Self {
        self.strict_violation = Some(strict);
        self
    }

    /// Keep this observation out of the primal or the dual update.
    pub fn with_contributions(mut self, primal: bool, dual: bool) -> Self {
        self.contributes_to_primal = primal;
        self.contributes_to_dual = dual;
        self
    }
}
