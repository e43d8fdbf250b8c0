//! The hard-concrete computations as single passes over the gate locations, each with its
//! derivative in `log_alpha` (Louizos et al. 2018, Eqs. 9-13).
//!
//! A gated LeNet-300-100 has 266,200 gates. Written as tensor ops, a sampled gate is about a
//! dozen element-wise passes forward and as many backward, and those passes were the whole
//! cost of the gates (17x the ungated step, BENCHMARKS.md "Cost of the L0 gates"). Here each
//! quantity is one loop that reads a location once and writes the value and its derivative;
//! the caller attaches the derivative to the autodiff graph with one multiply.
//!
//! The noise is a counter-based stream (a hash of the gate's index and a seed): no generator
//! state to carry between calls, the same seed gives the same gates, and the loop has no
//! dependency from one gate to the next. In `f32` (every backend here) the loops use the
//! branch-free `exp` and `ln` of `fast_math` and run as AVX2 vector code where the CPU has
//! it: about 1 ns a gate instead of 20.

use burn::tensor::{DType, TensorData};

use super::fast_math;

/// The distribution's constants.
#[derive(Clone, Copy, Debug)]
pub(super) struct HardConcreteParams {
    pub beta: f64,
    pub gamma: f64,
    pub zeta: f64,
}

/// Per-gate values and their derivatives in `log_alpha`.
pub(super) struct WithDerivative {
    pub value: TensorData,
    pub derivative: TensorData,
}

impl WithDerivative {
    fn new<T: burn::tensor::Element>(z: Vec<T>, dz: Vec<T>) -> Self {
        let n = z.len();
        Self {
            value: TensorData::new(z, [n]),
            derivative: TensorData::new(dz, [n]),
        }
    }

    /// Runs an `f32` loop that writes `n` values and derivatives.
    fn from_f32_loop(n: usize, fill: impl FnOnce(&mut [f32], &mut [f32])) -> Self {
        let (mut z, mut dz) = (vec![0.0f32; n], vec![0.0f32; n]);
        fill(&mut z, &mut dz);
        Self::new(z, dz)
    }
}

/// `(z - log_alpha * dz, dz)`: the constant and slope of the tangent line through each
/// gate, so that `log_alpha * dz + offset` has value `z` and derivative `dz`.
pub(super) fn linearised(
    gates: WithDerivative,
    locations: &TensorData,
) -> (TensorData, TensorData) {
    fn offsets<T: Real>(loc: &[T], z: &[T], dz: &[T]) -> TensorData {
        let offset: Vec<T> = loc
            .iter()
            .zip(z.iter().zip(dz))
            .map(|(&a, (&z, &dz))| z.sub(a.mul(dz)))
            .collect();
        TensorData::new(offset, [loc.len()])
    }
    let offset = match (&gates.value.dtype, &locations.dtype) {
        (DType::F64, DType::F64) => offsets::<f64>(
            locations.as_slice().expect("f64 locations"),
            gates.value.as_slice().expect("f64 gates"),
            gates.derivative.as_slice().expect("f64 derivatives"),
        ),
        (_, DType::F32) => offsets::<f32>(
            locations.as_slice().expect("f32 locations"),
            gates.value.as_slice().expect("f32 gates"),
            gates.derivative.as_slice().expect("f32 derivatives"),
        ),
        _ => offsets::<f32>(
            &locations.iter::<f32>().collect::<Vec<_>>(),
            gates.value.as_slice().expect("f32 gates"),
            gates.derivative.as_slice().expect("f32 derivatives"),
        ),
    };
    (offset, gates.derivative)
}

/// A sum over the gates and its per-gate derivatives.
pub(super) struct SumWithDerivative {
    pub value: f64,
    pub derivative: TensorData,
}

/// The float types the loops run in: the locations' own precision for `f32` and `f64`,
/// `f32` for the half types.
trait Real: Copy + PartialOrd + burn::tensor::Element {
    fn of(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn exp(self) -> Self;
    fn zero() -> Self {
        Self::of(0.0)
    }
    fn one() -> Self {
        Self::of(1.0)
    }
    fn min(self, o: Self) -> Self {
        if self < o { self } else { o }
    }
    fn max(self, o: Self) -> Self {
        if self > o { self } else { o }
    }
    /// `1 / (1 + exp(-x))`. Branch-free (the signs of sampled arguments are random, and a
    /// mispredicted branch per gate cost more than the arithmetic); for large negative `x`
    /// `exp(-x)` overflows to infinity and the quotient is the correct limit, 0.
    fn sigmoid(self) -> Self {
        Self::one().div(Self::one().add(Self::zero().sub(self).exp()))
    }
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn of(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
        }
    };
}
real!(f32);
real!(f64);

/// Runs `f` over the locations in their own precision (`f32` for the half types).
fn with_locations<R>(
    data: &TensorData,
    f32_case: impl FnOnce(&[f32]) -> R,
    f64_case: impl FnOnce(&[f64]) -> R,
) -> R {
    match data.dtype {
        DType::F64 => f64_case(data.as_slice::<f64>().expect("f64 locations")),
        DType::F32 => f32_case(data.as_slice::<f32>().expect("f32 locations")),
        _ => f32_case(&data.iter::<f32>().collect::<Vec<_>>()),
    }
}

/// Defines `$name`, which runs the `#[inline(always)]` function `$body` compiled for AVX2
/// and FMA where the CPU has them (the loop inside is then 8-wide), plainly elsewhere.
macro_rules! vectorised {
    ($name:ident = $body:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// A 64-bit seed from a few uniform draws in `[0, 1)` of the backend's generator.
pub(super) fn seed_from_uniforms(draws: &[f64]) -> u64 {
    draws.iter().fold(0u64, |acc, &d| {
        let bits = (d * (1u64 << 32) as f64) as u64;
        acc.rotate_left(21) ^ u64::from(fast_math::hash32(bits as u32 ^ acc as u32))
    })
}

/// 24 random bits for gate `i`: two rounds of the hash, keyed by the two halves of the seed.
#[inline(always)]
fn random_bits(seed: u64, i: usize) -> u32 {
    let once = fast_math::hash32((i as u32) ^ seed as u32);
    fast_math::hash32(once ^ (seed >> 32) as u32) >> 8
}

/// The logistic noise `log u - log(1 - u)` with `u = (bits + 1/2) / 2^24`: both `u` and
/// `1 - u` are exact in `f32` and at least `2^-25`, so the noise is finite (|noise| <= 17.4).
/// One logarithm of the quotient (correct to an ulp) instead of two.
#[inline(always)]
fn logistic_noise(bits: u32) -> f32 {
    // Through i32 (bits < 2^24): AVX2 converts signed integers to floats, not unsigned.
    let bits = bits as i32;
    let u = bits as f32 + 0.5;
    let v = ((1 << 24) - bits) as f32 - 0.5;
    fast_math::ln(u / v)
}

/// The logistic noise [`sample`] draws for `n` gates under `seed`: what the device path is
/// given to compute the same gates (tests).
#[cfg(test)]
pub(super) fn noise_of(seed: u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| logistic_noise(random_bits(seed, i)))
        .collect()
}

#[inline(always)]
fn sample_body(loc: &[f32], p: &HardConcreteParams, seed: u64, z: &mut [f32], dz: &mut [f32]) {
    let (lo, width) = (p.gamma as f32, (p.zeta - p.gamma) as f32);
    let inv_beta = (1.0 / p.beta) as f32;
    let slope = width * inv_beta;
    for (i, ((&a, z), dz)) in loc.iter().zip(z).zip(dz).enumerate() {
        let s = fast_math::sigmoid((logistic_noise(random_bits(seed, i)) + a) * inv_beta);
        let stretched = s * width + lo;
        let inside = stretched > 0.0 && stretched < 1.0;
        *z = stretched.clamp(0.0, 1.0);
        *dz = if inside { slope * s * (1.0 - s) } else { 0.0 };
    }
}

vectorised!(sample_loop = sample_body(
    loc: &[f32], p: &HardConcreteParams, seed: u64, z: &mut [f32], dz: &mut [f32]
) -> ());

fn sample_f32(loc: &[f32], p: &HardConcreteParams, seed: u64) -> WithDerivative {
    WithDerivative::from_f32_loop(loc.len(), |z, dz| sample_loop(loc, p, seed, z, dz))
}

fn sample_in<T: Real>(loc: &[T], p: &HardConcreteParams, seed: u64) -> WithDerivative {
    let (lo, width) = (T::of(p.gamma), T::of(p.zeta - p.gamma));
    let inv_beta = T::of(1.0 / p.beta);
    let slope = width.mul(inv_beta);
    let mut z = Vec::with_capacity(loc.len());
    let mut dz = Vec::with_capacity(loc.len());
    for (i, &a) in loc.iter().enumerate() {
        let noise = T::of(logistic_noise(random_bits(seed, i)) as f64);
        let s = noise.add(a).mul(inv_beta).sigmoid();
        let stretched = s.mul(width).add(lo);
        let inside = stretched > T::zero() && stretched < T::one();
        let slope_here = slope.mul(s).mul(T::one().sub(s));
        // Selects rather than branches: whether a sampled gate is clipped is random.
        z.push(stretched.max(T::zero()).min(T::one()));
        dz.push(if inside { slope_here } else { T::zero() });
    }
    WithDerivative::new(z, dz)
}

/// Sampled gates `z = min(1, max(0, sigmoid((logistic noise + log_alpha) / beta) *
/// (zeta - gamma) + gamma))` (Eqs. 9-11) and `dz / d log_alpha`, which is zero where the
/// clip is active.
pub(super) fn sample(data: &TensorData, p: &HardConcreteParams, seed: u64) -> WithDerivative {
    with_locations(data, |l| sample_f32(l, p, seed), |l| sample_in(l, p, seed))
}

fn expected_in<T: Real>(loc: &[T], p: &HardConcreteParams) -> SumWithDerivative {
    let shift = T::of(p.beta * (-p.gamma / p.zeta).ln());
    let mut total = 0.0f64;
    let mut dp = Vec::with_capacity(loc.len());
    for &a in loc {
        let prob = a.sub(shift).sigmoid();
        total += prob.to_f64();
        dp.push(prob.mul(T::one().sub(prob)));
    }
    SumWithDerivative {
        value: total,
        derivative: TensorData::new(dp, [loc.len()]),
    }
}

/// `sum_j P(z_j != 0) = sum_j sigmoid(log_alpha_j - beta log(-gamma / zeta))` (Eq. 12),
/// summed in f64, and its per-gate derivatives.
pub(super) fn expected_l0(data: &TensorData, p: &HardConcreteParams) -> SumWithDerivative {
    with_locations(data, |l| expected_f32(l, p), |l| expected_in(l, p))
}

#[inline(always)]
fn expected_body(loc: &[f32], shift: f32, dp: &mut [f32]) -> f64 {
    // Eight running sums (one per vector lane: a single running sum is a chain of
    // dependent additions the compiler may not reorder), each block of 1024 gates added
    // into an f64 total: exact enough for 10^7 gates.
    const LANES: usize = 8;
    let mut total = 0.0f64;
    for (loc, dp) in loc.chunks(1024).zip(dp.chunks_mut(1024)) {
        let mut part = [0.0f32; LANES];
        let mut lanes = loc.chunks_exact(LANES).zip(dp.chunks_exact_mut(LANES));
        for (loc, dp) in &mut lanes {
            for k in 0..LANES {
                let prob = fast_math::sigmoid(loc[k] - shift);
                part[k] += prob;
                dp[k] = prob * (1.0 - prob);
            }
        }
        let tail = loc.len() - loc.len() % LANES;
        for (&a, dp) in loc[tail..].iter().zip(&mut dp[tail..]) {
            let prob = fast_math::sigmoid(a - shift);
            part[0] += prob;
            *dp = prob * (1.0 - prob);
        }
        total += part.iter().map(|&p| p as f64).sum::<f64>();
    }
    total
}

vectorised!(expected_loop = expected_body(loc: &[f32], shift: f32, dp: &mut [f32]) -> f64);

fn expected_f32(loc: &[f32], p: &HardConcreteParams) -> SumWithDerivative {
    let shift = (p.beta * (-p.gamma / p.zeta).ln()) as f32;
    let mut dp = vec![0.0f32; loc.len()];
    let total = expected_loop(loc, shift, &mut dp);
    SumWithDerivative {
        value: total,
        derivative: TensorData::new(dp, [loc.len()]),
    }
}

/// The deterministic gate of one location (Eq. 13) and its derivative.
fn deterministic_gate<T: Real>(a: T, lo: T, width: T) -> (T, T) {
    let s = a.sigmoid();
    let stretched = s.mul(width).add(lo);
    if stretched <= T::zero() {
        (T::zero(), T::zero())
    } else if stretched >= T::one() {
        (T::one(), T::zero())
    } else {
        (stretched, width.mul(s).mul(T::one().sub(s)))
    }
}

fn deterministic_in<T: Real>(loc: &[T], p: &HardConcreteParams) -> WithDerivative {
    let (lo, width) = (T::of(p.gamma), T::of(p.zeta - p.gamma));
    let (z, dz): (Vec<T>, Vec<T>) = loc
        .iter()
        .map(|&a| deterministic_gate(a, lo, width))
        .unzip();
    WithDerivative::new(z, dz)
}

/// Deterministic gates `min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))`
/// (Eq. 13) and their derivatives.
pub(super) fn deterministic(data: &TensorData, p: &HardConcreteParams) -> WithDerivative {
    with_locations(
        data,
        |l| deterministic_f32(l, p),
        |l| deterministic_in(l, p),
    )
}

/// The deterministic gate of one `f32` location, shared by the gates and their count.
#[inline(always)]
fn deterministic_gate_f32(a: f32, lo: f32, width: f32) -> (f32, f32) {
    let s = fast_math::sigmoid(a);
    let stretched = s * width + lo;
    let inside = stretched > 0.0 && stretched < 1.0;
    (
        stretched.clamp(0.0, 1.0),
        if inside { width * s * (1.0 - s) } else { 0.0 },
    )
}

#[inline(always)]
fn deterministic_body(loc: &[f32], lo: f32, width: f32, z: &mut [f32], dz: &mut [f32]) {
    for ((&a, z), dz) in loc.iter().zip(z).zip(dz) {
        (*z, *dz) = deterministic_gate_f32(a, lo, width);
    }
}

vectorised!(deterministic_loop = deterministic_body(
    loc: &[f32], lo: f32, width: f32, z: &mut [f32], dz: &mut [f32]
) -> ());

fn deterministic_f32(loc: &[f32], p: &HardConcreteParams) -> WithDerivative {
    let (lo, width) = (p.gamma as f32, (p.zeta - p.gamma) as f32);
    WithDerivative::from_f32_loop(loc.len(), |z, dz| deterministic_loop(loc, lo, width, z, dz))
}

fn count_in<T: Real>(loc: &[T], p: &HardConcreteParams) -> usize {
    let (lo, width) = (T::of(p.gamma), T::of(p.zeta - p.gamma));
    loc.iter()
        .filter(|&&a| deterministic_gate(a, lo, width).0 > T::zero())
        .count()
}

/// How many deterministic gates (Eq. 13) are non-zero: the same computation as
/// [`deterministic`], so the count is the density of the folded model exactly.
pub(super) fn count_open(data: &TensorData, p: &HardConcreteParams) -> usize {
    with_locations(data, |l| count_f32(l, p), |l| count_in(l, p))
}

#[inline(always)]
fn count_body(loc: &[f32], lo: f32, width: f32) -> usize {
    loc.iter()
        .map(|&a| usize::from(deterministic_gate_f32(a, lo, width).0 > 0.0))
        .sum()
}

vectorised!(count_loop = count_body(loc: &[f32], lo: f32, width: f32) -> usize);

fn count_f32(loc: &[f32], p: &HardConcreteParams) -> usize {
    count_loop(loc, p.gamma as f32, (p.zeta - p.gamma) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniforms(seed: u64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (random_bits(seed, i) as f64 + 0.5) / (1u64 << 24) as f64)
            .collect()
    }

    #[test]
    fn uniforms_stay_inside_the_open_interval_and_look_uniform() {
        let n = 200_000;
        let u = uniforms(42, n);
        assert!(u.iter().all(|&x| x > 0.0 && x < 1.0));
        let mean = u.iter().sum::<f64>() / n as f64;
        // The mean of U(0, 1) has standard deviation 1 / sqrt(12 n) ~ 0.00065.
        assert!((mean - 0.5).abs() < 0.003, "mean {mean}");
        // Deciles each hold a tenth, within 5 binomial standard deviations (~0.0034).
        for d in 0..10 {
            let lo = d as f64 / 10.0;
            let frac = u.iter().filter(|&&x| x >= lo && x < lo + 0.1).count() as f64 / n as f64;
            assert!((frac - 0.1).abs() < 0.0034, "decile {d}: {frac}");
        }
        // Neighbouring indices are not correlated (standard deviation of the lag-1
        // covariance: 1 / (12 sqrt(n)) ~ 0.00019).
        let cov = u
            .windows(2)
            .map(|w| (w[0] - 0.5) * (w[1] - 0.5))
            .sum::<f64>()
            / n as f64;
        assert!(cov.abs() < 0.001, "lag-1 covariance {cov}");
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let a = uniforms(1, 64);
        let b = uniforms(1 << 40, 64);
        let c = uniforms(2, 64);
        assert!(a.iter().zip(&b).filter(|(x, y)| x == y).count() <= 1);
        assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() <= 1);
        assert_eq!(a, uniforms(1, 64));
    }

    /// The logistic noise has the logistic distribution: mean 0, variance pi^2 / 3.
    #[test]
    fn noise_is_logistic() {
        let n = 200_000;
        let x: Vec<f64> = (0..n)
            .map(|i| logistic_noise(random_bits(9, i)) as f64)
            .collect();
        let mean = x.iter().sum::<f64>() / n as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        let want = std::f64::consts::PI.powi(2) / 3.0;
        assert!((var - want).abs() < 0.05 * want, "variance {var} vs {want}");
        assert!(x.iter().all(|v| v.is_finite() && v.abs() < 17.5));
    }

    /// The vectorised f32 paths agree with the generic ones (library exp and ln).
    #[test]
    fn f32_paths_match_the_generic_ones() {
        let p = HardConcreteParams {
            beta: 2.0 / 3.0,
            gamma: -0.1,
            zeta: 1.1,
        };
        let loc: Vec<f32> = (0..5000).map(|i| -8.0 + 16.0 * i as f32 / 5000.0).collect();
        let close = |a: &TensorData, b: &TensorData| {
            let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
            a.iter().zip(b).all(|(x, y)| (x - y).abs() < 2e-6)
        };
        let (fast, slow) = (sample_f32(&loc, &p, 3), sample_in(&loc, &p, 3));
        assert!(close(&fast.value, &slow.value) && close(&fast.derivative, &slow.derivative));
        let (fast, slow) = (deterministic_f32(&loc, &p), deterministic_in(&loc, &p));
        assert!(close(&fast.value, &slow.value) && close(&fast.derivative, &slow.derivative));
        let (fast, slow) = (expected_f32(&loc, &p), expected_in(&loc, &p));
        assert!((fast.value - slow.value).abs() < 1e-3);
        assert!(close(&fast.derivative, &slow.derivative));
        let open = deterministic_f32(&loc, &p)
            .value
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .filter(|&&z| z > 0.0)
            .count();
        assert_eq!(count_f32(&loc, &p), open);
    }
}
