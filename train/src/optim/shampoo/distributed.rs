//! Data-parallel Shampoo (Shi et al. 2023, §4, "Distributed Shampoo"): every worker holds
//! a replica of the model and a shard of each batch; gradients are averaged by an
//! all-reduce; each parameter block is *owned* by one worker, which alone keeps its
//! factors and computes its inverse roots and search direction; the directions are then
//! shared so every replica applies the same update.
//!
//! Blocks go to workers greedily by size (the reference's rule: each block's size in
//! bytes rounded up to 64, largest first, to the least-loaded worker, ties to the lower
//! rank). The reference shares directions with an all-gather; burn-collective 0.21 has
//! none, so each worker writes its blocks' updates into a zero-filled buffer and an
//! all-reduce sum assembles them (exact: every entry is one worker's value plus zeros).
//!
//! Peers are threads registered with burn-collective, one per device (several on one CPU
//! device works too, which is how the tests run); [`run_data_parallel`] starts them.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};
use burn_collective::{
    CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};

use super::error::ShampooError;
use super::health::ShampooHealth;
use super::step::{BlockAt, Shampoo, ShampooState, join, split};
use crate::denormals::FlushDenormals;

/// Bytes a block's buffer is rounded up to when balancing (the reference's alignment).
const ALIGNMENT_BYTES: usize = 64;

/// Owner of each block: blocks of `bytes[i]` bytes, assigned greedily from the largest
/// (aligned to 64 bytes) to the worker with the fewest bytes so far (ties: lower rank).
pub fn assign_blocks(bytes: &[usize], workers: usize) -> Vec<usize> {
    let workers = workers.max(1);
    let aligned: Vec<usize> = bytes
        .iter()
        .map(|&b| b.div_ceil(ALIGNMENT_BYTES) * ALIGNMENT_BYTES)
        .collect();
    let mut order: Vec<usize> = (0..bytes.len()).collect();
    // Stable: equal sizes keep their order.
    order.sort_by(|&a, &b| aligned[b].cmp(&aligned[a]));
    let mut load = vec![0usize; workers];
    let mut owner = vec![0usize; bytes.len()];
    for i in order {
        let w = (0..workers).min_by_key(|&w| (load[w], w)).expect("workers");
        owner[i] = w;
        load[w] += aligned[i];
    }
    owner
}

/// One data-parallel worker: its collective id, rank and the number of workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// burn-collective's id (the rank).
    pub id: PeerId,
    /// 0-based rank.
    pub rank: usize,
    /// Number of workers.
    pub world: usize,
}

/// Runs `work(peer, device)` on `devices.len()` threads, each registered as a
/// burn-collective peer on its device (for backend `B`, the one the optimizer steps on:
/// an autodiff backend's inner backend), and returns their results in rank order.
///
/// # Errors
/// A registration or a worker's error.
///
/// burn-collective's peers are global to the process, so runs are serialised: a second
/// call waits for the first to finish.
pub fn run_data_parallel<B, R, F>(devices: &[B::Device], work: F) -> anyhow::Result<Vec<R>>
where
    B: Backend,
    R: Send,
    F: Fn(Peer, B::Device) -> anyhow::Result<R> + Sync,
{
    anyhow::ensure!(
        !devices.is_empty(),
        "data parallelism needs at least one device"
    );
    static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    reset_collective::<B>();
    let world = devices.len();
    let config = CollectiveConfig::default().with_num_devices(world);
    std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(rank, device)| {
                let (config, work) = (config.clone(), &work);
                s.spawn(move || -> anyhow::Result<R> {
                    let id = PeerId::from(rank as u32);
                    register::<B>(id, device.clone(), config)
                        .map_err(|e| anyhow::anyhow!("registering peer {rank}: {e:?}"))?;
                    let out = work(Peer { id, rank, world }, device.clone());
                    finish_collective::<B>(id)
                        .map_err(|e| anyhow::anyhow!("peer {rank} finishing: {e:?}"))?;
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
            .collect()
    })
}

/// Shampoo on one data-parallel worker, a burn [`Optimizer`]: build one per peer from the
/// same [`super::ShampooConfig`] with [`DistributedShampoo::new`], step it inside
/// [`run_data_parallel`].
///
/// Each step all-reduces (averages) the gradients, steps the blocks this worker owns, and
/// all-reduces the updates; every replica ends the step with the same parameters, equal
/// (up to float rounding in the averaging) to one Shampoo on the whole batch. A failure on
/// any worker (a non-finite gradient, failing roots) is shared by an extra all-reduce, so
/// every worker reports it at the same step instead of waiting on the others.
#[derive(Clone)]
pub struct DistributedShampoo<M: AutodiffModule<B>, B: AutodiffBackend> {
    shampoo: Shampoo,
    peer: Peer,
    /// Owner of every block of every parameter, fixed at the first step.
    owners: Option<HashMap<ParamId, Vec<usize>>>,
    /// The optimizer's record type (burn's adaptor uses hashbrown's map).
    records: hashbrown::HashMap<ParamId, AdaptorRecord<Shampoo, B>>,
    _module: core::marker::PhantomData<M>,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> DistributedShampoo<M, B> {
    /// Worker `peer`'s optimizer.
    pub fn new(shampoo: Shampoo, peer: Peer) -> Self {
        Self {
            shampoo,
            peer,
            owners: None,
            records: hashbrown::HashMap::new(),
            _module: core::marker::PhantomData,
        }
    }

    /// The failure handle (shared by clones of the wrapped [`Shampoo`]).
    pub fn health(&self) -> ShampooHealth {
        self.shampoo.health()
    }

    /// Blocks this worker owns, over all parameters (known after the first step).
    pub fn owned_blocks(&self) -> usize {
        self.owners.as_ref().map_or(0, |o| {
            o.values()
                .flatten()
                .filter(|&&w| w == self.peer.rank)
                .count()
        })
    }

    /// Assigns every block of `module`'s parameters to a worker.
    fn assign(&mut self, module: &M) {
        struct Shapes(Vec<(ParamId, Vec<usize>)>);
        impl<B: Backend> ModuleVisitor<B> for Shapes {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.push((param.id, param.val().dims().to_vec()));
            }
        }
        let mut shapes = Shapes(vec![]);
        module.visit(&mut shapes);
        let mut bytes = vec![];
        let mut index = vec![];
        for (id, shape) in &shapes.0 {
            for (k, b) in self.shampoo.plan(shape).blocks.iter().enumerate() {
                bytes.push(b.numel() * core::mem::size_of::<f32>());
                index.push((*id, k));
            }
        }
        let owner = assign_blocks(&bytes, self.peer.world);
        let mut owners: HashMap<ParamId, Vec<usize>> = HashMap::new();
        for ((id, _), w) in index.into_iter().zip(owner) {
            owners.entry(id).or_default().push(w);
        }
        self.owners = Some(owners);
    }

    fn step_common(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        let _flush = FlushDenormals::new();
        if self.owners.is_none() {
            self.assign(&module);
        }
        let mut mapper = StepMapper::<B> {
            shampoo: &self.shampoo,
            peer: self.peer,
            owners: self.owners.as_ref().expect("assigned"),
            records: &mut self.records,
            grads,
            lr,
            local_error: None,
        };
        let module = module.map(&mut mapper);
        let local = mapper.local_error.take();
        // Everyone learns whether anyone failed (all peers run this all-reduce every step).
        let flag = Tensor::<B::InnerBackend, 1>::from_floats(
            [if local.is_some() { 1.0 } else { 0.0 }],
            &Default::default(),
        );
        let failed = match reduce(self.peer, flag, ReduceOperation::Sum) {
            Ok(t) => t.into_scalar().elem::<f64>() > 0.0,
            Err(e) => {
                self.shampoo.health().fail(e);
                true
            }
        };
        if let Some(e) = local {
            self.shampoo.health().fail(e);
        } else if failed {
            self.shampoo.health().fail(ShampooError::PeerFailed);
        }
        module
    }
}

/// `tensor` all-reduced over the peers.
fn reduce<B: Backend, const D: usize>(
    peer: Peer,
    tensor: Tensor<B, D>,
    op: ReduceOperation,
) -> Result<Tensor<B, D>, ShampooError> {
    let primitive = tensor.into_primitive().tensor();
    all_reduce::<B>(peer.id, primitive, op)
        .map(|t| Tensor::from_primitive(TensorPrimitive::Float(t)))
        .map_err(|e| ShampooError::Collective(format!("{e:?}")))
}

struct StepMapper<'a, B: AutodiffBackend> {
    shampoo: &'a Shampoo,
    peer: Peer,
    owners: &'a HashMap<ParamId, Vec<usize>>,
    records: &'a mut hashbrown::HashMap<ParamId, AdaptorRecord<Shampoo, B>>,
    grads: GradientsParams,
    lr: LearningRate,
    /// The first failure of this step (the worker keeps taking part in the all-reduces).
    local_error: Option<ShampooError>,
}

impl<B: AutodiffBackend> StepMapper<'_, B> {
    /// The update `-lr P` of a parameter, with zeros in the blocks other workers own.
    fn update<const D: usize>(
        &mut self,
        id: ParamId,
        tensor: &Tensor<B::InnerBackend, D>,
        grad: Tensor<B::InnerBackend, D>,
    ) -> Result<Tensor<B::InnerBackend, D>, ShampooError> {
        let s = self.shampoo;
        let shape = tensor.dims();
        let device = tensor.device();
        let plan = s.plan(&shape);
        let owners = self.owners.get(&id).ok_or_else(|| {
            ShampooError::Collective(format!("parameter of shape {shape:?} was not assigned"))
        })?;
        let mut state: ShampooState<B::InnerBackend> = match self.records.remove(&id) {
            Some(r) => r.into_state::<D>().to_device(&device),
            None => ShampooState {
                step: 0,
                blocks: plan
                    .blocks
                    .iter()
                    .zip(owners)
                    .map(|(b, &w)| (w == self.peer.rank).then(|| s.new_block(b, &device)))
                    .collect(),
            },
        };
        let t = state.step + 1;
        state.step = t;
        s.check_input(&grad, t)?;
        let grad = s.with_l2(grad, tensor);
        let g_blocks = split(grad, &plan);
        let w_blocks = s.weight_blocks(tensor, &plan);
        let mut updates = Vec::with_capacity(plan.blocks.len());
        for (i, ((block, g), w)) in plan.blocks.iter().zip(g_blocks).zip(w_blocks).enumerate() {
            updates.push(match state.blocks[i].as_mut() {
                Some(st) => {
                    let at = BlockAt {
                        block,
                        step: t,
                        shape: &shape,
                        index: i,
                    };
                    s.block_direction(st, at, g, w)?.mul_scalar(-self.lr)
                }
                None => Tensor::zeros([block.numel()], &device),
            });
        }
        self.records
            .insert(id, AdaptorRecord::from_state::<D>(state));
        Ok(join(updates, &plan, shape, &device))
    }
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let inner = tensor.inner();
        // 1. The batch gradient: the mean of the workers' shard gradients.
        let update = reduce(self.peer, grad, ReduceOperation::Mean).and_then(|grad| {
            if self.local_error.is_some() {
                return Ok(inner.zeros_like());
            }
            // 2. This worker's blocks (a local failure contributes zeros from here on).
            self.update(id, &inner, grad).or_else(|e| {
                self.local_error.get_or_insert(e);
                Ok(inner.zeros_like())
            })
        });
        // 3. Every block's update, from its owner.
        let update = update.and_then(|u| reduce(self.peer, u, ReduceOperation::Sum));
        let inner = match update {
            Ok(u) if self.local_error.is_none() => inner + u,
            Ok(_) => inner,
            Err(e) => {
                self.local_error.get_or_insert(e);
                inner
            }
        };
        let mut tensor = Tensor::from_inner(inner);
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
        // One device per worker is this optimizer's model of parallelism.
        if grads.grads.len() == 1 {
            let (g, _) = grads.grads.remove(0);
            return self.step_common(lr, module, g);
        }
        self.shampoo.health().fail(ShampooError::Collective(format!(
            "gradients from {} devices in one worker: run one worker per device",
            grads.grads.len()
        )));
        module
    }

    fn to_record(&self) -> Self::Record {
        self.records.clone()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.records = record;
        self
    }
}
