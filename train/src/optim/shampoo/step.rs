//! One Shampoo step on one parameter (burn's [`SimpleOptimizer`]); the module docs list the
//! equations in order.

use core::ops::Range;

use burn::module::AutodiffModule;
use burn::optim::{LearningRate, SimpleOptimizer, adaptor::OptimizerAdaptor};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::blocking::{Block, BlockPlan};
use super::config::{Grafting, ShampooConfig};
use super::error::ShampooError;
use super::health::ShampooHealth;
use super::host::on_host;
use super::inverse_root::{RootError, inverse_root};
use super::kernels::symmetric_f64;
use crate::denormals::FlushDenormals;

/// Added to Shampoo's block norm before grafting divides by it (the reference's 1e-16).
pub(super) const GRAFT_NORM_FLOOR: f64 = 1e-16;

/// Which block a step works on: the block, the (1-based) step, and the parameter's shape
/// and block index (for errors).
#[derive(Clone, Copy)]
pub(super) struct BlockAt<'a> {
    pub block: &'a Block,
    pub step: usize,
    pub shape: &'a [usize],
    pub index: usize,
}

/// The Shampoo optimizer; build it with [`ShampooConfig::build`].
#[derive(Clone, Debug)]
pub struct Shampoo {
    config: ShampooConfig,
    health: ShampooHealth,
}

/// Shampoo's state for one parameter (a burn record: saved and loaded with the optimizer).
/// Everything is per block, so a data-parallel worker keeps only the blocks it owns.
#[derive(Record, Clone)]
pub struct ShampooState<B: Backend> {
    /// Steps taken (the first step is 1).
    pub step: usize,
    /// Per block of [`BlockPlan`]: `None` for a block another worker owns.
    pub blocks: Vec<Option<BlockState<B>>>,
}

/// One block's statistics and buffers (flattened block layout).
#[derive(Record, Clone)]
pub struct BlockState<B: Backend> {
    /// Kronecker factor `L_k` per block dimension: its lower triangle (the host path does
    /// not keep the strict upper one; the tensor path keeps the whole symmetric matrix).
    pub factors: Vec<Tensor<B, 2>>,
    /// Inverse root `R_k` per factor (zero until first computed, as the reference).
    pub roots: Vec<Tensor<B, 2>>,
    /// The grafted method's second-moment statistics.
    pub graft: Option<Tensor<B, 1>>,
    /// EMA of the gradient (when `beta1 > 0`).
    pub filtered: Option<Tensor<B, 1>>,
    /// Momentum buffer (when `momentum > 0`).
    pub momentum: Option<Tensor<B, 1>>,
    /// Consecutive failed root computations.
    pub failed_computations: usize,
}

impl ShampooConfig {
    /// Checks the settings and builds the optimizer.
    pub fn build(&self) -> Result<Shampoo, ShampooError> {
        self.validate()?;
        Ok(Shampoo {
            config: self.clone(),
            health: ShampooHealth::default(),
        })
    }

    /// Checks the settings and builds a burn [`burn::optim::Optimizer`] for module `M`;
    /// `adaptor.optim().health()` is the failure handle.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> Result<OptimizerAdaptor<Shampoo, M, B>, ShampooError> {
        Ok(OptimizerAdaptor::from(self.build()?))
    }
}

impl Shampoo {
    /// The handle its failures and counters go to (shared by clones).
    pub fn health(&self) -> ShampooHealth {
        self.health.clone()
    }

    /// Its settings.
    pub fn config(&self) -> &ShampooConfig {
        &self.config
    }

    pub(super) fn plan(&self, shape: &[usize]) -> BlockPlan {
        BlockPlan::new(
            shape,
            self.config.max_preconditioner_dim,
            self.config.merge_dims,
        )
    }

    /// The root `p` of a block of `order` dimensions.
    fn root(&self, order: usize) -> f64 {
        self.config
            .root_override
            .map_or(2.0 * order as f64, f64::from)
    }

    /// Fresh state for a parameter of `shape`, every block on this device.
    pub(super) fn fresh_state<B: Backend>(
        &self,
        shape: &[usize],
        device: &B::Device,
    ) -> ShampooState<B> {
        ShampooState {
            step: 0,
            blocks: self
                .plan(shape)
                .blocks
                .iter()
                .map(|b| Some(self.new_block(b, device)))
                .collect(),
        }
    }

    /// Fresh state for `block`.
    pub(super) fn new_block<B: Backend>(&self, block: &Block, device: &B::Device) -> BlockState<B> {
        BlockState {
            factors: block
                .shape
                .iter()
                .map(|&d| Tensor::zeros([d, d], device))
                .collect(),
            roots: block
                .shape
                .iter()
                .map(|&d| Tensor::zeros([d, d], device))
                .collect(),
            graft: match self.config.grafting {
                None | Some(Grafting::Sgd) => None,
                Some(_) => Some(Tensor::zeros([block.numel()], device)),
            },
            filtered: None,
            momentum: None,
            failed_computations: 0,
        }
    }

    /// The grafted method's direction for the filtered block `g_bar` at step `t`.
    fn graft_direction<B: Backend>(
        &self,
        g_bar: Tensor<B, 1>,
        stats: Option<&Tensor<B, 1>>,
        t: usize,
    ) -> Tensor<B, 1> {
        let denom = |v: Tensor<B, 1>, eps: f64| v.sqrt().add_scalar(eps);
        match (self.config.grafting, stats) {
            (Some(Grafting::AdaGrad { epsilon }), Some(v))
            | (Some(Grafting::RmsProp { epsilon, .. }), Some(v)) => {
                g_bar.div(denom(v.clone(), epsilon))
            }
            (Some(Grafting::Adam { beta2, epsilon }), Some(v)) => {
                let bc = 1.0 - beta2.powi(t as i32);
                g_bar.div(denom(v.clone().div_scalar(bc), epsilon))
            }
            _ => g_bar,
        }
    }

    /// Updates the grafted method's statistics with the raw block gradient.
    fn update_graft<B: Backend>(&self, stats: &mut Option<Tensor<B, 1>>, g: &Tensor<B, 1>) {
        let Some(v) = stats.take() else { return };
        let g2 = g.clone().square();
        *stats = Some(match self.config.grafting {
            Some(Grafting::AdaGrad { .. }) => v + g2,
            Some(Grafting::RmsProp { beta2, .. }) | Some(Grafting::Adam { beta2, .. }) => {
                v.mul_scalar(beta2) + g2.mul_scalar(1.0 - beta2)
            }
            _ => v,
        });
    }

    /// Recomputes the block's inverse roots from its factors (the tensor path).
    fn compute_roots<B: Backend>(
        &self,
        block: &mut BlockState<B>,
        at: BlockAt<'_>,
    ) -> Result<(), ShampooError> {
        let factors: Vec<Vec<f32>> = block
            .factors
            .iter()
            .map(|f| f.to_data().convert::<f32>().into_vec().expect("f32"))
            .collect();
        let new = self.roots_from_lower(
            &factors,
            &at.block.shape,
            &mut block.failed_computations,
            at,
        )?;
        for ((root, new), &n) in block.roots.iter_mut().zip(new).zip(&at.block.shape) {
            if let Some(r) = new {
                let device = root.device();
                *root = Tensor::from_data(TensorData::new(r, [n, n]), &device);
            }
        }
        Ok(())
    }

    /// The inverse roots of a block's factors (row-major `d x d`, read from their lower
    /// triangles), `None` where the computation failed and the previous root stays. A
    /// failed computation (the eigendecomposition or Newton not converging, a non-finite
    /// root) counts in `failed`; more than `tolerated_root_failures` in a row is an error.
    /// A non-finite factor is an error at once: the statistics are poisoned for good.
    pub(super) fn roots_from_lower(
        &self,
        factors: &[Vec<f32>],
        dims: &[usize],
        failed: &mut usize,
        at: BlockAt<'_>,
    ) -> Result<Vec<Option<Vec<f32>>>, ShampooError> {
        let c = &self.config;
        let t = at.step;
        let bias = if c.bias_correction && c.beta2 < 1.0 {
            1.0 - c.beta2.powi(t as i32)
        } else {
            1.0
        };
        let order = factors.len();
        let mut last_failure = None;
        let mut roots = Vec::with_capacity(order);
        for (k, (l, &n)) in factors.iter().zip(dims).enumerate() {
            let a = symmetric_f64(l, n, bias);
            let result = inverse_root(
                &a,
                n,
                self.root(order),
                c.exponent_multiplier,
                c.epsilon,
                c.root_method,
            );
            self.health.count_root(result.is_ok());
            match result {
                Ok(r) => roots.push(Some(r.into_iter().map(|v| v as f32).collect())),
                Err(cause @ RootError::NonFiniteInput) => {
                    return Err(ShampooError::NonFiniteFactor {
                        shape: at.shape.to_vec(),
                        block: at.index,
                        factor: k,
                        step: t,
                        cause,
                    });
                }
                Err(cause) => {
                    roots.push(None);
                    last_failure = Some(cause);
                }
            }
        }
        match last_failure {
            None => *failed = 0,
            Some(cause) => {
                *failed += 1;
                if *failed > c.tolerated_root_failures {
                    return Err(ShampooError::PersistentRootFailure {
                        shape: at.shape.to_vec(),
                        block: at.index,
                        failures: *failed,
                        step: t,
                        cause,
                    });
                }
            }
        }
        Ok(roots)
    }
}

/// `x` (a flattened block of `shape`) unfolded along dimension `k`: `[d_k, rest]`.
fn unfold<B: Backend>(x: Tensor<B, 1>, shape: &[usize], k: usize) -> Tensor<B, 2> {
    let before: usize = shape[..k].iter().product();
    let after: usize = shape[k + 1..].iter().product();
    if before == 1 {
        return x.reshape([shape[k], after]);
    }
    x.reshape([before, shape[k], after])
        .swap_dims(0, 1)
        .reshape([shape[k], before * after])
}

/// Inverse of [`unfold`].
fn fold<B: Backend>(x: Tensor<B, 2>, shape: &[usize], k: usize) -> Tensor<B, 1> {
    let before: usize = shape[..k].iter().product();
    let after: usize = shape[k + 1..].iter().product();
    let n = before * shape[k] * after;
    if before == 1 {
        return x.reshape([n]);
    }
    x.reshape([shape[k], before, after])
        .swap_dims(0, 1)
        .reshape([n])
}

/// `x x_1 R_1 ... x_o R_o` for a flattened block (each `R_k` symmetric).
fn precondition<B: Backend>(
    mut x: Tensor<B, 1>,
    shape: &[usize],
    roots: &[Tensor<B, 2>],
) -> Tensor<B, 1> {
    for (k, r) in roots.iter().enumerate() {
        x = fold(r.clone().matmul(unfold(x, shape, k)), shape, k);
    }
    x
}

/// Frobenius norm as a `[1]` tensor (no host round trip).
fn norm<B: Backend>(x: Tensor<B, 1>) -> Tensor<B, 1> {
    x.square().sum().sqrt()
}

/// `shape` padded with trailing 1s to rank `D`.
fn padded<const D: usize>(shape: &[usize]) -> [usize; D] {
    let mut out = [1usize; D];
    out[..shape.len()].copy_from_slice(shape);
    out
}

/// The flattened blocks of `x` (of any shape whose merged form is `plan.merged`).
pub(super) fn split<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    plan: &BlockPlan,
) -> Vec<Tensor<B, 1>> {
    if plan.is_single() {
        return vec![x.reshape([plan.blocks[0].numel()])];
    }
    let merged: Tensor<B, D> = x.reshape(padded::<D>(&plan.merged));
    plan.blocks
        .iter()
        .map(|b| {
            let ranges: Vec<Range<usize>> = ranges(b);
            merged.clone().slice(ranges.as_slice()).reshape([b.numel()])
        })
        .collect()
}

fn ranges(b: &Block) -> Vec<Range<usize>> {
    b.offsets
        .iter()
        .zip(&b.shape)
        .map(|(&o, &s)| o..o + s)
        .collect()
}

/// Inverse of [`split`]: the blocks put back into a tensor of `shape`.
pub(super) fn join<B: Backend, const D: usize>(
    blocks: Vec<Tensor<B, 1>>,
    plan: &BlockPlan,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    if plan.is_single() {
        let only = blocks.into_iter().next().expect("one block");
        return only.reshape(shape);
    }
    let mut out = Tensor::<B, D>::zeros(padded::<D>(&plan.merged), device);
    for (b, x) in plan.blocks.iter().zip(blocks) {
        let r = ranges(b);
        out = out.slice_assign(r.as_slice(), x.reshape(padded::<D>(&b.shape)));
    }
    out.reshape(shape)
}

impl Shampoo {
    /// Checks a parameter and its gradient before a step: `Err` for a zero-size parameter
    /// or a non-finite gradient (one scalar read back per parameter).
    pub(super) fn check_input<B: Backend, const D: usize>(
        &self,
        grad: &Tensor<B, D>,
        t: usize,
    ) -> Result<(), ShampooError> {
        let shape = grad.dims();
        if shape.contains(&0) {
            return Err(ShampooError::ZeroSizeParameter {
                shape: shape.to_vec(),
            });
        }
        let total: f64 = grad.clone().abs().sum().into_scalar().elem();
        if !total.is_finite() {
            return Err(ShampooError::NonFiniteGradient {
                shape: shape.to_vec(),
                step: t,
            });
        }
        Ok(())
    }

    /// One block's step by tensor ops (any backend): from its raw gradient `g` (L2 decay
    /// included) and its parameter values `w` (only when decoupled decay needs them), the
    /// direction `P` after grafting, decoupled decay and momentum (the parameter moves by
    /// `-lr P`). CPU backends take the host kernels instead ([`super::host_step`]).
    pub(super) fn block_direction_tensor<B: Backend>(
        &self,
        st: &mut BlockState<B>,
        at: BlockAt<'_>,
        g: Tensor<B, 1>,
        w: Option<Tensor<B, 1>>,
    ) -> Result<Tensor<B, 1>, ShampooError> {
        let BlockAt { block, step: t, .. } = at;
        let c = &self.config;
        // Step 4 of the module docs first (it needs only G): the filtered gradient.
        let g_bar = if c.beta1 != 0.0 {
            let old = st.filtered.take().unwrap_or_else(|| g.zeros_like());
            let new = old.clone().mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
            let beta3 = c.beta3();
            let mut g_bar = if beta3 != c.beta1 {
                old.mul_scalar(beta3) + g.clone().mul_scalar(1.0 - beta3)
            } else {
                new.clone()
            };
            st.filtered = Some(new);
            if c.bias_correction {
                g_bar = g_bar.div_scalar(1.0 - beta3 * c.beta1.powi(t as i32 - 1));
            }
            g_bar
        } else {
            g.clone()
        };
        // 2. Factors and grafting statistics from the raw gradient.
        for k in 0..block.shape.len() {
            let u = unfold(g.clone(), &block.shape, k);
            let outer = u.clone().matmul(u.transpose());
            let f = st.factors[k].clone();
            st.factors[k] = if c.beta2 == 1.0 {
                f + outer
            } else {
                f.mul_scalar(c.beta2) + outer.mul_scalar(1.0 - c.beta2)
            };
        }
        self.update_graft(&mut st.graft, &g);
        // 3. Inverse roots when due.
        let start = c.start_step();
        if (t.is_multiple_of(c.precondition_frequency) && t > start) || t == start {
            self.compute_roots(st, at)?;
        }
        // 5. The direction, grafted.
        let mut dir = if t < start && c.grafting.is_some() {
            self.graft_direction(g_bar, st.graft.as_ref(), t)
        } else {
            let p = precondition(g_bar.clone(), &block.shape, &st.roots);
            if c.grafting.is_some() {
                let graft = self.graft_direction(g_bar, st.graft.as_ref(), t);
                let scale = norm(graft).div(norm(p.clone()).add_scalar(GRAFT_NORM_FLOOR));
                p.mul(scale)
            } else {
                p
            }
        };
        // 6. Decoupled decay and momentum.
        if let Some(w) = w {
            dir = dir + w.mul_scalar(c.weight_decay);
        }
        if c.momentum != 0.0 {
            let m = st.momentum.take().unwrap_or_else(|| dir.zeros_like());
            let m = m.mul_scalar(c.momentum) + dir.clone().mul_scalar(1.0 - c.dampening);
            dir = if c.nesterov {
                dir.mul_scalar(1.0 - c.dampening) + m.clone().mul_scalar(c.momentum)
            } else {
                m.clone()
            };
            st.momentum = Some(m);
        }
        Ok(dir)
    }

    /// The parameter's blocks when decoupled weight decay needs them (`None` per block
    /// otherwise: no slicing on the hot path).
    pub(super) fn weight_blocks<B: Backend, const D: usize>(
        &self,
        tensor: &Tensor<B, D>,
        plan: &BlockPlan,
    ) -> Vec<Option<Tensor<B, 1>>> {
        let c = &self.config;
        if c.weight_decay != 0.0 && c.decoupled_weight_decay {
            split(tensor.clone(), plan).into_iter().map(Some).collect()
        } else {
            vec![None; plan.blocks.len()]
        }
    }

    /// The raw gradient with L2 decay (when not decoupled).
    pub(super) fn with_l2<B: Backend, const D: usize>(
        &self,
        grad: Tensor<B, D>,
        tensor: &Tensor<B, D>,
    ) -> Tensor<B, D> {
        let c = &self.config;
        if c.weight_decay != 0.0 && !c.decoupled_weight_decay {
            grad + tensor.clone().mul_scalar(c.weight_decay)
        } else {
            grad
        }
    }

    /// One parameter's step by tensor ops (any backend).
    pub(super) fn step_checked<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<ShampooState<B>>,
        t: usize,
    ) -> Result<(Tensor<B, D>, ShampooState<B>), ShampooError> {
        let shape = tensor.dims();
        let device = tensor.device();
        let plan = self.plan(&shape);
        let mut state = state.unwrap_or_else(|| self.fresh_state(&shape, &device));
        state.step = t;
        let grad = self.with_l2(grad, &tensor);
        let g_blocks = split(grad, &plan);
        let w_blocks = self.weight_blocks(&tensor, &plan);
        let mut directions = Vec::with_capacity(plan.blocks.len());
        for (i, ((block, g), w)) in plan.blocks.iter().zip(g_blocks).zip(w_blocks).enumerate() {
            let st = state.blocks[i]
                .as_mut()
                .expect("a single-device state holds every block");
            let at = BlockAt {
                block,
                step: t,
                shape: &shape,
                index: i,
            };
            directions.push(self.block_direction_tensor(st, at, g, w)?);
        }
        let dir = join(directions, &plan, shape, &device);
        Ok((tensor - dir.mul_scalar(lr), state))
    }
}

impl<B: Backend> SimpleOptimizer<B> for Shampoo {
    type State<const D: usize> = ShampooState<B>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if self.health.failed() {
            return (tensor, state);
        }
        let _flush = FlushDenormals::new();
        let t = state.as_ref().map_or(0, |s| s.step) + 1;
        let device = tensor.device();
        if !on_host::<B>(&device) {
            let result = self
                .check_input(&grad, t)
                .and_then(|()| self.step_checked(lr, tensor.clone(), grad, state.clone(), t));
            return match result {
                Ok((tensor, state)) => (tensor, Some(state)),
                Err(e) => {
                    self.health.fail(e);
                    (tensor, state)
                }
            };
        }
        // On the host the state is updated in place (no clone: a shared buffer would be
        // copied on every access).
        let shape = tensor.dims();
        if shape.contains(&0) {
            self.health.fail(ShampooError::ZeroSizeParameter {
                shape: shape.to_vec(),
            });
            return (tensor, state);
        }
        let mut state = state.unwrap_or_else(|| self.fresh_state(&shape, &device));
        state.step = t;
        match self.step_host(lr, tensor, grad, &mut state, t) {
            Ok(tensor) => (tensor, Some(state)),
            Err((e, tensor)) => {
                self.health.fail(e);
                (tensor, Some(state))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.to_device(device)
    }
}

impl<B: Backend> ShampooState<B> {
    /// The state with every tensor moved to `device`.
    pub fn to_device(mut self, device: &B::Device) -> Self {
        for b in self.blocks.iter_mut().flatten() {
            for f in b.factors.iter_mut().chain(b.roots.iter_mut()) {
                *f = f.clone().to_device(device);
            }
            for v in [&mut b.graft, &mut b.filtered, &mut b.momentum] {
                *v = v.take().map(|x| x.to_device(device));
            }
        }
        self
    }
}
