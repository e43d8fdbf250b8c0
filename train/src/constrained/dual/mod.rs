//! Dual optimizers: how a multiplier moves given the error signal (its violation).
//!
//! A dual optimizer only ever *ascends*: it returns the step to add to the multiplier,
//! and [`Multiplier`](super::Multiplier) projects the result onto the feasible set
//! (`lambda >= 0` for inequalities). Forgetting `maximize=True` (a classic Cooper pitfall)
//! is not expressible.

mod gradient_ascent;
mod nupi;

pub use gradient_ascent::GradientAscentConfig;
pub use nupi::{NuPiConfig, NuPiInit, NuPiState};

use burn::tensor::{Bool, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::error::{ConstrainedError, Result};

/// The update rule of a multiplier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DualOptimizer {
    /// Projected gradient ascent: `lambda <- proj(lambda + lr * e)`.
    GradientAscent(GradientAscentConfig),
    /// The nuPI controller of Sohrabi et al. (ICML 2024).
    NuPi(NuPiConfig),
}

impl DualOptimizer {
    /// Projected gradient ascent with step size `lr`.
    pub fn gradient_ascent(lr: f64) -> Self {
        Self::GradientAscent(GradientAscentConfig { lr })
    }

    /// Checks the hyper-parameters, naming the bad value.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::GradientAscent(c) => c.validate(),
            Self::NuPi(c) => c.validate(),
        }
    }

    /// The learning rate of the rule.
    pub fn lr(&self) -> f64 {
        match self {
            Self::GradientAscent(c) => c.lr,
            Self::NuPi(c) => c.lr,
        }
    }

    pub(crate) fn init_state<B: Backend>(&self, len: usize, device: &B::Device) -> DualState<B> {
        match self {
            Self::GradientAscent(_) => DualState::Stateless,
            Self::NuPi(_) => DualState::NuPi(NuPiState::zeros(len, device)),
        }
    }

    /// The ascent step for every entry; entries outside `observed` keep their state and
    /// get a zero step (the caller masks them out of the multiplier too).
    pub(crate) fn step<B: Backend>(
        &self,
        error: Tensor<B, 1>,
        state: &mut DualState<B>,
        observed: Option<&Tensor<B, 1, Bool>>,
    ) -> Result<Tensor<B, 1>> {
        match (self, state) {
            (Self::GradientAscent(c), DualState::Stateless) => Ok(c.step(error)),
            (Self::NuPi(c), DualState::NuPi(s)) => Ok(c.step(error, s, observed)),
            _ => Err(ConstrainedError::Checkpoint(
                "dual optimizer state does not match the dual optimizer".into(),
            )),
        }
    }
}

/// Per-multiplier state of a dual optimizer.
#[derive(Clone, Debug)]
pub(crate) enum DualState<B: Backend> {
    /// Gradient ascent keeps nothing.
    Stateless,
    /// nuPI's error EMA.
    NuPi(NuPiState<B>),
}

impl<B: Backend> DualState<B> {
    /// Forget the history of the entries in `mask` (used by dual restarts).
    pub(crate) fn reset(&mut self, mask: &Tensor<B, 1, Bool>) {
        if let Self::NuPi(s) = self {
            s.reset(mask);
        }
    }
}
