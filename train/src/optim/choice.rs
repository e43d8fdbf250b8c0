//! Picking the primal optimizer at run time: `--optimizer adam|sgd|shampoo`, shared by every
//! training command (the same pattern as `--device`).

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, GradientsParams, LearningRate, MultiGradientsParams, Optimizer, Sgd,
    SgdConfig,
};
use burn::tensor::backend::AutodiffBackend;

use super::shampoo::{
    DistributedShampoo, Grafting, Shampoo, ShampooConfig, ShampooError, ShampooHealth,
};

/// The optimizers a command can train with.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015).
    Adam,
    /// SGD with heavy-ball momentum (`--momentum`).
    Sgd,
    /// Shampoo with Adam grafting (Shi et al. 2023): Adam's per-block step size, Shampoo's
    /// direction.
    Shampoo,
}

/// What grafted method sets Shampoo's per-block step size.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GraftingKind {
    /// No grafting: Shampoo's own step size.
    None,
    /// SGD.
    Sgd,
    /// AdaGrad.
    Adagrad,
    /// RMSProp.
    Rmsprop,
    /// Adam.
    Adam,
}

/// The `--optimizer` flags, to `#[command(flatten)]` into any command; serde reads and
/// writes them under the same names (a key left out takes its default).
#[derive(Clone, Debug, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OptimizerArgs {
    /// Optimizer of the network's weights (the learning rate is the command's `--lr`).
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Heavy-ball momentum of `--optimizer sgd`.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Shampoo: recompute the inverse roots every this many steps.
    #[arg(long, default_value_t = 10)]
    pub precondition_frequency: usize,
    /// Shampoo: largest Kronecker factor; larger dimensions are split into blocks.
    #[arg(long, default_value_t = 1024)]
    pub max_preconditioner_dim: usize,
    /// Shampoo: decay of the Kronecker factors (1: AdaGrad-style sums).
    #[arg(long, default_value_t = 0.999)]
    pub shampoo_beta2: f64,
    /// Shampoo: epsilon added to the factors' eigenvalues.
    #[arg(long, default_value_t = 1e-12)]
    pub shampoo_epsilon: f64,
    /// Shampoo: the root `p` of every factor's inverse root `L^(-1/p)` (the reference's
    /// `inv_root_override`); unset: twice the block's order (4 for a matrix). 2 whitens
    /// each side with `L^(-1/2)`, the exponent Morwani et al. (2024) derive for the best
    /// Kronecker approximation of full-matrix AdaGrad.
    #[arg(long)]
    pub shampoo_root: Option<u32>,
    /// Shampoo: the grafted method.
    #[arg(long, value_enum, default_value_t = GraftingKind::Adam)]
    pub grafting: GraftingKind,
    /// L2 weight decay: `weight_decay * w` added to every gradient, as PyTorch's
    /// `weight_decay` of Adam and SGD (for Shampoo its coupled form, before the
    /// preconditioner). 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Shampoo, data parallel (`--devices N`, `mpirun`): every rank computes every block
    /// itself, instead of each block's owner alone with the directions all-gathered
    /// (Distributed Shampoo's ownership, the default). The same weights either way; the
    /// baseline ownership's saving is measured against.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shampoo_replicate: bool,
}

impl Default for OptimizerArgs {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            precondition_frequency: 10,
            max_preconditioner_dim: 1024,
            shampoo_beta2: 0.999,
            shampoo_epsilon: 1e-12,
            shampoo_root: None,
            grafting: GraftingKind::Adam,
            weight_decay: 0.0,
            shampoo_replicate: false,
        }
    }
}

impl OptimizerArgs {
    /// These flags with a different optimizer.
    pub fn with_kind(mut self, kind: OptimizerKind) -> Self {
        self.optimizer = kind;
        self
    }

    /// The Shampoo settings these flags describe: the reference's recipe for replacing
    /// Adam (betas as Adam's, Adam grafting with epsilon 1e-8), the frequency and
    /// factor size from the flags.
    pub fn shampoo_config(&self) -> ShampooConfig {
        let grafting = match self.grafting {
            GraftingKind::None => None,
            GraftingKind::Sgd => Some(Grafting::Sgd),
            GraftingKind::Adagrad => Some(Grafting::AdaGrad { epsilon: 1e-8 }),
            GraftingKind::Rmsprop => Some(Grafting::RmsProp {
                beta2: 0.99,
                epsilon: 1e-8,
            }),
            GraftingKind::Adam => Some(Grafting::Adam {
                beta2: 0.999,
                epsilon: 1e-8,
            }),
        };
        ShampooConfig::default()
            .with_beta2(self.shampoo_beta2)
            .with_epsilon(self.shampoo_epsilon)
            .with_root_override(self.shampoo_root)
            .with_precondition_frequency(self.precondition_frequency)
            .with_max_preconditioner_dim(self.max_preconditioner_dim)
            .with_grafting(grafting)
            .with_weight_decay(self.weight_decay)
            .with_decoupled_weight_decay(false)
    }

    /// Checks the flags of the chosen optimizer (call before loading data, so a bad flag
    /// fails fast).
    pub fn validate(&self) -> Result<(), ShampooError> {
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(ShampooError::InvalidConfig(format!(
                "--weight-decay must be finite and >= 0, got {}",
                self.weight_decay
            )));
        }
        match self.optimizer {
            OptimizerKind::Adam => Ok(()),
            OptimizerKind::Sgd if (0.0..1.0).contains(&self.momentum) => Ok(()),
            OptimizerKind::Sgd => Err(ShampooError::InvalidConfig(format!(
                "--momentum must be in [0, 1), got {}",
                self.momentum
            ))),
            OptimizerKind::Shampoo => self.shampoo_config().validate(),
        }
    }

    /// Builds the optimizer for module `M`; bad settings are an error.
    pub fn build<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> Result<AnyOptimizer<M, B>, ShampooError> {
        self.build_with_adam(&AdamConfig::new())
    }

    /// [`Self::build`], with `adam` as the Adam settings (a task with its own, e.g. GANs'
    /// `beta1 = 0.5`).
    pub fn build_with_adam<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        adam: &AdamConfig,
    ) -> Result<AnyOptimizer<M, B>, ShampooError> {
        self.validate()?;
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        Ok(match self.optimizer {
            OptimizerKind::Adam => AnyOptimizer::Adam(match decay {
                Some(d) => adam.clone().with_weight_decay(Some(d)).init(),
                None => adam.init(),
            }),
            OptimizerKind::Sgd => {
                let momentum = (self.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                });
                AnyOptimizer::Sgd(
                    SgdConfig::new()
                        .with_momentum(momentum)
                        .with_weight_decay(decay)
                        .init(),
                )
            }
            OptimizerKind::Shampoo => AnyOptimizer::Shampoo(Box::new(
                DistributedShampoo::new(self.shampoo_config().build()?)
                    .with_replicated(self.shampoo_replicate),
            )),
        })
    }
}

/// Adam, SGD or Shampoo, chosen at run time.
#[derive(Clone)]
pub enum AnyOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    /// Adam.
    Adam(OptimizerAdaptor<Adam, M, B>),
    /// SGD (with momentum).
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    /// Shampoo (with block ownership on a data-parallel rank; boxed: its state maps make
    /// it several times the others' size).
    Shampoo(Box<DistributedShampoo<M, B>>),
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> AnyOptimizer<M, B> {
    /// Shampoo's failure handle (`None` for the others, which have no failure mode of
    /// their own).
    pub fn health(&self) -> Option<ShampooHealth> {
        match self {
            Self::Shampoo(o) => Some(o.health()),
            _ => None,
        }
    }
}

type AdaptorRecord<O, M, B> = <OptimizerAdaptor<O, M, B> as Optimizer<M, B>>::Record;

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optimizer<M, B> for AnyOptimizer<M, B> {
    type Record = (
        Option<AdaptorRecord<Adam, M, B>>,
        Option<AdaptorRecord<Sgd<B::InnerBackend>, M, B>>,
        Option<AdaptorRecord<Shampoo, M, B>>,
    );

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        match self {
            Self::Adam(o) => o.step(lr, module, grads),
            Self::Sgd(o) => o.step(lr, module, grads),
            Self::Shampoo(o) => o.step(lr, module, grads),
        }
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        match self {
            Self::Adam(o) => o.step_multi(lr, module, grads),
            Self::Sgd(o) => o.step_multi(lr, module, grads),
            Self::Shampoo(o) => o.step_multi(lr, module, grads),
        }
    }

    fn to_record(&self) -> Self::Record {
        match self {
            Self::Adam(o) => (Some(o.to_record()), None, None),
            Self::Sgd(o) => (None, Some(o.to_record()), None),
            Self::Shampoo(o) => (None, None, Some(o.to_record())),
        }
    }

    fn load_record(self, record: Self::Record) -> Self {
        match (self, record) {
            (Self::Adam(o), (Some(r), _, _)) => Self::Adam(o.load_record(r)),
            (Self::Sgd(o), (_, Some(r), _)) => Self::Sgd(o.load_record(r)),
            (Self::Shampoo(o), (_, _, Some(r))) => Self::Shampoo(Box::new(o.load_record(r))),
            // A record of another optimizer (the run was resumed with a different
            // `--optimizer`) carries nothing this one can use: it starts fresh.
            (this, _) => this,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Tensor;

    type B = Autodiff<Flex>;

    /// One step on a loss with zero gradient: only the decay moves the weights.
    fn step_without_gradient(args: &OptimizerArgs, lr: f64) -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let mut layer: Linear<B> = LinearConfig::new(3, 2).init(&device);
        // Fixed weights, tiny ones among them, so the check does not depend on the
        // (global, shared between test threads) generator's draws.
        let weights = [0.5f32, -0.3, 2e-4, -1e-5, 0.02, -0.7];
        layer.weight = burn::module::Param::from_tensor(
            Tensor::<B, 1>::from_floats(weights, &device).reshape([3, 2]),
        );
        let before: Vec<f32> = layer.weight.val().into_data().into_vec().unwrap();
        let x = Tensor::<B, 2>::ones([1, 3], &device);
        let loss = layer.forward(x).sum().mul_scalar(0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let mut opt = args.build::<B, Linear<B>>().unwrap();
        let layer = opt.step(lr, layer, grads);
        let after: Vec<f32> = layer.weight.val().into_data().into_vec().unwrap();
        (before, after)
    }

    #[test]
    fn shampoo_flags_reach_its_config() {
        let args = OptimizerArgs {
            shampoo_root: Some(2),
            shampoo_beta2: 0.99,
            ..OptimizerArgs::default().with_kind(OptimizerKind::Shampoo)
        };
        let config = args.shampoo_config();
        assert_eq!(config.root_override, Some(2));
        assert_eq!(config.beta2, 0.99);
        assert_eq!(
            OptimizerArgs::default().shampoo_config().root_override,
            None
        );
    }

    #[test]
    fn weight_decay_adds_its_l2_gradient() {
        let sgd = OptimizerArgs {
            momentum: 0.0,
            weight_decay: 0.1,
            ..OptimizerArgs::default().with_kind(OptimizerKind::Sgd)
        };
        // SGD: w - lr * wd * w, exactly.
        let (before, after) = step_without_gradient(&sgd, 0.5);
        for (b, a) in before.iter().zip(&after) {
            assert!((a - b * (1.0 - 0.05)).abs() < 1e-7, "{b} -> {a}");
        }
        // Adam: its first step normalises the decay's gradient g = wd * w to
        // g / (|g| + eps) (burn's bias corrections cancel at step 1; eps is burn's
        // default 1e-5), so a weight moves by lr towards zero, less for tiny weights.
        let adam = OptimizerArgs {
            weight_decay: 0.1,
            ..OptimizerArgs::default()
        };
        let (before, after) = step_without_gradient(&adam, 0.01);
        for (b, a) in before.iter().zip(&after) {
            let g = 0.1 * f64::from(*b);
            let expected = f64::from(*b) - 0.01 * g / (g.abs() + 1e-5);
            assert!((f64::from(*a) - expected).abs() < 1e-6, "{b} -> {a}");
        }
        // Off by default: nothing moves.
        let (before, after) = step_without_gradient(&OptimizerArgs::default(), 0.01);
        assert_eq!(before, after);
        let bad = OptimizerArgs {
            weight_decay: -1.0,
            ..OptimizerArgs::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--weight-decay must be finite and >= 0")
        );
    }
}
