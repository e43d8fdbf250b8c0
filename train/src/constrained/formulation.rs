//! Formulations: how a constraint enters the primal objective and what drives its dual
//! update. The variant carries exactly the state it needs (a multiplier, a penalty, or
//! both), so "a formulation that expects a multiplier but got none" cannot happen.
//!
//! With violation `g` (inequality `g <= 0`) or `h` (equality `h = 0`), multiplier
//! `lambda` (held constant in the primal step) and penalty coefficient `c`:
//!
//! | formulation | primal contribution | dual error `e` |
//! |---|---|---|
//! | Lagrangian | `lambda * g` | `g` |
//! | augmented Lagrangian, inequality | `(max(0, lambda + c g)^2 - lambda^2) / (2c)` | `c * g` |
//! | augmented Lagrangian, equality | `lambda * h + (c/2) h^2` | `c * h` |
//! | quadratic penalty, inequality | `(c/2) max(0, g)^2` | (none) |
//! | quadratic penalty, equality | `(c/2) h^2` | (none) |
//!
//! The augmented-Lagrangian rows are the Powell-Hestenes-Rockafellar form (Bertsekas,
//! *Constrained Optimization and Lagrange Multiplier Methods*, 1982, Eq. 3.2.9;
//! Nocedal & Wright, Eq. 17.65). Scaling the dual error by `c` makes gradient ascent with
//! step 1 exactly the method of multipliers, `lambda <- max(0, lambda + c g)`.

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::constraint::ConstraintKind;
use super::multiplier::{Multiplier, MultiplierConfig};
use super::penalty::{PenaltyCoefficient, PenaltyConfig};

/// How a constraint is to be formulated (the serialisable description).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FormulationConfig {
    /// Plain Lagrangian with a learned multiplier.
    Lagrangian(MultiplierConfig),
    /// Augmented Lagrangian: a multiplier plus a quadratic penalty.
    AugmentedLagrangian {
        /// The multiplier.
        multiplier: MultiplierConfig,
        /// The penalty coefficient.
        penalty: PenaltyConfig,
    },
    /// Quadratic penalty only (no multiplier: the constraint is met only as `c -> inf`).
    QuadraticPenalty(PenaltyConfig),
}

/// A formulation with its live state.
#[derive(Clone, Debug)]
pub enum Formulation<B: Backend> {
    /// See [`FormulationConfig::Lagrangian`].
    Lagrangian {
        /// The multiplier.
        multiplier: Multiplier<B>,
    },
    /// See [`FormulationConfig::AugmentedLagrangian`].
    AugmentedLagrangian {
        /// The multiplier.
        multiplier: Multiplier<B>,
        /// The penalty coefficient.
        penalty: PenaltyCoefficient<B>,
    },
    /// See [`FormulationConfig::QuadraticPenalty`].
    QuadraticPenalty {
        /// The penalty coefficient.
        penalty: PenaltyCoefficient<B>,
    },
}

impl<B: Backend> Formulation<B> {
    /// The multiplier, when the formulation has one.
    pub fn multiplier(&self) -> Option<&Multiplier<B>> {
        match self {
            Self::Lagrangian { multiplier } | Self::AugmentedLagrangian { multiplier, .. } => {
                Some(multiplier)
            }
            Self::QuadraticPenalty { .. } => None,
        }
    }

    pub(crate) fn multiplier_mut(&mut self) -> Option<&mut Multiplier<B>> {
        match self {
            Self::Lagrangian { multiplier } | Self::AugmentedLagrangian { multiplier, .. } => {
                Some(multiplier)
            }
            Self::QuadraticPenalty { .. } => None,
        }
    }

    /// The penalty coefficient, when the formulation has one.
    pub fn penalty(&self) -> Option<&PenaltyCoefficient<B>> {
        match self {
            Self::AugmentedLagrangian { penalty, .. } | Self::QuadraticPenalty { penalty } => {
                Some(penalty)
            }
            Self::Lagrangian { .. } => None,
        }
    }

    pub(crate) fn penalty_mut(&mut self) -> Option<&mut PenaltyCoefficient<B>> {
        match self {
            Self::AugmentedLagrangian { penalty, .. } | Self::QuadraticPenalty { penalty } => {
                Some(penalty)
            }
            Self::Lagrangian { .. } => None,
        }
    }

    /// Whether the dual step of this formulation scales the error by the penalty.
    pub(crate) fn scales_dual_error(&self) -> bool {
        matches!(self, Self::AugmentedLagrangian { .. })
    }
}

/// The primal contribution (summed) of one observation, on any backend. `lambda` and `c`
/// are the multiplier and penalty entries aligned with `violation` (already gathered for
/// indexed constraints) and carry no gradient.
pub(crate) fn primal_contribution<B: Backend>(
    kind: ConstraintKind,
    violation: Tensor<B, 1>,
    lambda: Option<Tensor<B, 1>>,
    c: Option<Tensor<B, 1>>,
) -> Tensor<B, 1> {
    match (lambda, c) {
        (Some(lambda), None) => (lambda * violation).sum(),
        (Some(lambda), Some(c)) => match kind {
            ConstraintKind::Inequality => {
                let shifted = (lambda.clone() + c.clone() * violation).clamp_min(0.0);
                ((shifted.powi_scalar(2) - lambda.powi_scalar(2)) / c.mul_scalar(2.0)).sum()
            }
            ConstraintKind::Equality => {
                (lambda * violation.clone() + c.mul_scalar(0.5) * violation.powi_scalar(2)).sum()
            }
        },
        (None, Some(c)) => {
            let active = match kind {
                ConstraintKind::Inequality => violation.clamp_min(0.0),
                ConstraintKind::Equality => violation,
            };
            (c.mul_scalar(0.5) * active.powi_scalar(2)).sum()
        }
        (None, None) => unreachable!("every formulation has a multiplier or a penalty"),
    }
}

impl FormulationConfig {
    pub(crate) fn build<B: Backend>(
        self,
        kind: ConstraintKind,
        len: usize,
        device: &B::Device,
    ) -> super::error::Result<Formulation<B>> {
        Ok(match self {
            Self::Lagrangian(m) => Formulation::Lagrangian {
                multiplier: Multiplier::new(kind, len, m, device)?,
            },
            Self::AugmentedLagrangian {
                multiplier,
                penalty,
            } => Formulation::AugmentedLagrangian {
                multiplier: Multiplier::new(kind, len, multiplier, device)?,
                penalty: PenaltyCoefficient::new(penalty, len, device)?,
            },
            Self::QuadraticPenalty(p) => Formulation::QuadraticPenalty {
                penalty: PenaltyCoefficient::new(p, len, device)?,
            },
        })
    }
}
