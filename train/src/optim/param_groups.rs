//! Two parameter groups with their own optimizers and learning rates.
//!
//! L0 gates need a far larger step than the weights they gate (the paper trains gate
//! locations with their own learning rate): with one Adam at the weights' `1e-3`, a gate
//! location needs thousands of steps to travel from its initial value to where the
//! deterministic gate closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::{AutodiffModule, ParamId};
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;

/// Steps the rank-1 parameters listed in `second` with optimizer `b` at `lr * lr_scale`
/// (times a cosine decay when [`TwoGroups::with_second_decay`] is set), and every other
/// parameter with optimizer `a` at `lr`.
#[derive(Clone)]
pub struct TwoGroups<A, O> {
    a: A,
    b: O,
    second: Vec<ParamId>,
    lr_scale: f64,
    /// The step at which the second group's rate reaches 0, and the step its decay
    /// starts from (once fired); `None`: constant.
    decay: Option<(usize, DecayStart)>,
    /// Steps taken so far (the decay's clock).
    steps: usize,
}

impl<A, O> TwoGroups<A, O> {
    /// `second` lists the ids of the second group's parameters, which must be rank-1
    /// tensors (e.g. `HardConcrete::log_alpha`).
    pub fn new(a: A, b: O, second: Vec<ParamId>, lr_scale: f64) -> Self {
        Self {
            a,
            b,
            second,
            lr_scale,
            decay: None,
            steps: 0,
        }
    }

    /// Decays the second group's rate to 0 at step `end` by the cosine factor
    /// `(1 + cos(pi * (t - s) / (end - s))) / 2` (Loshchilov & Hutter 2017, without
    /// restarts), from the step `s` at which `start` is fired; until then the rate is
    /// constant.
    ///
    /// Why the gates want it: a gate location whose task gradient is mostly noise
    /// random-walks (Adam scales noise up to steps of the full rate), and gates that
    /// wander below the test-time threshold rarely come back, so at a constant rate the
    /// density drifts under its target late in training. Why it waits for a signal: decaying
    /// from the first step stops the gates before a slow network gets to its target
    /// (LeNet-5 in 3 epochs at 0.1: 0.115); the pruning task fires it when the density
    /// first meets the target. The weights keep their rate.
    pub fn with_second_decay(mut self, end: usize, start: DecayStart) -> Self {
        self.decay = Some((end, start));
        self
    }

    /// The second group's rate factor at the current step.
    fn second_scale(&self) -> f64 {
        let Some((end, start)) = &self.decay else {
            return self.lr_scale;
        };
        match start.step() {
            Some(s) if self.steps > s => {
                let frac = ((self.steps - s) as f64 / end.saturating_sub(s).max(1) as f64).min(1.0);
                self.lr_scale * 0.5 * (1.0 + (core::f64::consts::PI * frac).cos())
            }
            _ => self.lr_scale,
        }
    }

    /// Moves the second group's gradients out of `grads`.
    fn split<B: AutodiffBackend>(&self, grads: &mut GradientsParams) -> GradientsParams {
        let mut second = GradientsParams::new();
        for &id in &self.second {
            if let Some(g) = grads.remove::<B::InnerBackend, 1>(id) {
                second.register::<B::InnerBackend, 1>(id, g);
            }
        }
        second
    }
}

/// When a [`TwoGroups`] decay starts: a handle shared between the optimizer and whoever
/// decides (the training loop's step callback), fired once.
#[derive(Clone, Debug)]
pub struct DecayStart(Arc<AtomicUsize>);

impl Default for DecayStart {
    fn default() -> Self {
        Self(Arc::new(AtomicUsize::new(usize::MAX)))
    }
}

impl DecayStart {
    /// Not fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the decay at optimizer step `step` (later calls are ignored).
    pub fn fire(&self, step: usize) {
        let _ = self
            .0
            .compare_exchange(usize::MAX, step, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The step it was fired at, if it was.
    pub fn step(&self) -> Option<usize> {
        let s = self.0.load(Ordering::Relaxed);
        (s != usize::MAX).then_some(s)
    }
}

impl<M, B, A, O> Optimizer<M, B> for TwoGroups<A, O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    A: Optimizer<M, B>,
    O: Optimizer<M, B>,
{
    /// Both groups' states, the decay's clock and the step its decay was fired at
    /// (`usize::MAX`: not yet): what a resumed run needs to continue the same schedule.
    type Record = (A::Record, O::Record, usize, usize);

    fn step(&mut self, lr: LearningRate, module: M, mut grads: GradientsParams) -> M {
        let second = self.split::<B>(&mut grads);
        let module = self.a.step(lr, module, grads);
        let scale = self.second_scale();
        self.steps += 1;
        self.b.step(lr * scale, module, second)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, mut grads: MultiGradientsParams) -> M {
        let second = MultiGradientsParams {
            grads: grads
                .grads
                .iter_mut()
                .map(|(g, device)| (self.split::<B>(g), *device))
                .collect(),
        };
        let module = self.a.step_multi(lr, module, grads);
        let scale = self.second_scale();
        self.steps += 1;
        self.b.step_multi(lr * scale, module, second)
    }

    fn to_record(&self) -> Self::Record {
        let fired = self
            .decay
            .as_ref()
            .and_then(|(_, start)| start.step())
            .unwrap_or(usize::MAX);
        (self.a.to_record(), self.b.to_record(), self.steps, fired)
    }

    fn load_record(self, record: Self::Record) -> Self {
        let (a, b, steps, fired) = record;
        // The handle is shared with whoever fires it: restoring it here restores it for
        // them too.
        if let (Some((_, start)), true) = (&self.decay, fired != usize::MAX) {
            start.fire(fired);
        }
        Self {
            a: self.a.load_record(a),
            b: self.b.load_record(b),
            steps,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, Param};
    use burn::optim::SgdConfig;
    use burn::tensor::Tensor;

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        slow: Param<Tensor<B, 1>>,
        fast: Param<Tensor<B, 1>>,
    }

    /// With SGD on both groups, each parameter moves by its own lr times its gradient.
    #[test]
    fn each_group_moves_at_its_own_rate() {
        let device = Default::default();
        let m = Two::<B> {
            slow: Param::from_tensor(Tensor::ones([2], &device)),
            fast: Param::from_tensor(Tensor::ones([2], &device)),
        };
        let loss = (m.slow.val() + m.fast.val()).sum(); // gradient 1 everywhere
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let mut opt = TwoGroups::new(
            SgdConfig::new().init::<B, Two<B>>(),
            SgdConfig::new().init::<B, Two<B>>(),
            vec![m.fast.id],
            10.0,
        );
        let m = opt.step(0.01, m, grads);
        let v = |t: Tensor<B, 1>| t.into_data().into_vec::<f32>().unwrap();
        assert_eq!(v(m.slow.val()), vec![0.99, 0.99]);
        assert_eq!(v(m.fast.val()), vec![0.9, 0.9]);
    }

    /// With the decay, the second group's step is constant until the start fires, then
    /// follows the cosine: full, half at the midpoint, none at the end; the first group
    /// keeps its rate throughout.
    #[test]
    fn second_group_decays_on_a_cosine_once_started() {
        let device = Default::default();
        let mut m = Two::<B> {
            slow: Param::from_tensor(Tensor::zeros([1], &device)),
            fast: Param::from_tensor(Tensor::zeros([1], &device)),
        };
        let start = DecayStart::new();
        let mut opt = TwoGroups::new(
            SgdConfig::new().init::<B, Two<B>>(),
            SgdConfig::new().init::<B, Two<B>>(),
            vec![m.fast.id],
            10.0,
        )
        .with_second_decay(6, start.clone());
        let v = |t: Tensor<B, 1>| t.into_data().into_vec::<f32>().unwrap()[0];
        let mut moves = Vec::new();
        for step in 0..7 {
            if step == 2 {
                start.fire(2);
                start.fire(5); // ignored
            }
            let (slow0, fast0) = (v(m.slow.val()), v(m.fast.val()));
            let loss = (m.slow.val() + m.fast.val()).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = opt.step(0.01, m, grads);
            moves.push((slow0 - v(m.slow.val()), fast0 - v(m.fast.val())));
        }
        let h = 0.5f32.sqrt();
        let expected = [1.0, 1.0, 1.0, 0.5 * (1.0 + h), 0.5, 0.5 * (1.0 - h), 0.0];
        for ((slow, fast), e) in moves.into_iter().zip(expected) {
            assert!((slow - 0.01).abs() < 1e-6, "{slow}");
            assert!((fast - 0.1 * e).abs() < 1e-6, "{fast} vs {}", 0.1 * e);
        }
    }
}
