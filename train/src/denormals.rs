//! Flushing subnormal floats to zero while training computes.
//!
//! Why: late in training some values fall below `f32`'s smallest normal (1.2e-38):
//! Shampoo's Kronecker factors (squares of tiny gradient entries, rounding residue of roots
//! cast from f64), weights and gradients shrunk by weight decay, Adam's second moments.
//! x86 CPUs take a microcode assist for every subnormal operand, and a matrix product full
//! of them runs an order of magnitude slower: a Fashion-MNIST LeNet-5 Shampoo run went from
//! 0.25 to 4 s per step at step 850, and an Adult fair-prune run with weight decay 1e-3 from
//! 3 to over 19 minutes (perf, both: most of the time in the f32 GEMM kernel). Deep learning
//! frameworks flush subnormals on CPU for the same reason (PyTorch's `set_flush_denormal`);
//! a value under 1e-38 carries nothing a network or a preconditioner can use.
//!
//! The flags (MXCSR's flush-to-zero and denormals-are-zero) are per thread; the guard sets
//! them for its scope only (the shared training loop, [`crate::trainer::fit`], and Shampoo's
//! step hold one) and restores the caller's on drop. Other targets: a no-op.

/// Sets flush-to-zero and denormals-are-zero on this thread until dropped (x86-64).
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushDenormals {
    /// Sets the flags, remembering the previous ones.
    #[allow(deprecated)] // _mm_getcsr/_mm_setcsr: deprecated for misuse, the guard scopes them
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
            // SAFETY: SSE is part of x86-64; only the FTZ and DAZ bits change, and Drop puts
            // the caller's register back.
            let saved = unsafe { _mm_getcsr() };
            unsafe { _mm_setcsr(saved | FTZ_DAZ) };
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    #[allow(deprecated)]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the register read in `new`.
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside the guard a subnormal product is flushed to zero; after it, the caller's
    /// behaviour (gradual underflow) is back.
    #[test]
    fn flushes_inside_the_guard_only() {
        let tiny = std::hint::black_box(1e-30f32);
        let product = |a: f32, b: f32| std::hint::black_box(a) * std::hint::black_box(b);
        assert!(
            product(tiny, 1e-10) > 0.0,
            "subnormal results exist by default"
        );
        {
            let _guard = FlushDenormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(product(tiny, 1e-10), 0.0);
        }
        assert!(
            product(tiny, 1e-10) > 0.0,
            "the caller's flags are restored"
        );
    }
}
