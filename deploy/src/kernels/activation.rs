//! Element-wise activations and softmax.
//!
//! Non-finite values follow IEEE 754, as ONNX Runtime and PyTorch compute them: a NaN in
//! is a NaN out (`relu`, `clip`, the ReLU family and a softmax axis included), and the
//! infinities give their limits (`relu(+inf) = +inf`, `relu(-inf) = 0`, `sigmoid(-inf) =
//! 0`). `f32::max` and `f32::min` are IEEE `maxNum` / `minNum`, which return the other
//! operand when one is NaN, so they are never used to compute an activation here: a NaN
//! would leave as a finite value and a broken input as a confident prediction. The
//! comparisons used instead (`if x < 0.0 { 0.0 } else { x }`) are false for NaN, which is
//! what lets it through, and compile to the same vector instructions (`maxps` with the
//! operand order that returns the NaN).

use crate::format::Unary;

/// `y = max(x, 0)`, NaN kept (see the module documentation).
pub fn relu(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = relu1(x);
    }
}

/// `max(x, 0)` with NaN passed through: `NaN < 0.0` is false.
#[inline(always)]
fn relu1(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// The larger of `a` and `b`, NaN if either is NaN (IEEE 754-2019 `maximum`, numpy's
/// `maximum`), unlike `f32::max`: the max-subtraction of [`softmax_strided`] uses it so a
/// NaN on the axis reaches every output of that axis.
#[inline(always)]
pub(crate) fn max_nan(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
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
///
/// Non-finite logits give what the formula `e^(x - max) / sum` gives in f32, as ONNX
/// Runtime and PyTorch: a NaN anywhere on the axis makes the whole axis NaN, a `+inf`
/// makes it NaN too (`inf - inf`), a `-inf` gets probability 0, and an axis of only
/// `-inf` is NaN (`0 / 0`).
pub fn softmax(x: &[f32], row: usize, y: &mut [f32]) {
    softmax_strided(x, x.len() / row, row, 1, y);
}

/// Softmax over the middle axis of `x` seen as `[outer, n, inner]`: for each outer and
/// inner index, the `n` values `inner` apart.
pub fn softmax_strided(x: &[f32], outer: usize, n: usize, inner: usize, y: &mut [f32]) {
    if inner == 1 {
        for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)).take(outer) {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, max_nan);
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
            let max = (0..n).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, max_nan);
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

/// `y = f(x)` element-wise; NaN in, NaN out, and the infinities to their limits (see the
/// module documentation).
pub fn unary(f: Unary, x: &[f32], y: &mut [f32]) {
    let map = |g: &dyn Fn(f32) -> f32, y: &mut [f32]| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = g(x);
        }
    };
    match f {
        Unary::Sigmoid => map(
            &|v| {
                // Stable on both sides: e^v never overflows for v < 0. NaN takes the
                // second branch (`NaN >= 0` is false) and leaves as e^NaN = NaN.
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
        // NaN (the comparison false) leaves as `a * NaN = NaN`, in Elu as well.
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
        // `f32::clamp` returns NaN for a NaN (it compares, unlike `max` / `min`).
        Unary::HardSigmoid(a, b) => map(&|v| (a * v + b).clamp(0.0, 1.0), y),
        Unary::Softplus => map(
            &|v| {
                // ln(1 + e^v) = max(v, 0) + ln(1 + e^-|v|), without overflow.
                relu1(v) + libm::log1pf(libm::expf(-libm::fabsf(v)))
            },
            y,
        ),
        // `min(max(v, lo), hi)` by comparisons, false for NaN: NaN stays NaN (`f32::max`
        // would clip it to `lo`); `lo > hi` gives `hi`, as numpy's `clip`.
        Unary::Clip(lo, hi) => map(
            &|v| {
                let m = if v < lo { lo } else { v };
                if m > hi { hi } else { m }
            },
            y,
        ),
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
                if p == 2.0 { v * v } else { libm::powf(v, p) }
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

    /// NaN (both signs), the infinities, signed zeros and ordinary values, each at several
    /// positions of a 37-long slice: the vector bodies and the scalar tails of the loops
    /// both see every kind (in builds where the loops are vectorised).
    fn specials() -> Vec<f32> {
        let base = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            0.5,
            -0.5,
            2.0,
            -2.0,
            3.0,
            -3.0,
            40.0,
            -40.0,
            1e30,
            -1e30,
            -f32::NAN,
            7.25,
        ];
        (0..37).map(|i| base[(i * 7) % base.len()]).collect()
    }

    /// Asserts that `f` (a kernel applied to [`specials`]) agrees with `reference`, the
    /// textbook formula in f64 (or an IEEE definition): NaN exactly where the reference is
    /// NaN, the same infinity where it is infinite, and elsewhere equal (`ulps` 0) or
    /// within `ulps` units in the last place of the f32 result (for the ops that call
    /// `expf` and friends, themselves within an ulp or two).
    fn check(
        name: &str,
        f: impl Fn(&[f32], &mut [f32]),
        reference: impl Fn(f64) -> f64,
        ulps: f64,
    ) {
        let x = specials();
        let mut y = vec![0.5f32; x.len()];
        f(&x, &mut y);
        for (&x, &y) in x.iter().zip(&y) {
            let want = reference(f64::from(x));
            if want.is_nan() {
                assert!(y.is_nan(), "{name}({x}) = {y}, want NaN");
            } else if want.is_infinite() {
                assert_eq!(f64::from(y), want, "{name}({x})");
            } else {
                let err = (f64::from(y) - want).abs();
                let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) * f32::EPSILON;
                assert!(
                    err <= ulps * f64::from(ulp),
                    "{name}({x}) = {y}, want {want} (off by {err:e})"
                );
            }
        }
    }

    /// IEEE `x < 0`-style comparisons are false for NaN; the references spell NaN out so
    /// they do not depend on that.
    fn nan_or(x: f64, f: impl Fn(f64) -> f64) -> f64 {
        if x.is_nan() { f64::NAN } else { f(x) }
    }

    #[test]
    fn relu_keeps_nan_and_takes_the_limits_of_the_infinities() {
        check(
            "relu",
            relu,
            |x| nan_or(x, |x| if x > 0.0 { x } else { 0.0 }),
            0.0,
        );
        // relu(+inf) = +inf and relu(-inf) = 0 are in `specials`; spelled out once more.
        let mut y = [1.0; 3];
        relu(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], &mut y);
        assert!(
            y[0].is_nan() && y[1] == f32::INFINITY && y[2] == 0.0,
            "{y:?}"
        );
    }

    #[test]
    fn leaky_relu_and_elu_keep_nan() {
        for a in [0.01f32, 0.2] {
            let af = f64::from(a);
            check(
                "leaky_relu",
                |x, y| unary(Unary::LeakyRelu(a), x, y),
                |x| nan_or(x, |x| if x >= 0.0 { x } else { af * x }),
                0.5,
            );
            // elu(-inf) = -alpha: the limit of alpha (e^x - 1).
            check(
                "elu",
                |x, y| unary(Unary::Elu(a), x, y),
                |x| nan_or(x, |x| if x > 0.0 { x } else { af * libm::expm1(x) }),
                2.0,
            );
        }
    }

    #[test]
    fn hard_sigmoid_keeps_nan() {
        let (a, b) = (0.2f32, 0.5f32);
        check(
            "hardsigmoid",
            |x, y| unary(Unary::HardSigmoid(a, b), x, y),
            |x| {
                nan_or(x, |x| {
                    // In f32 as the runtime computes `a x + b` before clipping.
                    f64::from(a * x as f32 + b).clamp(0.0, 1.0)
                })
            },
            0.0,
        );
    }

    #[test]
    fn softplus_sigmoid_and_tanh_keep_nan_and_take_the_limits() {
        // ln(1 + e^x): +inf at +inf, 0 at -inf.
        check(
            "softplus",
            |x, y| unary(Unary::Softplus, x, y),
            |x| {
                nan_or(x, |x| {
                    if x > 0.0 {
                        x + libm::log1p(libm::exp(-x))
                    } else {
                        libm::log1p(libm::exp(x))
                    }
                })
            },
            2.0,
        );
        // 1 / (1 + e^-x): 1 at +inf, 0 at -inf.
        check(
            "sigmoid",
            |x, y| unary(Unary::Sigmoid, x, y),
            |x| nan_or(x, |x| 1.0 / (1.0 + libm::exp(-x))),
            2.0,
        );
        check(
            "tanh",
            |x, y| unary(Unary::Tanh, x, y),
            |x| nan_or(x, libm::tanh),
            2.0,
        );
    }

    #[test]
    fn clip_keeps_nan_with_finite_and_infinite_bounds() {
        for (lo, hi) in [
            (-1.0f32, 1.0f32),
            (0.0, 6.0),
            (f32::NEG_INFINITY, 2.0),
            (-2.0, f32::INFINITY),
            // lo > hi: hi everywhere (numpy's clip), NaN still NaN.
            (1.0, -1.0),
        ] {
            let (l, h) = (f64::from(lo), f64::from(hi));
            check(
                "clip",
                |x, y| unary(Unary::Clip(lo, hi), x, y),
                |x| nan_or(x, |x| x.max(l).min(h)),
                0.0,
            );
        }
    }

    #[test]
    fn the_other_unary_functions_follow_ieee() {
        type Reference = fn(f64) -> f64;
        let cases: [(Unary, Reference); 12] = [
            (Unary::Exp, libm::exp),
            (Unary::Log, libm::log),
            (Unary::Sqrt, libm::sqrt),
            (Unary::Neg, |x| -x),
            (Unary::Abs, libm::fabs),
            (Unary::Reciprocal, |x| 1.0 / x),
            (Unary::Floor, libm::floor),
            (Unary::Ceil, libm::ceil),
            (Unary::Identity, |x| x),
            (Unary::Sin, libm::sin),
            (Unary::Cos, libm::cos),
            (Unary::Tanh, libm::tanh),
        ];
        for (f, reference) in cases {
            // exp(40) and 1/1e30 are outside or at the edge of f32's range: the reference
            // is rounded to f32 first, as the f32 result is.
            check(
                "unary",
                |x, y| unary(f, x, y),
                |x| f64::from(reference(x) as f32),
                2.0,
            );
        }
        let mut y = [0.0; 3];
        sine(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], 30.0, &mut y);
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
    }

    #[test]
    fn softmax_of_an_axis_with_nan_or_inf_is_what_the_formula_gives() {
        // Rows of 4: a NaN anywhere spoils its row only; +inf gives NaN (inf - inf);
        // -inf gets probability 0; a row of -inf is 0 / 0.
        let x = [
            1.0,
            f32::NAN,
            2.0,
            3.0, // NaN
            f32::INFINITY,
            1.0,
            2.0,
            3.0, // +inf
            f32::NEG_INFINITY,
            0.0,
            0.0,
            f32::NEG_INFINITY, // -inf
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY, // all -inf
            0.0,
            0.0,
            0.0,
            f32::NAN, // NaN last
        ];
        let mut y = [0.0; 20];
        softmax(&x, 4, &mut y);
        assert!(y[..8].iter().all(|v| v.is_nan()), "{y:?}");
        assert_eq!(&y[8..12], &[0.0, 0.5, 0.5, 0.0]);
        assert!(y[12..].iter().all(|v| v.is_nan()), "{y:?}");
        // The strided form (an inner axis) the same: [outer 1, n 4, inner 5] holds the
        // rows above as columns.
        let mut t = [0.0; 20];
        for r in 0..5 {
            for j in 0..4 {
                t[j * 5 + r] = x[r * 4 + j];
            }
        }
        let mut z = [0.0; 20];
        softmax_strided(&t, 1, 4, 5, &mut z);
        for r in 0..5 {
            for j in 0..4 {
                let (a, b) = (y[r * 4 + j], z[j * 5 + r]);
                assert!(a == b || (a.is_nan() && b.is_nan()), "row {r} col {j}");
            }
        }
    }
}

/// The activation applied to the output tile before it is stored.
///
/// NaN passes through both, as in [`super::activation`]: `max(0, x)` and the clamp are
/// computed with the operand order of `vmaxps`/`vminps` that returns `x` when it is NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// The identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, lo), hi)` (ONNX Clip; ReLU6 is `Clip(0, 6)`).
    Clip(f32, f32),
}

impl Act {
    /// The activation of one value, as the vector code computes it.
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
            Act::Clip(lo, hi) => {
                let m = if v < lo { lo } else { v };
                if m > hi { hi } else { m }
            }
        }
    }
}

/// `y = act(y)`, for the kernels that do not apply it to their tiles.
pub fn activate_in_place(y: &mut [f32], act: Act) {
    match act {
        Act::None => {}
        Act::Relu => y.iter_mut().for_each(|v| *v = Act::Relu.apply(*v)),
        Act::Clip(..) => y.iter_mut().for_each(|v| *v = act.apply(*v)),
    }
}
