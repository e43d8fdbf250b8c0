//! Penalty coefficients of the augmented-Lagrangian and quadratic-penalty formulations,
//! and the rule that grows them while a constraint stays violated.

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use super::constraint::ConstraintKind;
use super::error::{ConstrainedError, Result};

/// Multiplicative growth (Bertsekas 1982, Sec. 2.2; Cooper's
/// `MultiplicativePenaltyCoefficientUpdater`): after each dual step, every observed entry
/// whose strict violation exceeds `tolerance` (`|h| > tolerance` for equalities) has its
/// coefficient multiplied by `factor`, up to `max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PenaltyGrowth {
    /// Growth factor (> 1).
    pub factor: f64,
    /// Violations at or below this are considered satisfied.
    pub tolerance: f64,
    /// Cap on the coefficient.
    pub max: f64,
}

/// Initial penalty coefficient and its optional growth rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PenaltyConfig {
    /// Initial coefficient `c_0 > 0`.
    pub init: f64,
    /// Growth rule; `None` keeps `c` fixed.
    pub growth: Option<PenaltyGrowth>,
}

impl PenaltyConfig {
    /// A fixed penalty coefficient.
    pub fn fixed(c: f64) -> Self {
        Self {
            init: c,
            growth: None,
        }
    }

    /// Grows by `factor` while violated by more than `tolerance`, up to `max`.
    pub fn with_growth(mut self, factor: f64, tolerance: f64, max: f64) -> Self {
        self.growth = Some(PenaltyGrowth {
            factor,
            tolerance,
            max,
        });
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.init.is_finite() && self.init > 0.0) {
            return Err(ConstrainedError::InvalidConfig(format!(
                "penalty coefficient must be finite and > 0, got {}",
                self.init
            )));
        }
        if let Some(g) = &self.growth
            && !(g.factor > 1.0 && g.tolerance >= 0.0 && g.max >= self.init && g.max.is_finite())
        {
            return Err(ConstrainedError::InvalidConfig(format!(
                "penalty growth needs factor > 1, tolerance >= 0 and a finite max >= init; got {g:?}"
            )));
        }
        Ok(())
    }
}

/// One penalty coefficient per constraint entry.
#[derive(Clone, Debug)]
pub struct PenaltyCoefficient<B: Backend> {
    value: Tensor<B, 1>,
    config: PenaltyConfig,
}

impl<B: Backend> PenaltyCoefficient<B> {
    pub(crate) fn new(config: PenaltyConfig, len: usize, device: &B::Device) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            value: Tensor::full([len], config.init, device),
            config,
        })
    }

    /// The current coefficients.
    pub fn value(&self) -> Tensor<B, 1> {
        self.value.clone()
    }

    /// Applies the growth rule to the observed entries (`strict` is full length).
    pub(crate) fn update(
        &mut self,
        kind: ConstraintKind,
        strict: Tensor<B, 1>,
        observed: Option<Tensor<B, 1, Bool>>,
    ) {
        let Some(g) = &self.config.growth else {
            return;
        };
        let measure = match kind {
            ConstraintKind::Inequality => strict,
            ConstraintKind::Equality => strict.abs(),
        };
        let mut grow = measure.greater_elem(g.tolerance);
        if let Some(mask) = observed {
            grow = grow.bool_and(mask);
        }
        let grown = self.value.clone().mul_scalar(g.factor).clamp_max(g.max);
        self.value = self.value.clone().mask_where(grow, grown);
    }

    pub(crate) fn to_record(&self) -> TensorData {
        tether_models::host::read(self.value.clone())
    }

    pub(crate) fn load_record(&mut self, data: TensorData, name: &str) -> Result<()> {
        if data.shape != self.value.shape() {
            return Err(ConstrainedError::Checkpoint(format!(
                "constraint `{name}`: penalty has shape {:?}, expected {:?}",
                data.shape,
                self.value.dims()
            )));
        }
        self.value = Tensor::from_data(data, &self.value.device());
        Ok(())
    }
}
