//! Device budgets as constraints of the pruning problem (issue: "prune to fit a device"):
//! a person deploying to a microcontroller states flash, RAM and latency, not a density.
//! Each budget is one inequality constraint with its own multiplier; the deploy format
//! says what a pruned network costs.
//!
//! - [`units`]: `64KiB`, `2.5ms` as written on a command line or in a config file.
//! - [`flash`]: the exact bytes of the written `model.tthr` as a function of each gated
//!   layer's nonzeros, and its differentiable surrogate in the gates.

pub mod flash;
pub mod units;

use serde::Serialize;

/// One budget at the end of a run: what was asked, what the written model takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetResult {
    /// `flash` (bytes of `model.tthr`).
    pub name: &'static str,
    /// The budget, in the unit of `achieved`.
    pub budget: f64,
    /// What the written model takes.
    pub achieved: f64,
    /// `achieved <= budget`.
    pub met: bool,
}

impl BudgetResult {
    /// A budget and what was reached.
    pub fn new(name: &'static str, budget: f64, achieved: f64) -> Self {
        Self {
            name,
            budget,
            achieved,
            met: achieved <= budget,
        }
    }
}
