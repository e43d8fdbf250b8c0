//! Update schemes: the order in which the primal and dual steps see each other.
//!
//! One call to [`ConstrainedOptimizer::roll`] is one iteration. With `x` the model, `lambda`
//! the multipliers, `L` the primal Lagrangian and `g` the (strict) violations:
//!
//! - **Simultaneous** gradient descent-ascent: both steps use `(x_t, lambda_t)`; one
//!   forward and one backward pass. The order of the two steps does not matter because
//!   the Lagrangian is built from `lambda_t` before the dual step changes it.
//! - **Alternating, dual first**: `lambda_{t+1}` from `g(x_t)`, then `x_{t+1}` from
//!   `L(x_t, lambda_{t+1})`; still one forward pass.
//! - **Alternating, primal first**: `x_{t+1}` from `L(x_t, lambda_t)`, then `lambda_{t+1}`
//!   from `g(x_{t+1})`; a second (violations-only) forward pass.
//! - **Extragradient** (Korpelevich 1976): an extrapolation step to
//!   `(x_{t+1/2}, lambda_{t+1/2})`, then the step from `(x_t, lambda_t)` with the gradients
//!   at the extrapolated point. The primal optimizer's state is restored between the two
//!   (so its moments see only the second gradients), and so is the dual state.

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Tensor, backend::AutodiffBackend};
use serde::{Deserialize, Serialize};

use super::error::Result;
use super::problem::{CmpState, ConstrainedProblem};
use super::set::{ConstraintSet, ObservedValues};
use crate::parallel::DataParallel;

/// See the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateScheme {
    /// Simultaneous gradient descent-ascent.
    #[default]
    Simultaneous,
    /// Primal step, then dual step at the new primal point.
    AlternatingPrimalDual,
    /// Dual step, then primal step with the new multipliers.
    AlternatingDualPrimal,
    /// Extragradient.
    Extragradient,
}

/// What one iteration observed (at `x_t`).
#[derive(Clone, Debug)]
pub struct RollOut<M> {
    /// The model after the step.
    pub model: M,
    /// Loss and violations at the start of the step.
    pub values: ObservedValues,
}

/// A primal burn optimizer, its learning rate, and an update scheme.
#[derive(Clone)]
pub struct ConstrainedOptimizer<O> {
    primal: O,
    lr: f64,
    scheme: UpdateScheme,
}

impl<O> ConstrainedOptimizer<O> {
    /// Wraps a primal optimizer (e.g. `SgdConfig::new().init()`).
    pub fn new(primal: O, lr: f64, scheme: UpdateScheme) -> Self {
        Self { primal, lr, scheme }
    }

    /// The primal optimizer (for saving its state).
    pub fn primal(&self) -> &O {
        &self.primal
    }

    /// Replaces the primal optimizer (after loading its state).
    pub fn set_primal(&mut self, primal: O) {
        self.primal = primal;
    }

    /// The primal learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Changes the primal learning rate (schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The update scheme.
    pub fn scheme(&self) -> UpdateScheme {
        self.scheme
    }

    /// One iteration of the update scheme.
    ///
    /// # Errors
    /// Invalid or non-finite observations (a NaN loss or violation, a shape or index that
    /// does not fit the constraint set). The multipliers and the optimizer state are left
    /// as they were, except with [`UpdateScheme::AlternatingPrimalDual`] when the violations
    /// *after* the primal step are the bad ones. The model is consumed either way: clone it
    /// first (cheap: burn modules share their tensors) to keep the last good one.
    pub fn roll<B, M, P>(
        &mut self,
        model: M,
        set: &mut ConstraintSet<B>,
        problem: &P,
        input: &P::Input,
    ) -> Result<RollOut<M>>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        P: ConstrainedProblem<B, M>,
    {
        self.roll_parallel(model, set, problem, input, None)
    }

    /// [`Self::roll`] as one rank of a data-parallel group (`None`: alone): every
    /// observation is replaced by its mean over the ranks before it is validated or moves
    /// a multiplier, and every gradient by its sum before the primal step
    /// ([`DataParallel`]), so all ranks take the same step, the single process's on the
    /// global batch.
    ///
    /// # Errors
    /// As [`Self::roll`], and ranks whose gradients do not match (see
    /// [`DataParallel::reduce_grads`]).
    pub fn roll_parallel<B, M, P>(
        &mut self,
        model: M,
        set: &mut ConstraintSet<B>,
        problem: &P,
        input: &P::Input,
        parallel: Option<&DataParallel>,
    ) -> Result<RollOut<M>>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        P: ConstrainedProblem<B, M>,
    {
        self.roll_observed(model, set, problem, input, parallel, true)
    }

    /// [`Self::roll_parallel`], reading the observations back to the host only when
    /// `read` ([`ConstraintSet::observe`]): otherwise the step makes no host read of its
    /// own, its finiteness is checked on the device and reported at the next read step,
    /// and [`RollOut::values`] is [`ObservedValues::unread`].
    ///
    /// # Errors
    /// As [`Self::roll_parallel`]; a non-finite value on an unread step is reported by the
    /// next read step.
    pub fn roll_observed<B, M, P>(
        &mut self,
        model: M,
        set: &mut ConstraintSet<B>,
        problem: &P,
        input: &P::Input,
        parallel: Option<&DataParallel>,
        read: bool,
    ) -> Result<RollOut<M>>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        P: ConstrainedProblem<B, M>,
    {
        let reduce = |state: CmpState<B>| match parallel {
            Some(p) => p.reduce_state(state),
            None => Ok(state),
        };
        let state = reduce(problem.compute_cmp_state(&model, input))?;
        let values = set.observe(&state, read)?;
        let indices = set.index_tensors(&state);
        let model = match self.scheme {
            UpdateScheme::Simultaneous => {
                let lagrangian = set.lagrangian_at(&state, &indices);
                set.dual_step_at(&state, &indices)?;
                self.primal_step(model, lagrangian, parallel)?
            }
            UpdateScheme::AlternatingDualPrimal => {
                set.dual_step_at(&state, &indices)?;
                let lagrangian = set.lagrangian_at(&state, &indices);
                self.primal_step(model, lagrangian, parallel)?
            }
            UpdateScheme::AlternatingPrimalDual => {
                let lagrangian = set.lagrangian_at(&state, &indices);
                let model = self.primal_step(model, lagrangian, parallel)?;
                let after = reduce(problem.compute_violations(&model, input))?;
                set.observe(&after, read)?;
                set.dual_step(&after)?;
                model
            }
            UpdateScheme::Extragradient => {
                let saved_set = set.clone();
                let saved_primal = self.primal.to_record();
                let lagrangian = set.lagrangian_at(&state, &indices);
                set.dual_step_at(&state, &indices)?;
                let half = self.primal_step(model.clone(), lagrangian, parallel)?;
                let half_state = reduce(problem.compute_cmp_state(&half, input))?;
                let half_indices = set.index_tensors(&half_state);
                if let Err(e) = set.observe(&half_state, read) {
                    // Leave the multipliers and the optimizer as they were before the step.
                    *set = saved_set;
                    self.primal = self.primal.clone().load_record(saved_primal);
                    return Err(e);
                }
                let half_lagrangian = set.lagrangian_at(&half_state, &half_indices);
                // The unread count now includes the extrapolated point's values: keep it
                // across the restore.
                *set = saved_set.with_unread_of(set);
                self.primal = self.primal.clone().load_record(saved_primal);
                set.dual_step_at(&half_state, &half_indices)?;
                // Parameter ids survive optimizer steps, so the gradients taken at the
                // extrapolated point address the parameters of the original model.
                let grads = GradientsParams::from_grads(half_lagrangian.backward(), &half);
                let grads = match parallel {
                    Some(p) => p.reduce_grads(grads, &half)?,
                    None => grads,
                };
                self.primal.step(self.lr, model, grads)
            }
        };
        Ok(RollOut { model, values })
    }

    fn primal_step<B, M>(
        &mut self,
        model: M,
        lagrangian: Tensor<B, 1>,
        parallel: Option<&DataParallel>,
    ) -> Result<M>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let grads = GradientsParams::from_grads(lagrangian.backward(), &model);
        let grads = match parallel {
            Some(p) => p.reduce_grads(grads, &model)?,
            None => grads,
        };
        Ok(self.primal.step(self.lr, model, grads))
    }
}
