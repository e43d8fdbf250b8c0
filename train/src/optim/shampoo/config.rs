//! Shampoo's settings, with the reference's documented defaults (facebookresearch/optimizers,
//! `DistributedShampoo.__init__`, the "Shampoo v2" API of Shi et al. 2023) and its checks.

use serde::{Deserialize, Serialize};

use super::error::ShampooError;
use super::inverse_root::RootMethod;

/// The diagonal method whose step size Shampoo's direction takes, block by block
/// (learning-rate grafting, Agarwal et al. 2020; Shi et al. 2023 §2.3). Each method
/// preconditions the same filtered gradient Shampoo does; its statistics see the raw gradient.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Grafting {
    /// The filtered gradient itself.
    Sgd,
    /// `g / (sqrt(sum g^2) + epsilon)`. Reference default epsilon: 1e-10.
    AdaGrad {
        /// Added after the square root.
        epsilon: f64,
    },
    /// `g / (sqrt(v) + epsilon)`, `v = beta2 v + (1 - beta2) g^2`, no bias correction.
    /// Reference defaults: beta2 0.99, epsilon 1e-10.
    RmsProp {
        /// Second-moment decay.
        beta2: f64,
        /// Added after the square root.
        epsilon: f64,
    },
    /// `g / (sqrt(v / (1 - beta2^t)) + epsilon)`: RMSProp with Adam's bias correction (the
    /// first moment is Shampoo's own filtered gradient). Reference defaults: 0.999, 1e-10.
    Adam {
        /// Second-moment decay.
        beta2: f64,
        /// Added after the square root.
        epsilon: f64,
    },
}

impl Grafting {
    /// AdaGrad grafting with the reference's default epsilon.
    pub fn adagrad() -> Self {
        Self::AdaGrad { epsilon: 1e-10 }
    }
    /// RMSProp grafting with the reference's defaults.
    pub fn rmsprop() -> Self {
        Self::RmsProp {
            beta2: 0.99,
            epsilon: 1e-10,
        }
    }
    /// Adam grafting with the reference's defaults.
    pub fn adam() -> Self {
        Self::Adam {
            beta2: 0.999,
            epsilon: 1e-10,
        }
    }
}

/// Shampoo's settings. [`Default`] is the reference's documented default; the `with_*`
/// methods change one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShampooConfig {
    /// First-moment decay of the gradient Shampoo preconditions (0: the raw gradient).
    /// Default 0.9.
    pub beta1: f64,
    /// Decay of the Kronecker factors; 1 accumulates them as a sum (AdaGrad). Default 1.
    pub beta2: f64,
    /// Interpolation of the current step's filtered gradient (`None`: `beta1`, the plain
    /// EMA). Default `None`.
    pub beta3: Option<f64>,
    /// Added to the factors' eigenvalues before the inverse root. Default 1e-12.
    pub epsilon: f64,
    /// Heavy-ball momentum on the search direction. Default 0.
    pub momentum: f64,
    /// Momentum dampening. Default 0.
    pub dampening: f64,
    /// Nesterov momentum. Default false.
    pub nesterov: bool,
    /// Weight decay coefficient. Default 0.
    pub weight_decay: f64,
    /// AdamW-style decay added to the search direction (true) or L2 decay added to the
    /// gradient (false). Default true.
    pub decoupled_weight_decay: bool,
    /// Bias-correct the filtered gradient and (for `beta2 < 1`) the factors. Default true.
    pub bias_correction: bool,
    /// Largest factor dimension; larger dimensions are split into blocks. Default 1024 (the
    /// reference's). Every step costs about `1.5 n (d_1 + ... + d_o)` multiply-adds per
    /// block of `n` elements and dimensions `d_k` (the factor statistics on one triangle,
    /// the preconditioning's mode products), whatever the batch: on one CPU core at small
    /// batches, where that is not small beside the network's own step, a smaller bound
    /// (128 or 256) is the setting to choose (BENCHMARKS.md, "Shampoo vs Adam vs SGD").
    pub max_preconditioner_dim: usize,
    /// Merge small adjacent dimensions up to `max_preconditioner_dim`. Default true.
    pub merge_dims: bool,
    /// Inverse roots are recomputed every this many steps. Default 1.
    pub precondition_frequency: usize,
    /// The step from which Shampoo preconditions (before it: the grafted method alone);
    /// `None`: `precondition_frequency`. Must be `>= precondition_frequency`.
    pub start_preconditioning_step: Option<usize>,
    /// The root `p` of `L^(-1/p)` for every factor; `None`: `2 x` the block's order.
    pub root_override: Option<u32>,
    /// The exponent is `-exponent_multiplier / p` (eigendecomposition only). Default 1.
    pub exponent_multiplier: f64,
    /// The grafted method; `None` (the reference's default) uses Shampoo's direction as is.
    pub grafting: Option<Grafting>,
    /// How inverse roots are computed. Default: eigendecomposition.
    pub root_method: RootMethod,
    /// Consecutive failed root computations a block tolerates (keeping its previous root)
    /// before the step reports an error. Default 3.
    pub tolerated_root_failures: usize,
}

impl Default for ShampooConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 1.0,
            beta3: None,
            epsilon: 1e-12,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            decoupled_weight_decay: true,
            bias_correction: true,
            max_preconditioner_dim: 1024,
            merge_dims: true,
            precondition_frequency: 1,
            start_preconditioning_step: None,
            root_override: None,
            exponent_multiplier: 1.0,
            grafting: None,
            root_method: RootMethod::Eigen,
            tolerated_root_failures: 3,
        }
    }
}

macro_rules! with {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        impl ShampooConfig {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            })*
        }
    };
}

with! {
    /// Sets [`ShampooConfig::beta1`].
    with_beta1: beta1: f64;
    /// Sets [`ShampooConfig::beta2`].
    with_beta2: beta2: f64;
    /// Sets [`ShampooConfig::beta3`].
    with_beta3: beta3: Option<f64>;
    /// Sets [`ShampooConfig::epsilon`].
    with_epsilon: epsilon: f64;
    /// Sets [`ShampooConfig::momentum`].
    with_momentum: momentum: f64;
    /// Sets [`ShampooConfig::dampening`].
    with_dampening: dampening: f64;
    /// Sets [`ShampooConfig::nesterov`].
    with_nesterov: nesterov: bool;
    /// Sets [`ShampooConfig::weight_decay`].
    with_weight_decay: weight_decay: f64;
    /// Sets [`ShampooConfig::decoupled_weight_decay`].
    with_decoupled_weight_decay: decoupled_weight_decay: bool;
    /// Sets [`ShampooConfig::bias_correction`].
    with_bias_correction: bias_correction: bool;
    /// Sets [`ShampooConfig::max_preconditioner_dim`].
    with_max_preconditioner_dim: max_preconditioner_dim: usize;
    /// Sets [`ShampooConfig::merge_dims`].
    with_merge_dims: merge_dims: bool;
    /// Sets [`ShampooConfig::precondition_frequency`].
    with_precondition_frequency: precondition_frequency: usize;
    /// Sets [`ShampooConfig::start_preconditioning_step`].
    with_start_preconditioning_step: start_preconditioning_step: Option<usize>;
    /// Sets [`ShampooConfig::root_override`].
    with_root_override: root_override: Option<u32>;
    /// Sets [`ShampooConfig::exponent_multiplier`].
    with_exponent_multiplier: exponent_multiplier: f64;
    /// Sets [`ShampooConfig::grafting`].
    with_grafting: grafting: Option<Grafting>;
    /// Sets [`ShampooConfig::root_method`].
    with_root_method: root_method: RootMethod;
    /// Sets [`ShampooConfig::tolerated_root_failures`].
    with_tolerated_root_failures: tolerated_root_failures: usize;
}

impl ShampooConfig {
    /// The step preconditioning starts at.
    pub fn start_step(&self) -> usize {
        self.start_preconditioning_step
            .unwrap_or(self.precondition_frequency)
    }

    /// `beta3`, resolved.
    pub fn beta3(&self) -> f64 {
        self.beta3.unwrap_or(self.beta1)
    }

    /// The reference's checks, as errors that name the setting.
    pub fn validate(&self) -> Result<(), ShampooError> {
        let bad = |what: String| Err(ShampooError::InvalidConfig(what));
        let in_unit = |v: f64| (0.0..1.0).contains(&v);
        if !in_unit(self.beta1) {
            return bad(format!("beta1 must be in [0, 1), got {}", self.beta1));
        }
        if !(self.beta2 > 0.0 && self.beta2 <= 1.0) {
            return bad(format!("beta2 must be in (0, 1], got {}", self.beta2));
        }
        if let Some(b3) = self.beta3
            && !in_unit(b3)
        {
            return bad(format!("beta3 must be in [0, 1), got {b3}"));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad(format!("epsilon must be > 0, got {}", self.epsilon));
        }
        if !in_unit(self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if !in_unit(self.dampening) {
            return bad(format!(
                "dampening must be in [0, 1), got {}",
                self.dampening
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if self.max_preconditioner_dim == 0 {
            return bad("max preconditioner dim must be >= 1".into());
        }
        if self.precondition_frequency == 0 {
            return bad("precondition frequency must be >= 1".into());
        }
        if self.start_step() < self.precondition_frequency {
            return bad(format!(
                "start preconditioning step ({}) must be >= the precondition frequency ({})",
                self.start_step(),
                self.precondition_frequency
            ));
        }
        if self.root_override == Some(0) {
            return bad("root override must be >= 1".into());
        }
        if !(self.exponent_multiplier > 0.0 && self.exponent_multiplier.is_finite()) {
            return bad(format!(
                "exponent multiplier must be > 0, got {}",
                self.exponent_multiplier
            ));
        }
        if let RootMethod::CoupledNewton {
            max_iterations,
            tolerance,
        } = self.root_method
        {
            if self.exponent_multiplier != 1.0 {
                return bad("the exponent multiplier needs the eigendecomposition method".into());
            }
            if max_iterations == 0 || tolerance.is_nan() || tolerance <= 0.0 {
                return bad("Newton needs max_iterations >= 1 and tolerance > 0".into());
            }
        }
        match self.grafting {
            Some(Grafting::AdaGrad { epsilon })
            | Some(Grafting::RmsProp { epsilon, .. })
            | Some(Grafting::Adam { epsilon, .. })
                if epsilon.is_nan() || epsilon <= 0.0 =>
            {
                return bad(format!("grafting epsilon must be > 0, got {epsilon}"));
            }
            Some(Grafting::RmsProp { beta2, .. }) | Some(Grafting::Adam { beta2, .. })
                if !(beta2 > 0.0 && beta2 <= 1.0) =>
            {
                return bad(format!("grafting beta2 must be in (0, 1], got {beta2}"));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        ShampooConfig::default().validate().unwrap();
        let cases = [
            (ShampooConfig::default().with_beta2(1.5), "beta2"),
            (ShampooConfig::default().with_beta1(1.0), "beta1"),
            (ShampooConfig::default().with_epsilon(0.0), "epsilon"),
            (
                ShampooConfig::default().with_precondition_frequency(0),
                "frequency",
            ),
            (
                ShampooConfig::default()
                    .with_precondition_frequency(10)
                    .with_start_preconditioning_step(Some(5)),
                "start preconditioning",
            ),
            (ShampooConfig::default().with_momentum(-0.1), "momentum"),
            (
                ShampooConfig::default().with_max_preconditioner_dim(0),
                "dim",
            ),
            (
                ShampooConfig::default().with_grafting(Some(Grafting::Adam {
                    beta2: 1.2,
                    epsilon: 1e-8,
                })),
                "grafting beta2",
            ),
            (
                ShampooConfig::default().with_weight_decay(f64::NAN),
                "weight decay",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }
}
