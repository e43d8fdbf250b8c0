//! The budgets of a network pruned by whole units, as functions of how many output units
//! or channels each unit-gated layer keeps: the RAM a microcontroller needs to run it (the
//! deploy plan's activation arena and scratch, every weight read in place from flash;
//! `tether_deploy::cli::device_ram`), and its flash (the bytes of the written file once
//! the closed units are cut out: the per-weight model of [`super::flash`] counts a closed
//! unit's reader columns, which the cut removes, as stored).
//!
//! Unstructured pruning never lowers it: zeros in a weight matrix leave every activation
//! as wide as before. Closed units do, once the writer cuts them out of their layer and
//! the next one (`tether_deploy::compact`), so a RAM budget prunes whole units
//! (`--structure unit`; Louizos et al. 2018's group sparsity).
//!
//! The RAM of a set of widths is measured, not modelled: the network's export is narrowed
//! to those widths and planned as the device would plan it (a few milliseconds, cached per
//! set of widths). The arena is a liveness-packed maximum over the graph, so the RAM is
//! piecewise linear in the widths; the constraint's differentiable surrogate is its
//! linearisation at the current deterministic widths, each layer's slope the RAM one unit
//! of that layer costs there (a finite difference of two measured plans). Only the layers
//! on the arena's peak have a slope, which is what steers the gates to the units that
//! matter for RAM.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::Context;
use burn::tensor::{Tensor, backend::Backend};
use tether_deploy::{AlignedBytes, Model, Op};

/// A unit-gated layer of the export: its tensors and its output units.
#[derive(Clone, Debug)]
struct UnitLayer {
    weight: usize,
    bias: Option<usize>,
    rows: usize,
    /// Gated parameters per unit (`LayerGates::gated` over the units).
    per: f64,
}

/// What a [`WidthModel`] measures on the narrowed, cut network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measured {
    /// The RAM of the plan a microcontroller builds for batches of `batch`.
    DeviceRam {
        /// Samples per inference.
        batch: usize,
    },
    /// The bytes of the `.tthr` file.
    FileBytes,
}

/// The device RAM (or the file size) of one network as a function of its unit-gated
/// layers' widths.
#[derive(Clone, Debug)]
pub struct WidthModel {
    base: Vec<u8>,
    /// Per gated layer (in `GatedNetwork::layer_gates` order): `None` when its gates are
    /// per weight (its width is fixed).
    layers: Vec<Option<UnitLayer>>,
    measured: Measured,
    cache: RefCell<HashMap<Vec<usize>, usize>>,
    /// Bytes with every unit kept.
    pub full: usize,
    /// Bytes with one unit left in every unit-gated layer.
    pub least: usize,
}

impl WidthModel {
    /// Reads the model from one export of the network (`tthr`): its Linear and Conv
    /// layers in order are the gated layers, `gated[l]` parameters each, unit-gated where
    /// `unit[l]`; what it measures, `measured`.
    ///
    /// # Errors
    /// `tthr` does not parse or plan, or its layers are not the gated ones.
    pub fn from_export(
        tthr: &[u8],
        gated: &[usize],
        unit: &[bool],
        measured: Measured,
    ) -> anyhow::Result<Self> {
        let aligned = AlignedBytes::from_slice(tthr);
        let model = Model::parse(&aligned).context("reading the network's export")?;
        let nodes: Vec<(usize, Option<usize>)> = model
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Linear { weight, bias } | Op::Conv2d { weight, bias, .. } => {
                    Some((weight, bias))
                }
                _ => None,
            })
            .collect();
        anyhow::ensure!(
            nodes.len() == gated.len() && unit.len() == gated.len(),
            "the export has {} Linear/Conv layers, the network {} gated ones",
            nodes.len(),
            gated.len()
        );
        let layers = nodes
            .iter()
            .zip(gated.iter().zip(unit))
            .map(|(&(weight, bias), (&n, &u))| {
                let rows = model.tensors[weight].dims.as_slice()[0];
                u.then_some(UnitLayer {
                    weight,
                    bias,
                    rows,
                    per: n as f64 / rows as f64,
                })
            })
            .collect();
        let mut ram = Self {
            base: tthr.to_vec(),
            layers,
            measured,
            cache: RefCell::new(HashMap::new()),
            full: 0,
            least: 0,
        };
        ram.full = ram.measure(&ram.full_widths())?;
        ram.least = ram.min()?;
        Ok(ram)
    }

    /// Every layer's full width (its output units; 0 for a layer gated per weight).
    pub fn full_widths(&self) -> Vec<usize> {
        self.layers
            .iter()
            .map(|l| l.as_ref().map_or(0, |l| l.rows))
            .collect()
    }

    /// True when some layer's width can change (a unit-gated layer).
    pub fn has_units(&self) -> bool {
        self.layers.iter().any(Option::is_some)
    }

    /// The RAM of the network with `widths[l]` units kept in each unit-gated layer
    /// (others ignored), measured on the narrowed export and cached.
    ///
    /// # Errors
    /// The narrowed export does not plan (it did at full width).
    pub fn measure(&self, widths: &[usize]) -> anyhow::Result<usize> {
        let key: Vec<usize> = self
            .layers
            .iter()
            .zip(widths)
            .map(|(l, &w)| l.as_ref().map_or(0, |l| w.clamp(1, l.rows)))
            .collect();
        if let Some(&bytes) = self.cache.borrow().get(&key) {
            return Ok(bytes);
        }
        let aligned = AlignedBytes::from_slice(&self.base);
        let model = Model::parse(&aligned)?;
        // Kept units get a nonzero weight, closed ones zeros: only the shape matters.
        let mut rows_kept: HashMap<usize, (usize, usize)> = HashMap::new();
        for (l, &w) in self.layers.iter().zip(&key) {
            if let Some(l) = l {
                rows_kept.insert(l.weight, (l.rows, w));
                if let Some(b) = l.bias {
                    rows_kept.insert(b, (l.rows, w));
                }
            }
        }
        let narrowed = tether_deploy::rebuild(&model, |t| {
            let &(rows, kept) = rows_kept.get(&t)?;
            let n = model.tensors[t].dims.numel();
            let per = n / rows;
            Some((0..n).map(|i| f32::from(i / per < kept)).collect())
        })?;
        let aligned = AlignedBytes::from_slice(&narrowed);
        let model = Model::parse(&aligned)?;
        let compacted = tether_deploy::compact::remove_dead_channels(&model)?;
        let bytes = match (compacted, self.measured) {
            (Some(c), Measured::DeviceRam { batch }) => {
                let aligned = AlignedBytes::from_slice(&c.bytes);
                tether_deploy::cli::device_ram(&Model::parse(&aligned)?, batch)?
            }
            (None, Measured::DeviceRam { batch }) => tether_deploy::cli::device_ram(&model, batch)?,
            (Some(c), Measured::FileBytes) => c.bytes.len(),
            (None, Measured::FileBytes) => narrowed.len(),
        };
        self.cache.borrow_mut().insert(key, bytes);
        Ok(bytes)
    }

    /// The least RAM the network can run in: one unit left in every unit-gated layer.
    ///
    /// # Errors
    /// As [`WidthModel::measure`].
    pub fn min(&self) -> anyhow::Result<usize> {
        self.measure(&vec![1; self.layers.len()])
    }

    /// Each layer's width from its deterministic gates' active parameter count (`[1]`
    /// per layer): one host read for all layers.
    pub fn widths_of<B: Backend>(&self, active: &[Tensor<B, 1>]) -> Vec<usize> {
        let counts = tether_models::host::read_f64(Tensor::cat(active.to_vec(), 0));
        self.layers
            .iter()
            .zip(counts)
            .map(|(l, a)| l.as_ref().map_or(0, |l| (a / l.per).round() as usize))
            .collect()
    }

    /// Bytes one more unit of each layer costs at `widths` (0 for a layer not on the
    /// arena's peak, or gated per weight).
    ///
    /// # Errors
    /// As [`WidthModel::measure`].
    pub fn slopes(&self, widths: &[usize]) -> anyhow::Result<Vec<f64>> {
        let at = self.measure(widths)?;
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let Some(l) = l else { return Ok(0.0) };
                let mut other = widths.to_vec();
                let w = widths[i].clamp(1, l.rows);
                Ok(if w > 1 {
                    other[i] = w - 1;
                    at as f64 - self.measure(&other)? as f64
                } else if l.rows > 1 {
                    other[i] = w + 1;
                    self.measure(&other)? as f64 - at as f64
                } else {
                    0.0
                })
            })
            .collect()
    }

    /// The differentiable surrogate `[1]`: the RAM at `widths` plus each layer's slope
    /// times its expected width's distance from `widths[l]` (`expected[l]`: the expected
    /// count of active gated parameters, as `LayerGates::expected`). Its value at the
    /// deterministic widths is the measured RAM.
    ///
    /// # Errors
    /// As [`WidthModel::measure`].
    pub fn expected_tensor<B: Backend>(
        &self,
        expected: &[Tensor<B, 1>],
        widths: &[usize],
    ) -> anyhow::Result<Tensor<B, 1>> {
        let at = self.measure(widths)? as f64;
        let slopes = self.slopes(widths)?;
        let mut total = expected[0].zeros_like().add_scalar(at);
        for ((l, e), (&s, &w)) in self
            .layers
            .iter()
            .zip(expected)
            .zip(slopes.iter().zip(widths))
        {
            if let Some(l) = l
                && s != 0.0
            {
                total = total
                    + e.clone()
                        .div_scalar(l.per)
                        .sub_scalar(w as f64)
                        .mul_scalar(s);
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData as Data;
    use tether_deploy::{ModelBuilder, OpSpec};

    /// An MLP `dims[0] -> ... -> dims[last]` with ReLUs, dense weights.
    fn mlp(dims: &[usize]) -> Vec<u8> {
        let mut b = ModelBuilder::new(&dims[..1]);
        let mut x = b.input();
        for (l, w) in dims.windows(2).enumerate() {
            let weight = b.dense(&[w[1], w[0]], &vec![0.5; w[0] * w[1]]);
            let bias = b.dense(&[w[1]], &vec![0.1; w[1]]);
            x = b.op(
                OpSpec::Linear {
                    weight,
                    bias: Some(bias),
                },
                &[x],
            );
            if l + 2 < dims.len() {
                x = b.op(OpSpec::Relu, &[x]);
            }
        }
        b.finish(x).unwrap()
    }

    fn measuring(dims: &[usize], measured: Measured) -> WidthModel {
        let tthr = mlp(dims);
        let gated: Vec<usize> = dims.windows(2).map(|w| w[0] * w[1] + w[1]).collect();
        let unit: Vec<bool> = (0..gated.len()).map(|l| l + 1 < gated.len()).collect();
        WidthModel::from_export(&tthr, &gated, &unit, measured).unwrap()
    }

    fn model(dims: &[usize]) -> WidthModel {
        measuring(dims, Measured::DeviceRam { batch: 1 })
    }

    /// The file of narrowed widths is, byte for byte, the same network built that narrow
    /// (the closed units' rows, biases and reader columns gone).
    #[test]
    fn the_file_of_a_set_of_widths_is_the_network_built_that_narrow() {
        let dims = [40, 30, 20, 5];
        let flash = measuring(&dims, Measured::FileBytes);
        assert_eq!(flash.full, mlp(&dims).len());
        for (h1, h2) in [(30, 20), (10, 20), (3, 17), (1, 1), (25, 3)] {
            let built = mlp(&[dims[0], h1, h2, 5]).len();
            assert_eq!(flash.measure(&[h1, h2, 0]).unwrap(), built, "{h1} {h2}");
        }
        assert_eq!(flash.least, mlp(&[40, 1, 1, 5]).len());
        let slopes = flash.slopes(&[30, 20, 0]).unwrap();
        assert!(slopes[0] > 0.0 && slopes[1] > 0.0, "{slopes:?}");
    }

    fn planned(tthr: &[u8]) -> usize {
        let aligned = AlignedBytes::from_slice(tthr);
        tether_deploy::cli::device_ram(&Model::parse(&aligned).unwrap(), 1).unwrap()
    }

    /// The RAM of narrowed widths is that of the same network built that narrow, planned
    /// as a microcontroller plans it; fewer units never take more; the slopes are the
    /// cost of one unit where it changes the peak.
    #[test]
    fn the_ram_of_a_set_of_widths_is_that_of_the_network_built_that_narrow() {
        for dims in [[40, 30, 20, 5], [8, 30, 20, 5]] {
            let ram = model(&dims);
            assert_eq!(ram.full, planned(&mlp(&dims)));
            for (h1, h2) in [(30, 20), (10, 20), (3, 17), (1, 1), (25, 3)] {
                let built = planned(&mlp(&[dims[0], h1, h2, 5]));
                assert_eq!(
                    ram.measure(&[h1, h2, 0]).unwrap(),
                    built,
                    "{dims:?} {h1} {h2}"
                );
                assert!(built <= ram.full);
            }
            assert_eq!(ram.min().unwrap(), planned(&mlp(&[dims[0], 1, 1, 5])));
            let slopes = ram.slopes(&[30, 20, 0]).unwrap();
            assert!(slopes.iter().all(|&s| s >= 0.0), "{slopes:?}");
            assert!(
                slopes[0] > 0.0,
                "the first hidden layer is on the peak: {slopes:?}"
            );
            assert_eq!(slopes[2], 0.0, "the last layer is gated per weight");
        }
        // The 40-wide input sits on the peak with the first hidden layer, so shrinking
        // the second does not lower it.
        assert_eq!(
            model(&[40, 30, 20, 5]).slopes(&[30, 20, 0]).unwrap()[1],
            0.0
        );
    }

    /// The surrogate equals the measured RAM at the deterministic widths, and its gradient
    /// in a layer's expected count is the layer's slope over its parameters per unit.
    #[test]
    fn the_surrogate_is_the_measured_ram_with_the_slopes_as_gradient() {
        type B = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let ram = model(&[8, 30, 20, 5]);
        let per = [9.0, 31.0];
        let widths = [30, 20, 0];
        let expected: Vec<Tensor<B, 1>> = [30.0 * per[0], 20.0 * per[1], 100.0]
            .iter()
            .map(|&v| Tensor::from_data(Data::from([v as f32]), &device).require_grad())
            .collect();
        let s = ram.expected_tensor(&expected, &widths).unwrap();
        assert_eq!(
            s.clone().into_scalar(),
            ram.measure(&widths).unwrap() as f32
        );
        let slopes = ram.slopes(&widths).unwrap();
        let grads = s.backward();
        for (l, p) in per.iter().enumerate() {
            let g = expected[l].grad(&grads).map_or(0.0, |g| g.into_scalar());
            let want = (slopes[l] / p) as f32;
            assert!((g - want).abs() < 1e-6, "layer {l}: {g} vs {want}");
        }
        assert!(
            expected[2]
                .grad(&grads)
                .is_none_or(|g| g.into_scalar() == 0.0)
        );
        // Host widths from the active counts.
        let active: Vec<Tensor<Flex, 1>> = [12.0 * per[0], 7.0 * per[1], 150.0]
            .iter()
            .map(|&v| Tensor::from_data(Data::from([v as f32]), &device))
            .collect();
        assert_eq!(ram.widths_of(&active), vec![12, 7, 0]);
    }
}
