//! Data parallelism across processes or devices: every process or device (rank) holds the same model and
//! optimizer, takes its own shard of each global batch, and the ranks agree on one step by
//! summing what depends on the data (Li et al. 2020, "PyTorch Distributed: Experiences on
//! Accelerating Data Parallel Training", the all-reduce form of synchronous SGD).
//!
//! The training loop ([`crate::trainer::try_fit`]) is where it hooks in: given a
//! [`DataParallel`] in its [`crate::trainer::FitOptions`], each step
//! - agrees on the interrupt (one rank's Ctrl-C stops every rank after the same step);
//! - replaces the observed loss and violations by their weighted mean over the ranks
//!   ([`DataParallel::reduce_state`]) before the constrained step validates them and the
//!   dual step reads them, so the multipliers move identically everywhere and a NaN on
//!   one rank fails every rank;
//! - flattens the gradients into one buffer, all-reduces it once and hands the optimizer
//!   the weighted sum ([`DataParallel::reduce_grads`]): with shard weights
//!   `n_rank / n_global`, the single-process gradient of the global batch's mean loss.
//!
//! Everything else is identical on every rank by construction: the model and optimizer
//! start from the same seed, each step's random draws (the gate noise) come from the
//! step-indexed seed ([`crate::resume::step_seed`]), and constraints that depend on the
//! parameters alone (expected density, flash, latency) are the same numbers on each rank.
//!
//! [`Collective`] is the transport: [`Single`] for one process (a no-op),
//! [`local::LocalPeer`] for replicas on threads of one process (`--devices N`, through
//! burn-collective's local all-reduce and an all-gather through shared memory), and with
//! the `mpi` feature `mpi::Mpi` over the system's MPI library. [`args::DistributedArgs`] is the CLI's `--distributed` and
//! `--devices` flags and the `mpirun` detection.

pub mod args;
pub mod exchange;
mod grads;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod ranks;
pub mod shard;
pub mod stats;

use std::rc::Rc;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::constrained::{CmpState, ConstrainedError};

/// The operations data parallelism needs from a process group.
pub trait Collective: std::fmt::Debug {
    /// This process's index, `0..size`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum over the ranks. Every rank
    /// calls it with the same length, in the same order as every other collective call.
    ///
    /// # Errors
    /// [`ConstrainedError::Collective`]: the group cannot complete the call (a replica
    /// thread of [`local`] stopped; MPI's errors end the job instead).
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), ConstrainedError>;
    /// Every rank's `mine` concatenated in rank order into `out` (MPI's `MPI_Allgatherv`):
    /// rank `r` gives `counts[r]` values, and `out` holds their sum. Every rank calls it
    /// with the same `counts`, in the same order as every other collective call.
    ///
    /// This default places `mine` in a zero-filled `out` and sums it over the ranks
    /// ([`Self::all_reduce_sum`]): exact, as every entry is one rank's value plus zeros,
    /// at the cost of an all-reduce of the whole buffer. The transports override it with
    /// a true all-gather (MPI's `MPI_Allgatherv`; [`local::LocalPeer`]'s exchange through
    /// shared memory, [`exchange::Exchange`]).
    ///
    /// # Errors
    /// `counts` not one per rank, `mine` not `counts[rank]` long or `out` not their sum
    /// ([`ConstrainedError::InvalidConfig`]); else as [`Self::all_reduce_sum`].
    fn all_gather(
        &self,
        mine: &[f32],
        counts: &[usize],
        out: &mut [f32],
    ) -> Result<(), ConstrainedError> {
        let start = gather_offset(self.rank(), self.size(), mine, counts, out)?;
        out.fill(0.0);
        out[start..start + mine.len()].copy_from_slice(mine);
        self.all_reduce_sum(out)
    }
    /// Ends every process of the group with exit status `code`: what a rank that fails
    /// alone must do, or the others would wait for it in the next all-reduce forever.
    fn abort(&self, code: i32) -> !;
}

/// Where rank `rank`'s part starts in an all-gather's output, after checking the call's
/// lengths (see [`Collective::all_gather`]).
///
/// # Errors
/// The lengths do not fit one another.
pub(crate) fn gather_offset(
    rank: usize,
    size: usize,
    mine: &[f32],
    counts: &[usize],
    out: &[f32],
) -> Result<usize, ConstrainedError> {
    let total: usize = counts.iter().sum();
    if counts.len() != size || counts.get(rank) != Some(&mine.len()) || out.len() != total {
        return Err(ConstrainedError::InvalidConfig(format!(
            "all-gather on rank {rank} of {size}: {} counts, {} values given (count {:?}), \
             an output of {} for a total of {total}",
            counts.len(),
            mine.len(),
            counts.get(rank),
            out.len()
        )));
    }
    Ok(counts[..rank].iter().sum())
}

thread_local! {
    static GROUP: std::cell::RefCell<Option<Rc<dyn Collective>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes `group` this thread's process group (`None`: one process): the commands that
/// train data-parallel (`prune`) shard their batches over it. The CLI sets it once MPI is
/// up. Per thread, as MPI's world is the process's and only the thread that initialised
/// it calls it (`MPI_THREAD_FUNNELED`).
pub fn set_group(group: Option<Rc<dyn Collective>>) {
    GROUP.with(|g| *g.borrow_mut() = group);
}

/// This thread's process group ([`set_group`]).
pub fn group() -> Option<Rc<dyn Collective>> {
    GROUP.with(|g| g.borrow().clone())
}

/// One process: rank 0 of 1, sums are the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<(), ConstrainedError> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// A rank's part in a data-parallel run: the process group and the share of the global
/// batch this rank computes (its weight in every mean).
#[derive(Clone, Debug)]
pub struct DataParallel {
    collective: Rc<dyn Collective>,
    weight: f32,
}

impl DataParallel {
    /// This rank computes `local` of the `global` samples of each step.
    ///
    /// # Errors
    /// `local` is 0 or above `global`.
    pub fn new(
        collective: Rc<dyn Collective>,
        local: usize,
        global: usize,
    ) -> Result<Self, ConstrainedError> {
        if local == 0 || local > global {
            return Err(ConstrainedError::InvalidConfig(format!(
                "a rank's shard of {local} samples of a global batch of {global}"
            )));
        }
        Ok(Self {
            collective,
            weight: (local as f64 / global as f64) as f32,
        })
    }

    /// The process group.
    pub fn collective(&self) -> &dyn Collective {
        &*self.collective
    }

    /// Whether `flag` is raised on any rank (every rank gets the same answer).
    ///
    /// # Errors
    /// As [`Collective::all_reduce_sum`].
    pub fn any(&self, flag: bool) -> Result<bool, ConstrainedError> {
        let mut buf = [f32::from(u8::from(flag))];
        self.sum(&mut buf)?;
        Ok(buf[0] > 0.0)
    }

    /// This rank's share of the global batch, `n_rank / n_global`: its weight in every
    /// mean ([`Self::mean`]) and in the gradients' sum.
    pub fn weight(&self) -> f32 {
        self.weight
    }

    /// The element-wise sum over the ranks, in place, timed ([`stats`]).
    ///
    /// # Errors
    /// As [`Collective::all_reduce_sum`].
    pub fn sum(&self, buf: &mut [f32]) -> Result<(), ConstrainedError> {
        let start = std::time::Instant::now();
        let done = self.collective.all_reduce_sum(buf);
        stats::record_reduction(start.elapsed());
        done
    }

    /// The weighted mean over the ranks of the values in `buf`, in place.
    ///
    /// # Errors
    /// As [`Collective::all_reduce_sum`].
    pub fn mean(&self, buf: &mut [f32]) -> Result<(), ConstrainedError> {
        buf.iter_mut().for_each(|v| *v *= self.weight);
        self.sum(buf)
    }

    /// `state` with its loss and (strict) violations replaced by their weighted means
    /// over the ranks, one all-reduce for all of them. The gradients still flow through
    /// this rank's own terms (`x - detach(x) + mean`): their all-reduce is
    /// [`Self::reduce_grads`]'s.
    ///
    /// Every rank must observe the same constraints with the same shapes (true of the
    /// pruning constraints, which depend on the parameters alone).
    ///
    /// # Errors
    /// As [`Collective::all_reduce_sum`].
    pub fn reduce_state<B: AutodiffBackend>(
        &self,
        mut state: CmpState<B>,
    ) -> Result<CmpState<B>, ConstrainedError> {
        // Empty observations (an indexed constraint that saw no index) carry nothing.
        let carried = |t: &Tensor<B, 1>| t.dims()[0] > 0;
        let mut parts: Vec<Tensor<B, 1>> = vec![state.loss.clone().detach()];
        for (_, obs) in &state.observed {
            for t in std::iter::once(&obs.violation).chain(&obs.strict_violation) {
                if carried(t) {
                    parts.push(t.clone().detach());
                }
            }
        }
        let device = state.loss.device();
        let mut host = to_host(Tensor::cat(parts, 0));
        self.mean(&mut host)?;
        let mut at = 0;
        let mut next = |local: Tensor<B, 1>| -> Tensor<B, 1> {
            let n = local.dims()[0];
            if n == 0 {
                return local;
            }
            let values = TensorData::new(host[at..at + n].to_vec(), [n]);
            at += n;
            let mean = Tensor::<B, 1>::from_data(values, &device);
            local.clone() - local.detach() + mean
        };
        state.loss = next(state.loss);
        for (_, obs) in &mut state.observed {
            obs.violation = next(obs.violation.clone());
            obs.strict_violation = obs.strict_violation.take().map(&mut next);
        }
        Ok(state)
    }

    /// The weighted sum over the ranks of every parameter's gradient: the gradients
    /// flattened (in the model's parameter order) into one buffer, all-reduced once.
    ///
    /// # Errors
    /// A parameter with a gradient on some ranks and not on others, or a gradient that
    /// cannot be read as `f32`.
    pub fn reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        grads: GradientsParams,
        model: &M,
    ) -> Result<GradientsParams, ConstrainedError> {
        grads::all_reduce(self, grads, model)
    }
}

/// A rank-1 tensor's values on the host, as `f32`.
fn to_host<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}
