//! Where a data-parallel step's time goes: the training loop adds each step's wall time,
//! [`super::DataParallel`] the time its all-reduces take (waiting for the slowest rank
//! included). Per thread, read once at the end of a run (`TETHER_PARALLEL_STATS=1` makes
//! `tether-train prune` print them: the figures of BENCHMARKS.md).

use std::cell::Cell;
use std::time::Duration;

/// Totals since the thread started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoopStats {
    /// Training steps taken.
    pub steps: usize,
    /// Their wall time (batch assembly, forward, backward, reductions, optimizer step).
    pub step_time: Duration,
    /// Collective calls made.
    pub reductions: usize,
    /// Their wall time.
    pub reduce_time: Duration,
}

thread_local! {
    static STATS: Cell<LoopStats> = Cell::new(LoopStats::default());
}

fn update(f: impl FnOnce(&mut LoopStats)) {
    STATS.with(|s| {
        let mut v = s.get();
        f(&mut v);
        s.set(v);
    });
}

/// Counts a step of `time`.
pub fn record_step(time: Duration) {
    update(|s| {
        s.steps += 1;
        s.step_time += time;
    });
}

/// Counts a collective call of `time`.
pub fn record_reduction(time: Duration) {
    update(|s| {
        s.reductions += 1;
        s.reduce_time += time;
    });
}

/// This thread's totals.
pub fn stats() -> LoopStats {
    STATS.with(Cell::get)
}

impl std::fmt::Display for LoopStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = self.step_time.as_secs_f64();
        let reduce = self.reduce_time.as_secs_f64();
        write!(
            f,
            "{} steps in {step:.3} s ({:.2} ms a step); {} all-reduces in {reduce:.3} s \
             ({:.1}% of the steps' time)",
            self.steps,
            1e3 * step / self.steps.max(1) as f64,
            self.reductions,
            100.0 * reduce / step.max(f64::MIN_POSITIVE)
        )
    }
}
