//! Lagrange multipliers: dense (every entry updated each step) or indexed (only the
//! entries observed in a batch are updated: one constraint per group with hundreds of
//! groups), projected onto their feasible set after every step.

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use super::constraint::ConstraintKind;
use super::dual::{DualOptimizer, DualState};
use super::error::{ConstrainedError, Result};

/// How a multiplier is created and updated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiplierConfig {
    /// Initial value of every entry (>= 0 for inequalities).
    pub init: f64,
    /// Optional upper bound on the multiplier (`|lambda| <= ub` for equalities).
    pub upper_bound: Option<f64>,
    /// Dual restarts (Gallego-Posada et al. 2022, Sec. 4): an inequality multiplier is
    /// reset to `init` (and its optimizer history cleared) as soon as its constraint is
    /// strictly feasible, which stops a large multiplier from over-shooting into the
    /// interior of the feasible set.
    pub restart_on_feasible: bool,
    /// Indexed multipliers take an index list with every observation.
    pub indexed: bool,
    /// The dual update rule.
    pub optimizer: DualOptimizer,
}

impl MultiplierConfig {
    /// A dense multiplier starting at zero, updated by `optimizer`.
    pub fn new(optimizer: DualOptimizer) -> Self {
        Self {
            init: 0.0,
            upper_bound: None,
            restart_on_feasible: false,
            indexed: false,
            optimizer,
        }
    }

    /// Makes the multiplier indexed.
    pub fn indexed(mut self) -> Self {
        self.indexed = true;
        self
    }

    /// Sets the initial value.
    pub fn with_init(mut self, init: f64) -> Self {
        self.init = init;
        self
    }

    /// Sets an upper bound.
    pub fn with_upper_bound(mut self, ub: f64) -> Self {
        self.upper_bound = Some(ub);
        self
    }

    /// Enables dual restarts.
    pub fn with_restart_on_feasible(mut self, on: bool) -> Self {
        self.restart_on_feasible = on;
        self
    }

    pub(crate) fn validate(&self, kind: ConstraintKind) -> Result<()> {
        self.optimizer.validate()?;
        if !self.init.is_finite() {
            return Err(ConstrainedError::InvalidConfig(format!(
                "multiplier init must be finite, got {}",
                self.init
            )));
        }
        if kind == ConstraintKind::Inequality && self.init < 0.0 {
            return Err(ConstrainedError::InvalidConfig(format!(
                "an inequality multiplier must start >= 0, got {}",
                self.init
            )));
        }
        if let Some(ub) = self.upper_bound
            && !(ub >= 0.0 && ub >= self.init.abs())
        {
            return Err(ConstrainedError::InvalidConfig(format!(
                "multiplier upper bound must be >= 0 and >= |init| = {}, got {ub}",
                self.init.abs()
            )));
        }
        if self.restart_on_feasible && kind == ConstraintKind::Equality {
            return Err(ConstrainedError::InvalidConfig(
                "dual restarts only apply to inequality constraints".into(),
            ));
        }
        Ok(())
    }
}

/// A vector of Lagrange multipliers with its dual-optimizer state.
#[derive(Clone, Debug)]
pub struct Multiplier<B: Backend> {
    value: Tensor<B, 1>,
    kind: ConstraintKind,
    config: MultiplierConfig,
    state: DualState<B>,
}

impl<B: Backend> Multiplier<B> {
    pub(crate) fn new(
        kind: ConstraintKind,
        len: usize,
        config: MultiplierConfig,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate(kind)?;
        Ok(Self {
            value: Tensor::full([len], config.init, device),
            state: config.optimizer.init_state(len, device),
            kind,
            config,
        })
    }

    /// The current multipliers.
    pub fn value(&self) -> Tensor<B, 1> {
        self.value.clone()
    }

    /// The current multipliers, read back to the host.
    pub fn to_vec(&self) -> Vec<f64> {
        tensor_to_f64(&self.value)
    }

    /// The configuration this multiplier was built with.
    pub fn config(&self) -> &MultiplierConfig {
        &self.config
    }

    /// Projects onto `[0, ub]` (inequalities) or `[-ub, ub]` (equalities).
    fn project(&self, value: Tensor<B, 1>) -> Tensor<B, 1> {
        let value = match self.kind {
            ConstraintKind::Inequality => value.clamp_min(0.0),
            ConstraintKind::Equality => match self.config.upper_bound {
                Some(ub) => value.clamp_min(-ub),
                None => value,
            },
        };
        match self.config.upper_bound {
            Some(ub) => value.clamp_max(ub),
            None => value,
        }
    }

    /// One dual step. `error` is full length (zero where not observed), `observed` marks
    /// the observed entries of an indexed multiplier, and `feasible` the entries whose
    /// strict violation is `< 0` (for dual restarts).
    pub(crate) fn dual_step(
        &mut self,
        error: Tensor<B, 1>,
        observed: Option<Tensor<B, 1, Bool>>,
        feasible: Option<Tensor<B, 1, Bool>>,
    ) -> Result<()> {
        let step = self
            .config
            .optimizer
            .step(error, &mut self.state, observed.as_ref())?;
        let updated = self.project(self.value.clone() + step);
        self.value = match observed {
            Some(mask) => self.value.clone().mask_where(mask, updated),
            None => updated,
        };
        if self.config.restart_on_feasible
            && let Some(feasible) = feasible
        {
            self.value = self
                .value
                .clone()
                .mask_fill(feasible.clone(), self.config.init);
            self.state.reset(&feasible);
        }
        Ok(())
    }

    pub(crate) fn to_record(&self) -> MultiplierRecord {
        let (xi, seen) = match &self.state {
            DualState::Stateless => (None, None),
            DualState::NuPi(s) => (
                Some(tether_models::host::read(s.xi.clone())),
                Some(tether_models::host::read(s.seen.clone())),
            ),
        };
        MultiplierRecord {
            value: tether_models::host::read(self.value.clone()),
            xi,
            seen,
        }
    }

    pub(crate) fn load_record(&mut self, record: MultiplierRecord, name: &str) -> Result<()> {
        let device = self.value.device();
        let len = self.value.dims()[0];
        let check = |data: &TensorData, what: &str| -> Result<()> {
            if data.shape.as_slice() != [len] {
                return Err(ConstrainedError::Checkpoint(format!(
                    "constraint `{name}`: {what} has shape {:?}, expected [{len}]",
                    data.shape
                )));
            }
            Ok(())
        };
        check(&record.value, "multiplier")?;
        self.value = Tensor::from_data(record.value, &device);
        match (&mut self.state, record.xi, record.seen) {
            (DualState::Stateless, None, None) => {}
            (DualState::NuPi(s), Some(xi), Some(seen)) => {
                check(&xi, "nuPI xi")?;
                check(&seen, "nuPI seen-mask")?;
                s.xi = Tensor::from_data(xi, &device);
                s.seen = Tensor::from_data(seen, &device);
            }
            _ => {
                return Err(ConstrainedError::Checkpoint(format!(
                    "constraint `{name}`: the saved dual-optimizer state does not match {:?}",
                    self.config.optimizer
                )));
            }
        }
        Ok(())
    }
}

/// Saved state of a multiplier: exact tensor bytes, so resuming is bit-identical.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MultiplierRecord {
    value: TensorData,
    xi: Option<TensorData>,
    seen: Option<TensorData>,
}

/// Reads a 1-D float tensor back to the host as `f64` (one counted host read,
/// [`tether_models::host::read`]).
pub fn tensor_to_f64<B: Backend>(t: &Tensor<B, 1>) -> Vec<f64> {
    tether_models::host::read_f64(t.clone())
}
