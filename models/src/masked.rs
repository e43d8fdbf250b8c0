//! An MLP with fixed binary masks on its weights: the sparse model that magnitude pruning
//! leaves, fine-tuned with its zeros kept zero.
//!
//! The mask multiplies the weight in the forward pass, so a pruned weight gets no gradient
//! and contributes nothing whatever its stored value; [`MaskedMlp::fold`] writes the zeros
//! into the weights for export. Masks are constants of the module (not parameters).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::classifier::Classifier;
use crate::mlp::Mlp;

/// An MLP whose weights are multiplied by fixed 0/1 masks.
#[derive(Module, Debug)]
pub struct MaskedMlp<B: Backend> {
    /// The dense layers (pruned entries keep whatever value they had).
    pub layers: Vec<Linear<B>>,
    /// One mask per layer, shaped like its weight (`[d_in, d_out]`).
    pub masks: Vec<Tensor<B, 2>>,
}

impl<B: Backend> MaskedMlp<B> {
    /// Prunes each hidden layer's weights to `sparsity` (the fraction set to zero) by
    /// magnitude: the `round(sparsity * n)` smallest `|w|` of each weight matrix go (ties
    /// by position), so every pruned layer has exactly the requested density. The output
    /// layer stays dense (as in the Balancing Act reference code: a 2-class head with 90%
    /// of its weights gone loses whole classes' evidence), and so do biases.
    ///
    /// # Panics
    /// When `sparsity` is not in `[0, 1)`.
    pub fn magnitude(mlp: Mlp<B>, sparsity: f64) -> Self {
        let masks = mlp
            .layers
            .iter()
            .map(|l| Tensor::ones(l.weight.dims(), &l.weight.device()))
            .collect();
        Self {
            layers: mlp.layers,
            masks,
        }
        .prune_to(sparsity)
    }

    /// One step of gradual magnitude pruning (Zhu & Gupta, 2017; the route of the
    /// Balancing Act reference code): raises each hidden layer's sparsity to `sparsity` by
    /// removing the smallest `|w|` among the weights still kept. Pruned weights stay
    /// pruned (a lower `sparsity` than a layer already has changes nothing), so a cubic
    /// ramp of calls interleaved with training ends at exactly `sparsity`, like
    /// [`MaskedMlp::magnitude`] in one shot. The output layer stays dense.
    ///
    /// # Panics
    /// When `sparsity` is not in `[0, 1)`.
    pub fn prune_to(mut self, sparsity: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&sparsity),
            "sparsity must lie in [0, 1), got {sparsity}"
        );
        let last = self.layers.len() - 1;
        for (i, (layer, mask)) in self.layers.iter().zip(self.masks.iter_mut()).enumerate() {
            if i == last {
                continue;
            }
            let host = |t: Tensor<B, 2>| -> Vec<f32> {
                t.into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("f32")
            };
            let dims = mask.dims();
            let next = magnitude_mask(&host(layer.weight.val()), &host(mask.clone()), sparsity);
            *mask = Tensor::from_data(TensorData::new(next, dims), &mask.device());
        }
        self
    }

    /// Masks from the zeros already in `mlp`'s weights: a network pruned elsewhere (e.g.
    /// by L0 gates, folded) keeps exactly its sparsity pattern through fine-tuning.
    pub fn from_zeros(mlp: Mlp<B>) -> Self {
        let masks = mlp
            .layers
            .iter()
            .map(|l| l.weight.val().not_equal_elem(0.0).float())
            .collect();
        Self {
            layers: mlp.layers,
            masks,
        }
    }

    /// Logits for a batch `[batch, d_in]`.
    pub fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        for (i, (layer, mask)) in self.layers.iter().zip(&self.masks).enumerate() {
            let w = layer.weight.val() * mask.clone();
            x = x.matmul(w.unsqueeze());
            if let Some(b) = &layer.bias {
                x = x + b.val().unsqueeze();
            }
            if i < last {
                x = burn::tensor::activation::relu(x);
            }
        }
        x
    }

    /// Kept weights over all weights of the pruned (hidden) layers.
    pub fn density(&self) -> f64 {
        kept_fraction(&self.masks[..self.masks.len().saturating_sub(1).max(1)])
    }

    /// Kept weights over all weights, output layer included.
    pub fn total_density(&self) -> f64 {
        kept_fraction(&self.masks)
    }

    /// The plain MLP with the pruned weights set to zero (for export and deployment).
    pub fn fold(&self) -> Mlp<B> {
        let layers = self
            .layers
            .iter()
            .zip(&self.masks)
            .map(|(l, m)| {
                let mut l = l.clone();
                // Detached: the folded weights are new leaves (on an autodiff backend too).
                l.weight = Param::from_tensor((l.weight.val() * m.clone()).detach());
                l
            })
            .collect();
        Mlp::from_layers(layers)
    }
}

/// One layer's next mask in gradual magnitude pruning: of `weights`, with `kept` (0/1) the
/// mask so far, the `round(sparsity * n)` of smallest `|w|` are pruned, those already
/// pruned first (their effective magnitude is zero), ties by position; a lower sparsity
/// than the mask already has prunes nothing more.
pub fn magnitude_mask(weights: &[f32], kept: &[f32], sparsity: f64) -> Vec<f32> {
    let key = |j: usize| {
        if kept[j] == 0.0 {
            0.0
        } else {
            weights[j].abs()
        }
    };
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (kept[a] != 0.0)
            .cmp(&(kept[b] != 0.0))
            .then(key(a).total_cmp(&key(b)))
            .then(a.cmp(&b))
    });
    let already = kept.iter().filter(|&&k| k == 0.0).count();
    let pruned = ((sparsity * weights.len() as f64).round() as usize)
        .max(already)
        .min(weights.len());
    let mut next = vec![1f32; weights.len()];
    for &j in &order[..pruned] {
        next[j] = 0.0;
    }
    next
}

/// Ones over entries, across `masks`.
fn kept_fraction<B: Backend>(masks: &[Tensor<B, 2>]) -> f64 {
    let (kept, total) = masks.iter().fold((0.0, 0usize), |(k, t), m| {
        let s: f32 = m.clone().sum().into_scalar().elem();
        (k + s as f64, t + m.dims().iter().product::<usize>())
    });
    kept / total.max(1) as f64
}

use burn::tensor::ElementConversion;

impl<B: Backend> Classifier<B> for MaskedMlp<B> {
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::MlpConfig;
    use burn::backend::{Autodiff, Flex};

    type B = Flex;

    #[test]
    fn magnitude_pruning_removes_the_smallest_weights_of_each_layer() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![6, 5, 4, 3]).init::<B>(&device);
        let weights: Vec<Vec<f32>> = mlp
            .layers
            .iter()
            .map(|l| l.weight.val().into_data().into_vec().unwrap())
            .collect();
        let masked = MaskedMlp::magnitude(mlp, 0.6);
        // 30 and 20 hidden weights: 18 and 12 pruned; the head's 12 all kept.
        assert!((masked.density() - 20.0 / 50.0).abs() < 1e-9);
        let head: f32 = masked.masks[2].clone().sum().into_scalar().elem();
        assert_eq!(head, 12.0);
        for (w, m) in weights.iter().zip(&masked.masks) {
            let m: Vec<f32> = m.clone().into_data().into_vec().unwrap();
            let kept_min = w
                .iter()
                .zip(&m)
                .filter(|(_, k)| **k == 1.0)
                .map(|(w, _)| w.abs());
            let gone_max = w
                .iter()
                .zip(&m)
                .filter(|(_, k)| **k == 0.0)
                .map(|(w, _)| w.abs());
            assert!(gone_max.fold(0f32, f32::max) <= kept_min.fold(f32::INFINITY, f32::min));
        }
    }

    #[test]
    fn gradual_pruning_keeps_pruned_weights_pruned_and_ends_at_the_target() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![10, 8, 6, 3]).init::<B>(&device);
        // burn initialises parameters lazily, and a clone taken before the first read
        // initialises its own: read them first so both routes prune the same weights.
        for l in &mlp.layers {
            let _ = l.weight.val();
        }
        let one_shot = MaskedMlp::magnitude(mlp.clone(), 0.75);
        let mut gradual = MaskedMlp::magnitude(mlp, 0.3);
        let mut before: Vec<Vec<f32>> = Vec::new();
        for s in [0.5, 0.4, 0.75] {
            before = gradual
                .masks
                .iter()
                .map(|m| m.clone().into_data().into_vec().unwrap())
                .collect();
            gradual = gradual.prune_to(s);
            for (old, new) in before.iter().zip(&gradual.masks) {
                let new: Vec<f32> = new.clone().into_data().into_vec().unwrap();
                // Monotone: nothing pruned comes back.
                assert!(old.iter().zip(&new).all(|(o, n)| *o == 1.0 || *n == 0.0));
            }
        }
        assert!(!before.is_empty());
        // 80 and 48 hidden weights at 75%: 20 + 12 kept, exactly.
        assert!((gradual.density() - 32.0 / 128.0).abs() < 1e-9);
        // The weights did not change between steps, so the ramp ends where one shot does.
        for (a, b) in gradual.masks.iter().zip(&one_shot.masks) {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.clone().into_data().into_vec().unwrap(),
                b.clone().into_data().into_vec().unwrap(),
            );
            assert_eq!(a, b);
        }
    }

    #[test]
    fn masks_from_zeros_keep_a_folded_pattern() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![6, 5, 4, 3]).init::<B>(&device);
        let pruned = MaskedMlp::magnitude(mlp, 0.6);
        let again = MaskedMlp::from_zeros(pruned.fold());
        for (a, b) in pruned.masks.iter().zip(&again.masks) {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.clone().into_data().into_vec().unwrap(),
                b.clone().into_data().into_vec().unwrap(),
            );
            assert_eq!(a, b);
        }
        assert!((again.total_density() - (20.0 + 12.0) / 62.0).abs() < 1e-9);
    }

    #[test]
    fn forward_equals_the_folded_mlp_and_pruned_weights_get_no_gradient() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![4, 8, 3]).init::<Autodiff<B>>(&device);
        let masked = MaskedMlp::magnitude(mlp, 0.5);
        let x = Tensor::<Autodiff<B>, 2>::random(
            [5, 4],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let y = masked.forward(x.clone());
        let folded = masked.fold().forward(x);
        let diff: f32 = (y.clone() - folded).abs().max().into_scalar().elem();
        assert!(diff < 1e-6);
        let grads = y.sum().backward();
        let g: Vec<f32> = masked.layers[0]
            .weight
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        let m: Vec<f32> = masked.masks[0].clone().into_data().into_vec().unwrap();
        assert!(g.iter().zip(&m).all(|(g, m)| *m == 1.0 || *g == 0.0));
        assert!(g.iter().zip(&m).any(|(g, m)| *m == 1.0 && *g != 0.0));
    }
}
