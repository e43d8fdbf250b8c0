//! GANGs: a GAN as a finite zero-sum game between generator networks and classifier
//! networks that play mixed strategies (Oliehoek et al. 2018, "Beyond Local Nash
//! Equilibria for Adversarial Networks"; "GANGs: Generative Adversarial Network Games").
//!
//! The payoff is the GAN objective. The classifier earns
//! `u_C(G, C) = E_x[log C(x)] + E_z[log(1 - C(G(z)))]` and the generator `u_G = -u_C`;
//! in the matrix handed to [`nash_memory`](super::nash_memory) the generators are the
//! rows (maximising `u_G`) and the classifiers the columns. Payoffs are estimated on one
//! fixed evaluation sample (data points and latent codes drawn once), so the empirical game
//! is a well-defined finite game and its entries are comparable.
//!
//! A *resource-bounded best response* (RBBR) is a network trained from a fresh
//! initialisation for a fixed number of Adam steps (the rate cosine-decayed to a tenth)
//! against the opponent's current mixture: a classifier against samples drawn from the
//! generator mixture by its weights, a generator against the weighted sum of the
//! classifiers' losses. A generator response is the best of a few restarts, each started
//! at a data point where the classifier mixture is most fooled (gradient ascent from an
//! arbitrary start ends at the nearest local maximum, usually a mode already covered).
//! The generator trains on the non-saturating loss `-log C(G(z))` (Goodfellow et al.
//! 2014), which has the same fixed points as `u_G` and usable gradients when the
//! classifiers are confident; its payoff is measured with `u_G` itself. Both responses run
//! through the one training loop ([`crate::trainer::fit`]).
//!
//! The baseline ([`GanGame::train_gan`]) is a standard GAN: one generator and one
//! classifier trained by simultaneous gradient descent-ascent with the same losses and
//! optimizer.

use std::collections::HashMap;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use tether_models::mlp::{Mlp, MlpConfig};

use super::nash_memory::BestResponseOracle;
use crate::constrained::{
    CmpState, ConstrainedError, ConstrainedOptimizer, ConstrainedProblem, ConstraintSet,
    UpdateScheme,
};
use crate::data::batches::SplitMix64;
use crate::data::mixtures::{Mixture, standard_normals};
use crate::optim::{AnyOptimizer, OptimizerArgs};
use crate::trainer::{FitOptions, fit};

/// Sizes and budgets of the game's networks and responses.
#[derive(Clone, Debug, PartialEq)]
pub struct GangConfig {
    /// Dimension of the generators' Gaussian latent code.
    pub latent_dim: usize,
    /// Hidden widths of a generator (ReLU MLP, latent -> 2).
    pub generator_hidden: Vec<usize>,
    /// Hidden widths of a classifier (ReLU MLP, 2 -> logit).
    pub classifier_hidden: Vec<usize>,
    /// Adam steps per best response (the "resource bound").
    pub response_steps: usize,
    /// Samples per step (data and generated alike).
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Adam's first-moment coefficient (0.5 is the usual GAN setting).
    pub beta_1: f64,
    /// The optimizer of responses and of the GAN baseline (Adam by default).
    pub optimizer: OptimizerArgs,
    /// Size of the fixed sample the payoffs are estimated on.
    pub eval_samples: usize,
    /// Restarts of a generator response (the best of them is the response; the paper's
    /// resource-bounded best responses allow restarts). Each starts with its output
    /// centred on a different data point where the classifier mixture is most fooled.
    pub restarts: usize,
    /// Weight of the background term of the classifiers' training loss: points uniform
    /// over a box around the data, labelled fake. Off the support of the data and the
    /// generators the payoff does not depend on the classifier, so every classifier is
    /// as good there; this breaks the tie toward calling unexplored space fake, which
    /// keeps a generator response from earning unbounded payoffs out where a ReLU
    /// classifier extrapolates "real". 0 trains on the GAN loss alone. Payoffs are always
    /// measured with the GAN objective itself.
    pub background: f64,
}

impl Default for GangConfig {
    fn default() -> Self {
        Self {
            latent_dim: 4,
            generator_hidden: vec![64, 64],
            classifier_hidden: vec![64, 64],
            response_steps: 500,
            batch_size: 128,
            lr: 1e-3,
            beta_1: 0.5,
            optimizer: OptimizerArgs::default(),
            eval_samples: 2048,
            background: 0.1,
            restarts: 4,
        }
    }
}

/// The game could not be set up or played.
#[derive(Debug, thiserror::Error)]
pub enum GangError {
    /// A setting out of range.
    #[error("invalid GANG setting: {0}")]
    Config(String),
    /// Training a response failed (a non-finite loss).
    #[error("training diverged: {0}")]
    Training(#[from] ConstrainedError),
    /// Stopped on request, the checkpoint written.
    #[error(transparent)]
    Interrupted(crate::resume::Interrupted),
    /// A checkpoint could not be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A non-finite loss in the GAN baseline.
    #[error("GAN training diverged at step {step}: {what} loss is {value}")]
    Diverged {
        /// The step.
        step: usize,
        /// Which player's loss.
        what: &'static str,
        /// The value.
        value: f64,
    },
}

/// A game's own state between iterations ([`GanGame::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GameState {
    /// The random stream's state.
    pub rng: u64,
    /// The next player's id.
    pub next_id: usize,
    /// Gradient steps taken so far.
    pub gradient_steps: usize,
}

/// A pure strategy of either player: a network with an id for the payoff caches.
#[derive(Clone, Debug)]
pub struct Player<B: AutodiffBackend> {
    /// Unique within its game.
    pub id: usize,
    /// The network (a generator: latent -> point; a classifier: point -> logit).
    pub net: Mlp<B>,
}

/// The GAN game on a 2D mixture: networks, payoff estimates, best responses.
pub struct GanGame<B: AutodiffBackend> {
    data: Mixture,
    config: GangConfig,
    device: B::Device,
    rng: SplitMix64,
    next_id: usize,
    eval_real: Tensor<B::InnerBackend, 2>,
    eval_z: Tensor<B::InnerBackend, 2>,
    /// `G(eval_z)` per generator id.
    fake_cache: HashMap<usize, Tensor<B::InnerBackend, 2>>,
    /// `E_x[log C(x)]` over the evaluation data, per classifier id.
    real_cache: HashMap<usize, f64>,
    gradient_steps: usize,
}

impl<B: AutodiffBackend> GanGame<B> {
    /// A game on `data` with the networks and budgets of `config`, seeded by `seed`.
    ///
    /// # Errors
    /// A zero size or budget, a non-positive or non-finite learning rate, `beta_1`
    /// outside `[0, 1)`.
    pub fn new(
        data: Mixture,
        config: GangConfig,
        device: B::Device,
        seed: u64,
    ) -> Result<Self, GangError> {
        let c = &config;
        let sizes = [
            ("latent_dim", c.latent_dim),
            ("response_steps", c.response_steps),
            ("batch_size", c.batch_size),
            ("eval_samples", c.eval_samples),
            ("restarts", c.restarts),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(GangError::Config(format!("{name} must be at least 1")));
        }
        if c.generator_hidden.contains(&0) || c.classifier_hidden.contains(&0) {
            return Err(GangError::Config("hidden widths must be at least 1".into()));
        }
        if !(c.lr.is_finite() && c.lr > 0.0) {
            return Err(GangError::Config(format!(
                "the learning rate must be positive, got {}",
                c.lr
            )));
        }
        if !(c.background.is_finite() && c.background >= 0.0) {
            return Err(GangError::Config(format!(
                "the background weight must be >= 0, got {}",
                c.background
            )));
        }
        if !(0.0..1.0).contains(&c.beta_1) {
            return Err(GangError::Config(format!(
                "beta_1 must be in [0, 1), got {}",
                c.beta_1
            )));
        }
        let mut rng = SplitMix64(seed ^ 0x6a09_e667_f3bc_c908);
        let n = c.eval_samples;
        let real = data.sample(n, rng.next());
        let z = standard_normals(&mut rng, n * c.latent_dim);
        let inner = |v: Vec<f32>, d: usize| {
            Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(v, [n, d]), &device)
        };
        let eval_real = inner(real, 2);
        let eval_z = inner(z, c.latent_dim);
        Ok(Self {
            data,
            config,
            device,
            rng,
            next_id: 0,
            eval_real,
            eval_z,
            fake_cache: HashMap::new(),
            real_cache: HashMap::new(),
            gradient_steps: 0,
        })
    }

    /// The data distribution.
    pub fn data(&self) -> &Mixture {
        &self.data
    }

    /// The settings.
    pub fn config(&self) -> &GangConfig {
        &self.config
    }

    /// Gradient steps taken so far, both players together.
    pub fn gradient_steps(&self) -> usize {
        self.gradient_steps
    }

    /// The game's own state (its random stream, the next id, the steps taken): with the
    /// strategies, what a checkpoint needs to continue the game exactly. The payoff caches
    /// are not part of it (they refill with the same values).
    pub fn state(&self) -> GameState {
        GameState {
            rng: self.rng.0,
            next_id: self.next_id,
            gradient_steps: self.gradient_steps,
        }
    }

    /// Continues from a checkpoint's [`GanGame::state`].
    pub fn restore(&mut self, state: GameState) {
        self.rng = SplitMix64(state.rng);
        self.next_id = state.next_id;
        self.gradient_steps = state.gradient_steps;
        self.fake_cache.clear();
        self.real_cache.clear();
    }

    /// A player with network `net` (its values replaced by a checkpoint's) and `id`,
    /// without drawing from the game's stream: a generator when `generator`.
    pub fn shell(&self, id: usize, generator: bool) -> Player<B> {
        let c = &self.config;
        let widths = if generator {
            [vec![c.latent_dim], c.generator_hidden.clone(), vec![2]].concat()
        } else {
            [vec![2], c.classifier_hidden.clone(), vec![1]].concat()
        };
        Player {
            id,
            net: MlpConfig::new(widths).init::<B>(&self.device),
        }
    }

    /// A network with burn's default `Linear` initialisation (weights and biases uniform
    /// in `±1/sqrt(fan_in)`), drawn from the game's own generator rather than the
    /// backend's global one, so a game is reproducible from its seed even when other
    /// work initialises networks concurrently.
    fn player(&mut self, widths: Vec<usize>) -> Player<B> {
        let mut net = MlpConfig::new(widths).init::<B>(&self.device);
        for layer in &mut net.layers {
            let [fan_in, fan_out] = layer.weight.dims();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let weight = self.uniform(fan_in * fan_out, bound);
            let device = self.device.clone();
            layer.weight = layer.weight.clone().map(|_| {
                Tensor::from_data(TensorData::new(weight, [fan_in, fan_out]), &device)
                    .require_grad()
            });
            let bias = self.uniform(fan_out, bound);
            layer.bias = layer.bias.take().map(|b| {
                b.map(|_| {
                    Tensor::from_data(TensorData::new(bias, [fan_out]), &device).require_grad()
                })
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        Player { id, net }
    }

    /// `n` values uniform in `[-bound, bound)`.
    fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (self.rng.next_unit() * 2.0 - 1.0) * bound)
            .map(|v| v as f32)
            .collect()
    }

    /// A freshly initialised generator.
    pub fn new_generator(&mut self) -> Player<B> {
        let mut w = vec![self.config.latent_dim];
        w.extend(&self.config.generator_hidden);
        w.push(2);
        self.player(w)
    }

    /// A freshly initialised classifier.
    pub fn new_classifier(&mut self) -> Player<B> {
        let mut w = vec![2];
        w.extend(&self.config.classifier_hidden);
        w.push(1);
        self.player(w)
    }

    fn latent(&mut self, n: usize) -> Tensor<B, 2> {
        let z = standard_normals(&mut self.rng, n * self.config.latent_dim);
        Tensor::from_data(
            TensorData::new(z, [n, self.config.latent_dim]),
            &self.device,
        )
    }

    /// `n` points uniform over the box one unit beyond the data's modes.
    fn background(&mut self, n: usize) -> Tensor<B, 2> {
        let e = self
            .data
            .modes
            .iter()
            .flat_map(|m| m.iter().map(|v| v.abs()))
            .fold(0.0, f64::max)
            + 1.0;
        let x = self.uniform(2 * n, e);
        Tensor::from_data(TensorData::new(x, [n, 2]), &self.device)
    }

    fn classifier_batch(&mut self, fake: Tensor<B, 2>) -> ClassifierBatch<B> {
        let n = self.config.batch_size;
        ClassifierBatch {
            real: self.real(n),
            fake,
            background: (self.config.background > 0.0)
                .then(|| (self.background(n), self.config.background as f32)),
        }
    }

    fn real(&mut self, n: usize) -> Tensor<B, 2> {
        let x = self.data.sample(n, self.rng.next());
        Tensor::from_data(TensorData::new(x, [n, 2]), &self.device)
    }

    /// `n` samples of the mixture of `generators` with probabilities `weights`, row-major
    /// `[n, 2]`, and which generator drew each.
    pub fn sample_mixture(
        &mut self,
        generators: &[Player<B>],
        weights: &[f64],
        n: usize,
    ) -> (Vec<f32>, Vec<usize>) {
        let total: f64 = weights.iter().sum();
        let mut counts = vec![0usize; generators.len()];
        for _ in 0..n {
            let u = self.rng.next_unit() * total;
            let mut acc = 0.0;
            let mut k = generators.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                acc += w;
                if u < acc {
                    k = i;
                    break;
                }
            }
            counts[k] += 1;
        }
        let mut points = Vec::with_capacity(2 * n);
        let mut owner = Vec::with_capacity(n);
        for (k, (g, &count)) in generators.iter().zip(&counts).enumerate() {
            if count == 0 {
                continue;
            }
            let z = self.latent(count).inner();
            let x = g.net.valid().forward(z).into_data();
            points.extend(x.iter::<f32>());
            owner.extend(std::iter::repeat_n(k, count));
        }
        (points, owner)
    }

    /// The payoff to the generator, `u_G(g, c) = -E_x[log c(x)] - E_z[log(1 - c(g(z)))]`,
    /// on the fixed evaluation sample.
    pub fn payoff_of(&mut self, generator: &Player<B>, classifier: &Player<B>) -> f64 {
        let c = classifier.net.valid();
        let fake = match self.fake_cache.get(&generator.id) {
            Some(f) => f.clone(),
            None => {
                let f = generator.net.valid().forward(self.eval_z.clone());
                self.fake_cache.insert(generator.id, f.clone());
                f
            }
        };
        let real_term = match self.real_cache.get(&classifier.id) {
            Some(&r) => r,
            None => {
                let r: f64 = log_sigmoid(c.forward(self.eval_real.clone()))
                    .mean()
                    .into_scalar()
                    .elem();
                self.real_cache.insert(classifier.id, r);
                r
            }
        };
        let fake_term: f64 = log_sigmoid(c.forward(fake).neg())
            .mean()
            .into_scalar()
            .elem();
        -(real_term + fake_term)
    }

    /// A generator trained for `steps` Adam steps against the classifier mixture.
    ///
    /// # Errors
    /// A non-finite loss.
    pub fn train_generator(
        &mut self,
        classifiers: &[Player<B>],
        weights: &[f64],
        steps: usize,
    ) -> Result<Player<B>, GangError> {
        let total: f64 = weights.iter().sum();
        let (nets, mix): (Vec<Mlp<B>>, Vec<f32>) = classifiers
            .iter()
            .zip(weights)
            .filter(|(_, w)| **w > 1e-6 * total)
            .map(|(c, w)| (c.net.clone().no_grad(), (w / total) as f32))
            .unzip();
        let problem = GeneratorResponse {
            opponents: ClassifierMixture::new(nets.clone(), &mix, &self.device),
        };
        let inner = nets.iter().map(|c| c.valid()).collect();
        let inner = ClassifierMixture::new(inner, &mix, &self.device);
        let batch = self.config.batch_size;
        let mut best: Option<(f64, Player<B>)> = None;
        let starts = self.promising_points(&inner, self.config.restarts);
        for point in starts {
            let mut start = self.new_generator();
            self.centre_output(&mut start.net, point);
            let inputs: Vec<Tensor<B, 2>> = (0..steps).map(|_| self.latent(batch)).collect();
            let net = self.fit_response(start.net, &problem, steps, |s| inputs[s].clone())?;
            let candidate = Player { net, ..start };
            let earned: f64 = classifiers
                .iter()
                .zip(weights)
                .filter(|(_, w)| **w > 1e-6 * total)
                .map(|(c, w)| w / total * self.payoff_of(&candidate, c))
                .sum();
            if best.as_ref().is_none_or(|(b, _)| earned > *b) {
                best = Some((earned, candidate));
            }
        }
        Ok(best.expect("at least one restart").1)
    }

    /// Where generator restarts begin: of `CANDIDATE_POINTS` data points, the ones where
    /// the classifier mixture is most fooled (largest `-sum_c w_c log(1 - C_c(x))`, what
    /// a generator collapsed onto `x` would earn), greedily keeping points more than 10
    /// standard deviations from those already kept, so restarts explore different modes.
    /// Ascent from an arbitrary start ends on the nearest local maximum of the mixture,
    /// usually a mode that is already covered; starting where the payoff is already high
    /// finds the modes the generator mixture lacks.
    fn promising_points(
        &mut self,
        opponents: &ClassifierMixture<B::InnerBackend>,
        k: usize,
    ) -> Vec<[f32; 2]> {
        let points = self.data.sample(CANDIDATE_POINTS, self.rng.next());
        let x = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(points.clone(), [CANDIDATE_POINTS, 2]),
            &self.device,
        );
        // -sum_c w_c log(1 - C_c(x)) per point.
        let logits = opponents.logits(x);
        let score = log_sigmoid(logits.neg())
            .mul(opponents.weights.clone())
            .sum_dim(0)
            .neg()
            .reshape([CANDIDATE_POINTS]);
        let score: Vec<f32> = score.into_data().iter::<f32>().collect();
        let mut order: Vec<usize> = (0..CANDIDATE_POINTS).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
        let min_d2 = (10.0 * self.data.std).powi(2) as f32;
        let mut chosen: Vec<[f32; 2]> = Vec::with_capacity(k);
        for i in order {
            let p = [points[2 * i], points[2 * i + 1]];
            let far = chosen
                .iter()
                .all(|q| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) > min_d2);
            if far {
                chosen.push(p);
                if chosen.len() == k {
                    break;
                }
            }
        }
        chosen
    }

    /// Centres a generator's initial output on `point` (its output bias).
    fn centre_output(&mut self, net: &mut Mlp<B>, point: [f32; 2]) {
        let offset = Tensor::<B, 1>::from_data(TensorData::new(point.to_vec(), [2]), &self.device);
        if let Some(last) = net.layers.last_mut() {
            // `Param::map` keeps the new tensor's `require_grad`: set it, or the bias
            // would stay where it was put.
            last.bias = last.bias.take().map(|b| b.map(|_| offset.require_grad()));
        }
    }

    /// A classifier trained for `steps` Adam steps to tell data from the generator
    /// mixture.
    ///
    /// # Errors
    /// A non-finite loss.
    pub fn train_classifier(
        &mut self,
        generators: &[Player<B>],
        weights: &[f64],
        steps: usize,
    ) -> Result<Player<B>, GangError> {
        let batch = self.config.batch_size;
        let (fake, _) = self.sample_mixture(generators, weights, steps * batch);
        let fake =
            Tensor::<B, 2>::from_data(TensorData::new(fake, [steps * batch, 2]), &self.device);
        // The pool is in component order: shuffle by drawing rows at random.
        let inputs: Vec<ClassifierBatch<B>> = (0..steps)
            .map(|_| {
                let idx: Vec<i32> = (0..batch)
                    .map(|_| (self.rng.next() % (steps * batch) as u64) as i32)
                    .collect();
                let idx = Tensor::from_data(TensorData::new(idx, [batch]), &self.device);
                self.classifier_batch(fake.clone().select(0, idx))
            })
            .collect();
        let start = self.new_classifier();
        let net =
            self.fit_response(start.net, &ClassifierResponse, steps, |s| inputs[s].clone())?;
        Ok(Player { net, ..start })
    }

    /// The configured optimizer (Adam with the game's `beta_1`).
    fn optimizer(&self) -> Result<AnyOptimizer<Mlp<B>, B>, GangError> {
        let adam = AdamConfig::new().with_beta_1(self.config.beta_1 as f32);
        self.config
            .optimizer
            .build_with_adam(&adam)
            .map_err(|e| GangError::Config(e.to_string()))
    }

    fn fit_response<P: ConstrainedProblem<B, Mlp<B>>>(
        &mut self,
        net: Mlp<B>,
        problem: &P,
        steps: usize,
        input: impl FnMut(usize) -> P::Input,
    ) -> Result<Mlp<B>, GangError> {
        let mut set = ConstraintSet::<B>::new(&self.device);
        let primal = self.optimizer()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, self.config.lr, UpdateScheme::Simultaneous);
        // A response ends on a cosine-decayed rate (to a tenth), in segments of the one
        // loop: a generator response then settles on its target instead of orbiting it
        // at the width of an Adam step, which decides whether its samples land within
        // 3 standard deviations (0.06) of a mode.
        let segments = steps.min(COSINE_SEGMENTS);
        let mut input = input;
        let mut net = net;
        let mut done = 0;
        for k in 0..segments {
            let end = steps * (k + 1) / segments;
            let t = (k as f64 + 0.5) / segments as f64;
            let factor = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
            opt.set_lr(self.config.lr * factor);
            let options = FitOptions::new(end - done, None).with_health(health.clone());
            let offset = done;
            net = fit(
                net,
                &mut opt,
                &mut set,
                problem,
                &options,
                |s| input(offset + s),
                |_| {},
            )?;
            done = end;
        }
        self.gradient_steps += steps;
        Ok(net)
    }

    /// A standard GAN: one generator and one classifier trained together by simultaneous
    /// gradient descent-ascent for `steps` steps (each step moves both networks, so it
    /// counts as two gradient steps), with the losses and optimizer of the responses.
    ///
    /// Every `snapshot_every` steps (and after the last) the trace keeps `snapshot_samples`
    /// generator samples and the mean losses since the previous snapshot.
    ///
    /// # Errors
    /// A non-finite loss.
    pub fn train_gan(
        &mut self,
        steps: usize,
        snapshot_every: usize,
        snapshot_samples: usize,
    ) -> Result<GanRun<B>, GangError> {
        self.train_gan_resumable(steps, snapshot_every, snapshot_samples, None, None)
    }

    /// [`GanGame::train_gan`] from a checkpoint (`resume`), with `hooks`: after every
    /// snapshot (but the last), and when the interrupt is raised (after the step under
    /// way), `save` gets the run's [`GanCheckpoint`]; interrupted, the run then returns
    /// [`GangError::Interrupted`] with the `checkpoint` folder.
    ///
    /// # Errors
    /// A non-finite loss, a checkpoint that cannot be written or read, an interrupt.
    pub fn train_gan_resumable(
        &mut self,
        steps: usize,
        snapshot_every: usize,
        snapshot_samples: usize,
        resume: Option<GanCheckpoint>,
        mut hooks: Option<GanHooks<'_>>,
    ) -> Result<GanRun<B>, GangError> {
        let (gp, cp) = match &resume {
            Some(r) => (self.shell(r.ids[0], true), self.shell(r.ids[1], false)),
            None => (self.new_generator(), self.new_classifier()),
        };
        let (mut g, mut c) = (gp.net.clone(), cp.net.clone());
        let (mut opt_g, mut opt_c) = (self.optimizer()?, self.optimizer()?);
        let batch = self.config.batch_size;
        let mut trace = Vec::new();
        let (mut sum_c, mut sum_g, mut count) = (0.0, 0.0, 0usize);
        let mut first = 0;
        if let Some(r) = resume {
            g = load_bytes(g, &r.nets[0], &self.device)?;
            c = load_bytes(c, &r.nets[1], &self.device)?;
            opt_g = opt_g.load_record(record_from_bytes(&r.optimizers[0], &self.device)?);
            opt_c = opt_c.load_record(record_from_bytes(&r.optimizers[1], &self.device)?);
            trace = r.trace;
            (sum_c, sum_g, count) = r.sums;
            first = r.step;
            self.restore(r.game);
        }
        for step in first..steps {
            if let Some(h) = hooks.as_mut().filter(|h| h.interrupt.is_raised()) {
                let players = [(gp.id, &g, &opt_g), (cp.id, &c, &opt_c)];
                let checkpoint =
                    GanCheckpoint::of(step, players, trace, (sum_c, sum_g, count), self.state())?;
                (h.save)(&checkpoint)?;
                return Err(GangError::Interrupted(
                    crate::resume::Interrupted::after_step(h.dir, step),
                ));
            }
            let z = self.latent(batch);
            let fake = g.forward(z);
            let loss_c = classifier_loss(&c, &self.classifier_batch(fake.clone().detach()));
            let loss_g = log_sigmoid(c.forward(fake)).mean().neg();
            let mut values = [0.0; 2];
            for (k, (what, loss)) in [("classifier", &loss_c), ("generator", &loss_g)]
                .into_iter()
                .enumerate()
            {
                let value: f64 = loss.clone().into_scalar().elem();
                if !value.is_finite() {
                    return Err(GangError::Diverged { step, what, value });
                }
                values[k] = value;
            }
            (sum_c, sum_g, count) = (sum_c + values[0], sum_g + values[1], count + 1);
            // Both gradients at the current point, then both steps.
            let grads_c = GradientsParams::from_grads(loss_c.backward(), &c);
            let grads_g = GradientsParams::from_grads(loss_g.backward(), &g);
            c = opt_c.step(self.config.lr, c, grads_c);
            g = opt_g.step(self.config.lr, g, grads_g);
            for health in [opt_c.health(), opt_g.health()].into_iter().flatten() {
                health
                    .check()
                    .map_err(|e| ConstrainedError::Optimizer(e.to_string()))?;
            }
            if let Some(h) = hooks.as_mut() {
                h.interrupt.count_step();
            }
            if (step + 1) % snapshot_every.max(1) == 0 || step + 1 == steps {
                let current = Player {
                    id: usize::MAX, // never cached: the network changes
                    net: g.clone(),
                };
                let (samples, _) = self.sample_mixture(&[current], &[1.0], snapshot_samples);
                trace.push(GanSnapshot {
                    step: step + 1,
                    samples,
                    classifier_loss: sum_c / count as f64,
                    generator_loss: sum_g / count as f64,
                });
                (sum_c, sum_g, count) = (0.0, 0.0, 0);
                if let Some(h) = hooks.as_mut().filter(|_| step + 1 < steps) {
                    let players = [(gp.id, &g, &opt_g), (cp.id, &c, &opt_c)];
                    let checkpoint = GanCheckpoint::of(
                        step + 1,
                        players,
                        trace.clone(),
                        (0.0, 0.0, 0),
                        self.state(),
                    )?;
                    (h.save)(&checkpoint)?;
                }
            }
        }
        self.gradient_steps += 2 * steps;
        Ok(GanRun {
            generator: Player { net: g, ..gp },
            classifier: Player { net: c, ..cp },
            trace,
        })
    }
}

/// A GAN baseline run between two steps: what [`GanGame::train_gan_resumable`] continues
/// from.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GanCheckpoint {
    /// Steps taken.
    pub step: usize,
    /// The generator's and the classifier's ids.
    pub ids: [usize; 2],
    /// Their networks (burn records, bytes).
    #[serde(skip)]
    pub nets: [Vec<u8>; 2],
    /// Their optimizers' states (burn records, bytes).
    #[serde(skip)]
    pub optimizers: [Vec<u8>; 2],
    /// The snapshots so far.
    pub trace: Vec<GanSnapshot>,
    /// The losses summed since the last snapshot, and their count.
    pub sums: (f64, f64, usize),
    /// The game's own state.
    pub game: GameState,
}

/// A GAN player as a checkpoint sees it: its id, network and optimizer.
type PlayerState<'a, B> = (usize, &'a Mlp<B>, &'a AnyOptimizer<Mlp<B>, B>);

impl GanCheckpoint {
    /// The checkpoint after `step` steps of the generator and the classifier (`players`:
    /// id, network, optimizer each), with the snapshots so far, the losses summed since
    /// the last one and the game's state.
    fn of<B: AutodiffBackend>(
        step: usize,
        players: [PlayerState<'_, B>; 2],
        trace: Vec<GanSnapshot>,
        sums: (f64, f64, usize),
        game: GameState,
    ) -> Result<Self, GangError> {
        let [(gid, g, opt_g), (cid, c, opt_c)] = players;
        Ok(Self {
            step,
            ids: [gid, cid],
            nets: [record_bytes(g.clone())?, record_bytes(c.clone())?],
            optimizers: [
                record_bytes_of(opt_g.to_record())?,
                record_bytes_of(opt_c.to_record())?,
            ],
            trace,
            sums,
            game,
        })
    }
}

/// What a GAN baseline run does at its checkpoints.
pub struct GanHooks<'a> {
    /// Stops the run after the step under way.
    pub interrupt: &'a crate::resume::Interrupt,
    /// The checkpoint folder, reported when interrupted.
    pub dir: &'a std::path::Path,
    /// Writes a checkpoint.
    pub save: &'a mut dyn FnMut(&GanCheckpoint) -> Result<(), GangError>,
}

/// A module's record as bytes (exact values).
///
/// # Errors
/// The recorder fails.
pub fn record_bytes<B: Backend, M: Module<B>>(module: M) -> Result<Vec<u8>, GangError> {
    record_bytes_of::<B, _>(module.into_record())
}

fn record_bytes_of<B: Backend, R: burn::record::Record<B>>(
    record: R,
) -> Result<Vec<u8>, GangError> {
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(record, ())
        .map_err(|e| GangError::Checkpoint(e.to_string()))
}

fn record_from_bytes<B: Backend, R: burn::record::Record<B>>(
    bytes: &[u8],
    device: &B::Device,
) -> Result<R, GangError> {
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes.to_vec(), device)
        .map_err(|e| GangError::Checkpoint(format!("a corrupt record: {e}")))
}

/// The networks of `players`, in order, as one record's bytes.
///
/// # Errors
/// The recorder fails.
pub fn players_bytes<B: AutodiffBackend>(players: &[Player<B>]) -> Result<Vec<u8>, GangError> {
    let records: Vec<_> = players
        .iter()
        .map(|p| p.net.clone().into_record())
        .collect();
    record_bytes_of::<B, _>(records)
}

/// Players of `ids` (generators when `generator`) with the networks of
/// [`players_bytes`]'s bytes, built without drawing from the game's stream.
///
/// # Errors
/// Bytes that are not as many networks of the game's widths.
pub fn load_players<B: AutodiffBackend>(
    game: &GanGame<B>,
    ids: &[usize],
    generator: bool,
    bytes: &[u8],
) -> Result<Vec<Player<B>>, GangError> {
    let records: Vec<<Mlp<B> as Module<B>>::Record> = record_from_bytes(bytes, &game.device)?;
    if records.len() != ids.len() {
        return Err(GangError::Checkpoint(format!(
            "{} networks for {} players",
            records.len(),
            ids.len()
        )));
    }
    Ok(ids
        .iter()
        .zip(records)
        .map(|(&id, record)| {
            let shell = game.shell(id, generator);
            Player {
                id,
                net: shell.net.load_record(record),
            }
        })
        .collect())
}

/// `fresh` with the values of [`record_bytes`]'s bytes.
///
/// # Errors
/// Bytes that are not a record of this module.
pub fn load_bytes<B: Backend, M: Module<B>>(
    fresh: M,
    bytes: &[u8],
    device: &B::Device,
) -> Result<M, GangError> {
    Ok(fresh.load_record(record_from_bytes(bytes, device)?))
}

/// Data points scored when choosing where generator restarts begin.
const CANDIDATE_POINTS: usize = 512;

/// Pieces of the cosine learning-rate decay of a response.
const COSINE_SEGMENTS: usize = 20;

/// One step's input of a classifier.
#[derive(Clone)]
struct ClassifierBatch<B: Backend> {
    real: Tensor<B, 2>,
    fake: Tensor<B, 2>,
    /// Background points and their weight ([`GangConfig::background`]).
    background: Option<(Tensor<B, 2>, f32)>,
}

/// A trained GAN and its trace.
#[derive(Clone, Debug)]
pub struct GanRun<B: AutodiffBackend> {
    /// The generator after the last step.
    pub generator: Player<B>,
    /// The classifier after the last step.
    pub classifier: Player<B>,
    /// Snapshots along the run.
    pub trace: Vec<GanSnapshot>,
}

/// The state of a GAN run at one point.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GanSnapshot {
    /// Steps taken.
    pub step: usize,
    /// Generator samples, row-major `[n, 2]`.
    pub samples: Vec<f32>,
    /// Mean classifier loss since the previous snapshot.
    pub classifier_loss: f64,
    /// Mean generator (non-saturating) loss since the previous snapshot.
    pub generator_loss: f64,
}

/// `-E[log C(real)] - E[log(1 - C(fake))]` (that is `-u_C`), plus the weighted
/// background term `-w E[log(1 - C(uniform))]`.
fn classifier_loss<B: Backend>(c: &Mlp<B>, b: &ClassifierBatch<B>) -> Tensor<B, 1> {
    let fake = |x: Tensor<B, 2>| log_sigmoid(c.forward(x).neg()).mean().neg();
    let loss = log_sigmoid(c.forward(b.real.clone())).mean().neg() + fake(b.fake.clone());
    match &b.background {
        Some((x, w)) => loss + fake(x.clone()).mul_scalar(*w),
        None => loss,
    }
}

/// A weighted set of classifiers: the opponent of a generator response. (Stacking their
/// layers into `[k, in, out]` for one batched product per layer was measured 3.5x slower
/// on burn-flex than `k` separate small products, so they run one by one.)
struct ClassifierMixture<B: Backend> {
    nets: Vec<Mlp<B>>,
    /// Mixture weights `[k, 1, 1]` (summing to 1).
    weights: Tensor<B, 3>,
}

impl<B: Backend> ClassifierMixture<B> {
    /// `nets` (at least one) with mixture `weights`.
    fn new(nets: Vec<Mlp<B>>, weights: &[f32], device: &B::Device) -> Self {
        let k = weights.len();
        let weights = Tensor::from_data(TensorData::new(weights.to_vec(), [k, 1, 1]), device);
        Self { nets, weights }
    }

    /// Every classifier's logits for the batch `x` (`[n, 2]`): `[k, n, 1]`.
    fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        Tensor::cat(
            self.nets
                .iter()
                .map(|c| c.forward(x.clone()).unsqueeze::<3>())
                .collect(),
            0,
        )
    }
}

/// A generator's response problem: the weighted non-saturating loss
/// `-sum_c w_c E_z[log C_c(G(z))]` against fixed classifiers (no gradient to them).
struct GeneratorResponse<B: AutodiffBackend> {
    opponents: ClassifierMixture<B>,
}

impl<B: AutodiffBackend> ConstrainedProblem<B, Mlp<B>> for GeneratorResponse<B> {
    type Input = Tensor<B, 2>;

    fn compute_cmp_state(&self, generator: &Mlp<B>, z: &Tensor<B, 2>) -> CmpState<B> {
        let x = generator.forward(z.clone());
        let per_net = log_sigmoid(self.opponents.logits(x)).mean_dim(1); // [k, 1, 1]
        let loss = per_net.mul(self.opponents.weights.clone()).sum().neg();
        CmpState::new(loss)
    }
}

/// A classifier's response problem: tell data from samples of the generator mixture.
struct ClassifierResponse;

impl<B: AutodiffBackend> ConstrainedProblem<B, Mlp<B>> for ClassifierResponse {
    type Input = ClassifierBatch<B>;

    fn compute_cmp_state(&self, c: &Mlp<B>, batch: &Self::Input) -> CmpState<B> {
        CmpState::new(classifier_loss(c, batch))
    }
}

impl<B: AutodiffBackend> BestResponseOracle for GanGame<B> {
    type Row = Player<B>;
    type Col = Player<B>;
    type Error = GangError;

    fn payoff(&mut self, row: &Player<B>, col: &Player<B>) -> Result<f64, GangError> {
        Ok(self.payoff_of(row, col))
    }

    fn row_best_response(
        &mut self,
        cols: &[Player<B>],
        weights: &[f64],
    ) -> Result<Player<B>, GangError> {
        self.train_generator(cols, weights, self.config.response_steps)
    }

    fn col_best_response(
        &mut self,
        rows: &[Player<B>],
        weights: &[f64],
    ) -> Result<Player<B>, GangError> {
        self.train_classifier(rows, weights, self.config.response_steps)
    }
}

/// How a pair of mixtures scores on the data.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleQuality {
    /// Modes covered: at least `min_count` high-quality samples.
    pub modes_covered: usize,
    /// Number of modes of the data.
    pub modes: usize,
    /// Fraction of samples within 3 standard deviations of a mode.
    pub high_quality: f64,
}

/// A mode counts as covered when at least 20 of every 2,500 samples are high-quality
/// samples of it (PacGAN's threshold, Lin et al. 2018: a mode is lost with fewer than 20
/// of 2,500 samples within 3 standard deviations).
pub fn sample_quality(data: &Mixture, samples: &[f32]) -> SampleQuality {
    let n = samples.len() / 2;
    let k = data.modes.len();
    let min_count = (n * 20).div_ceil(2500).max(1);
    SampleQuality {
        modes_covered: data.modes_covered(samples, min_count),
        modes: k,
        high_quality: data.high_quality_fraction(samples),
    }
}

/// How much fresh best responses gain against a pair of mixtures.
#[derive(Clone, Debug, PartialEq)]
pub struct Exploitability {
    /// `u_G(s_G, s_C)`: the mixtures' payoff to the generator.
    pub value: f64,
    /// `u_G(BR_G, s_C)`: a fresh generator against the classifier mixture.
    pub generator_response: f64,
    /// `u_G(s_G, BR_C)`: the generator mixture against a fresh classifier.
    pub classifier_response: f64,
}

impl Exploitability {
    /// The sum of both players' gains (`NashConv`): zero at an equilibrium, and
    /// independent of `value` because the game is zero-sum.
    pub fn total(&self) -> f64 {
        self.generator_response - self.classifier_response
    }
}

/// Trains a fresh response of each player for `steps` steps against the mixtures and
/// measures what they earn.
///
/// # Errors
/// A non-finite loss while training a response.
pub fn exploitability<B: AutodiffBackend>(
    game: &mut GanGame<B>,
    generators: (&[Player<B>], &[f64]),
    classifiers: (&[Player<B>], &[f64]),
    steps: usize,
) -> Result<Exploitability, GangError> {
    let (gs, gw) = generators;
    let (cs, cw) = classifiers;
    let mut value = 0.0;
    for (g, p) in gs.iter().zip(gw) {
        for (c, q) in cs.iter().zip(cw) {
            if *p > 0.0 && *q > 0.0 {
                value += p * q * game.payoff_of(g, c);
            }
        }
    }
    let bg = game.train_generator(cs, cw, steps)?;
    let bc = game.train_classifier(gs, gw, steps)?;
    let generator_response = cs
        .iter()
        .zip(cw)
        .filter(|(_, q)| **q > 0.0)
        .map(|(c, q)| q * game.payoff_of(&bg, c))
        .sum();
    let classifier_response = gs
        .iter()
        .zip(gw)
        .filter(|(_, p)| **p > 0.0)
        .map(|(g, p)| p * game.payoff_of(g, &bc))
        .sum();
    Ok(Exploitability {
        value,
        generator_response,
        classifier_response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::nash_memory::{PnmConfig, parallel_nash_memory};

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    fn small() -> GangConfig {
        GangConfig {
            latent_dim: 2,
            generator_hidden: vec![16],
            classifier_hidden: vec![16],
            response_steps: 60,
            batch_size: 64,
            eval_samples: 512,
            ..GangConfig::default()
        }
    }

    /// The payoff is `-u_C`: a classifier that outputs the constant 1/2 gives every
    /// generator `2 log 2`.
    #[test]
    fn payoff_is_the_gan_objective() {
        let mut game = GanGame::<B>::new(Mixture::ring8(), small(), Default::default(), 1).unwrap();
        let g = game.new_generator();
        let mut c = game.new_classifier();
        // Zero the last layer: logit 0, C = 1/2 everywhere.
        let last = c.net.layers.len() - 1;
        let layer = &mut c.net.layers[last];
        layer.weight = layer.weight.clone().map(|w| w.zeros_like());
        layer.bias = layer.bias.clone().map(|b| b.map(|t| t.zeros_like()));
        let u = game.payoff_of(&g, &c);
        assert!((u - 2.0 * std::f64::consts::LN_2).abs() < 1e-6, "{u}");
    }

    /// A classifier response really separates: against an untrained generator it earns
    /// far more than a constant classifier's `-2 log 2` (payoff to G far below `2 log 2`).
    #[test]
    fn a_classifier_response_beats_the_constant_classifier() {
        let mut game = GanGame::<B>::new(Mixture::ring8(), small(), Default::default(), 2).unwrap();
        let g = game.new_generator();
        let c = game
            .train_classifier(std::slice::from_ref(&g), &[1.0], 1000)
            .unwrap();
        let u = game.payoff_of(&g, &c);
        assert!(u < 0.5, "{u}");
        assert_eq!(game.gradient_steps(), 1000);
    }

    /// On a small budget PNM's game grows, its value is finite, and the records are
    /// consistent with the matrix.
    #[test]
    fn pnm_grows_the_game() {
        let mut game = GanGame::<B>::new(Mixture::ring8(), small(), Default::default(), 3).unwrap();
        let (g, c) = (game.new_generator(), game.new_classifier());
        let config = PnmConfig {
            epsilon: 0.0,
            max_iterations: 3,
        };
        let out = parallel_nash_memory(&mut game, g, c, config, |_, _, _| {}).unwrap();
        assert_eq!(out.history.len(), 3);
        assert_eq!(out.rows.len(), 4);
        assert_eq!(out.payoff.len(), 4);
        assert!(out.payoff.iter().flatten().all(|v| v.is_finite()));
        // With a classifier trained against it, the first generator loses clearly.
        assert!(out.history[0].col_gain() > 0.05, "{:?}", out.history[0]);
    }

    #[test]
    fn the_gan_trace_has_a_snapshot_per_interval() {
        let mut game = GanGame::<B>::new(Mixture::ring8(), small(), Default::default(), 5).unwrap();
        let trace = game.train_gan(25, 10, 30).unwrap().trace;
        let steps: Vec<usize> = trace.iter().map(|s| s.step).collect();
        assert_eq!(steps, [10, 20, 25]);
        assert!(
            trace
                .iter()
                .all(|s| s.samples.len() == 60 && s.classifier_loss.is_finite())
        );
        assert_eq!(game.gradient_steps(), 50);
    }

    /// The mixture's logits are the networks' own, in order.
    #[test]
    fn mixture_logits_match_each_network() {
        let mut game = GanGame::<B>::new(Mixture::ring8(), small(), Default::default(), 6).unwrap();
        let nets: Vec<Mlp<B>> = (0..3).map(|_| game.new_classifier().net).collect();
        let stacked = ClassifierMixture::new(nets.clone(), &[0.2, 0.3, 0.5], &Default::default());
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(Mixture::grid25().sample(7, 1), [7, 2]),
            &Default::default(),
        );
        let all = stacked.logits(x.clone());
        assert_eq!(all.dims(), [3, 7, 1]);
        for (k, net) in nets.iter().enumerate() {
            let one: Vec<f32> = net.forward(x.clone()).into_data().iter().collect();
            let from_stack: Vec<f32> = all
                .clone()
                .slice([k..k + 1, 0..7, 0..1])
                .into_data()
                .iter()
                .collect();
            for (a, b) in one.iter().zip(&from_stack) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn bad_settings_are_errors() {
        let bad = GangConfig {
            lr: f64::NAN,
            ..small()
        };
        let err = GanGame::<B>::new(Mixture::ring8(), bad, Default::default(), 1)
            .err()
            .unwrap();
        assert!(err.to_string().contains("learning rate"), "{err}");
        let bad = GangConfig {
            batch_size: 0,
            ..small()
        };
        let err = GanGame::<B>::new(Mixture::ring8(), bad, Default::default(), 1)
            .err()
            .unwrap();
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn a_diverging_gan_is_an_error_not_a_nan_model() {
        let bad = GangConfig {
            lr: 1e30,
            ..small()
        };
        let mut game = GanGame::<B>::new(Mixture::grid25(), bad, Default::default(), 4).unwrap();
        let err = game.train_gan(200, 50, 10).expect_err("diverges");
        assert!(err.to_string().contains("diverged"), "{err}");
    }
}
