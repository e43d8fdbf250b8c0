//! Data parallel inside one process (`--devices N`): one replica per device, each on a
//! thread of its own, joined through burn-collective's local all-reduce (its *local* mode:
//! one process, one peer per device; its multi-process mode hangs on its second call,
//! issue 34) and, for the all-gather burn-collective lacks, an exchange through memory
//! the threads share ([`super::exchange`]). The replicas are ranks of a [`Collective`] like MPI's processes
//! ([`LocalPeer`]), so the training loop has one code path for both.
//!
//! On a CPU backend (flex, ndarray) the "devices" are one: the replicas are threads on
//! the CPU's cores, each computing its shard with single-threaded kernels. On a GPU
//! backend each replica takes a device of its own (`cuda` 0..N).
//!
//! Two things differ from separate processes, and [`run_replicas`] handles both:
//! - burn's backends keep one random generator per *process*. Replicas building their
//!   models at once would interleave its draws and start from different weights, so each
//!   replica holds a process-wide lease on the generator from its start to its first
//!   collective call (the first training step): the set-ups run one after another, each
//!   from the run's seed. The gates' per-step noise comes from a per-thread generator
//!   (`tether_models::l0::noise`, seeded by the training loop).
//! - A replica that fails cannot end the process as an MPI rank ends its job: it resets
//!   the collective, which fails the others' pending and next calls
//!   ([`crate::constrained::ConstrainedError::Collective`]), and [`run_replicas`]
//!   reports the error that started it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{
    CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
    reset_collective,
};

use super::Collective;
use super::exchange::Exchange;
use crate::constrained::ConstrainedError;

/// One replica's end of burn-collective's local all-reduce, for backend `B` (an autodiff
/// backend's inner one) on the replica's device.
pub struct LocalPeer<B: Backend> {
    id: PeerId,
    rank: usize,
    size: usize,
    device: B::Device,
    /// The all-gather's shared buffer, one per run of the replicas.
    exchange: Arc<Exchange>,
}

impl<B: Backend> std::fmt::Debug for LocalPeer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalPeer {{ rank: {}, size: {}, device: {:?} }}",
            self.rank, self.size, self.device
        )
    }
}

impl<B: Backend> Collective for LocalPeer<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    /// Through the device: the buffer is uploaded, summed by burn-collective (a tree
    /// reduce to one device and a broadcast: every replica gets the same bits), read back.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), ConstrainedError> {
        release_generator();
        let n = buf.len();
        let t = Tensor::<B, 1>::from_data(TensorData::new(buf.to_vec(), [n]), &self.device);
        let summed = all_reduce::<B>(self.id, t.into_primitive().tensor(), ReduceOperation::Sum)
            .map_err(|e| {
                ConstrainedError::Collective(format!(
                    "replica {} of {}: the all-reduce failed ({e:?}): another replica stopped",
                    self.rank, self.size
                ))
            })?;
        let host = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed))
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| ConstrainedError::Collective(format!("reading the sum: {e:?}")))?;
        buf.copy_from_slice(&host);
        Ok(())
    }

    /// Through the replicas' shared memory ([`Exchange`]): each copies in only its part,
    /// on the host (the parts are host values already), exact.
    fn all_gather(
        &self,
        mine: &[f32],
        counts: &[usize],
        out: &mut [f32],
    ) -> Result<(), ConstrainedError> {
        release_generator();
        self.exchange.all_gather(self.rank, mine, counts, out)
    }

    /// Fails every other replica's collective calls, then ends the process.
    fn abort(&self, code: i32) -> ! {
        reset_collective::<B>();
        self.exchange
            .fail(&format!("replica {} aborted", self.rank));
        std::process::exit(code)
    }
}

/// Held by a replica from its start to its first collective call: burn's generator is
/// the process's, and replicas seeding and drawing from it at once would interleave.
static GENERATOR: Mutex<()> = Mutex::new(());

thread_local! {
    static LEASE: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
}

fn take_generator() {
    let guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    LEASE.with(|l| *l.borrow_mut() = Some(guard));
}

fn release_generator() {
    LEASE.with(|l| drop(l.borrow_mut().take()));
}

/// The devices of `n` replicas on `device`'s backend: the backend's devices `0..n` of
/// `device`'s type, or, on a CPU backend (`cpu`: one device whatever `n`), `device` `n`
/// times (threads on the CPU's cores).
///
/// # Errors
/// `n` is 0, or a GPU backend has fewer than `n` devices.
pub fn replica_devices<B: Backend>(
    n: usize,
    device: &B::Device,
    cpu: bool,
) -> anyhow::Result<Vec<B::Device>> {
    // burn's device trait (from_id, to_id): cubecl-common's, re-exported by burn's prelude.
    use burn::prelude::DeviceOps;
    anyhow::ensure!(n > 0, "--devices 0: give at least 1");
    if cpu {
        return Ok(vec![device.clone(); n]);
    }
    let id = device.to_id();
    let available = B::device_count(id.type_id);
    anyhow::ensure!(
        n <= available,
        "--devices {n}: this backend has {available} device(s) of this kind"
    );
    Ok((0..n)
        .map(|i| {
            let index = u16::try_from(i).expect("at most the backend's device count");
            B::Device::from_id(burn::tensor::backend::DeviceId::new(id.type_id, index))
        })
        .collect())
}

/// Fails the other replicas' collective calls when a replica's work ends in an error or
/// a panic (dropped while unwinding), so none waits for it forever.
struct FailGuard<'a, B: Backend> {
    armed: bool,
    rank: usize,
    exchange: &'a Exchange,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> Drop for FailGuard<'_, B> {
    fn drop(&mut self) {
        release_generator();
        if self.armed || std::thread::panicking() {
            reset_collective::<B>();
            self.exchange
                .fail(&format!("replica {} stopped", self.rank));
        }
    }
}

/// Runs `work(rank)` on `devices.len()` threads, replica `rank` on `devices[rank]`, each
/// thread's data-parallel group ([`super::set_group`]) a [`LocalPeer`] of burn-collective
/// for backend `B` (an autodiff backend's inner backend), and returns the results in rank
/// order. The replicas set up one after another (under one lock: burn keeps one random
/// generator per process); subnormal floats are flushed on every thread, as on the CLI's.
///
/// # Errors
/// A replica's error (the first by rank that is not another's failure seen through a
/// collective call), or a panic.
///
/// burn-collective's peers are global to the process: runs are serialised.
pub fn run_replicas<B, R, F>(devices: &[B::Device], work: F) -> anyhow::Result<Vec<R>>
where
    B: Backend,
    R: Send,
    F: Fn(usize) -> anyhow::Result<R> + Sync,
{
    anyhow::ensure!(!devices.is_empty(), "--devices 0: give at least 1");
    static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _run = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    reset_collective::<B>();
    let size = devices.len();
    let config = CollectiveConfig::default().with_num_devices(size);
    let exchange = Arc::new(Exchange::new(size));
    let results: Vec<anyhow::Result<R>> = std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(rank, device)| {
                let (config, work, exchange) = (config.clone(), &work, &exchange);
                std::thread::Builder::new()
                    .name(format!("replica-{rank}"))
                    .spawn_scoped(s, move || -> anyhow::Result<R> {
                        let _flush = crate::denormals::FlushDenormals::new();
                        let id = PeerId::from(rank as u32);
                        register::<B>(id, device.clone(), config).map_err(|e| {
                            anyhow::anyhow!(
                                "registering replica {rank} with burn-collective: {e:?}"
                            )
                        })?;
                        let mut guard = FailGuard::<B> {
                            armed: true,
                            rank,
                            exchange,
                            _backend: std::marker::PhantomData,
                        };
                        take_generator();
                        let peer = LocalPeer::<B> {
                            id,
                            rank,
                            size,
                            device: device.clone(),
                            exchange: Arc::clone(exchange),
                        };
                        super::set_group(Some(Rc::new(peer)));
                        let out = work(rank);
                        super::set_group(None);
                        guard.armed = out.is_err();
                        drop(guard);
                        let finished = finish_collective::<B>(id);
                        let out = out?;
                        finished.map_err(|e| {
                            ConstrainedError::Collective(format!(
                                "replica {rank} leaving burn-collective: {e:?}"
                            ))
                        })?;
                        Ok(out)
                    })
                    .map_err(|e| anyhow::anyhow!("starting replica {rank}'s thread: {e}"))
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(rank, h)| {
                h?.join()
                    .map_err(|_| anyhow::anyhow!("replica {rank} panicked"))?
            })
            .collect()
    });
    if results.iter().all(Result::is_ok) {
        return Ok(results.into_iter().map(|r| r.expect("all ok")).collect());
    }
    // The cause, not its echo in the other replicas' collective calls.
    let secondary = |e: &anyhow::Error| {
        e.chain().any(|c| {
            matches!(
                c.downcast_ref::<ConstrainedError>(),
                Some(ConstrainedError::Collective(_))
            )
        })
    };
    let errors: Vec<anyhow::Error> = results.into_iter().filter_map(Result::err).collect();
    let first = errors.iter().position(|e| !secondary(e)).unwrap_or(0);
    Err(errors.into_iter().nth(first).expect("an error"))
}
