//! Fixed 0/1 masks on a [`GraphNet`]'s Linear and Conv weights: the sparse network that
//! magnitude pruning leaves, fine-tuned with its zeros kept zero (the fair-pruning job's
//! route, Hashemizadeh et al., ICLR 2024: prune by magnitude, then fine-tune under the
//! group constraints), for any imported graph as for the built-in MLP.
//!
//! As in [`crate::masked::MaskedMlp`], every layer but the last (the output layer, in
//! graph order) is pruned to exactly the requested sparsity by `|w|`, the output layer
//! stays dense, and biases are never pruned. The mask multiplies the weight in the
//! forward pass, so a pruned weight gets no gradient; [`GraphNet::to_deploy`] folds it
//! in, so the written model holds exact zeros.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::graph::{GraphError, GraphLayer, GraphNet};
use crate::masked::magnitude_mask;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data converts to f32")
}

/// A layer's weight, flattened row-major.
fn weight<B: Backend>(l: &GraphLayer<B>) -> Tensor<B, 1> {
    match (&l.linear, &l.conv) {
        (Some(w), _) => {
            let [o, i] = w.dims();
            w.val().reshape([o * i])
        }
        (_, Some(w)) => {
            let d = w.dims();
            w.val().reshape([d.iter().product::<usize>()])
        }
        _ => unreachable!("a graph layer has a weight"),
    }
}

fn numel<B: Backend>(l: &GraphLayer<B>) -> usize {
    weight(l).dims()[0]
}

impl<B: Backend> GraphNet<B> {
    /// One step of magnitude pruning: raises each layer's sparsity but the last's to
    /// `sparsity` (the fraction of its weights set to zero) by removing the smallest `|w|`
    /// among the weights still kept (one call from a dense net: one-shot magnitude
    /// pruning; a rising series of calls: Zhu & Gupta's gradual pruning). Pruned weights
    /// stay pruned; the output layer stays dense.
    ///
    /// # Panics
    /// When `sparsity` is not in `[0, 1)`.
    pub fn prune_magnitude(mut self, sparsity: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&sparsity),
            "sparsity must lie in [0, 1), got {sparsity}"
        );
        let last = self.layers.len().saturating_sub(1);
        for l in &mut self.layers[..last] {
            let w = weight(l);
            let device = w.device();
            let n = w.dims()[0];
            let kept = l.mask.clone().map_or_else(|| vec![1.0; n], host);
            let next = magnitude_mask(&host(w), &kept, sparsity);
            l.mask = Some(Tensor::from_data(TensorData::new(next, [n]), &device));
        }
        self
    }

    /// Masks every layer at the zeros already in its weights: a network pruned elsewhere
    /// (e.g. by L0 gates, folded) keeps exactly its sparsity pattern through fine-tuning.
    pub fn mask_zeros(mut self) -> Self {
        for l in &mut self.layers {
            l.mask = Some(weight(l).not_equal_elem(0.0).float());
        }
        self
    }

    /// Kept weights over all weights of the pruned layers (every layer but the last; the
    /// only layer of a one-layer net); 1 without masks.
    pub fn masked_density(&self) -> f64 {
        let pruned = self.layers.len().saturating_sub(1).max(1);
        kept_fraction(&self.layers[..pruned.min(self.layers.len())])
    }

    /// Kept weights over all weights, the output layer included.
    pub fn masked_total_density(&self) -> f64 {
        kept_fraction(&self.layers)
    }

    /// Every layer's mask, concatenated in layer order (ones for a layer without one):
    /// what a checkpoint stores, [`GraphNet::with_mask_values`] reads back.
    pub fn mask_values(&self) -> Vec<f32> {
        self.layers
            .iter()
            .flat_map(|l| l.mask.clone().map_or_else(|| vec![1.0; numel(l)], host))
            .collect()
    }

    /// Sets every layer's mask from [`GraphNet::mask_values`]' layout.
    ///
    /// # Errors
    /// `values` is not one value per weight of the net, or holds a value other than 0 or 1.
    pub fn with_mask_values(mut self, values: &[f32]) -> Result<Self, GraphError> {
        let total: usize = self.layers.iter().map(numel).sum();
        if values.len() != total {
            return Err(GraphError(format!(
                "{} mask values for a network of {total} weights",
                values.len()
            )));
        }
        if let Some(v) = values.iter().find(|&&v| v != 0.0 && v != 1.0) {
            return Err(GraphError(format!("a mask value {v} (masks are 0 or 1)")));
        }
        let mut at = 0;
        for l in &mut self.layers {
            let n = numel(l);
            let device = weight(l).device();
            l.mask = Some(Tensor::from_data(
                TensorData::new(values[at..at + n].to_vec(), [n]),
                &device,
            ));
            at += n;
        }
        Ok(self)
    }
}

/// Ones over weights across `layers` (a layer without a mask counts as all kept).
fn kept_fraction<B: Backend>(layers: &[GraphLayer<B>]) -> f64 {
    let (kept, total) = layers.iter().fold((0.0, 0usize), |(k, t), l| {
        let n = numel(l);
        let kept = l.mask.clone().map_or(n as f64, |m| {
            host(m.sum()).first().copied().unwrap_or(0.0) as f64
        });
        (k + kept, t + n)
    });
    kept / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, ElementConversion};

    use super::*;
    use crate::graph::GraphNetConfig;
    use crate::l0::{GateMode, HardConcreteConfig};
    use crate::masked::MaskedMlp;
    use crate::mlp::{Mlp, MlpConfig};
    use crate::to_deploy::{Storage, mlp_to_deploy};

    type B = Flex;

    fn graph_of<B: Backend>(mlp: &Mlp<B>, device: &B::Device) -> GraphNet<B> {
        let bytes = mlp_to_deploy(mlp, Storage::Dense).expect("export");
        let config = GraphNetConfig {
            structure: None,
            gates: HardConcreteConfig::new(),
        };
        GraphNet::from_model_bytes(&bytes, &config, device).expect("a trainable graph")
    }

    #[test]
    fn magnitude_masks_match_the_masked_mlp_layer_by_layer() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![6, 5, 4, 3]).init::<B>(&device);
        let graph = graph_of(&mlp, &device).prune_magnitude(0.6);
        let masked = MaskedMlp::magnitude(mlp, 0.6);
        // 30 and 20 hidden weights: 18 and 12 pruned; the head's 12 all kept.
        assert!((graph.masked_density() - 20.0 / 50.0).abs() < 1e-9);
        assert!((graph.masked_total_density() - 32.0 / 62.0).abs() < 1e-9);
        let x = Tensor::<B, 2>::random([7, 6], Distribution::Normal(0.0, 1.0), &device);
        let a = host(graph.forward(x.clone(), GateMode::Deterministic));
        let b = host(masked.forward(x));
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // MaskedMlp's masks are [in, out], the graph's [out, in].
        let mut theirs = Vec::new();
        for m in &masked.masks {
            theirs.extend(host(
                m.clone().transpose().reshape([m.dims()[0] * m.dims()[1]]),
            ));
        }
        assert_eq!(graph.mask_values(), theirs);
    }

    #[test]
    fn gradual_steps_only_add_zeros_and_the_file_holds_them() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![8, 16, 3]).init::<B>(&device);
        let g = graph_of(&mlp, &device).prune_magnitude(0.25);
        let first = g.mask_values();
        let g = g.prune_magnitude(0.5).prune_magnitude(0.1);
        let second = g.mask_values();
        assert!(first.iter().zip(&second).all(|(a, b)| b <= a));
        assert_eq!(second[..128].iter().filter(|&&v| v == 0.0).count(), 64);
        // The written model's first weight has exactly the mask's zeros.
        let folded = &g.folded_layers()[0];
        let zeros = folded.weight.iter().filter(|&&w| w == 0.0).count();
        assert_eq!(zeros, 64);
        let bytes = g.to_deploy().expect("written");
        let again = graph_of_bytes::<B>(&bytes, &device);
        assert_eq!(again.mask_zeros().mask_values(), second);
    }

    fn graph_of_bytes<B: Backend>(bytes: &[u8], device: &B::Device) -> GraphNet<B> {
        let config = GraphNetConfig {
            structure: None,
            gates: HardConcreteConfig::new(),
        };
        GraphNet::from_model_bytes(bytes, &config, device).expect("a trainable graph")
    }

    #[test]
    fn masked_weights_get_no_gradient_and_values_round_trip() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let mlp = MlpConfig::new(vec![5, 4, 2]).init::<A>(&device);
        let g = graph_of(&mlp, &device).prune_magnitude(0.5);
        let x = Tensor::<A, 2>::random([3, 5], Distribution::Normal(0.0, 1.0), &device);
        let grads = g.forward(x, GateMode::Deterministic).sum().backward();
        let w = g.layers[0].linear.as_ref().expect("linear");
        let grad = host(w.grad(&grads).expect("a gradient").reshape([20]));
        let mask = g.mask_values();
        for (gr, m) in grad.iter().zip(&mask[..20]) {
            if *m == 0.0 {
                assert_eq!(*gr, 0.0);
            }
        }
        assert!(grad.iter().any(|&v| v != 0.0));
        let values = g.mask_values();
        let back = graph_of(&mlp, &device)
            .with_mask_values(&values)
            .expect("same layout");
        assert_eq!(back.mask_values(), values);
        assert!(
            graph_of(&mlp, &device)
                .with_mask_values(&values[1..])
                .is_err()
        );
        let mut bad = values.clone();
        bad[0] = 0.5;
        let err = graph_of(&mlp, &device).with_mask_values(&bad).unwrap_err();
        assert!(err.0.contains("0 or 1"), "{err}");
        let s: f32 = back.layers[1]
            .mask
            .clone()
            .expect("mask")
            .sum()
            .into_scalar()
            .elem();
        assert_eq!(s, 8.0, "the output layer stays dense");
    }
}
