//! A dense warm-up before the L0 gates act, and the gate locations it hands over to.
//!
//! Why: within a short budget (10 epochs) the magnitude baselines train the dense network
//! for 5-7 epochs before they cut (one-shot global magnitude after half the epochs; Zhu &
//! Gupta's ramp over three quarters), while hard-concrete gates (Louizos et al. 2018)
//! inject DropConnect-like noise into every weight from the first step and the support
//! shrinks before the weights have learnt anything. The warm-up trains the same network
//! with every gate open and held (deterministic, no gradient, no constraint), then starts
//! the constrained problem of [`super::prune`] from gate locations drawn as at
//! initialisation, `log_alpha ~ N(log((1-p)/p), sigma^2)` in distribution, but assigned in
//! the order of the warmed-up weights' magnitudes ([`GateInit::Magnitude`]): the weights
//! global magnitude pruning would keep start with the most open gates, so the multiplier
//! closes the small ones first. [`GateInit::Random`] assigns the same values in a random
//! order (the ablation: the warm-up without the magnitudes' order).
//!
//! Both operate on any gated network through burn's module visitor and mapper: a gate
//! vector is paired with the weight visited just before it (a gated layer's weight is
//! declared before its gates), its gates being contiguous groups of that weight
//! (per weight, 1x4 blocks of an input row, or whole output units).

use std::collections::HashSet;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

/// A gate location that opens the test-time gate fully: `sigmoid(la) (zeta - gamma) +
/// gamma >= 1` needs `la >= ln(11) = 2.40` with the paper's stretch (-0.1, 1.1); 6 leaves
/// a sampled gate closed with probability about 1e-4.
pub const OPEN_LOCATION: f64 = 6.0;

/// How the gate locations are set where the gates start to act (after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GateInit {
    /// The initial distribution's quantiles assigned in the order of the weights'
    /// magnitude (a group's L2 norm), globally over the gated layers.
    #[default]
    Magnitude,
    /// The same quantiles in a random (seeded) order.
    Random,
}

/// Every gate location of `model` (the parameters `gate_ids`) set to [`OPEN_LOCATION`]:
/// the deterministic gates are all 1, the network computes as dense.
pub fn open_gates<B: Backend, M: Module<B>>(model: M, gate_ids: &[ParamId]) -> M {
    let values: Vec<Vec<f32>> = gates_and_weights(&model, gate_ids)
        .iter()
        .map(|g| vec![OPEN_LOCATION as f32; g.gates])
        .collect();
    set_locations(model, gate_ids, values)
}

/// The gate locations of `model` set to the quantiles of `N(mean, sd^2)` (a logistic of
/// the same mean and standard deviation, whose quantile function has a closed form),
/// assigned in `order` over all gates of all layers: the smallest location to the
/// smallest weight group ([`GateInit::Magnitude`]) or at random (seeded by `seed`).
///
/// # Errors
/// A gate vector whose weight is not a whole number of its groups (not a gated layer).
pub fn ranked_gates<B: Backend, M: Module<B>>(
    model: M,
    gate_ids: &[ParamId],
    mean: f64,
    sd: f64,
    order: GateInit,
    seed: u64,
) -> anyhow::Result<M> {
    let layers = gates_and_weights(&model, gate_ids);
    let mut scores: Vec<(f32, usize, usize)> = Vec::new();
    for (l, g) in layers.iter().enumerate() {
        anyhow::ensure!(
            g.gates > 0 && !g.weight.is_empty() && g.weight.len() % g.gates == 0,
            "gate vector {l} ({} gates) does not divide the weight before it ({} values)",
            g.gates,
            g.weight.len()
        );
        let group = g.weight.len() / g.gates;
        for (k, w) in g.weight.chunks(group).enumerate() {
            let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
            scores.push((norm, l, k));
        }
    }
    let n = scores.len();
    let ranked: Vec<usize> = match order {
        GateInit::Magnitude => {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| scores[a].0.total_cmp(&scores[b].0));
            idx
        }
        GateInit::Random => crate::data::batches::shuffled_order(n, seed, u64::MAX - 1),
    };
    let mut values: Vec<Vec<f32>> = layers.iter().map(|g| vec![0.0; g.gates]).collect();
    for (rank, &i) in ranked.iter().enumerate() {
        let (_, l, k) = scores[i];
        values[l][k] = quantile(mean, sd, (rank as f64 + 0.5) / n as f64) as f32;
    }
    Ok(set_locations(model, gate_ids, values))
}

/// The `q` quantile of the logistic distribution with mean `mean` and standard deviation
/// `sd` (scale `sd sqrt(3) / pi`).
fn quantile(mean: f64, sd: f64, q: f64) -> f64 {
    mean + sd * 3f64.sqrt() / std::f64::consts::PI * (q / (1.0 - q)).ln()
}

/// One gate vector and the weight it gates (flattened, row-major).
struct Gated {
    gates: usize,
    weight: Vec<f32>,
}

/// Each gate vector of `gate_ids`, in visiting order, with the weight (rank >= 2) visited
/// last before it.
fn gates_and_weights<B: Backend, M: Module<B>>(model: &M, gate_ids: &[ParamId]) -> Vec<Gated> {
    struct Collect {
        ids: HashSet<ParamId>,
        last_weight: Vec<f32>,
        out: Vec<Gated>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.ids.contains(&param.id) {
                self.out.push(Gated {
                    gates: param.shape().num_elements(),
                    weight: std::mem::take(&mut self.last_weight),
                });
            } else if D >= 2 {
                self.last_weight = to_vec(param.val());
            }
        }
    }
    let mut visitor = Collect {
        ids: gate_ids.iter().copied().collect(),
        last_weight: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// `model` with the gate vectors of `gate_ids`, in visiting order, replaced by `values`
/// (same ids, trainable as before).
fn set_locations<B: Backend, M: Module<B>>(
    model: M,
    gate_ids: &[ParamId],
    values: Vec<Vec<f32>>,
) -> M {
    struct Set {
        ids: HashSet<ParamId>,
        values: std::vec::IntoIter<Vec<f32>>,
    }
    impl<B: Backend> ModuleMapper<B> for Set {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if !self.ids.contains(&param.id) {
                return param;
            }
            let v = self
                .values
                .next()
                .expect("one value vector per gate vector");
            let (id, tensor, mapper) = param.consume();
            let require_grad = tensor.is_require_grad();
            let device = tensor.device();
            let new = Tensor::<B, D>::from_data(TensorData::new(v, tensor.shape()), &device)
                .set_require_grad(require_grad);
            Param::from_mapped_value(id, new, mapper)
        }
    }
    model.map(&mut Set {
        ids: gate_ids.iter().copied().collect(),
        values: values.into_iter(),
    })
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data converts to f32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use tether_models::gated::GatedNetwork;
    use tether_models::graph::{GraphNet, GraphNetConfig};
    use tether_models::l0::{GateMode, GateStructure, HardConcreteConfig};
    use tether_models::mlp::MlpConfig;
    use tether_models::to_deploy::{Storage, mlp_to_deploy};

    type B = Autodiff<Flex>;

    /// An 8-6-3 MLP as the prune job builds it: a [`GraphNet`], weights `[out, in]`.
    fn net(structure: GateStructure) -> GraphNet<B> {
        let device = Default::default();
        let bytes = mlp_to_deploy(
            &MlpConfig::new(vec![8, 6, 3]).init::<B>(&device),
            Storage::Dense,
        )
        .unwrap();
        let config = GraphNetConfig {
            structure: Some(structure),
            gates: HardConcreteConfig::new().with_init_spread(2.0),
        };
        GraphNet::from_model_bytes(&bytes, &config, &device).unwrap()
    }

    /// Every gate location, layer after layer.
    fn locations(m: &GraphNet<B>) -> Vec<f32> {
        m.layers
            .iter()
            .filter_map(|l| l.gates.as_ref())
            .flat_map(|g| to_vec(g.log_alpha.val()))
            .collect()
    }

    #[test]
    fn open_gates_make_every_deterministic_gate_one_and_keep_them_trainable() {
        let m = net(GateStructure::Weight);
        let ids = m.gate_ids();
        let (_, active) = crate::tasks::prune::global_density(&m);
        assert!(active.into_scalar() < 1.0, "the random start closes some");
        let m = open_gates(m, &ids);
        assert_eq!(m.gate_ids(), ids, "the ids survive");
        let (_, active) = crate::tasks::prune::global_density(&m);
        assert_eq!(active.into_scalar(), 1.0);
        // The locations still get a gradient through sampled gates.
        let x = Tensor::<B, 2>::ones([2, 8], &Default::default());
        let grads = m.forward_gated(x, GateMode::Sample).sum().backward();
        let gates = m.layers[0].gates.as_ref().unwrap();
        assert!(gates.log_alpha.grad(&grads).is_some(), "no gradient");
    }

    #[test]
    fn magnitude_order_gives_the_largest_weights_the_most_open_gates() {
        let m = net(GateStructure::Weight);
        let ids = m.gate_ids();
        let weights: Vec<f32> = gates_and_weights(&m, &ids)
            .into_iter()
            .flat_map(|g| g.weight)
            .collect();
        let m = ranked_gates(m, &ids, 0.0, 2.0, GateInit::Magnitude, 0).unwrap();
        let la = locations(&m);
        assert_eq!(la.len(), weights.len());
        for i in 0..la.len() {
            for j in 0..la.len() {
                if weights[i].abs() < weights[j].abs() {
                    assert!(
                        la[i] < la[j],
                        "|w| {} < {}, la {} >= {}",
                        weights[i],
                        weights[j],
                        la[i],
                        la[j]
                    );
                }
            }
        }
        // The values are the distribution's quantiles: mean 0, sd close to 2.
        let n = la.len() as f64;
        let mean = la.iter().map(|&x| x as f64).sum::<f64>() / n;
        let sd = (la.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 1e-5, "mean {mean}");
        assert!((sd - 2.0).abs() < 0.3, "sd {sd}");
    }

    #[test]
    fn random_order_uses_the_same_values_in_another_order() {
        let m = net(GateStructure::Weight);
        let ids = m.gate_ids();
        let by_magnitude = ranked_gates(m.clone(), &ids, 0.0, 2.0, GateInit::Magnitude, 0);
        let random = ranked_gates(m, &ids, 0.0, 2.0, GateInit::Random, 3);
        let (by_magnitude, random) = (
            locations(&by_magnitude.unwrap()),
            locations(&random.unwrap()),
        );
        assert_ne!(by_magnitude, random);
        let sorted = |mut v: Vec<f32>| {
            v.sort_by(f32::total_cmp);
            v
        };
        assert_eq!(sorted(by_magnitude), sorted(random));
    }

    #[test]
    fn unit_gates_rank_whole_rows_by_their_norm() {
        let m = net(GateStructure::OutputUnit);
        let ids = m.gate_ids();
        let layers = gates_and_weights(&m, &ids);
        assert_eq!(layers[0].gates, 6, "one gate per hidden unit");
        let norms: Vec<f32> = layers[0]
            .weight
            .chunks(8)
            .map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt())
            .collect();
        let m = ranked_gates(m, &ids, 0.0, 2.0, GateInit::Magnitude, 0).unwrap();
        let la = locations(&m);
        for i in 0..6 {
            for j in 0..6 {
                if norms[i] < norms[j] {
                    assert!(la[i] < la[j]);
                }
            }
        }
    }
}
