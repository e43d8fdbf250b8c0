//! The nuPI controller for Lagrange multipliers.
//!
//! Sohrabi, Ramirez, Zhang, Lacoste-Julien, Gallego-Posada, "On PI Controllers for
//! Updating Lagrange Multipliers in Constrained Optimization", ICML 2024
//! (<https://proceedings.mlr.press/v235/sohrabi24a.html>).
//!
//! With error signal `e_t` (the violation of the constraint, i.e. the gradient of the
//! Lagrangian with respect to the multiplier), the controller is the paper's nuPI update in
//! its recursive form (equation labels are this module's; the same form is documented by the
//! authors' reference implementation and by Cooper's `nuPI`):
//!
//! ```text
//! (N1)  xi_t         = nu * xi_{t-1} + (1 - nu) * e_t                  (error EMA)
//! (N2)  lambda_{t+1} = proj[ lambda_t + eta * (kappa_i * e_t + kappa_p * (xi_t - xi_{t-1})) ]
//! ```
//!
//! which unrolls to the PI form
//! `(N3) lambda_{t+1} = lambda_0 + eta * (kappa_p * xi_t + kappa_i * sum_{s<=t} e_s)` (with
//! `xi_{-1} = 0`) while the projection is inactive. The code evaluates (N1) and (N2) as
//! written. The initial EMA `xi_{-1}` is, per entry:
//! - [`NuPiInit::Zeros`] (the paper's choice, and the default): `xi_{-1} = 0`, so the first
//!   step is `eta * (kappa_i + kappa_p * (1 - nu)) * e_0`;
//! - [`NuPiInit::Sgd`]: `xi_{-1} = e_0`, so the first step is exactly gradient ascent
//!   `eta * kappa_i * e_0` and `xi_0 = e_0`.
//!
//! Special cases (each is a test in `tests.rs`):
//! - `nuPI(eta, kappa_p = 0, kappa_i = 1, nu = 0)` is gradient ascent with step `eta`.
//! - `nuPI(eta, kappa_p = 1, kappa_i = 1, nu = 0)` is the optimistic gradient method.
//! - Polyak heavy ball `v_t = beta*v_{t-1} + e_t, lambda_{t+1} = lambda_t + alpha*v_t`
//!   (`v_{-1} = 0`) is nuPI with `nu = beta`, `eta*kappa_i = alpha/(1-beta)`,
//!   `eta*kappa_p = -alpha*beta/(1-beta)^2` and the `Zeros` init: then
//!   `xi_t = (1-beta) * v_t` for every `t`, and the iterates coincide step for step.
//!
//! Indexed multipliers update only the observed entries: the state of the others (and
//! whether they have been seen, which matters for the `Sgd` init) is left untouched, so a
//! dense multiplier and an indexed one fed the same data move identically.

use burn::tensor::{Bool, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::constrained::error::{ConstrainedError, Result};

/// How the error EMA `xi_{-1}` is initialised (per entry, at its first observation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NuPiInit {
    /// `xi_{-1} = 0` (the paper's initialisation).
    #[default]
    Zeros,
    /// `xi_{-1} = e_0`: the first step equals gradient ascent with step `eta * kappa_i`.
    Sgd,
}

/// Hyper-parameters of nuPI. Defaults (`kappa_p = 0, kappa_i = 1, nu = 0`) reduce to
/// gradient ascent, as in Cooper; the paper's stabilising regime is `kappa_p > 0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NuPiConfig {
    /// Step size `eta`, kept apart from the gains to compare with other optimizers.
    pub lr: f64,
    /// Proportional gain `kappa_p` (negative values are allowed: heavy ball needs them).
    pub kp: f64,
    /// Integral gain `kappa_i`.
    pub ki: f64,
    /// EMA coefficient `nu` of the error, in `(-1, 1)`.
    pub nu: f64,
    /// Initialisation of the error EMA.
    pub init: NuPiInit,
}

impl NuPiConfig {
    /// nuPI with step `lr` and the default gains (gradient ascent until changed).
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            kp: 0.0,
            ki: 1.0,
            nu: 0.0,
            init: NuPiInit::Zeros,
        }
    }

    /// Sets the proportional gain.
    pub fn with_kp(mut self, kp: f64) -> Self {
        self.kp = kp;
        self
    }

    /// Sets the integral gain.
    pub fn with_ki(mut self, ki: f64) -> Self {
        self.ki = ki;
        self
    }

    /// Sets the EMA coefficient.
    pub fn with_nu(mut self, nu: f64) -> Self {
        self.nu = nu;
        self
    }

    /// Sets the initialisation of the error EMA.
    pub fn with_init(mut self, init: NuPiInit) -> Self {
        self.init = init;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(ConstrainedError::InvalidConfig(format!(
                "nuPI: {what}, got {v}"
            )))
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr must be finite and >= 0", self.lr);
        }
        if !self.kp.is_finite() {
            return bad("kappa_p must be finite", self.kp);
        }
        if !self.ki.is_finite() {
            return bad("kappa_i must be finite", self.ki);
        }
        if !(self.nu > -1.0 && self.nu < 1.0) {
            return bad("nu must lie in (-1, 1)", self.nu);
        }
        Ok(())
    }

    /// One controller step: returns `eta * (kappa_i*e + kappa_p*(xi_t - xi_{t-1}))` and
    /// advances the state of the observed entries.
    pub(crate) fn step<B: Backend>(
        &self,
        error: Tensor<B, 1>,
        state: &mut NuPiState<B>,
        observed: Option<&Tensor<B, 1, Bool>>,
    ) -> Tensor<B, 1> {
        // xi_{t-1}, with the initialisation applied to entries never seen before.
        let xi_prev = match self.init {
            NuPiInit::Zeros => state.xi.clone(),
            NuPiInit::Sgd => state
                .xi
                .clone()
                .mask_where(state.seen.clone().bool_not(), error.clone()),
        };
        let xi = xi_prev.clone().mul_scalar(self.nu) + error.clone().mul_scalar(1.0 - self.nu);
        let step = (error.mul_scalar(self.ki) + (xi.clone() - xi_prev).mul_scalar(self.kp))
            .mul_scalar(self.lr);
        match observed {
            None => {
                state.xi = xi;
                state.seen = state.seen.clone().ones_like();
            }
            Some(mask) => {
                state.xi = state.xi.clone().mask_where(mask.clone(), xi);
                state.seen = state.seen.clone().bool_or(mask.clone());
            }
        }
        step
    }
}

/// nuPI's per-entry state: the error EMA `xi` and whether each entry has been observed.
#[derive(Clone, Debug)]
pub struct NuPiState<B: Backend> {
    /// The error EMA `xi_{t-1}` (zero for entries never observed).
    pub xi: Tensor<B, 1>,
    /// Whether the entry has been observed since the start (or its last restart).
    pub seen: Tensor<B, 1, Bool>,
}

impl<B: Backend> NuPiState<B> {
    pub(crate) fn zeros(len: usize, device: &B::Device) -> Self {
        Self {
            xi: Tensor::zeros([len], device),
            seen: Tensor::<B, 1>::zeros([len], device).equal_elem(1.0),
        }
    }

    pub(crate) fn reset(&mut self, mask: &Tensor<B, 1, Bool>) {
        self.xi = self.xi.clone().mask_fill(mask.clone(), 0.0);
        self.seen = self.seen.clone().bool_and(mask.clone().bool_not());
    }
}
