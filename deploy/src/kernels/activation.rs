//! Element-wise activations and softmax.

use crate::format::Unary;

/// `y = max(x, 0)`.
pub fn relu(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(0.0);
    }
}

/// `y = sin(w0 x)` (SIREN's activation; Sitzmann et al. 2020).
///
/// A SIREN spends most of its inference time here (a 768x512 image through a 10x28
/// network is 110 million sines), so the common range is computed without calls or
/// branches, which the compiler vectorises: `x = k pi + r` with `k` the nearest integer
/// (Cody-Waite reduction with pi split in three parts, exact products for `|k| < 2^16`),
/// `sin x = (-1)^k sin r`, and `sin r` by its Taylor polynomial to `r^11` on
/// `[-pi/2, pi/2]` (truncation error below `(pi/2)^13 / 13! = 6e-8`). Arguments beyond
/// [`FAST_SINE_LIMIT`] (never seen in trained SIRENs) go to `libm::sinf`. Within
/// `4e-7` of the exact sine (tested against f64).
pub fn sine(x: &[f32], w0: f32, y: &mut [f32]) {
    let mut wide = false;
    for (y, &x) in y.iter_mut().zip(x) {
        let v = w0 * x;
        wide |= v.is_nan() || v.abs() > FAST_SINE_LIMIT;
        *y = fast_sin(v);
    }
    if wide {
        for (y, &x) in y.iter_mut().zip(x) {
            let v = w0 * x;
            if v.is_nan() || v.abs() > FAST_SINE_LIMIT {
                *y = libm::sinf(v);
            }
        }
    }
}

/// Largest `|argument|` [`sine`] computes with its polynomial.
pub const FAST_SINE_LIMIT: f32 = 8192.0;

#[inline(always)]
fn fast_sin(v: f32) -> f32 {
    const INV_PI: f32 = core::f32::consts::FRAC_1_PI;
    // pi = P1 + P2 + P3; P1 and P2 have few significant bits, so k * P1 and k * P2 are
    // exact for the k this path sees.
    const P1: f32 = 3.140625;
    const P2: f32 = 9.675_026e-4; // = 9.67502593994140625e-4 exactly
    const P3: f32 = 1.509_958e-7;
    // Round to nearest by the 1.5 * 2^23 trick (exact for |v / pi| < 2^22).
    const SHIFTER: f32 = 12_582_912.0;
    let k = (v * INV_PI + SHIFTER) - SHIFTER;
    let r = ((v - k * P1) - k * P2) - k * P3;
    let r2 = r * r;
    // Taylor coefficients of sin: (-1)^n / (2n+1)!.
    let p = -1.0 / 39_916_800.0;
    let p = p * r2 + 1.0 / 362_880.0;
    let p = p * r2 - 1.0 / 5040.0;
    let p = p * r2 + 1.0 / 120.0;
    let p = p * r2 - 1.0 / 6.0;
    let s = r + r * r2 * p;
    // (-1)^k from the parity of k (an exact small integer).
    let odd = (k as i32) & 1;
    s * (1 - 2 * odd) as f32
}

/// `y = a + b`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a + b;
    }
}

/// Softmax of each consecutive `row`-long slice of `x` (max-subtracted, so large logits
/// do not overflow).
pub fn softmax(x: &[f32], row: usize, y: &mut [f32]) {
    softmax_strided(x, x.len() / row, row, 1, y);
}

/// Softmax over the middle axis of `x` seen as `[outer, n, inner]`: for each outer and
/// inner index, the `n` values `inner` apart.
pub fn softmax_strided(x: &[f32], outer: usize, n: usize, inner: usize, y: &mut [f32]) {
    if inner == 1 {
        for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)).take(outer) {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = libm::expf(x - max);
                sum += *y;
            }
            for y in y.iter_mut() {
                *y /= sum;
            }
        }
        return;
    }
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * n * inner + j * inner + i;
            let max = (0..n).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for j in 0..n {
                let e = libm::expf(x[at(j)] - max);
                y[at(j)] = e;
                sum += e;
            }
            for j in 0..n {
                y[at(j)] /= sum;
            }
        }
    }
}

/// `y = f(x)` element-wise.
pub fn unary(f: Unary, x: &[f32], y: &mut [f32]) {
    let map = |g: &dyn Fn(f32) -> f32, y: &mut [f32]| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = g(x);
        }
    };
    match f {
        Unary::Sigmoid => map(
            &|v| {
                // Stable on both sides: e^v never overflows for v < 0.
                if v >= 0.0 {
                    1.0 / (1.0 + libm::expf(-v))
                } else {
                    let e = libm::expf(v);
                    e / (1.0 + e)
                }
            },
            y,
        ),
        Unary::Tanh => map(&libm::tanhf, y),
        Unary::Exp => map(&libm::expf, y),
        Unary::Log => map(&libm::logf, y),
        Unary::Sqrt => map(&libm::sqrtf, y),
        Unary::Neg => map(&|v| -v, y),
        Unary::Abs => map(&libm::fabsf, y),
        Unary::Reciprocal => map(&|v| 1.0 / v, y),
        Unary::LeakyRelu(a) => map(&|v| if v >= 0.0 { v } else { a * v }, y),
        Unary::Elu(a) => map(
            &|v| {
                if v > 0.0 {
                    v
                } else {
                    a * (libm::expf(v) - 1.0)
                }
            },
            y,
        ),
        Unary::HardSigmoid(a, b) => map(&|v| (a * v + b).clamp(0.0, 1.0), y),
        Unary::Softplus => map(
            &|v| {
                // ln(1 + e^v) = max(v, 0) + ln(1 + e^-|v|), without overflow.
                v.max(0.0) + libm::log1pf(libm::expf(-libm::fabsf(v)))
            },
            y,
        ),
        Unary::Clip(lo, hi) => map(&|v| v.max(lo).min(hi), y),
        Unary::Floor => map(&libm::floorf, y),
        Unary::Ceil => map(&libm::ceilf, y),
        Unary::Identity => y.copy_from_slice(x),
        Unary::Sin => map(&libm::sinf, y),
        Unary::Cos => map(&libm::cosf, y),
        Unary::Erf => map(&libm::erff, y),
        Unary::Gelu => map(
            &|v| 0.5 * v * (1.0 + libm::erff(v * core::f32::consts::FRAC_1_SQRT_2)),
            y,
        ),
        Unary::GeluTanh => map(
            &|v| {
                // sqrt(2 / pi), as PyTorch's tanh approximation writes it.
                const K: f32 = 0.797_884_6;
                0.5 * v * (1.0 + libm::tanhf(K * (v + 0.044_715 * v * v * v)))
            },
            y,
        ),
        // `x relu6(x + 3) / 6`; written with comparisons that let NaN through.
        Unary::HardSwish => map(
            &|v| {
                if v <= -3.0 {
                    0.0
                } else if v >= 3.0 {
                    v
                } else {
                    v * (v + 3.0) / 6.0
                }
            },
            y,
        ),
        Unary::Pow(p) => map(
            &|v| {
                if p == 2.0 {
                    v * v
                } else {
                    libm::powf(v, p)
                }
            },
            y,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn fast_sine_is_within_4e7_of_the_exact_sine() {
        // Every argument a SIREN layer produces lies far inside the fast range; sweep it
        // densely, then the far range and the special values that go to libm.
        let mut worst = 0.0f64;
        let xs: Vec<f32> = (-2_000_000..=2_000_000)
            .map(|i| i as f32 * 1e-4)
            .chain((-100_000..=100_000).map(|i| i as f32 * 0.0819))
            .collect();
        let mut y = vec![0.0; xs.len()];
        sine(&xs, 1.0, &mut y);
        for (&x, &s) in xs.iter().zip(&y) {
            worst = worst.max((f64::from(s) - f64::from(x).sin()).abs());
        }
        assert!(worst < 4e-7, "max error {worst:e}");
        // w0 scales the argument before the reduction.
        let mut y1 = [0.0; 3];
        sine(&[0.01, -0.02, 0.5], 30.0, &mut y1);
        for (&s, x) in y1.iter().zip([0.3f64, -0.6, 15.0]) {
            assert!((f64::from(s) - x.sin()).abs() < 4e-7);
        }
        let special = [1e6f32, -3e7, f32::INFINITY, f32::NAN, 8192.5];
        let mut y2 = [0.0; 5];
        sine(&special, 1.0, &mut y2);
        for (&x, &s) in special.iter().zip(&y2) {
            let exact = libm::sinf(x);
            assert!(
                s == exact || (s.is_nan() && exact.is_nan()),
                "{x}: {s} vs {exact}"
            );
        }
    }

    #[test]
    fn softmax_is_stable_and_normalised() {
        let mut y = [0.0; 4];
        softmax(&[1000.0, 1000.0, 0.0, 0.0], 2, &mut y);
        assert_eq!(&y[..2], &[0.5, 0.5]);
        assert!((y[2] - 0.5).abs() < 1e-7);
        let mut y = [0.0; 2];
        relu(&[-1.0, 2.0], &mut y);
        assert_eq!(y, [0.0, 2.0]);
        sine(&[0.5, 0.0], 2.0, &mut y);
        assert!((y[0] - 1f32.sin()).abs() < 1e-7 && y[1] == 0.0);
    }
}
