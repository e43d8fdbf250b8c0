//! Projected gradient ascent on the multipliers (the classic Arrow-Hurwicz dual step).

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::constrained::error::{ConstrainedError, Result};

/// `lambda_{t+1} = proj(lambda_t + lr * e_t)` where `e_t` is the (strict) violation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientAscentConfig {
    /// Dual step size.
    pub lr: f64,
}

impl GradientAscentConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(ConstrainedError::InvalidConfig(format!(
                "gradient ascent: lr must be finite and >= 0, got {}",
                self.lr
            )));
        }
        Ok(())
    }

    pub(crate) fn step<B: Backend>(&self, error: Tensor<B, 1>) -> Tensor<B, 1> {
        error.mul_scalar(self.lr)
    }
}
