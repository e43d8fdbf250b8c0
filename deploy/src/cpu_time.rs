//! CPU time of the calling thread or of the whole process, for benchmarks that must not
//! count the time other jobs on a shared machine take from them (the project's timings are
//! ratios measured in one run on shared cores). Linux only: `clock_gettime` with
//! `CLOCK_THREAD_CPUTIME_ID` / `CLOCK_PROCESS_CPUTIME_ID`, declared here rather than
//! through a libc crate (the no_std runtime has no dependency on one; on a microcontroller
//! this module does not exist).

/// `struct timespec` of 64-bit Linux.
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, t: *mut Timespec) -> i32;
}

/// Seconds of `clock`, or `None` if the kernel refuses it.
fn seconds(clock: i32) -> Option<f64> {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: a clock id and a pointer to a timespec of the C layout (64-bit Linux).
    let rc = unsafe { clock_gettime(clock, &mut t) };
    (rc == 0).then_some(t.sec as f64 + t.nsec as f64 * 1e-9)
}

/// Seconds of CPU time the calling thread has run.
pub fn thread_seconds() -> Option<f64> {
    seconds(3) // CLOCK_THREAD_CPUTIME_ID
}

/// Seconds of CPU time this process (all its threads) has run.
pub fn process_seconds() -> Option<f64> {
    seconds(2) // CLOCK_PROCESS_CPUTIME_ID
}

/// The least thread CPU time per call of `run`, in microseconds, over `trials` trials of
/// about 5 ms each (`run` is repeated as often as 5 ms takes, counted once before the
/// trials): the kernel-timing examples' measure. The least, not the median, because on
/// shared cores every disturbance only adds time. `None` if the clock is refused.
pub fn least_per_call_us(trials: usize, run: &mut dyn FnMut()) -> Option<f64> {
    run();
    let start = thread_seconds()?;
    let mut reps = 0usize;
    while thread_seconds()? - start < 0.005 {
        run();
        reps += 1;
    }
    let reps = reps.max(1);
    let mut best = f64::INFINITY;
    for _ in 0..trials.max(1) {
        let t = thread_seconds()?;
        for _ in 0..reps {
            run();
        }
        best = best.min((thread_seconds()? - t) / reps as f64);
    }
    Some(best * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_per_call_time_is_that_of_the_work() {
        // A call that spins for 0.2 ms of thread CPU time.
        let mut spin = || {
            let t = thread_seconds().unwrap();
            while thread_seconds().unwrap() - t < 2e-4 {}
        };
        let us = least_per_call_us(2, &mut spin).unwrap();
        assert!((200.0..400.0).contains(&us), "{us} us");
    }

    #[test]
    fn cpu_time_advances_with_work_and_the_process_counts_at_least_the_thread() {
        let (t0, p0) = (thread_seconds().unwrap(), process_seconds().unwrap());
        let mut x = 0u64;
        while thread_seconds().unwrap() - t0 < 0.02 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (t1, p1) = (thread_seconds().unwrap(), process_seconds().unwrap());
        assert!(t1 - t0 >= 0.02);
        assert!(
            p1 - p0 >= t1 - t0 - 1e-3,
            "process {} thread {}",
            p1 - p0,
            t1 - t0
        );
    }
}
