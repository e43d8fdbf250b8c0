//! The discretised Laplace distribution as an integer frequency table, the entropy model
//! of Cool-chic's latents and network weights (Ladune et al. 2023, Sec. 3.2).
//!
//! Integer `v` in `-a..=a` has probability `C(v + 1/2) - C(v - 1/2)` under the Laplace
//! `C` of location `mu` and scale `b`. The table is never built: the cumulative
//! frequency at boundary `j` (`0..=n`, `n = 2a + 1`) is
//! `j + floor(C(j - a - 1/2) (2^16 - n))`, so every symbol has frequency >= 1 (any value
//! in range stays codable, however unlikely), the total is exactly `2^16`, and the encoder
//! needs two evaluations of `C` per symbol and the decoder a search from the mode
//! (usually two as well, [`Laplace::decode`]). `C` is computed in `f32` in one fixed
//! order, so encoder and decoder agree bit for bit on every IEEE-754 machine (no fused
//! multiply-adds: Rust does not contract float expressions). How `C` is computed is part
//! of the format ([`Cdf`]): version 1 with `libm::expf(d / b)`, version 2 with
//! [`exp_poly`] of `-|d| (1 / b)`, a range reduction and a polynomial of plain `f32`
//! operations (no table, no division), about a quarter of the decoder's time less.

use super::CodecError;
use super::rans::{PROB_TOTAL, RansDecoder, RansEncoder};

/// Smallest and largest scale (the model's output is clamped into this range). The
/// floor bounds how much a small error in the ARM's location (its weights are quantised)
/// can cost: at 0.01 a location off by 0.3 made the true value a 2^-16 event, and the
/// real file jumped to 3x the budget in a few steps of a fit.
pub const MIN_SCALE: f32 = 0.1;
/// See [`MIN_SCALE`].
pub const MAX_SCALE: f32 = 100.0;

/// How a table's CDF is computed (part of the file format: the tables decide the bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cdf {
    /// `0.5 libm::expf(d / b)` (and `1 -` that of `-d`): format version 1.
    Libm,
    /// `0.5 exp_poly(-|d| * (1 / b))` with the reciprocal computed once per table
    /// ([`exp_poly`]): format version 2.
    Poly,
}

/// `e^x` in plain `f32` operations in a fixed order (so every IEEE-754 machine gives the
/// same bits, with no `libm` and no table): `x log2 e = n + f` with `n` the nearest
/// integer (by the `1.5 * 2^23` rounding trick, exact) and `|f| <= 1/2` (exact), then
/// `2^f` by its degree-6 Taylor polynomial in Horner's form (truncation error
/// `(ln 2 / 2)^7 / 7! < 1.2e-7` relative) times `2^n` built from its bits: relative error
/// under `3e-7 + 1e-7 |x|` (the second term the rounding of `x log2 e`). `x` is clamped
/// to `[-87, 88]` (the result stays a normal `f32`); a NaN gives a NaN.
///
/// Not monotone to the last bit (where the reduction's `n` changes, `2 P(-1/2)` and
/// `P(1/2)` differ by an ulp), and the tables do not need it: their arguments step by at
/// least `1 / MAX_SCALE = 0.01` (one integer over the scale), over which `e^x` rises by
/// 1%, far above the error (tested on a dense grid), so every table stays strictly
/// increasing.
#[inline]
pub fn exp_poly(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23
    const C: [f32; 6] = [
        core::f32::consts::LN_2,
        0.240_226_5,     // ln^2 2 / 2
        0.055_504_11,    // ln^3 2 / 6
        0.009_618_129,   // ln^4 2 / 24
        0.001_333_355_8, // ln^5 2 / 120
        0.000_154_035_3, // ln^6 2 / 720
    ];
    let t = x.clamp(-87.0, 88.0) * core::f32::consts::LOG2_E;
    let n = (t + SHIFT) - SHIFT;
    let f = t - n;
    let mut p = C[5];
    for &c in C[..5].iter().rev() {
        p = p * f + c;
    }
    p = p * f + 1.0;
    // `n` in -126..=127 (NaN: 0, and `p` is NaN).
    let e = ((n as i32).clamp(-126, 127) + 127) as u32;
    p * f32::from_bits(e << 23)
}

/// A Laplace over the integers `-a..=a`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Laplace {
    mu: f32,
    b: f32,
    /// `1 / b` ([`Cdf::Poly`]).
    inv_b: f32,
    a: i32,
    cdf: Cdf,
}

impl Laplace {
    /// Location `mu`, scale `b` (clamped to `[MIN_SCALE, MAX_SCALE]`; a NaN scale is the
    /// largest, a NaN location 0: a model gone wrong still codes), support `-a..=a`, the
    /// current format's tables ([`Cdf::Poly`]).
    pub fn new(mu: f32, b: f32, a: i32) -> Self {
        Self::with_cdf(mu, b, a, Cdf::Poly)
    }

    /// [`Laplace::new`] with the tables of `cdf`.
    pub fn with_cdf(mu: f32, b: f32, a: i32, cdf: Cdf) -> Self {
        let b = if b.is_nan() {
            MAX_SCALE
        } else {
            b.clamp(MIN_SCALE, MAX_SCALE)
        };
        let mu = if mu.is_finite() { mu } else { 0.0 };
        debug_assert!(a >= 0 && 2 * a + 1 < (PROB_TOTAL / 4) as i32);
        Self {
            mu,
            b,
            inv_b: 1.0 / b,
            a,
            cdf,
        }
    }

    fn n(&self) -> u32 {
        (2 * self.a + 1) as u32
    }

    /// The continuous CDF at `x`.
    fn cdf(&self, x: f32) -> f32 {
        let d = x - self.mu;
        match self.cdf {
            Cdf::Libm => {
                if d < 0.0 {
                    0.5 * libm::expf(d / self.b)
                } else {
                    1.0 - 0.5 * libm::expf(-d / self.b)
                }
            }
            Cdf::Poly => {
                let e = 0.5 * exp_poly(-d.abs() * self.inv_b);
                if d < 0.0 { e } else { 1.0 - e }
            }
        }
    }

    /// Cumulative frequency of boundary `j` in `0..=n`.
    fn cum(&self, j: u32) -> u32 {
        let n = self.n();
        if j == 0 {
            return 0;
        }
        if j >= n {
            return PROB_TOTAL;
        }
        let x = (j as i32 - self.a) as f32 - 0.5;
        let c = self.cdf(x).clamp(0.0, 1.0);
        // `c < 1` in exact arithmetic; the clamp keeps a rounded 1.0 inside the table.
        let f = ((c * (PROB_TOTAL - n) as f32) as u32).min(PROB_TOTAL - n - 1);
        j + f
    }

    /// Writes `v` (clamped into the support).
    ///
    /// # Errors
    /// A zero frequency (not possible for a monotone `expf`; checked anyway).
    pub fn encode(&self, v: i32, enc: &mut RansEncoder) -> Result<(), CodecError> {
        let s = (v.clamp(-self.a, self.a) + self.a) as u32;
        let (lo, hi) = (self.cum(s), self.cum(s + 1));
        if hi <= lo {
            return Err(CodecError::Model("a non-monotone Laplace table"));
        }
        enc.put(lo, hi - lo)
    }

    /// Reads a value written by [`Laplace::encode`] with the same distribution.
    ///
    /// The symbol is the one `s` with `cum(s) <= slot < cum(s + 1)` (`cum` is strictly
    /// increasing: `j` plus a non-decreasing floor), so any search finds the same one. This
    /// one starts at the mode, where a Laplace's mass is, and usually ends with the two
    /// evaluations of its bounds (a bisection from the whole range takes about
    /// `log2 n + 2`, 9 for a latent); otherwise it gallops outwards (steps 1, 2, 4, ...) to
    /// bracket the slot, then bisects, so a tail symbol costs `O(log n)` too.
    ///
    /// # Errors
    /// A truncated stream or an empty interval (a corrupt file).
    pub fn decode(&self, dec: &mut RansDecoder<'_>) -> Result<i32, CodecError> {
        let slot = dec.peek();
        let n = self.n();
        let a = self.a as f32;
        // `mu` is finite (`new`); clamped first so the cast cannot saturate oddly.
        let mode = (libm::roundf(self.mu.clamp(-a, a)) as i32 + self.a) as u32;
        // Invariant once bracketed: cum(lo) <= slot < cum(hi), lo < hi.
        let (mut lo, mut hi) = (mode, mode + 1);
        let (mut c_lo, mut c_hi) = (self.cum(lo), self.cum(hi));
        if c_lo > slot {
            // Downwards: cum(0) = 0 <= slot ends it.
            let mut step = 1;
            loop {
                (hi, c_hi) = (lo, c_lo);
                lo = hi.saturating_sub(step);
                c_lo = self.cum(lo);
                if c_lo <= slot {
                    break;
                }
                step *= 2;
            }
        } else if c_hi <= slot {
            // Upwards: cum(n) = PROB_TOTAL > slot ends it.
            let mut step = 1;
            loop {
                (lo, c_lo) = (hi, c_hi);
                hi = (lo + step).min(n);
                c_hi = self.cum(hi);
                if c_hi > slot {
                    break;
                }
                step *= 2;
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let c = self.cum(mid);
            if c <= slot {
                (lo, c_lo) = (mid, c);
            } else {
                (hi, c_hi) = (mid, c);
            }
        }
        if c_hi <= c_lo || slot < c_lo || slot >= c_hi {
            return Err(CodecError::Corrupt(
                "an entropy-coded symbol outside its table",
            ));
        }
        dec.advance(c_lo, c_hi - c_lo)?;
        Ok(lo as i32 - self.a)
    }

    /// The ideal cost of `v` in bits under the integer table.
    pub fn bits(&self, v: i32) -> f64 {
        let s = (v.clamp(-self.a, self.a) + self.a) as u32;
        let f = self.cum(s + 1) - self.cum(s);
        -libm::log2(f64::from(f) / f64::from(PROB_TOTAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn values_round_trip_under_many_distributions_and_cost_their_information() {
        let mut enc = RansEncoder::new();
        let mut items = Vec::new();
        let mut ideal = 0.0;
        let mut s = 12345u32;
        for i in 0..5000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let mu = ((s >> 8) % 2000) as f32 / 100.0 - 10.0;
            let b = [0.01, 0.1, 0.5, 2.0, 30.0, 100.0][i % 6];
            let a = [1, 15, 63, 255][i % 4];
            let d = Laplace::with_cdf(mu, b, a, [Cdf::Libm, Cdf::Poly][i % 2]);
            // Mostly near the mode, sometimes far out (the tails must stay codable).
            let v = if i % 10 == 0 {
                (s % 600) as i32 - 300
            } else {
                libm::roundf(mu) as i32 + (i as i32 % 3) - 1
            };
            d.encode(v, &mut enc).unwrap();
            ideal += d.bits(v);
            items.push((d, v.clamp(-a, a)));
        }
        let bytes = enc.finish();
        assert!((bytes.len() * 8) as f64 <= ideal * 1.001 + 40.0);
        let mut dec = RansDecoder::new(&bytes).unwrap();
        for (d, v) in items {
            assert_eq!(d.decode(&mut dec).unwrap(), v);
        }
        dec.finish().unwrap();
    }

    #[test]
    fn the_search_from_the_mode_finds_the_symbol_a_scan_finds() {
        // Tables of every shape the codec uses (narrow to flat, mode inside and outside
        // the support), every slot of a coarse grid plus both ends of every interval:
        // the symbol must be the scan's, and the tables strictly increasing (what makes
        // any search's answer the same).
        let mut s = 99u32;
        for t in 0..300 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let a = [63, 1023, 3][t % 3];
            let mu = ((s >> 8) % 20_000) as f32 / 100.0 - 100.0;
            let b = [0.1, 0.37, 1.0, 4.5, 30.0, 100.0][t % 6];
            let d = Laplace::with_cdf(mu, b, a, [Cdf::Poly, Cdf::Libm][(t / 3) % 2]);
            let cum: Vec<u32> = (0..=d.n()).map(|j| d.cum(j)).collect();
            assert!(cum.windows(2).all(|w| w[0] < w[1]), "mu {mu} b {b} a {a}");
            let mut slots: Vec<u32> = (0..PROB_TOTAL).step_by(97).collect();
            slots.extend(
                cum[..cum.len() - 1]
                    .iter()
                    .flat_map(|&c| [c, c.saturating_sub(1)]),
            );
            for slot in slots {
                let want = cum.iter().rposition(|&c| c <= slot).unwrap() as i32 - a;
                // A stream whose state's low 16 bits are `slot` (and bytes to renormalise).
                let mut bytes = ((1u32 << 23) | slot).to_be_bytes().to_vec();
                bytes.extend([0; 4]);
                let mut dec = RansDecoder::new(&bytes).unwrap();
                assert_eq!(
                    d.decode(&mut dec),
                    Ok(want),
                    "mu {mu} b {b} a {a} slot {slot}"
                );
            }
        }
    }

    /// `exp_poly` against `f64`'s `exp`, and increasing over the steps a table takes.
    #[test]
    fn exp_poly_is_exp_and_non_decreasing() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = libm::exp(f64::from(x));
            let got = f64::from(exp_poly(x));
            // The polynomial's error, and the rounding of `x log2 e` (half an ulp of `t`).
            let tol = 3e-7 + 1e-7 * f64::from(x.abs());
            assert!((got - want).abs() <= tol * want, "{x}: {got} vs {want}");
            x += 0.001_7;
        }
        // What the tables need: a table's arguments step by at least 1 / MAX_SCALE = 0.01
        // (one integer over the scale), and there `exp_poly` rises by 1% less its error.
        let mut x = -87.0f32;
        while x <= 87.0 {
            let step = 1.0 / MAX_SCALE;
            assert!(exp_poly(x + step) > exp_poly(x) * 1.0099, "{x}");
            x += 0.000_37;
        }
        assert!(exp_poly(f32::NAN).is_nan());
        assert_eq!(exp_poly(0.0), 1.0);
    }

    #[test]
    fn the_table_is_a_distribution_concentrated_where_the_laplace_is() {
        let d = Laplace::new(0.2, 0.5, 63);
        let total: u32 = (-63..=63)
            .map(|v| d.cum((v + 64) as u32) - d.cum((v + 63) as u32))
            .sum();
        assert_eq!(total, PROB_TOTAL);
        // P(0) = C(0.5) - C(-0.5) = 1 - 0.5 e^{-0.6} - 0.5 e^{-1.4} = 0.6023...
        let p0 = 2f64.powf(-d.bits(0));
        assert!((p0 - 0.6023).abs() < 0.002, "{p0}");
        assert!(d.bits(0) < d.bits(1) && d.bits(1) < d.bits(-1) && d.bits(-1) < d.bits(5));
        // A NaN model still gives a valid table.
        let nan = Laplace::new(f32::NAN, f32::NAN, 3);
        assert_eq!(nan.cum(7), PROB_TOTAL);
    }
}
