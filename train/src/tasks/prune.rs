//! Sparsity-constrained L0 pruning (Gallego-Posada, Ramirez, Erraqabi, Bengio,
//! Lacoste-Julien, "Controlled Sparsity via Constrained Optimization or: How I Learned to
//! Stop Tuning Penalties and Love Constraints", NeurIPS 2022).
//!
//! ```text
//! min_theta,phi  E_z[ CE(f(x; theta * z(phi)), y) ]
//! s.t.           E[L0(phi)] / #params - target <= 0      (globally, or per layer)
//! ```
//!
//! The expected density (differentiable in the gate locations `phi`) drives the model;
//! the density of the deterministic test-time gates, i.e. what the deployed model will
//! have, is the strict violation that drives the multiplier (the proxy-constraint pattern).

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, backend::AutodiffBackend, backend::Backend};
use tether_models::gated::{GatedNetwork, LayerGates};
use tether_models::l0::GateMode;

use crate::constrained::{CmpState, ConstrainedProblem, ConstraintId, ConstraintState};
use crate::data::batches::Batch;
use crate::tasks::budget::flash::FlashModel;
use crate::tasks::budget::latency::LatencyModel;
use crate::tasks::budget::widths::WidthModel;
use crate::tasks::metrics::cross_entropy;
pub use crate::tasks::prune_ramp::Ramp;

/// Expected and true density of each gated layer.
pub fn layer_densities<B: Backend, M: GatedNetwork<B>>(
    model: &M,
) -> (Vec<Tensor<B, 1>>, Vec<Tensor<B, 1>>) {
    densities_per_layer(model.layer_gates())
}

fn densities_per_layer<B: Backend>(
    layers: Vec<LayerGates<B>>,
) -> (Vec<Tensor<B, 1>>, Vec<Tensor<B, 1>>) {
    layers
        .into_iter()
        .map(|l| {
            let n = l.gated as f64;
            (l.expected.div_scalar(n), l.active.div_scalar(n))
        })
        .unzip()
}

/// Global expected and true density (over all gated parameters).
pub fn global_density<B: Backend, M: GatedNetwork<B>>(model: &M) -> (Tensor<B, 1>, Tensor<B, 1>) {
    density_of(model.layer_gates())
}

fn density_of<B: Backend>(layers: Vec<LayerGates<B>>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let total: usize = layers.iter().map(|l| l.gated).sum();
    let (expected, active) = layers
        .into_iter()
        .map(|l| (l.expected, l.active))
        .reduce(|(e, a), (e2, a2)| (e + e2, a + a2))
        .expect("at least one gated layer");
    (
        expected.div_scalar(total as f64),
        active.div_scalar(total as f64),
    )
}

/// A flash budget: the written `model.tthr` at most `budget` bytes (see
/// [`crate::tasks::budget::flash`]). Its violation is the log-ratio `ln(size / aim)`: near
/// the budget it is the relative excess `(size - aim) / aim`, so a 32 KiB budget on a 1 MB
/// network is steered as firmly in its last kilobytes as a 64 KiB one (with the excess as
/// a fraction of the unpruned file, `(size - aim) / full`, the multiplier of a 32 KiB
/// budget grew by under 1e-3 a step once the file was within 10 KB of it, and after a
/// dense warm-up the file was still 21% over at the end of 10 epochs); far above it the
/// violation grows only as the logarithm (3.5 for a file 32 times its budget), on the scale
/// of a density's violation, so the dual settings tuned for the density constraint carry
/// over.
#[derive(Clone, Debug)]
pub struct FlashConstraint {
    /// Its constraint in the set (one entry).
    pub id: ConstraintId,
    /// The file size as a function of the gates.
    pub model: FlashOf,
    /// At most this many bytes.
    pub budget: usize,
}

/// What a flash budget's file size is a function of.
#[derive(Clone, Debug)]
pub enum FlashOf {
    /// Each layer's nonzeros (gates per weight or per block): exact in closed form.
    Weights(FlashModel),
    /// Each unit-gated layer's width: the closed units are cut out of the written file
    /// with their reader's columns, so the size is measured on the narrowed network
    /// (exact), and linearised in the gates as the RAM budget is.
    Units(WidthModel),
}

impl FlashOf {
    /// The smallest file the network can be written as.
    ///
    /// # Errors
    /// A narrowed network that does not write ([`WidthModel::measure`]).
    pub fn min_size(&self) -> anyhow::Result<usize> {
        match self {
            Self::Weights(m) => Ok(m.min_size()),
            Self::Units(m) => m.min(),
        }
    }

    /// The file with every gated parameter kept.
    pub fn full_size(&self) -> usize {
        match self {
            Self::Weights(m) => m.full_size(),
            Self::Units(m) => m.full,
        }
    }

    /// The exact size for the deterministic gates' active counts (`[1]` per layer; one
    /// host read).
    ///
    /// # Errors
    /// As [`FlashOf::min_size`].
    pub fn size_of<B: Backend>(&self, active: &[Tensor<B, 1>]) -> anyhow::Result<usize> {
        match self {
            Self::Weights(m) => {
                let total = tether_models::host::read_f64(m.size_tensor(active));
                Ok(total[0].round() as usize)
            }
            Self::Units(m) => m.measure(&m.widths_of(active)),
        }
    }
}

impl FlashConstraint {
    /// Bytes from a violation this constraint reported: `aim * exp(violation)`.
    pub fn bytes_of(&self, violation: f64) -> f64 {
        self.aim() as f64 * violation.exp()
    }

    /// The size the multiplier steers to: 0.5% (at least two 16-byte padding chunks)
    /// under the budget. Near the end of a run the gates' rate has decayed and the
    /// multiplier, restarted at every feasible step, is about 0, so a gate or two can
    /// reopen and leave the file a padding chunk over a budget it was steered onto
    /// exactly (MNIST LeNet-300-100 at 32 KiB: 32784 bytes); the margin keeps that drift
    /// inside.
    pub fn aim(&self) -> usize {
        let margin = (self.budget / 200).max(32);
        self.budget.saturating_sub(margin)
    }

    /// `widths`: the unit-gated layers' widths at the deterministic gates, where read;
    /// `ramp`: how much of the way from the unpruned file to [`FlashConstraint::aim`] is
    /// asked at this step.
    fn state<B: Backend>(
        &self,
        layers: &[LayerGates<B>],
        widths: Option<&[usize]>,
        ramp: &Ramp,
    ) -> ConstraintState<B> {
        let expected: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.expected.clone()).collect();
        let active: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.active.clone()).collect();
        let aim = ramp
            .bound(self.aim() as f64, self.model.full_size() as f64)
            .max(1.0);
        // Sizes are at least the file's headers, so the logarithm is finite (a
        // linearised surrogate is kept above a byte).
        let violation = |size: Tensor<B, 1>| size.clamp_min(1.0).div_scalar(aim).log();
        match &self.model {
            FlashOf::Weights(m) => {
                ConstraintState::new(violation(m.expected_size_tensor(&expected)))
                    .with_strict_violation(violation(m.size_tensor(&active)))
            }
            FlashOf::Units(m) => {
                let widths = widths.map_or_else(|| m.widths_of(&active), <[usize]>::to_vec);
                // As the RAM budget's: the narrowed network wrote at full width and at one
                // unit per layer, so this cannot fail where those did not; if it did, the
                // full size keeps the multiplier pushing.
                let measured = m.measure(&widths).unwrap_or(m.full) as f32;
                let device = expected[0].device();
                let surrogate = m
                    .expected_tensor(&expected, &widths)
                    .unwrap_or_else(|_| Tensor::from_data([measured], &device));
                let strict = Tensor::<B, 1>::from_data([measured], &device);
                ConstraintState::new(violation(surrogate)).with_strict_violation(violation(strict))
            }
        }
    }
}

/// A latency budget: one inference in tether-deploy on this host at most `budget`
/// seconds, as [`LatencyModel`] predicts it from each layer's kept weights. Violation:
/// `(latency - aim) / dense latency`, on the scale of a density like the flash budget's.
#[derive(Clone, Debug)]
pub struct LatencyConstraint {
    /// Its constraint in the set (one entry).
    pub id: ConstraintId,
    /// The fitted cost model.
    pub model: LatencyModel,
    /// At most this many seconds.
    pub budget: f64,
}

impl LatencyConstraint {
    fn scale(&self) -> f64 {
        self.model.dense
    }

    /// The latency the multiplier steers to: 3% under the budget, for the cost model's
    /// error and the end-of-run drift the flash budget's margin covers.
    pub fn aim(&self) -> f64 {
        0.97 * self.budget
    }

    /// Seconds from a violation this constraint reported.
    pub fn seconds_of(&self, violation: f64) -> f64 {
        violation * self.scale() + self.aim()
    }

    fn state<B: Backend>(&self, layers: &[LayerGates<B>], ramp: &Ramp) -> ConstraintState<B> {
        let expected: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.expected.clone()).collect();
        let active: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.active.clone()).collect();
        let (a, s) = (ramp.bound(self.aim(), self.model.dense), self.scale());
        let violation = |t: Tensor<B, 1>| t.sub_scalar(a).div_scalar(s);
        ConstraintState::new(violation(self.model.expected_latency_tensor(&expected)))
            .with_strict_violation(violation(self.model.latency_tensor(&active)))
    }
}

/// A RAM budget: the device RAM of the written model (activations and scratch, weights
/// in flash; [`WidthModel`]) at most `budget` bytes. Its units close through unit gates.
/// Violation: `(RAM - aim) / (full RAM - least RAM)`: 1 is the whole range the gates can
/// move it through (the input and output stay whatever is pruned, so the full RAM would
/// make every unit's share tiny and the multiplier slow).
/// The strict violation is the RAM measured at the deterministic gates' widths (one host
/// read of the layers' counts per step); the differentiable one its linearisation there.
#[derive(Clone, Debug)]
pub struct RamConstraint {
    /// Its constraint in the set (one entry).
    pub id: ConstraintId,
    /// RAM as a function of the layers' widths.
    pub model: WidthModel,
    /// At most this many bytes.
    pub budget: usize,
}

impl RamConstraint {
    fn scale(&self) -> f64 {
        (self.model.full - self.model.least).max(1) as f64
    }

    /// The RAM the multiplier steers to: 1% (at least 16 bytes) under the budget, for the
    /// end-of-run drift the flash budget's margin covers.
    pub fn aim(&self) -> usize {
        let margin = (self.budget / 100).max(16);
        self.budget.saturating_sub(margin)
    }

    /// Bytes from a violation this constraint reported.
    pub fn bytes_of(&self, violation: f64) -> f64 {
        violation * self.scale() + self.aim() as f64
    }

    /// `widths`: the unit-gated layers' widths at the deterministic gates, where read.
    fn state<B: Backend>(
        &self,
        layers: &[LayerGates<B>],
        widths: Option<&[usize]>,
        ramp: &Ramp,
    ) -> ConstraintState<B> {
        let expected: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.expected.clone()).collect();
        let active: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.active.clone()).collect();
        let widths = widths.map_or_else(|| self.model.widths_of(&active), <[usize]>::to_vec);
        let a = ramp.bound(self.aim() as f64, self.model.full as f64);
        let s = self.scale();
        // The narrowed network planned at its full width and at one unit per layer, so
        // these cannot fail where they did not at the start; if one did, the full RAM
        // (the most the network takes) keeps the multiplier pushing.
        let measured = self.model.measure(&widths).unwrap_or(self.model.full) as f64;
        let device = expected[0].device();
        let surrogate = self
            .model
            .expected_tensor(&expected, &widths)
            .unwrap_or_else(|_| Tensor::from_data([measured as f32], &device));
        let strict = Tensor::<B, 1>::from_data([((measured - a) / s) as f32], &device);
        ConstraintState::new(surrogate.sub_scalar(a).div_scalar(s)).with_strict_violation(strict)
    }
}

/// The pruning problem: cross-entropy under density constraints; after
/// [`PruneProblem::freeze`], cross-entropy alone through the frozen deterministic gates
/// (fine-tuning the weights of the pruned network, its sparsity pattern fixed).
pub struct PruneProblem {
    /// The density constraint: one entry (global) or one per layer; `None` when only
    /// budgets constrain the run.
    pub density: Option<ConstraintId>,
    /// Targets, one per entry of `density`.
    pub targets: Vec<f64>,
    /// The flash budget, if any.
    pub flash: Option<FlashConstraint>,
    /// The latency budget, if any.
    pub latency: Option<LatencyConstraint>,
    /// The RAM budget, if any.
    pub ram: Option<RamConstraint>,
    /// How much of each target is asked at this step ([`PruneProblem::with_ramp`]).
    ramp: Ramp,
    frozen: core::cell::Cell<bool>,
}

impl PruneProblem {
    /// Density at most `targets` (one global target, or one per gated layer).
    pub fn new(density: ConstraintId, targets: Vec<f64>) -> Self {
        Self {
            density: Some(density),
            targets,
            flash: None,
            latency: None,
            ram: None,
            ramp: Ramp::default(),
            frozen: core::cell::Cell::new(false),
        }
    }

    /// No density constraint: budgets alone (add them with [`PruneProblem::with_flash`]).
    pub fn budgets_only() -> Self {
        Self {
            density: None,
            targets: Vec::new(),
            flash: None,
            latency: None,
            ram: None,
            ramp: Ramp::default(),
            frozen: core::cell::Cell::new(false),
        }
    }

    /// Adds a latency budget.
    pub fn with_latency(mut self, latency: LatencyConstraint) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Adds a RAM budget.
    pub fn with_ram(mut self, ram: RamConstraint) -> Self {
        self.ram = Some(ram);
        self
    }

    /// Adds a flash budget.
    pub fn with_flash(mut self, flash: FlashConstraint) -> Self {
        self.flash = Some(flash);
        self
    }

    /// Asks each target gradually, as `ramp` says (by default, in full from the start).
    pub fn with_ramp(mut self, ramp: Ramp) -> Self {
        self.ramp = ramp;
        self
    }

    /// The ramp of the targets.
    pub fn ramp(&self) -> &Ramp {
        &self.ramp
    }

    /// From now on: the gates as they will be folded (deterministic, no gradient, so they
    /// and the density stay where they are) and no constraint; the weights alone train.
    /// Why: sampled gates inject noise into every forward pass, which slows the weights'
    /// learning; once the density is where it should be, the network that will be
    /// deployed can be trained without that noise.
    pub fn freeze(&self) {
        self.frozen.set(true);
    }

    /// Undoes [`PruneProblem::freeze`]: sampled gates and the constraints again. The dense
    /// warm-up ([`crate::tasks::prune_warmup`]) is the frozen problem with every gate open;
    /// this starts the gates' training after it.
    pub fn thaw(&self) {
        self.frozen.set(false);
    }

    /// The model of a budget measured on the unit-gated widths, if any.
    fn width_model(&self) -> Option<&WidthModel> {
        match (&self.flash, &self.ram) {
            (
                Some(FlashConstraint {
                    model: FlashOf::Units(m),
                    ..
                }),
                _,
            ) => Some(m),
            (_, Some(r)) => Some(&r.model),
            _ => None,
        }
    }

    /// True after [`PruneProblem::freeze`].
    pub fn is_frozen(&self) -> bool {
        self.frozen.get()
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + GatedNetwork<B>> ConstrainedProblem<B, M>
    for PruneProblem
{
    type Input = Batch<B>;

    fn compute_cmp_state(&self, model: &M, batch: &Batch<B>) -> CmpState<B> {
        if self.is_frozen() {
            let logits = model.forward_gated(batch.images.clone(), GateMode::Frozen);
            return CmpState::new(cross_entropy(logits, batch.labels.clone()));
        }
        let logits = model.forward_gated(batch.images.clone(), GateMode::Sample);
        let loss = cross_entropy(logits, batch.labels.clone());
        let layers = model.layer_gates();
        let mut cmp = CmpState::new(loss);
        // One host read of the layers' active counts serves every budget measured on the
        // unit-gated widths (flash under unit gates, RAM): the same layers, the same widths.
        let widths = self.width_model().map(|m| {
            let active: Vec<Tensor<B, 1>> = layers.iter().map(|l| l.active.clone()).collect();
            m.widths_of(&active)
        });
        if let Some(flash) = &self.flash {
            cmp = cmp.with(
                flash.id,
                flash.state(&layers, widths.as_deref(), &self.ramp),
            );
        }
        if let Some(latency) = &self.latency {
            cmp = cmp.with(latency.id, latency.state(&layers, &self.ramp));
        }
        if let Some(ram) = &self.ram {
            cmp = cmp.with(ram.id, ram.state(&layers, widths.as_deref(), &self.ramp));
        }
        if let Some(density) = self.density {
            let (expected, strict) = if self.targets.len() == 1 {
                density_of(layers)
            } else {
                let (e, t) = densities_per_layer(layers);
                (Tensor::cat(e, 0), Tensor::cat(t, 0))
            };
            let device = expected.device();
            let targets: Vec<f32> = self
                .targets
                .iter()
                .map(|&t| self.ramp.bound(t, 1.0) as f32)
                .collect();
            let target = Tensor::<B, 1>::from_data(
                burn::tensor::TensorData::new(targets, [self.targets.len()]),
                &device,
            );
            let state = ConstraintState::new(expected - target.clone())
                .with_strict_violation(strict - target);
            cmp = cmp.with(density, state);
        }
        cmp
    }
}

/// Accuracy (in `[0, 1]`) of `model` with deterministic gates over `batches`.
pub fn accuracy<B: Backend, M: GatedNetwork<B>, I>(model: &M, batches: I) -> f64
where
    I: IntoIterator,
    I::Item: std::borrow::Borrow<Batch<B>>,
{
    crate::tasks::metrics::accuracy(batches, |x| model.forward_gated(x, GateMode::Deterministic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constrained::{ConstraintKind, ConstraintSet, FormulationConfig, MultiplierConfig};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Int, TensorData};
    use tether_models::gated_mlp::GatedMlpConfig;
    use tether_models::l0::GateStructure;

    type B = Autodiff<Flex>;

    /// The density entry's violations at the current ramp: (differentiable, strict).
    fn density_violation(
        problem: &PruneProblem,
        net: &tether_models::gated_mlp::GatedMlp<B>,
    ) -> (f64, f64) {
        let device = Default::default();
        let batch = Batch {
            images: Tensor::<B, 2>::zeros([2, 6], &device),
            labels: Tensor::<B, 1, Int>::from_data(TensorData::from([0i64, 1]), &device),
        };
        let cmp = ConstrainedProblem::<B, _>::compute_cmp_state(problem, net, &batch);
        let (_, state) = &cmp.observed[0];
        let v = tether_models::host::read_f64(state.violation.clone())[0];
        let s = tether_models::host::read_f64(state.strict_violation.clone().unwrap())[0];
        (v, s)
    }

    #[test]
    fn the_density_constraint_is_measured_against_the_ramped_target() {
        let device = Default::default();
        let net = GatedMlpConfig::new(vec![6, 5, 3], GateStructure::Weight).init::<B>(&device);
        let mut set = ConstraintSet::<B>::new(&device);
        let id = set
            .add(
                "density",
                ConstraintKind::Inequality,
                1,
                FormulationConfig::Lagrangian(MultiplierConfig::new(
                    crate::constrained::DualOptimizer::gradient_ascent(1.0),
                )),
            )
            .unwrap();
        let (_, strict_density) = global_density(&net);
        let strict_density = tether_models::host::read_f64(strict_density)[0];
        let ramp = Ramp::new(10, 20);
        let problem = PruneProblem::new(id, vec![0.1]).with_ramp(ramp.clone());
        let at = |step| {
            ramp.at_step(step);
            density_violation(&problem, &net)
        };
        let (full_v, full_s) = at(30);
        assert!((full_s - (strict_density - 0.1)).abs() < 1e-6, "{full_s}");
        // Halfway: (1 - 1/2)^3 = 1/8 of the way back to density 1 is still allowed.
        let (half_v, half_s) = at(20);
        let allowed = 0.1 + 0.9 / 8.0;
        assert!(
            (half_s - (strict_density - allowed)).abs() < 1e-6,
            "{half_s}"
        );
        assert!(
            (half_v - (full_v - 0.9 / 8.0)).abs() < 1e-6,
            "{half_v} vs {full_v}"
        );
        // At the start nothing is asked: density 1 is feasible.
        let (_, start_s) = at(10);
        assert!(start_s <= 1e-6, "{start_s}");
    }
}
