//! `exp`, `ln` and a 32-bit counter hash in `f32`, written without branches or library
//! calls so that a loop over gates compiles to vector instructions.
//!
//! The C library's `expf` and `logf` are calls the compiler cannot vectorise: with them a
//! sampled gate costs about 20 ns, without them about 1. The approximations are the
//! textbook ones (Cody-Waite reduction and a Taylor polynomial for `exp`; the `atanh`
//! series for `ln`), accurate to a few ulp over the ranges the gates use; the tests check
//! them against the library functions.

/// `e^x` with relative error under 4e-7 for `x` in `[-87, 88]`; arguments outside are
/// clamped there (`e^-87 ~ 1.6e-38`, `e^88 ~ 1.7e38`), so the result is always finite
/// and positive.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // x = k ln 2 + r with |r| <= ln(2) / 2; ln 2 split in two so k * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and removing 1.5 * 2^23: the sum's low mantissa bits are
    // then `2^22 + k`, so `k` comes out as an integer without a float-to-int conversion
    // (Rust's saturating `as` does not vectorise) or a library call (`roundf` without
    // SSE4.1).
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let k_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - k * LN2_HI - k * LN2_LO;
    // Taylor polynomial of e^r to degree 7: the next term is below 6e-9 for |r| <= 0.347.
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^k by building the exponent bits (k is in [-126, 127] after the clamp).
    p * f32::from_bits(((k_int + 127) as u32) << 23)
}

/// Natural logarithm of a positive normal `x`, absolute error under 2e-7 relative to
/// `|ln x| + 1`.
#[inline(always)]
pub(super) fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // x = m 2^e with m in [1, 2); then m in [sqrt(1/2), sqrt(2)) by moving a factor 2.
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (if big { e + 1 } else { e }) as f32;
    // ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1), |s| <= 0.172;
    // the first omitted term, 2 s^11 / 11, is below 4e-10.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    e * std::f32::consts::LN_2 + series
}

/// `1 / (1 + e^-x)` for every finite `x` (saturating at the clamp of [`exp`]).
#[inline(always)]
pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// A 32-bit integer hash with good avalanche (the "lowbias32" constants of C. Wellons'
/// hash-prospector search): a bijection, so distinct counters give distinct outputs.
#[inline(always)]
pub(super) fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_library_to_a_few_ulp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn ln_matches_the_library() {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            for y in [x, x * 1.37, x * 0.71, 1.0 - x.min(0.5)] {
                let want = (y as f64).ln();
                let err = (ln(y) as f64 - want).abs() / (want.abs() + 1.0);
                worst = worst.max(err);
            }
            x *= 1.09;
        }
        // Near 1, where the result is small: u and 1 - u of the gates' noise.
        for i in 1..10_000 {
            let y = 1.0 - i as f32 * 1e-6;
            let want = (y as f64).ln();
            worst = worst.max((ln(y) as f64 - want).abs() / (want.abs() + 1.0));
        }
        assert!(worst < 2e-7, "worst error {worst}");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(-200.0) < 1e-37);
        assert_eq!(sigmoid(200.0), 1.0);
        for x in [-5.0f32, -1.0, 0.3, 4.0] {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - want).abs() < 1e-7);
        }
    }

    #[test]
    fn hash_is_a_bijection_on_a_sample() {
        let mut seen: Vec<u32> = (0..1_000_000).map(hash32).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1_000_000);
    }
}
