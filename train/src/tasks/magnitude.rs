//! The magnitude-pruning baselines users already know, run through the same loop as the
//! constrained method so that a comparison holds everything else equal:
//!
//! - **one-shot global magnitude**: train dense, keep the `k` weights of largest `|w|`
//!   over the whole network (Han et al., 2015, with a global threshold), fine-tune with
//!   the rest held at zero;
//! - **gradual magnitude pruning** (Zhu & Gupta, "To prune, or not to prune", 2017, eq. 1):
//!   the sparsity rises on a cubic ramp `s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n Δt))^3`
//!   every `Δt` steps from `t_0`, each time removing the smallest of the weights still
//!   kept, then the network is fine-tuned at the final sparsity.
//!
//! The pruned weights are every weight matrix and convolution kernel (the float
//! parameters of rank 2 or more): the same set the hard-concrete gates cover. A mask
//! multiplies its weight in the forward pass ([`MaskedProblem`]), so a pruned weight gets
//! no gradient; the masks live on the device and are recomputed on the host only at the
//! schedule's steps.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use tether_models::classifier::Classifier;

use crate::constrained::{CmpState, ConstrainedProblem};
use crate::data::batches::Batch;
use crate::tasks::metrics::cross_entropy;

/// One prunable weight: its parameter and size, in the module's visiting order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prunable {
    /// The parameter.
    pub id: ParamId,
    /// Its elements.
    pub numel: usize,
}

/// The weights of `model` that magnitude pruning acts on (float parameters of rank >= 2),
/// in visiting order.
pub fn prunable<B: Backend, M: Module<B>>(model: &M) -> Vec<Prunable> {
    struct Find(Vec<Prunable>);
    impl<B: Backend> ModuleVisitor<B> for Find {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if D >= 2 {
                self.0.push(Prunable {
                    id: param.id,
                    numel: param.shape().num_elements(),
                });
            }
        }
    }
    let mut find = Find(Vec::new());
    model.visit(&mut find);
    find.0
}

/// The `|w|` of every prunable weight, flattened, in [`prunable`]'s order.
fn magnitudes<B: Backend, M: Module<B>>(model: &M) -> HashMap<ParamId, Vec<f32>> {
    struct Read(HashMap<ParamId, Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for Read {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if D >= 2 {
                let v: Vec<f32> = param
                    .val()
                    .abs()
                    .into_data()
                    .convert::<f32>()
                    .into_vec()
                    .expect("f32 data");
                self.0.insert(param.id, v);
            }
        }
    }
    let mut read = Read(HashMap::new());
    model.visit(&mut read);
    read.0
}

/// 0/1 masks over the prunable weights, on the device of backend `B` (flattened; each is
/// reshaped to its weight when applied).
#[derive(Clone, Debug)]
pub struct Masks<B: Backend> {
    layers: Vec<Prunable>,
    /// Host copy (what the next pruning step starts from).
    host: Vec<Vec<bool>>,
    /// Kept weights per layer (counted once per pruning step, read every step).
    kept: Vec<usize>,
    device: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> Masks<B> {
    /// Every weight kept.
    pub fn full(layers: Vec<Prunable>, device: &B::Device) -> Self {
        let host: Vec<Vec<bool>> = layers.iter().map(|l| vec![true; l.numel]).collect();
        let mut m = Self {
            layers,
            host,
            kept: Vec::new(),
            device: HashMap::new(),
        };
        m.upload(device);
        m
    }

    fn upload(&mut self, device: &B::Device) {
        self.kept = self
            .host
            .iter()
            .map(|h| h.iter().filter(|&&k| k).count())
            .collect();
        self.device = self
            .layers
            .iter()
            .zip(&self.host)
            .map(|(l, h)| {
                let v: Vec<f32> = h.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
                (
                    l.id,
                    Tensor::from_data(TensorData::new(v, [l.numel]), device),
                )
            })
            .collect()
    }

    /// Kept weights per layer.
    pub fn kept(&self) -> Vec<usize> {
        self.kept.clone()
    }

    /// The prunable weights, in order.
    pub fn layers(&self) -> &[Prunable] {
        &self.layers
    }

    /// Fraction of the prunable weights kept.
    pub fn density(&self) -> f64 {
        let total: usize = self.layers.iter().map(|l| l.numel).sum();
        self.kept.iter().sum::<usize>() as f64 / total.max(1) as f64
    }

    /// Keeps the `keep` weights of largest `|w|` of `model` among those kept now (ties: the
    /// earlier weight), so pruned weights stay pruned and `keep` above the current count
    /// changes nothing. `choose(per_layer_counts_of(k))` may lower `keep` further: it gets
    /// a function that gives each layer's kept count for a candidate total (the flash
    /// budget searches it).
    pub fn prune_to<M: Module<B>>(&mut self, model: &M, keep: usize, device: &B::Device) {
        let mags = magnitudes(model);
        let order = self.ranked(&mags);
        let keep = keep.min(order.len());
        for h in &mut self.host {
            h.fill(false);
        }
        for &(l, i) in &order[..keep] {
            self.host[l][i] = true;
        }
        self.upload(device);
    }

    /// The kept weights of `model` ranked by `|w|`, largest first (ties by layer, then
    /// position), as (layer, index).
    fn ranked(&self, mags: &HashMap<ParamId, Vec<f32>>) -> Vec<(usize, usize)> {
        let mut order: Vec<(f32, usize, usize)> = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let m = &mags[&layer.id];
            for (i, (&w, &k)) in m.iter().zip(&self.host[l]).enumerate() {
                if k {
                    order.push((w, l, i));
                }
            }
        }
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        order.into_iter().map(|(_, l, i)| (l, i)).collect()
    }

    /// Per layer, how many weights global magnitude pruning of `model` to each total `k`
    /// would keep: a function of `k`, for searching the largest `k` that fits a budget.
    pub fn counts_for<M: Module<B>>(&self, model: &M) -> impl Fn(usize) -> Vec<usize> + use<B, M> {
        let order = self.ranked(&magnitudes(model));
        let layers = self.layers.len();
        move |k| {
            let mut counts = vec![0; layers];
            for &(l, _) in &order[..k.min(order.len())] {
                counts[l] += 1;
            }
            counts
        }
    }

    /// `model` with each prunable weight multiplied by its mask (for autodiff backends the
    /// product is differentiable in the weight: a pruned weight's gradient is 0).
    pub fn apply<M: Module<B>>(&self, model: M) -> M {
        model.map(&mut Apply {
            masks: &self.device,
        })
    }

    /// The masks as text (a checkpoint's): per layer, the kept bits packed 8 to a byte,
    /// least significant first, in hexadecimal.
    pub fn to_hex(&self) -> Vec<String> {
        self.host
            .iter()
            .map(|h| {
                h.chunks(8)
                    .map(|c| {
                        let byte = c
                            .iter()
                            .enumerate()
                            .fold(0u8, |b, (i, &k)| b | (u8::from(k) << i));
                        format!("{byte:02x}")
                    })
                    .collect()
            })
            .collect()
    }

    /// Replaces the masks with [`Masks::to_hex`]'s text.
    ///
    /// # Errors
    /// Text of other layers, lengths or characters.
    pub fn load_hex(&mut self, hex: &[String], device: &B::Device) -> anyhow::Result<()> {
        anyhow::ensure!(
            hex.len() == self.layers.len(),
            "masks of {} layers for a network with {}",
            hex.len(),
            self.layers.len()
        );
        let mut host = Vec::with_capacity(hex.len());
        for (layer, text) in self.layers.iter().zip(hex) {
            anyhow::ensure!(
                text.len() == layer.numel.div_ceil(8) * 2 && text.is_ascii(),
                "a mask of {} characters for a layer of {} weights",
                text.len(),
                layer.numel
            );
            let mut bits = Vec::with_capacity(layer.numel);
            for i in 0..layer.numel.div_ceil(8) {
                let byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                    .map_err(|e| anyhow::anyhow!("a mask is not hexadecimal: {e}"))?;
                for b in 0..8 {
                    if bits.len() < layer.numel {
                        bits.push(byte >> b & 1 == 1);
                    }
                }
            }
            host.push(bits);
        }
        self.host = host;
        self.upload(device);
        Ok(())
    }

    /// The same masks on the autodiff backend over `B`, as constants.
    pub fn to_autodiff<A: AutodiffBackend<InnerBackend = B>>(&self) -> Masks<A> {
        Masks {
            layers: self.layers.clone(),
            host: self.host.clone(),
            kept: self.kept.clone(),
            device: self
                .device
                .iter()
                .map(|(id, m)| (*id, Tensor::from_inner(m.clone())))
                .collect(),
        }
    }
}

struct Apply<'a, B: Backend> {
    masks: &'a HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleMapper<B> for Apply<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.masks.get(&id) {
            Some(mask) => {
                let dims = tensor.dims();
                tensor * mask.clone().reshape(dims)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Zhu & Gupta's cubic schedule (eq. 1): the density (1 - sparsity) at step `t` of a ramp
/// from density 1 at `start` to `final_density` at `end`, updated every `every` steps (the
/// density in between holds its last value).
pub fn gmp_density(t: usize, start: usize, end: usize, every: usize, final_density: f64) -> f64 {
    if t < start {
        return 1.0;
    }
    if t >= end || end <= start {
        return final_density;
    }
    let t = start + (t - start) / every.max(1) * every.max(1);
    let progress = (t - start) as f64 / (end - start) as f64;
    let sparsity = (1.0 - final_density) * (1.0 - (1.0 - progress).powi(3));
    1.0 - sparsity
}

/// Cross-entropy of a classifier whose prunable weights are masked.
pub struct MaskedProblem<B: AutodiffBackend> {
    /// The current masks (replaced at the schedule's steps).
    masks: RefCell<Masks<B::InnerBackend>>,
    /// The same masks as constants of the autodiff backend, made once per pruning step.
    on_tape: RefCell<Masks<B>>,
}

impl<B: AutodiffBackend> MaskedProblem<B> {
    /// Training under `masks`.
    pub fn new(masks: Masks<B::InnerBackend>) -> Self {
        let on_tape = RefCell::new(masks.to_autodiff());
        Self {
            masks: RefCell::new(masks),
            on_tape,
        }
    }

    /// The current masks.
    pub fn masks(&self) -> std::cell::Ref<'_, Masks<B::InnerBackend>> {
        self.masks.borrow()
    }

    /// [`Masks::prune_to`] on the current masks.
    pub fn prune_to<M: Module<B::InnerBackend>>(&self, model: &M, keep: usize, device: &B::Device) {
        let mut masks = self.masks.borrow_mut();
        masks.prune_to(model, keep, device);
        *self.on_tape.borrow_mut() = masks.to_autodiff();
    }

    /// Replaces the current masks with a checkpoint's ([`Masks::to_hex`]).
    ///
    /// # Errors
    /// As [`Masks::load_hex`].
    pub fn restore(&self, hex: &[String], device: &B::Device) -> anyhow::Result<()> {
        let mut masks = self.masks.borrow_mut();
        masks.load_hex(hex, device)?;
        *self.on_tape.borrow_mut() = masks.to_autodiff();
        Ok(())
    }

    /// The final masks.
    pub fn into_masks(self) -> Masks<B::InnerBackend> {
        self.masks.into_inner()
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + Classifier<B>> ConstrainedProblem<B, M>
    for MaskedProblem<B>
{
    type Input = Batch<B>;

    fn compute_cmp_state(&self, model: &M, batch: &Batch<B>) -> CmpState<B> {
        let masked = self.on_tape.borrow().apply(model.clone());
        CmpState::new(cross_entropy(
            masked.logits(batch.images.clone()),
            batch.labels.clone(),
        ))
    }
}

/// The largest `k <= upper` with `fits(k)`, for `fits` monotone (true up to some `k`):
/// `None` when not even `fits(0)`.
pub fn largest_fitting(upper: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    if !fits(0) {
        return None;
    }
    let (mut lo, mut hi) = (0, upper);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use tether_models::mlp::{Mlp, MlpConfig};

    type B = Flex;
    type A = Autodiff<Flex>;

    fn weights<Bk: Backend>(m: &Mlp<Bk>) -> Vec<Vec<f32>> {
        m.layers
            .iter()
            .map(|l| {
                l.weight
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .into_vec()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn masks_round_trip_through_their_checkpoint_text() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![6, 5, 3]).init::<B>(&device);
        let mut masks = Masks::<B>::full(prunable(&mlp), &device);
        masks.prune_to(&mlp, 13, &device);
        let hex = masks.to_hex();
        // 30 and 15 weights: 4 and 2 bytes.
        assert_eq!(hex.iter().map(String::len).collect::<Vec<_>>(), [8, 4]);
        let mut back = Masks::<B>::full(prunable(&mlp), &device);
        back.load_hex(&hex, &device).unwrap();
        assert_eq!(back.host, masks.host);
        assert_eq!(back.kept(), masks.kept());
        let err = back.load_hex(&hex[..1], &device).unwrap_err().to_string();
        assert!(err.contains("masks of 1 layers"), "{err}");
        let bad = vec![hex[0].clone(), "zz00".into()];
        assert!(back.load_hex(&bad, &device).is_err());
    }

    #[test]
    fn global_magnitude_keeps_exactly_the_largest_weights_and_pruned_stay_pruned() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![6, 5, 3]).init::<B>(&device);
        let layers = prunable(&mlp);
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].numel, 30);
        let mut masks = Masks::<B>::full(layers, &device);
        masks.prune_to(&mlp, 12, &device);
        assert_eq!(masks.kept().iter().sum::<usize>(), 12);
        // Independently: the 12 largest |w| over both layers, by sorting.
        let w = weights(&mlp);
        let mut all: Vec<f32> = w.iter().flatten().map(|x| x.abs()).collect();
        all.sort_by(|a, b| b.total_cmp(a));
        let threshold = all[11];
        let pruned = weights(&masks.apply(mlp.clone()));
        for (orig, p) in w.iter().flatten().zip(pruned.iter().flatten()) {
            if orig.abs() >= threshold {
                assert_eq!(p, orig);
            } else {
                assert_eq!(*p, 0.0);
            }
        }
        // A later step never revives a weight, and a larger keep changes nothing.
        let before = masks.kept();
        masks.prune_to(&mlp, 20, &device);
        assert_eq!(masks.kept(), before);
        let counts = masks.counts_for(&mlp);
        assert_eq!(counts(12), before);
        assert_eq!(counts(0), vec![0, 0]);
    }

    #[test]
    fn a_masked_weight_gets_no_gradient() {
        let device = Default::default();
        let mut mlp = MlpConfig::new(vec![4, 3, 2]).init::<A>(&device);
        // Fixed positive weights of distinct magnitudes and positive inputs: every hidden
        // unit is active, so every kept weight has a gradient (random weights could leave
        // the kept ones behind dead ReLUs, and burn's RNG is shared by parallel tests).
        for (l, layer) in mlp.layers.iter_mut().enumerate() {
            let dims = layer.weight.dims();
            let n = dims[0] * dims[1];
            // The output layer's weights are the largest: it keeps all 6, the hidden layer
            // the largest one of its 12, so both layers keep weights.
            let v: Vec<f32> = (0..n)
                .map(|k| l as f32 + 0.1 + 0.05 * ((k * 5 + l) % n) as f32)
                .collect();
            layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(v, dims), &device));
            // Zero biases: a random negative one could still silence the kept unit.
            layer.bias = layer
                .bias
                .take()
                .map(|b| Param::from_tensor(Tensor::zeros(b.dims(), &device)));
        }
        let mut masks = Masks::<B>::full(prunable(&mlp.valid()), &device);
        masks.prune_to(&mlp.valid(), 7, &device);
        let ad = masks.to_autodiff::<A>();
        let x: Vec<f32> = (0..64).map(|i| 0.1 + (i * 7 % 13) as f32 / 13.0).collect();
        let x = Tensor::<A, 2>::from_data(TensorData::new(x, [16, 4]), &device);
        let loss = ad.apply(mlp.clone()).forward(x).powi_scalar(2).sum();
        let grads = loss.backward();
        let mask = masks.host.clone();
        assert_eq!(masks.kept(), vec![1, 6]);
        for (l, layer) in mlp.layers.iter().enumerate() {
            let g: Vec<f32> = layer
                .weight
                .grad(&grads)
                .unwrap()
                .into_data()
                .convert::<f32>()
                .into_vec()
                .unwrap();
            for (gi, &k) in g.iter().zip(&mask[l]) {
                if !k {
                    assert_eq!(*gi, 0.0);
                }
            }
            assert!(g.iter().any(|&v| v != 0.0), "layer {l} has no gradient");
        }
    }

    #[test]
    fn the_search_finds_the_largest_fitting_count() {
        assert_eq!(largest_fitting(100, |k| k * 3 <= 100), Some(33));
        assert_eq!(largest_fitting(10, |_| true), Some(10));
        assert_eq!(largest_fitting(10, |_| false), None);
        assert_eq!(largest_fitting(0, |_| true), Some(0));
    }

    #[test]
    fn the_cubic_schedule_matches_zhu_and_gupta() {
        // Eq. 1 with s_i = 0, s_f = 0.9, t0 = 0, n Δt = 100, Δt = 10.
        assert_eq!(gmp_density(0, 0, 100, 10, 0.1), 1.0);
        let s = |t: f64| 0.9 + (0.0 - 0.9) * (1.0 - t / 100.0f64).powi(3);
        for t in [10usize, 50, 90] {
            assert!((gmp_density(t, 0, 100, 10, 0.1) - (1.0 - s(t as f64))).abs() < 1e-12);
        }
        // Held between updates, final from the end on.
        assert_eq!(
            gmp_density(57, 0, 100, 10, 0.1),
            gmp_density(50, 0, 100, 10, 0.1)
        );
        assert_eq!(gmp_density(100, 0, 100, 10, 0.1), 0.1);
        assert_eq!(gmp_density(500, 0, 100, 10, 0.1), 0.1);
    }
}
