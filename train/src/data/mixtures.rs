//! The standard mode-collapse tests for GANs: 2D mixtures of Gaussians (a ring of 8 and a
//! 5x5 grid), with the metrics the GANGs issue reports: how many modes a generator's
//! samples cover, and the fraction of its samples that are of high quality (near a mode).
//!
//! The layouts are the usual ones (Metz et al. 2017, "Unrolled GANs"; Srivastava et al.
//! 2017, "VEEGAN"): 8 modes evenly on a circle of radius 2 with standard deviation 0.02,
//! and 25 modes on the grid {-4, -2, 0, 2, 4}^2 with standard deviation 0.05. A sample is
//! of high quality when it lies within 3 standard deviations of a mode; a mode is covered
//! when at least `min_count` high-quality samples are nearest to it.

use super::batches::SplitMix64;

/// An equal-weight mixture of isotropic 2D Gaussians.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixture {
    /// Mode centres.
    pub modes: Vec<[f64; 2]>,
    /// Standard deviation of every mode.
    pub std: f64,
}

impl Mixture {
    /// 8 modes on a circle of radius 2, standard deviation 0.02.
    pub fn ring8() -> Self {
        let modes = (0..8)
            .map(|k| {
                let t = std::f64::consts::TAU * k as f64 / 8.0;
                [2.0 * t.cos(), 2.0 * t.sin()]
            })
            .collect();
        Self { modes, std: 0.02 }
    }

    /// 25 modes on the grid {-4, -2, 0, 2, 4}^2, standard deviation 0.05.
    pub fn grid25() -> Self {
        let axis = [-4.0, -2.0, 0.0, 2.0, 4.0];
        let modes = axis
            .iter()
            .flat_map(|&x| axis.iter().map(move |&y| [x, y]))
            .collect();
        Self { modes, std: 0.05 }
    }

    /// `n` samples, row-major `[n, 2]`, from a seeded generator.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed);
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let m = self.modes[(rng.next() % self.modes.len() as u64) as usize];
            let (a, b) = normal_pair(&mut rng);
            out.push((m[0] + self.std * a) as f32);
            out.push((m[1] + self.std * b) as f32);
        }
        out
    }

    /// For each sample (row-major `[n, 2]`), the mode it is of high quality for: the
    /// nearest mode when within 3 standard deviations, else `None`.
    pub fn assign(&self, samples: &[f32]) -> Vec<Option<usize>> {
        let radius2 = (3.0 * self.std).powi(2);
        samples
            .chunks_exact(2)
            .map(|p| {
                let (x, y) = (p[0] as f64, p[1] as f64);
                let (k, d2) = self
                    .modes
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (k, (x - m[0]).powi(2) + (y - m[1]).powi(2)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("at least one mode");
                (d2 <= radius2).then_some(k)
            })
            .collect()
    }

    /// Modes with at least `min_count` high-quality samples.
    pub fn modes_covered(&self, samples: &[f32], min_count: usize) -> usize {
        let mut count = vec![0usize; self.modes.len()];
        for k in self.assign(samples).into_iter().flatten() {
            count[k] += 1;
        }
        count.iter().filter(|&&c| c >= min_count.max(1)).count()
    }

    /// Fraction of samples within 3 standard deviations of some mode.
    pub fn high_quality_fraction(&self, samples: &[f32]) -> f64 {
        let a = self.assign(samples);
        a.iter().filter(|k| k.is_some()).count() as f64 / a.len().max(1) as f64
    }
}

/// `n` independent standard normals (latent codes of a generator).
pub(crate) fn standard_normals(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (a, b) = normal_pair(rng);
        out.push(a as f32);
        out.push(b as f32);
    }
    out.truncate(n);
    out
}

/// Uniform in (0, 1): never 0, so its logarithm is finite.
fn uniform(rng: &mut SplitMix64) -> f64 {
    rng.next_unit() + 0.5 / (1u64 << 53) as f64
}

/// Two independent standard normals (Box-Muller).
fn normal_pair(rng: &mut SplitMix64) -> (f64, f64) {
    let (u, v) = (uniform(rng), uniform(rng));
    let r = (-2.0 * u.ln()).sqrt();
    let t = std::f64::consts::TAU * v;
    (r * t.cos(), r * t.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_standard_ones() {
        let ring = Mixture::ring8();
        assert_eq!(ring.modes.len(), 8);
        for m in &ring.modes {
            assert!(((m[0] * m[0] + m[1] * m[1]).sqrt() - 2.0).abs() < 1e-12);
        }
        let grid = Mixture::grid25();
        assert_eq!(grid.modes.len(), 25);
        assert!(grid.modes.contains(&[-4.0, 4.0]) && grid.modes.contains(&[0.0, 0.0]));
    }

    /// Samples of the mixture itself cover every mode, and about 98.9% of them are within
    /// 3 standard deviations (the chi distribution with 2 degrees of freedom:
    /// 1 - exp(-9/2) = 0.98889).
    #[test]
    fn the_data_itself_scores_as_theory_says() {
        for mix in [Mixture::ring8(), Mixture::grid25()] {
            let x = mix.sample(20_000, 1);
            assert_eq!(mix.modes_covered(&x, 20), mix.modes.len());
            let hq = mix.high_quality_fraction(&x);
            assert!((hq - (1.0 - (-4.5f64).exp())).abs() < 0.004, "{hq}");
        }
    }

    #[test]
    fn a_collapsed_generator_covers_one_mode() {
        let ring = Mixture::ring8();
        // Every sample at one mode: one mode covered, all high quality.
        let collapsed: Vec<f32> = (0..1000).flat_map(|_| [2.0f32, 0.0]).collect();
        assert_eq!(ring.modes_covered(&collapsed, 10), 1);
        assert_eq!(ring.high_quality_fraction(&collapsed), 1.0);
        // Samples between modes are of low quality and cover nothing.
        let between: Vec<f32> = (0..1000).flat_map(|_| [0.0f32, 0.0]).collect();
        assert_eq!(ring.modes_covered(&between, 1), 0);
        assert_eq!(ring.high_quality_fraction(&between), 0.0);
    }
}
