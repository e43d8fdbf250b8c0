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

#[cfg(test)]
mod tests {
    use super::*;

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
