//! The arithmetic a mesh model runs in: f32 or f64 ([`Precision`]).
//!
//! Why both: an EMAN's outputs are logits in the tens, and every layer's attention sums
//! and rotations round at 2^-24 of that magnitude in f32, so two f32 runtimes (this one,
//! burn's) that add in different orders already disagree by about 1e-4 on a trained
//! network. In f64 the runtime computes the network's exact value (to about 1e-12; the
//! geometry is f64 in both cases) at a measured cost in speed (BENCHMARKS.md, EMAN), so a
//! user who needs to reproduce a reference, or compares runtimes, can ask for it.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::{Add, AddAssign, Mul, Sub};

/// The arithmetic of a [`super::MeshPlan`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Single precision: the weights' own type, the fastest.
    #[default]
    F32,
    /// Double precision throughout (weights widened once, activations and sums in f64).
    F64,
}

/// A float type the mesh ops are written over.
pub(crate) trait Real:
    Copy
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + AddAssign
    + core::iter::Sum
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    fn exp(self) -> Self;
    fn div(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn exp(self) -> Self {
        libm::expf(self)
    }
    fn div(self, other: Self) -> Self {
        self / other
    }
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn exp(self) -> Self {
        libm::exp(self)
    }
    fn div(self, other: Self) -> Self {
        self / other
    }
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
}

/// `v` widened (or kept) to `T`.
pub(crate) fn widen<T: Real>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// `y = x W^T (+ b)` for `x: [rows, inp]`, `W: [out, inp]`, all row-major, in `T`.
pub(crate) fn linear<T: Real>(
    w: &[T],
    bias: Option<&[T]>,
    x: &[T],
    rows: usize,
    out: usize,
    inp: usize,
) -> Vec<T> {
    let mut y = vec![T::ZERO; rows * out];
    if let Some(bias) = bias {
        for row in y.chunks_exact_mut(out) {
            row.copy_from_slice(&bias[..out]);
        }
    }
    if rows == 0 || out == 0 || inp == 0 {
        return y;
    }
    assert!(w.len() >= out * inp && x.len() >= rows * inp);
    #[cfg(feature = "gemm")]
    // SAFETY: `w` holds out*inp, `x` rows*inp and `y` rows*out elements (checked above
    // and by construction); `T` is f32 or f64.
    unsafe {
        crate::kernels::dense::gemm_linear_accumulate(
            w.as_ptr(),
            x.as_ptr(),
            y.as_mut_ptr(),
            rows,
            out,
            inp,
            T::ONE,
        )
    };
    #[cfg(not(feature = "gemm"))]
    for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
        for (n, yv) in yr.iter_mut().enumerate() {
            *yv += w[n * inp..(n + 1) * inp]
                .iter()
                .zip(xr)
                .map(|(&a, &b)| a * b)
                .sum::<T>();
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_the_definition_in_both_precisions() {
        let (rows, out, inp) = (5, 3, 7);
        let w: Vec<f32> = (0..out * inp).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32 - 1.0).collect();
        let x: Vec<f32> = (0..rows * inp).map(|i| (i as f32 * 0.11).cos()).collect();
        let reference: Vec<f64> = (0..rows * out)
            .map(|k| {
                let (r, n) = (k / out, k % out);
                f64::from(b[n])
                    + (0..inp)
                        .map(|i| f64::from(w[n * inp + i]) * f64::from(x[r * inp + i]))
                        .sum::<f64>()
            })
            .collect();
        let y64 = linear::<f64>(&widen(&w), Some(&widen(&b)), &widen(&x), rows, out, inp);
        let y32 = linear::<f32>(&w, Some(&b), &x, rows, out, inp);
        for ((a, b), r) in y64.iter().zip(&y32).zip(&reference) {
            assert!((a - r).abs() < 1e-12, "{a} vs {r}");
            assert!((f64::from(*b) - r).abs() < 1e-5, "{b} vs {r}");
        }
    }
}
