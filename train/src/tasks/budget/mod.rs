//! Device budgets as constraints of the pruning problem (issue: "prune to fit a device"):
//! a person deploying to a microcontroller states flash, RAM and latency, not a density.
//! Each budget is one inequality constraint with its own multiplier; the deploy format
//! says what a pruned network costs.
//!
//! - [`units`]: `64KiB`, `2.5ms` as written on a command line or in a config file.
//! - [`latency`]: the time of one inference in tether-deploy on this host, from a cost
//!   model fitted to measurements of the deploy kernels.
//! - [`flash`]: the exact bytes of the written `model.tthr` as a function of each gated
//!   layer's nonzeros, and its differentiable surrogate in the gates.
//! - [`widths`]: the RAM a microcontroller needs to run it (activations and scratch,
//!   weights in flash), or the bytes of its file once closed units are cut out, as a
//!   function of each unit-gated layer's width, measured on the narrowed network, and its
//!   linearisation in the gates.

pub mod flash;
pub mod latency;
pub mod widths;
/// Sizes and times with units: the deploy crate's, shared with `tether-deploy inspect --board`.
pub use tether_deploy::cli::units;

use serde::Serialize;

/// One budget at the end of a run: what was asked, what the written model takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetResult {
    /// `flash` (bytes of `model.tthr`), `ram` (bytes a microcontroller needs to run it)
    /// or `latency` (seconds per inference).
    pub name: &'static str,
    /// The budget, in the unit of `achieved`.
    pub budget: f64,
    /// What the written model takes.
    pub achieved: f64,
    /// `achieved <= budget`.
    pub met: bool,
    /// What the budget's model (the flash size model, the fitted latency model) predicted
    /// for the final network, which the constraint steered: the flash model's is exact,
    /// the latency model's is a measurement of its own.
    pub predicted: Option<f64>,
}

impl BudgetResult {
    /// A budget and what was reached.
    pub fn new(name: &'static str, budget: f64, achieved: f64) -> Self {
        Self {
            name,
            budget,
            achieved,
            met: achieved <= budget,
            predicted: None,
        }
    }

    /// With the model's prediction for the final network.
    pub fn with_predicted(mut self, predicted: f64) -> Self {
        self.predicted = Some(predicted);
        self
    }

    /// One line for a person: `flash budget 64.00 KiB (65536 B): the written model takes
    /// ... (met, 99.4% of the budget)`.
    pub fn describe(&self) -> String {
        let show = |v: f64| match self.name {
            "flash" | "ram" => units::Bytes(v as u64).to_string(),
            _ => units::Seconds(v).to_string(),
        };
        format!(
            "{} budget {}: the written model {} {} ({}, {:.1}% of the budget)",
            self.name,
            show(self.budget),
            match self.name {
                "flash" => "takes",
                "ram" => "needs",
                _ => "runs in",
            },
            show(self.achieved),
            if self.met { "met" } else { "NOT met" },
            100.0 * self.achieved / self.budget
        )
    }
}
