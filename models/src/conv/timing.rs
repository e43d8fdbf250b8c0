//! Per-layer CPU time of the convolution's kernels, off unless switched on: the profile of
//! a training step by layer and by pass (forward, input gradient, weight gradient, ...),
//! to set beside PyTorch's profiler on the same networks (issue 33). A profiler that
//! samples (`perf`) sees the kernels but not which layer called them; this sees the layer.
//!
//! Time is the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID` on Linux, wall time
//! elsewhere), so other processes on a loaded machine do not count; with more than one
//! rayon thread the other threads' share is missed. While profiling, the input and
//! weight gradients of the im2col path are computed by two separate calls (each with its
//! own im2col) so that each is timed alone: the profiled step does a little more work than
//! the unprofiled one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::geometry::Geometry;

/// One pass of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pass {
    /// The output, with its bias and epilogue.
    Forward,
    /// The ReLU's gradient mask on `dY`.
    Mask,
    /// `dX`.
    InputGrad,
    /// `dW`.
    WeightGrad,
    /// `db`.
    BiasGrad,
}

/// Accumulated time of one (layer, pass).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The layer: `c_in->c_out kh x kw /stride gGROUPS @ h x w`.
    pub layer: String,
    /// The pass.
    pub pass: Pass,
    /// Calls timed.
    pub calls: u64,
    /// CPU seconds, all calls together.
    pub seconds: f64,
}

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<(String, Pass), (u64, f64)>> = Mutex::new(BTreeMap::new());

/// Starts (or stops) recording, for the whole process.
pub fn set_enabled(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Whether recording is on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The entries recorded since the last call, in layer order (then pass), and clears them.
pub fn take() -> Vec<Entry> {
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *table)
        .into_iter()
        .map(|((layer, pass), (calls, seconds))| Entry {
            layer,
            pass,
            calls,
            seconds,
        })
        .collect()
}

/// A layer's name in the table.
pub(super) fn conv_name(geo: &Geometry) -> String {
    format!(
        "conv {:>3}->{:<3} {}x{} /{} g{:<3} @ {}x{}",
        geo.c_in, geo.c_out, geo.kh, geo.kw, geo.stride[0], geo.groups, geo.h, geo.w
    )
}

/// `f()`, its CPU time added to `(name(), pass)` when recording is on.
pub(super) fn time<R>(name: impl FnOnce() -> String, pass: Pass, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let start = thread_cpu_seconds();
    let out = f();
    let spent = thread_cpu_seconds() - start;
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let e = table.entry((name(), pass)).or_insert((0, 0.0));
    e.0 += 1;
    e.1 += spent;
    out
}

/// CPU seconds the calling thread has run.
#[cfg(target_os = "linux")]
fn thread_cpu_seconds() -> f64 {
    tether_deploy::cpu_time::thread_seconds().unwrap_or(f64::NAN)
}

/// Wall seconds since the first call (no per-thread clock here).
#[cfg(not(target_os = "linux"))]
fn thread_cpu_seconds() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_while_on_and_take_clears() {
        // The only test that switches recording on (the table is process-wide).
        set_enabled(false);
        time(|| "off".into(), Pass::Forward, || ());
        set_enabled(true);
        let mut spin = 0u64;
        for _ in 0..3 {
            time(
                || "layer".into(),
                Pass::InputGrad,
                || (0..200_000u64).for_each(|i| spin = spin.wrapping_add(i * i)),
            );
        }
        set_enabled(false);
        assert_ne!(spin, 1);
        let got = take();
        let mine: Vec<_> = got.iter().filter(|e| e.layer == "layer").collect();
        assert_eq!(mine.len(), 1, "{got:?}");
        assert_eq!((mine[0].pass, mine[0].calls), (Pass::InputGrad, 3));
        assert!(mine[0].seconds > 0.0, "{got:?}");
        assert!(!got.iter().any(|e| e.layer == "off"), "{got:?}");
        assert!(take().iter().all(|e| e.layer != "layer"));
    }
}
