//! A gradual bound for the L0 method: each constraint's target (density, flash, RAM,
//! latency) descends from the unpruned network's value to the asked one on Zhu & Gupta's
//! cubic schedule ("To prune, or not to prune", 2017, eq. 1), instead of being asked in
//! full from the first gated step.
//!
//! Why: with the whole target at once the multiplier closes the network from density 1 to
//! the target within about one epoch after the warm-up, faster than the weights can
//! follow; the pruned L0 networks then fit the training set less than gmp's (MNIST
//! LeNet-300-100 at `--max-flash 32KiB`: train accuracy 0.982 against 0.990, test 0.9756
//! against 0.9798 over 3 seeds; Fashion-MNIST at density 0.05: 0.9195 against 0.9265).
//! gmp's density after each of its ramp epochs is 0.70, 0.46, 0.29, 0.17: the weights
//! adapt to each cut before the next. The constrained method keeps its character: the
//! multiplier still finds the trade-off at every step; the ramp only says how much is
//! asked when.
//!
//! The bound at slack `s` (1 at the ramp's start, 0 from its end on) is
//! `aim + (unpruned - aim) · s`, with `s = (1 - p)^3`, `p` the fraction of the ramp's
//! steps done. Every constraint of a run shares one ramp.

use std::cell::Cell;
use std::rc::Rc;

use crate::tasks::magnitude::gmp_density;

/// The ramp's slack, shared by the problem (which sets each bound from it) and the
/// metrics (which map a violation back to its quantity with the bound of its step).
#[derive(Clone, Debug)]
pub struct Ramp {
    slack: Rc<Cell<f64>>,
    /// First gated step (the ramp starts here).
    start: usize,
    /// Steps the ramp lasts (0: no ramp, the full target from `start`).
    len: usize,
}

impl Default for Ramp {
    /// No ramp: the bound is the asked one at every step.
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl Ramp {
    /// A ramp of `len` steps from step `start` (`len` 0: none).
    pub fn new(start: usize, len: usize) -> Self {
        let ramp = Self {
            slack: Rc::new(Cell::new(0.0)),
            start,
            len,
        };
        ramp.at_step(start);
        ramp
    }

    /// Sets the slack for global step `step` (the step about to run).
    pub fn at_step(&self, step: usize) {
        let s = if self.len == 0 {
            0.0
        } else {
            // gmp's density with a final density of 0 is exactly (1 - p)^3.
            gmp_density(
                step.max(self.start),
                self.start,
                self.start + self.len,
                1,
                0.0,
            )
        };
        self.slack.set(s);
    }

    /// The current slack, in `[0, 1]`.
    pub fn slack(&self) -> f64 {
        self.slack.get()
    }

    /// True once the bounds are the asked ones.
    pub fn done(&self) -> bool {
        self.slack() == 0.0
    }

    /// The bound between `aim` (the asked one) and `unpruned` (the network's value with
    /// every gate open) at the current slack.
    pub fn bound(&self, aim: f64, unpruned: f64) -> f64 {
        aim + (unpruned - aim) * self.slack()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_descends_on_the_cubic_and_holds_at_the_aim() {
        let r = Ramp::new(100, 50);
        assert_eq!(r.bound(0.1, 1.0), 1.0);
        r.at_step(0);
        assert_eq!(
            r.bound(0.1, 1.0),
            1.0,
            "before the start: the unpruned value"
        );
        r.at_step(125);
        // p = 1/2: s = 1/8.
        assert!((r.bound(0.1, 1.0) - (0.1 + 0.9 / 8.0)).abs() < 1e-12);
        let mut last = f64::INFINITY;
        for step in 100..=150 {
            r.at_step(step);
            let b = r.bound(32_000.0, 1_000_000.0);
            assert!(b <= last, "monotone: {b} after {last}");
            last = b;
        }
        assert!(r.done());
        assert_eq!(r.bound(32_000.0, 1_000_000.0), 32_000.0);
        r.at_step(10_000);
        assert_eq!(r.bound(0.1, 1.0), 0.1);
    }

    #[test]
    fn no_ramp_is_the_aim_at_every_step() {
        let r = Ramp::default();
        for step in [0, 1, 1000] {
            r.at_step(step);
            assert!(r.done());
            assert_eq!(r.bound(0.05, 1.0), 0.05);
        }
        let shared = Ramp::new(0, 10);
        let view = shared.clone();
        shared.at_step(5);
        assert_eq!(view.slack(), shared.slack(), "clones share one slack");
        assert!(view.slack() > 0.0 && view.slack() < 1.0);
    }
}
