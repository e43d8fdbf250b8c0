//! Runs a kernel's loops compiled for the CPU's vector units. The workspace builds for
//! baseline x86-64 (SSE2, 4 floats a vector), so the hand-written loops here (depthwise
//! taps, the ReLU mask, the output epilogue) vectorised 4 wide, while faer's and `gemm`'s
//! GEMMs pick AVX-512 at run time. [`vectorized`] does the same for a closure: on a CPU
//! with AVX-512F (or AVX2) it calls it from a function compiled with those features, into
//! which the closure and the loops it calls are inlined and vectorised 16 (or 8) wide. The
//! closure and the kernels it calls must be `#[inline(always)]`: LLVM inlines bottom-up,
//! and a closure grown by its inlined kernels is otherwise left out of line, compiled for
//! SSE2 (as `perf annotate` showed of the first version: `mulps` on `xmm` registers). The arithmetic is the same (no FMA contraction: Rust keeps `a * b + c` as two
//! roundings), so results are bit-identical on every path.

/// `f()`, with its inlined loops compiled for AVX-512F or AVX2 where the CPU has them.
#[inline]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,avx,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,avx,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has every feature the function is compiled for (checked above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorized_loop_gives_the_plain_loops_bits() {
        let a: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.11).cos()).collect();
        let run = |a: &[f32], b: &[f32]| -> Vec<f32> {
            a.iter().zip(b).map(|(x, y)| x * 1.5 + y).collect()
        };
        let plain = run(&a, &b);
        let fast = vectorized(
            #[inline(always)]
            || run(&a, &b),
        );
        assert!(
            plain
                .iter()
                .zip(&fast)
                .all(|(p, f)| p.to_bits() == f.to_bits())
        );
    }
}
