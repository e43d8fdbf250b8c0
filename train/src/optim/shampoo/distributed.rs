//! Shampoo as the training commands step it, alone or as one rank of a data-parallel
//! group, with Distributed Shampoo's block ownership (Shi et al. 2023, §4): every rank
//! holds a replica of the model and gets the same (all-reduced) gradients; each block is
//! *owned* by one rank ([`super::ownership`]), which alone updates its factors and
//! grafting statistics, computes its inverse roots and its search direction; one
//! all-gather per step ([`Collective::all_gather`]) then gives every rank every block's
//! direction, and every rank applies the same update.
//!
//! The group is the thread's ([`crate::parallel::group`]): burn-collective's local peers
//! for `--devices N`, MPI's world under `mpirun`. Alone (no group, or one rank) the step
//! is burn's [`OptimizerAdaptor`] over [`Shampoo`], unchanged.
//!
//! What stays exact: a block's grafting norm is its own (the grafted method's norm and
//! Shampoo's over the same block, Shi et al. Algorithm 1), so the owner computes it
//! whole; the gradients are the all-reduced ones on every rank; the all-gather moves
//! values without arithmetic. So a group's step equals one process's step on the same
//! summed gradient, bit for bit on the same backend.
//!
//! State: a rank keeps only its blocks' state (`None` for the others'). A checkpoint
//! holds every block: [`Optimizer::to_record`] gathers the owners' states
//! ([`super::gather_state`]; a collective call, as the checkpoint's save is made by every
//! rank at the same step), so it resumes on any number of ranks, and a rank that loads a
//! full record drops the blocks it does not own at its next step.
//!
//! A failure on one rank (a non-finite factor, roots that keep failing) travels in the
//! all-gather (a flag after each rank's directions): every rank stops at the same step,
//! the failing one with its error, the others with [`ShampooError::PeerFailed`], and no
//! rank moves its parameters at that step.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{
    GradientsParams, LearningRate, MultiGradientsParams, Optimizer, SimpleOptimizer,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::blocking::BlockPlan;
use super::error::ShampooError;
use super::gather_state::{Records, gather_states};
use super::health::ShampooHealth;
use super::host::{host_values, on_host};
use super::kernels::runs;
use super::ownership::{Ownership, block_cost};
use super::step::{BlockAt, Shampoo, ShampooState, split};
use crate::denormals::FlushDenormals;
use crate::parallel::Collective;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// Shampoo as a burn [`Optimizer`] over a whole module: alone, or with block ownership on
/// a data-parallel rank (see the module docs). [`crate::optim::OptimizerArgs::build`]
/// gives one.
#[derive(Clone)]
pub struct DistributedShampoo<M: AutodiffModule<B>, B: AutodiffBackend> {
    shampoo: Shampoo,
    records: Records<B>,
    /// Every stepped parameter's block owners (set at the first data-parallel step).
    ownership: Option<Ownership>,
    /// Every stepped parameter's blocks.
    plans: HashMap<ParamId, BlockPlan>,
    /// Every rank computes every block (no ownership).
    replicate: bool,
    _module: core::marker::PhantomData<M>,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> DistributedShampoo<M, B> {
    /// Steps with `shampoo`, owning blocks when the thread is a rank of a group.
    pub fn new(shampoo: Shampoo) -> Self {
        Self {
            shampoo,
            records: Records::new(),
            ownership: None,
            plans: HashMap::new(),
            replicate: false,
            _module: core::marker::PhantomData,
        }
    }

    /// With `replicate`, every rank of a group computes every block itself (each replica
    /// a plain Shampoo on the reduced gradients): the baseline ownership is measured
    /// against.
    pub fn with_replicated(mut self, replicate: bool) -> Self {
        self.replicate = replicate;
        self
    }

    /// The failure handle (shared by clones of the wrapped [`Shampoo`]).
    pub fn health(&self) -> ShampooHealth {
        self.shampoo.health()
    }

    /// The number of blocks each rank owns (empty until the first data-parallel step).
    pub fn blocks_per_rank(&self) -> Vec<usize> {
        let Some(o) = &self.ownership else {
            return Vec::new();
        };
        let mut counts = vec![0; o.ranks()];
        for id in o.order() {
            for &r in o.owners(id).expect("listed") {
                counts[r] += 1;
            }
        }
        counts
    }

    /// The group this step runs with ownership on, if any.
    fn owning_group(&self) -> Option<std::rc::Rc<dyn Collective>> {
        crate::parallel::group().filter(|g| g.size() > 1 && !self.replicate)
    }

    fn step_common(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        match self.owning_group() {
            Some(group) => self.step_owned(&*group, lr, module, grads),
            None => module.map(&mut Replicated::<B> {
                shampoo: &self.shampoo,
                records: &mut self.records,
                grads,
                lr,
            }),
        }
    }

    /// One step as a rank owning blocks; failures go to the health handle.
    fn step_owned(
        &mut self,
        group: &dyn Collective,
        lr: LearningRate,
        module: M,
        mut grads: GradientsParams,
    ) -> M {
        let health = self.shampoo.health();
        if health.failed() {
            return module;
        }
        let _flush = FlushDenormals::new();
        let (rank, ranks) = (group.rank(), group.size());
        // 1. The parameters with a gradient, in the module's order, and their owners.
        let mut listed = Listed::<B> {
            grads: &grads,
            shampoo: &self.shampoo,
            params: Vec::new(),
            _backend: core::marker::PhantomData,
        };
        module.visit(&mut listed);
        let stepped = listed.params;
        let ownership = self.ownership.get_or_insert_with(|| Ownership::new(ranks));
        if ownership.ranks() != ranks {
            health.fail(ShampooError::Collective(format!(
                "the group changed from {} to {ranks} ranks during the run",
                ownership.ranks()
            )));
            return module;
        }
        let frequency = self.shampoo.config().precondition_frequency;
        // Only parameters seen for the first time need costs: the others keep their owners.
        let costs: Vec<(ParamId, Vec<f64>)> = stepped
            .iter()
            .filter(|(id, _)| ownership.owners(id).is_none())
            .map(|(id, plan)| {
                let c = plan.blocks.iter().map(|b| block_cost(b, frequency));
                (*id, c.collect())
            })
            .collect();
        ownership.assign(&costs);
        for (id, plan) in &stepped {
            self.plans.entry(*id).or_insert_with(|| plan.clone());
        }
        // 2. This rank's blocks' directions, in the parameters' and blocks' order.
        let mut owned = Owned::<B> {
            shampoo: &self.shampoo,
            ownership,
            rank,
            records: &mut self.records,
            grads: &mut grads,
            mine: Vec::new(),
            error: None,
        };
        module.visit(&mut owned);
        let (mut mine, error) = (owned.mine, owned.error);
        // 3. One all-gather: each rank's directions, then its failure flag.
        let mut counts = vec![1usize; ranks];
        for (id, plan) in &stepped {
            let owners = ownership.owners(id).expect("assigned above");
            for (b, &r) in plan.blocks.iter().zip(owners) {
                counts[r] += b.numel();
            }
        }
        mine.resize(counts[rank] - 1, 0.0);
        mine.push(if error.is_some() { 1.0 } else { 0.0 });
        let mut all = vec![0.0f32; counts.iter().sum()];
        if let Err(e) = group.all_gather(&mine, &counts, &mut all) {
            health.fail(ShampooError::Collective(e.to_string()));
            return module;
        }
        let mut starts = Vec::with_capacity(ranks);
        let mut at = 0;
        for &c in &counts {
            starts.push(at);
            at += c;
        }
        let peer_failed = (0..ranks).any(|r| all[starts[r] + counts[r] - 1] != 0.0);
        if let Some(e) = error {
            health.fail(e);
            return module;
        }
        if peer_failed {
            health.fail(ShampooError::PeerFailed);
            return module;
        }
        // 4. Every parameter's direction from its blocks' owners, applied.
        let mut cursor = starts;
        let mut dirs = HashMap::with_capacity(stepped.len());
        for (id, plan) in &stepped {
            let owners = ownership.owners(id).expect("assigned above");
            let numel: usize = plan.merged.iter().product();
            let mut dir = vec![0.0f32; numel];
            for (block, &r) in plan.blocks.iter().zip(owners) {
                let p = &all[cursor[r]..cursor[r] + block.numel()];
                cursor[r] += block.numel();
                if plan.is_single() {
                    dir.copy_from_slice(p);
                } else {
                    runs(&plan.merged, block, |s, d, n| {
                        dir[s..s + n].copy_from_slice(&p[d..d + n])
                    });
                }
            }
            dirs.insert(*id, dir);
        }
        module.map(&mut Apply::<B> {
            dirs,
            lr,
            _backend: core::marker::PhantomData,
        })
    }
}

/// The parameters that have a gradient, in the module's order, with their blocks.
struct Listed<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    shampoo: &'a Shampoo,
    params: Vec<(ParamId, BlockPlan)>,
    _backend: core::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Listed<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.grads.get::<Inner<B>, D>(param.id).is_some() {
            let plan = self.shampoo.plan(&param.val().dims());
            self.params.push((param.id, plan));
        }
    }
}

/// Steps this rank's blocks: their state and their directions (`mine`).
struct Owned<'a, B: AutodiffBackend> {
    shampoo: &'a Shampoo,
    ownership: &'a Ownership,
    rank: usize,
    records: &'a mut Records<B>,
    grads: &'a mut GradientsParams,
    mine: Vec<f32>,
    /// This rank's first failure (it keeps taking part in the all-gather).
    error: Option<ShampooError>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Owned<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(grad) = self.grads.remove::<Inner<B>, D>(param.id) else {
            return;
        };
        let ownership = self.ownership;
        let owners = ownership.owners(&param.id).expect("listed and assigned");
        let tensor = param.val().inner();
        let device = tensor.device();
        let s = self.shampoo;
        let mut state: ShampooState<Inner<B>> = match self.records.remove(&param.id) {
            Some(r) => r.into_state::<D>().to_device(&device),
            None => ShampooState {
                step: 0,
                blocks: s
                    .plan(&tensor.dims())
                    .blocks
                    .iter()
                    .zip(owners)
                    .map(|(b, &r)| (r == self.rank).then(|| s.new_block(b, &device)))
                    .collect(),
            },
        };
        state.step += 1;
        if self.error.is_none()
            && let Err(e) =
                s.owned_directions(&tensor, grad, &mut state, owners, self.rank, &mut self.mine)
        {
            self.error = Some(e);
        }
        self.records
            .insert(param.id, AdaptorRecord::from_state::<D>(state));
    }
}

impl Shampoo {
    /// The directions of the blocks of one parameter that `rank` owns (appended to
    /// `out`, in block order), their state updated; the blocks it does not own lose
    /// their state. `state.step` is this step's.
    fn owned_directions<B: Backend, const D: usize>(
        &self,
        tensor: &Tensor<B, D>,
        grad: Tensor<B, D>,
        state: &mut ShampooState<B>,
        owners: &[usize],
        rank: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ShampooError> {
        let shape = tensor.dims();
        let device = tensor.device();
        let plan = self.plan(&shape);
        let t = state.step;
        if state.blocks.len() != plan.blocks.len() {
            return Err(ShampooError::Collective(format!(
                "a saved state of {} blocks for a parameter of shape {shape:?} in {} blocks",
                state.blocks.len(),
                plan.blocks.len()
            )));
        }
        for (i, &r) in owners.iter().enumerate() {
            if r != rank {
                state.blocks[i] = None;
            } else if state.blocks[i].is_none() {
                return Err(ShampooError::Collective(format!(
                    "block {i} of a parameter of shape {shape:?} has no state on its \
                     owner, rank {rank} (a checkpoint saved without gathering?)"
                )));
            }
        }
        let at = |index| BlockAt {
            block: &plan.blocks[index],
            step: t,
            shape: &shape,
            index,
        };
        let grad = self.with_l2(grad, tensor);
        if !on_host::<B>(&device) {
            self.check_input(&grad, t)?;
            let g = split(grad, &plan);
            let w = self.weight_blocks(tensor, &plan);
            for (i, (g, w)) in g.into_iter().zip(w).enumerate() {
                if let Some(st) = state.blocks[i].as_mut() {
                    let p = self.block_direction_tensor(st, at(i), g, w)?;
                    out.extend(host_values(p));
                }
            }
            return Ok(());
        }
        // The host path, as `host_step`'s.
        if shape.contains(&0) {
            return Err(ShampooError::ZeroSizeParameter {
                shape: shape.to_vec(),
            });
        }
        let g = host_values(grad);
        if g.iter().any(|v| !v.is_finite()) {
            return Err(ShampooError::NonFiniteGradient {
                shape: shape.to_vec(),
                step: t,
            });
        }
        let c = self.config();
        let decay = c.weight_decay != 0.0 && c.decoupled_weight_decay;
        let w = decay.then(|| host_values(tensor.clone()));
        for (i, block) in plan.blocks.iter().enumerate() {
            let Some(st) = state.blocks[i].as_mut() else {
                continue;
            };
            let gather = |src: &[f32]| {
                if plan.is_single() {
                    return src.to_vec();
                }
                let mut part = vec![0.0; block.numel()];
                runs(&plan.merged, block, |s, d, n| {
                    part[d..d + n].copy_from_slice(&src[s..s + n])
                });
                part
            };
            let wb = w.as_deref().map(gather);
            let p = self.block_direction_host(st, at(i), gather(&g), wb.as_deref(), &device)?;
            out.extend(p);
        }
        Ok(())
    }
}

/// Moves every stepped parameter by `-lr P` (on the host as `host_step` does, else by
/// tensor ops as `step_checked` does).
struct Apply<B: AutodiffBackend> {
    dirs: HashMap<ParamId, Vec<f32>>,
    lr: LearningRate,
    _backend: core::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Apply<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(dir) = self.dirs.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let inner = tensor.inner();
        let device = inner.device();
        let shape = inner.dims();
        let inner = if on_host::<Inner<B>>(&device) {
            let lr = self.lr as f32;
            let mut w = host_values(inner);
            for (w, d) in w.iter_mut().zip(&dir) {
                *w -= lr * d;
            }
            Tensor::from_data(TensorData::new(w, shape), &device)
        } else {
            let dir = Tensor::<Inner<B>, D>::from_data(TensorData::new(dir, shape), &device);
            inner - dir.mul_scalar(self.lr)
        };
        let mut tensor = Tensor::from_inner(inner);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// burn's [`OptimizerAdaptor`] mapping (without gradient clipping, which Shampoo's
/// commands do not set): each parameter's [`SimpleOptimizer::step`].
struct Replicated<'a, B: AutodiffBackend> {
    shampoo: &'a Shampoo,
    records: &'a mut Records<B>,
    grads: GradientsParams,
    lr: LearningRate,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Replicated<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<Inner<B>, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let device = grad.device();
        let require_grad = tensor.is_require_grad();
        let tensor = if tensor.device() != device {
            tensor.to_device(&device)
        } else {
            tensor
        };
        let state = self.records.remove(&id).map(|r| {
            <Shampoo as SimpleOptimizer<Inner<B>>>::to_device::<D>(r.into_state::<D>(), &device)
        });
        let (tensor, state) = self.shampoo.step(self.lr, tensor.inner(), grad, state);
        if let Some(state) = state {
            self.records
                .insert(id, AdaptorRecord::from_state::<D>(state));
        }
        let mut tensor = Tensor::from_inner(tensor);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optimizer<M, B> for DistributedShampoo<M, B> {
    type Record = <OptimizerAdaptor<Shampoo, M, B> as Optimizer<M, B>>::Record;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        self.step_common(lr, module, grads)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, mut grads: MultiGradientsParams) -> M {
        // One device per rank is this optimizer's model of parallelism.
        if grads.grads.len() == 1 {
            let (g, _) = grads.grads.remove(0);
            return self.step_common(lr, module, g);
        }
        self.shampoo.health().fail(ShampooError::Collective(format!(
            "gradients from {} devices in one rank: run one rank per device",
            grads.grads.len()
        )));
        module
    }

    /// Every block's state: on a rank owning blocks, gathered from the owners (a
    /// collective call: every rank of the group makes it at the same point, as the
    /// checkpoints are saved). A failed gather fails the health handle and returns this
    /// rank's blocks alone.
    fn to_record(&self) -> Self::Record {
        match (self.owning_group(), &self.ownership) {
            (Some(group), Some(ownership)) => {
                gather_states(&*group, ownership, &self.plans, &self.records).unwrap_or_else(|e| {
                    self.shampoo.health().fail(e);
                    self.records.clone()
                })
            }
            _ => self.records.clone(),
        }
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.records = record;
        self
    }
}
