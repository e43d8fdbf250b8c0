//! Constrained optimization for burn models, in the spirit of Cooper 1.0.
//!
//! Solve `min_x f(x) s.t. g(x) <= 0, h(x) = 0` over the parameters `x` of a burn module by
//! finding a saddle point of a Lagrangian. The vocabulary is the math:
//!
//! | concept | type | module |
//! |---|---|---|
//! | the problem: objective and observed constraints | [`ConstrainedProblem`], [`CmpState`] | `problem` |
//! | a constraint and one observation of it | [`ConstraintKind`], [`ConstraintState`] | `constraint` |
//! | the registry of constraints | [`ConstraintSet`] | `set` |
//! | how a constraint enters the objective | [`FormulationConfig`], [`Formulation`] | `formulation` |
//! | a dual variable | [`Multiplier`], [`MultiplierConfig`] (dense or indexed) | `multiplier` |
//! | penalty coefficients | [`PenaltyConfig`] | `penalty` |
//! | how a multiplier moves | [`DualOptimizer`]: gradient ascent, [nuPI](NuPiConfig) | `dual` |
//! | the update scheme | [`ConstrainedOptimizer`], [`UpdateScheme`] | `optimizer` |
//! | checkpoints | [`save_checkpoint`], [`load_checkpoint`] | `checkpoint` |
//!
//! One iteration ([`ConstrainedOptimizer::roll`]): the problem computes the loss and the
//! constraint states at the current model; the set validates them (ids, shapes, indices,
//! finiteness; one host read); the primal Lagrangian is differentiated and stepped by the
//! primal optimizer; the multipliers are stepped by their dual optimizer along the strict
//! violations and projected; in the order the [`UpdateScheme`] says.
//!
//! ```no_run
//! # #[cfg(feature = "flex")] {
//! use burn::backend::{Autodiff, Flex};
//! use burn::optim::SgdConfig;
//! use tether_train::constrained::*;
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let mut set = ConstraintSet::<B>::new(&device);
//! let budget = set.add(
//!     "budget", ConstraintKind::Inequality, 1,
//!     FormulationConfig::Lagrangian(MultiplierConfig::new(DualOptimizer::NuPi(
//!         NuPiConfig::new(0.01).with_kp(5.0)))),
//! ).unwrap();
//! # let _ = (budget, SgdConfig::new());
//! # }
//! ```

mod checkpoint;
mod constraint;
mod dual;
mod error;
mod formulation;
mod multiplier;
mod optimizer;
mod penalty;
mod problem;
mod set;

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests read results back to check them"
)]
pub(crate) mod tests;

pub use checkpoint::{
    adopt_checkpoint_ids, load_checkpoint, save_checkpoint, save_checkpoint_with,
    save_files_checkpoint,
};
pub use constraint::{ConstraintId, ConstraintKind, ConstraintState};
pub use dual::{DualOptimizer, GradientAscentConfig, NuPiConfig, NuPiInit, NuPiState};
pub use error::{ConstrainedError, Result};
pub use formulation::{Formulation, FormulationConfig};
pub use multiplier::{Multiplier, MultiplierConfig, tensor_to_f64};
pub use optimizer::{ConstrainedOptimizer, RollOut, UpdateScheme};
pub use penalty::{PenaltyCoefficient, PenaltyConfig, PenaltyGrowth};
pub use problem::{CmpState, ConstrainedProblem};
pub use set::{Constraint, ConstraintSet, ConstraintSetRecord, ObservedValues};
