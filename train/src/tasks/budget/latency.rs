//! The latency of one inference of a pruned network in tether-deploy on this host, as a
//! function of each gated layer's kept weights: a cost model fitted to measurements of the
//! deploy kernels, so that a latency budget can be a constraint.
//!
//! The plan runs its steps one after another, so the time of an inference is the sum of
//! its steps' times. [`LatencyModel::measure`] times the network with every gated weight
//! pruned (`T_empty`: the ops that do not prune, and the empty layers), then, for each
//! gated layer in turn, the same network with that layer's weight kept at random at each
//! density of a grid (the other gated layers empty), each at the kernels the plan picks
//! (`auto`, as a deployment runs it). The layer's cost curve is the difference from
//! `T_empty`, interpolated linearly in the number of nonzeros between the measured points
//! and made non-decreasing; the model is
//!
//! ```text
//! latency(nnz) = T_empty + sum_l t_l(nnz_l),   t_l(0) = 0
//! ```
//!
//! Differences against the empty network rather than the dense one keep the noise of the
//! shared machine small next to what is measured.
//!
//! The strict latency (the multiplier's) puts the deterministic gates' counts in; the
//! surrogate (the gates') has the curve's value at the expected counts and its mean slope
//! (dense minus empty, per weight) as the gradient, for the same reason the flash model
//! uses CSR's slope: the auto plan keeps a layer dense, flat in its nonzeros, until it
//! crosses the sparse kernel's break-even, and it has to be pushed there.
//!
//! Times are medians of interleaved trials of `tether_deploy::cli::PlanTimer` (repetitions
//! filling about 10 ms, single thread), as `tether-deploy bench` measures them.

use anyhow::Context;
use burn::tensor::{Tensor, backend::Backend};
use tether_deploy::cli::PlanTimer;
use tether_deploy::{AlignedBytes, Model};

/// Densities each gated layer is timed at (besides 1: the exported network).
const GRID: [f64; 10] = [1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05, 0.02, 0.01];

/// One gated layer's cost: inference time (seconds, the other layers dense) at measured
/// nonzero counts, increasing in both.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerCurve {
    /// `(nnz, seconds)`, nnz from 0 to the layer's size.
    pub points: Vec<(f64, f64)>,
}

impl LayerCurve {
    /// Seconds at `nnz` nonzeros (linear between the measured points).
    pub fn at(&self, nnz: f64) -> f64 {
        let p = &self.points;
        if nnz <= p[0].0 {
            return p[0].1;
        }
        for w in p.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if nnz <= x1 {
                return y0 + (y1 - y0) * (nnz - x0) / (x1 - x0).max(1e-12);
            }
        }
        p[p.len() - 1].1
    }

    /// The curve as a device tensor of shape `[1]` from a count of shape `[1]`.
    fn tensor<B: Backend>(&self, nnz: &Tensor<B, 1>) -> Tensor<B, 1> {
        let p = &self.points;
        let mut t = nnz.zeros_like().add_scalar(p[0].1);
        for w in p.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if x1 <= x0 {
                continue;
            }
            let slope = (y1 - y0) / (x1 - x0);
            t = t + nnz
                .clone()
                .sub_scalar(x0)
                .clamp(0.0, x1 - x0)
                .mul_scalar(slope);
        }
        t
    }

    /// Mean seconds per kept weight, from empty to full.
    fn mean_slope(&self) -> f64 {
        let (first, last) = (self.points[0], self.points[self.points.len() - 1]);
        ((last.1 - first.1) / (last.0 - first.0).max(1.0)).max(0.0)
    }
}

/// Interleaved trials per latency measurement (medians).
pub const LATENCY_TRIALS: usize = 15;

/// A network's inference latency as a function of its gated layers' nonzeros.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyModel {
    /// Batch size the times are for.
    pub batch: usize,
    /// Seconds with every gated weight pruned.
    pub empty: f64,
    /// Seconds with every gated weight kept (predicted).
    pub dense: f64,
    /// One curve per gated layer, in `GatedNetwork::layer_gates` order.
    pub layers: Vec<LayerCurve>,
}

/// Median seconds of one inference of `bytes` at `batch` with the auto kernels: what
/// `tether-deploy bench` reports as `auto` and `inspect` as latency (the same function).
///
/// # Errors
/// The model does not parse or plan.
pub fn measure_latency(bytes: &[u8], batch: usize, trials: usize) -> anyhow::Result<f64> {
    let aligned = AlignedBytes::from_slice(bytes);
    let model = Model::parse(&aligned).context("timing a model")?;
    tether_deploy::cli::latency(&model, batch, trials)
}

/// The timers in turn within each trial (so load on the machine hits them alike); the
/// median per timer.
fn median_of_trials(timers: &mut [PlanTimer<'_>], trials: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(trials); timers.len()];
    for _ in 0..trials.max(1) {
        for (timer, t) in timers.iter_mut().zip(&mut times) {
            t.push(timer.trial()?);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect())
}

impl LatencyModel {
    /// Times the exported network `tthr` (gated layer `l`: the next weight tensor of
    /// `gated[l]` elements, as [`super::flash::FlashModel::from_export`] matches them) and
    /// each gated layer pruned to the grid's densities; `trials` interleaved trials each.
    ///
    /// # Errors
    /// The export does not parse or plan, or a gated layer has no weight in it.
    pub fn measure(
        tthr: &[u8],
        gated: &[usize],
        batch: usize,
        trials: usize,
    ) -> anyhow::Result<Self> {
        let aligned = AlignedBytes::from_slice(tthr);
        let model = Model::parse(&aligned).context("reading the network's export")?;
        // Every gated weight kept: the exported values, with any zeros made nonzero (a
        // gate closed at initialisation must not make the "dense" point sparse).
        let mut tensors = Vec::with_capacity(gated.len());
        let mut next = 0;
        for (l, &n) in gated.iter().enumerate() {
            let found = model.tensors[next..]
                .iter()
                .position(|t| t.dims.as_slice().len() >= 2 && t.dims.numel() == n)
                .with_context(|| format!("gated layer {l} ({n} weights) is not in the export"))?;
            tensors.push(next + found);
            next += found + 1;
        }
        let full: Vec<Vec<f32>> = tensors
            .iter()
            .map(|&i| {
                model.tensors[i]
                    .to_dense()
                    .into_iter()
                    .enumerate()
                    .map(|(k, v)| {
                        if v == 0.0 {
                            0.01 + (k % 7) as f32 * 1e-3
                        } else {
                            v
                        }
                    })
                    .collect()
            })
            .collect();
        // Gated layer `l` at `density` (kept at random), the other gated layers empty.
        let variant = |layer: Option<(usize, f64)>| -> anyhow::Result<Vec<u8>> {
            Ok(tether_deploy::rebuild(&model, |i| {
                let l = tensors.iter().position(|&t| t == i)?;
                let mut v = full[l].clone();
                let density = match layer {
                    Some((kept, density)) if kept == l => density,
                    _ => 0.0,
                };
                // A fixed pseudo-random pattern at this density (unstructured, as the gates
                // prune).
                let keep = (density * v.len() as f64).round() as usize;
                let mut order: Vec<usize> = (0..v.len()).collect();
                order.sort_by_key(|&k| (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7);
                for &k in &order[keep..] {
                    v[k] = 0.0;
                }
                Some(v)
            })?)
        };
        let mut variants = vec![AlignedBytes::from_slice(&variant(None)?)];
        for l in 0..gated.len() {
            for &d in &GRID {
                variants.push(AlignedBytes::from_slice(&variant(Some((l, d)))?));
            }
        }
        let mut timers = variants
            .iter()
            .map(|v| PlanTimer::new(Model::parse(v)?, batch))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let times = median_of_trials(&mut timers, trials)?;
        let empty = times[0];
        let layers: Vec<LayerCurve> = gated
            .iter()
            .enumerate()
            .map(|(l, &n)| {
                let mut points = vec![(0.0, 0.0)];
                for (k, &d) in GRID.iter().enumerate().rev() {
                    let nnz = (d * n as f64).round();
                    points.push((nnz, times[1 + l * GRID.len() + k] - empty));
                }
                // Non-decreasing in nnz (measurement noise aside, more weights never cost
                // less time than fewer): a running maximum from the empty end.
                let mut high = 0.0f64;
                for p in &mut points {
                    high = high.max(p.1);
                    p.1 = high;
                }
                LayerCurve { points }
            })
            .collect();
        let dense = empty
            + layers
                .iter()
                .map(|c| c.points[c.points.len() - 1].1)
                .sum::<f64>();
        Ok(Self {
            batch,
            empty,
            dense,
            layers,
        })
    }

    /// Predicted seconds with `nnz[l]` nonzeros in gated layer `l`.
    pub fn latency(&self, nnz: &[usize]) -> f64 {
        self.empty
            + self
                .layers
                .iter()
                .zip(nnz)
                .map(|(c, &n)| c.at(n as f64))
                .sum::<f64>()
    }

    /// The fastest the network can run (every gated weight pruned).
    pub fn min_latency(&self) -> f64 {
        self.latency(&vec![0; self.layers.len()])
    }

    /// [`LatencyModel::latency`] as a device tensor `[1]` from counts (each `[1]`).
    pub fn latency_tensor<B: Backend>(&self, nnz: &[Tensor<B, 1>]) -> Tensor<B, 1> {
        self.layers
            .iter()
            .zip(nnz)
            .map(|(c, n)| c.tensor(n))
            .reduce(|a, b| a + b)
            .expect("at least one gated layer")
            .add_scalar(self.empty)
    }

    /// The surrogate from expected counts: the value of [`LatencyModel::latency_tensor`],
    /// the gradient of each layer's mean slope (see the module docs).
    pub fn expected_latency_tensor<B: Backend>(&self, expected: &[Tensor<B, 1>]) -> Tensor<B, 1> {
        let value = self.latency_tensor(expected);
        let slope = self
            .layers
            .iter()
            .zip(expected)
            .map(|(c, e)| e.clone().mul_scalar(c.mean_slope()))
            .reduce(|a, b| a + b)
            .expect("at least one gated layer");
        value.detach() + slope.clone() - slope.detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData as Data;

    #[test]
    fn a_curve_interpolates_and_its_tensor_form_agrees() {
        let c = LayerCurve {
            points: vec![(0.0, -3.0), (10.0, -2.0), (50.0, 0.0), (100.0, 0.0)],
        };
        assert_eq!(c.at(0.0), -3.0);
        assert!((c.at(5.0) + 2.5).abs() < 1e-12);
        assert!((c.at(30.0) + 1.0).abs() < 1e-12);
        assert_eq!(c.at(80.0), 0.0);
        assert_eq!(c.at(500.0), 0.0);
        assert!((c.mean_slope() - 0.03).abs() < 1e-12);
        let device = Default::default();
        for x in [0.0f32, 5.0, 30.0, 80.0, 100.0] {
            let t = Tensor::<Flex, 1>::from_data(Data::from([x]), &device);
            let v: f32 = c.tensor(&t).into_scalar();
            assert!((v as f64 - c.at(x as f64)).abs() < 1e-5, "{x}");
        }
    }

    #[test]
    fn a_measured_mlp_gets_faster_as_its_layers_empty() {
        use tether_deploy::{ModelBuilder, OpSpec};
        let (i, h, o) = (784, 300, 10);
        let mut b = ModelBuilder::new(&[i]);
        let w1 = b.dense(&[h, i], &vec![0.01; h * i]);
        let w2 = b.dense(&[o, h], &vec![0.02; o * h]);
        let x = b.input();
        let x = b.op(
            OpSpec::Linear {
                weight: w1,
                bias: None,
            },
            &[x],
        );
        let x = b.op(OpSpec::Relu, &[x]);
        let x = b.op(
            OpSpec::Linear {
                weight: w2,
                bias: None,
            },
            &[x],
        );
        let bytes = b.finish(x).unwrap();
        let m = LatencyModel::measure(&bytes, &[h * i, o * h], 1, 3).unwrap();
        assert_eq!(m.layers.len(), 2);
        assert!(m.dense > 0.0);
        // The big layer pruned away saves most of the time (a 235k-weight matrix-vector
        // product against a 3k one): a loose bound, the machine is shared.
        let empty_big = m.latency(&[0, o * h]);
        assert!(empty_big < 0.7 * m.dense, "{empty_big} vs {}", m.dense);
        assert_eq!(m.latency(&[h * i, o * h]), m.dense);
        for l in &m.layers {
            assert!(l.points.windows(2).all(|w| w[0].1 <= w[1].1));
        }
    }
}
