//! Fairness-constrained fine-tuning of a pruned model: the constrained excess accuracy gap
//! (CEAG) of Hashemizadeh, Ramirez, Sukumaran, Farnadi, Lacoste-Julien, Gallego-Posada,
//! "Balancing Act: Constraining Disparate Impact in Sparse Models" (ICLR 2024).
//!
//! With `A_g` the accuracy of group `g`, `A` the overall accuracy, `d` the dense model and
//! `s` the sparse one, the accuracy drops are `D_g = A_g(d) - A_g(s)`, `D = A(d) - A(s)`,
//! and the problem (Eq. 4 of the paper) is
//!
//! ```text
//! min_s  L(s)   s.t.   psi_g(s) = D_g - D <= eps     for every group g
//! ```
//!
//! Accuracy has no gradient, so the constraint has two faces (the proxy-constraint
//! pattern): the *multiplier* moves along the true excess accuracy gap, estimated from a
//! per-group replay buffer of the sparse model's most recent per-sample correctness (Sec.
//! 4.2: the buffer trades variance for a little staleness); the *model* moves along the
//! same gap measured with the cross-entropy, `(L_g(s) - L_g(d)) - (L(s) - L(d))`. With
//! hundreds of groups a batch sees only some: the multipliers are indexed and only the
//! groups present in the batch are updated.
//!
//! Baselines on the same data and budget: naive fine-tuning (cross-entropy only) and the
//! equalised loss (`L_g(s) - L(s) = 0` for every group, equality constraints).

use std::cell::RefCell;
use std::rc::Rc;

use burn::module::AutodiffModule;
use burn::tensor::{
    Bool, IndexingUpdateOp, Int, Tensor, TensorData, backend::AutodiffBackend, backend::Backend,
};
use tether_models::classifier::Classifier;
use tether_models::host;

use crate::constrained::{CmpState, ConstrainedProblem, ConstraintId, ConstraintState};
use crate::data::batches::shuffled_order;
use crate::data::groups::NO_GROUP;
use crate::parallel::{Collective, DataParallel};
use crate::tasks::metrics::per_sample_cross_entropy;

/// A split held on the device: features, labels and each sample's group.
#[derive(Clone, Debug)]
pub struct GroupedSet<B: Backend> {
    inputs: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    groups: Vec<u32>,
}

/// One mini-batch and which groups it holds.
#[derive(Clone, Debug)]
pub struct GroupedBatch<B: Backend> {
    /// Features `[batch, dim]`.
    pub inputs: Tensor<B, 2>,
    /// Class indices `[batch]`.
    pub labels: Tensor<B, 1, Int>,
    /// Each sample's group ([`NO_GROUP`] when in none).
    pub groups: Vec<u32>,
    /// The groups present, in order of first appearance.
    pub present: Vec<usize>,
    /// Positions (in the batch) of the samples that belong to a group.
    members: Tensor<B, 1, Int>,
    /// For each member, the index of its group in `present`.
    slot: Tensor<B, 1, Int>,
    /// Members per present group, as f32 `[present.len()]`.
    counts: Tensor<B, 1>,
}

impl<B: Backend> GroupedSet<B> {
    /// Uploads `n` samples: `inputs` is row-major `[n, dim]`.
    ///
    /// # Panics
    /// When the lengths disagree.
    pub fn new(
        inputs: Vec<f32>,
        dim: usize,
        labels: &[i64],
        groups: Vec<u32>,
        device: &B::Device,
    ) -> Self {
        let n = labels.len();
        assert!(
            inputs.len() == n * dim && groups.len() == n,
            "features, labels and groups disagree in length"
        );
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [n, dim]), device),
            labels: Tensor::from_data(TensorData::new(labels.to_vec(), [n]), device),
            groups,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group of each sample.
    pub fn groups(&self) -> &[u32] {
        &self.groups
    }

    /// One epoch's full batches in the order `(seed, epoch)` shuffles them to.
    pub fn epoch(&self, batch: usize, seed: u64, epoch: u64) -> Vec<GroupedBatch<B>> {
        self.epoch_rows(batch, seed, epoch)
            .iter()
            .map(|c| self.batch(c))
            .collect()
    }

    /// The rows of [`GroupedSet::epoch`]'s batches, to assemble each with
    /// [`GroupedSet::batch`] when it is trained on (memory for one batch, not an epoch's).
    pub fn epoch_rows(&self, batch: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        let order = shuffled_order(self.len(), seed, epoch);
        order
            .chunks(batch.max(1))
            .filter(|c| c.len() == batch)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The batches in stored order (evaluation).
    pub fn in_order(&self, batch: usize) -> Vec<GroupedBatch<B>> {
        let order: Vec<usize> = (0..self.len()).collect();
        order.chunks(batch.max(1)).map(|c| self.batch(c)).collect()
    }

    /// The batch of the samples at `rows`, in that order.
    pub fn batch(&self, rows: &[usize]) -> GroupedBatch<B> {
        let device = self.inputs.device();
        let int = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), &device)
        };
        let idx = int(rows.iter().map(|&i| i as i64).collect());
        let groups: Vec<u32> = rows.iter().map(|&i| self.groups[i]).collect();
        let mut present: Vec<usize> = Vec::new();
        let mut counts: Vec<f32> = Vec::new();
        let (mut members, mut slot) = (Vec::new(), Vec::new());
        for (pos, &g) in groups.iter().enumerate() {
            if g == NO_GROUP {
                continue;
            }
            let k = match present.iter().position(|&p| p == g as usize) {
                Some(k) => k,
                None => {
                    present.push(g as usize);
                    counts.push(0.0);
                    present.len() - 1
                }
            };
            counts[k] += 1.0;
            members.push(pos as i64);
            slot.push(k as i64);
        }
        let m = counts.len();
        GroupedBatch {
            inputs: self.inputs.clone().select(0, idx.clone()),
            labels: self.labels.clone().select(0, idx),
            groups,
            present,
            members: int(members),
            slot: int(slot),
            counts: Tensor::from_data(TensorData::new(counts, [m]), &device),
        }
    }
}

impl<B: Backend> GroupedBatch<B> {
    /// Mean of `per_sample` over each present group, `[present.len()]`, in O(batch).
    pub fn group_means(&self, per_sample: Tensor<B, 1>) -> Tensor<B, 1> {
        let m = self.present.len();
        let member = per_sample.select(0, self.members.clone());
        Tensor::<B, 1>::zeros([m], &member.device()).select_assign(
            0,
            self.slot.clone(),
            member,
            IndexingUpdateOp::Add,
        ) / self.counts.clone()
    }

    /// Sum of `per_sample` over this batch's members of each of `groups` (in that order),
    /// `[groups.len()]`: a rank's part of the per-group sums of a global batch.
    fn group_sums_over(&self, per_sample: Tensor<B, 1>, groups: &[usize]) -> Tensor<B, 1> {
        let device = per_sample.device();
        let (mut members, mut slot) = (Vec::new(), Vec::new());
        for (pos, &g) in self.groups.iter().enumerate() {
            if let Some(k) = groups
                .iter()
                .position(|&p| g != NO_GROUP && p == g as usize)
            {
                members.push(pos as i64);
                slot.push(k as i64);
            }
        }
        let m = groups.len();
        if members.is_empty() {
            return Tensor::zeros([m], &device);
        }
        let int = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), &device)
        };
        let member = per_sample.select(0, int(members));
        Tensor::<B, 1>::zeros([m], &device).select_assign(
            0,
            int(slot),
            member,
            IndexingUpdateOp::Add,
        )
    }
}

/// What every rank of a data-parallel group learns of a global batch: each sample's group
/// and (CEAG) whether the model got it right, in the single-process batch's order (rank
/// `r`'s shard is the batch's `r`-th contiguous part, [`crate::parallel::shard`]).
struct GlobalBatch {
    groups: Vec<u32>,
    correct: Vec<bool>,
    /// The groups present, in order of first appearance (the single-process batch's
    /// [`GroupedBatch::present`]).
    present: Vec<usize>,
    /// Samples of each present group.
    counts: Vec<f32>,
}

impl GlobalBatch {
    /// Gathers every rank's groups and correctness (`None`: not needed) with one
    /// all-reduce: each rank fills its shard's slots of a zeroed buffer, two floats per
    /// sample (group id + 1, or 0 for none; correct as 0/1), and the sum holds them all.
    fn gather<B: Backend>(
        parallel: &DataParallel,
        local: &GroupedBatch<B>,
        correct: Option<&[bool]>,
    ) -> Result<Self, crate::constrained::ConstrainedError> {
        let group = parallel.collective();
        let n = local.groups.len();
        let mut buf = vec![0f32; 2 * n * group.size()];
        let at = 2 * n * group.rank();
        // Group ids travel as f32, exact below 2^24.
        if let Some(&g) = local
            .groups
            .iter()
            .find(|&&g| g != NO_GROUP && g >= 1 << 24)
        {
            return Err(crate::constrained::ConstrainedError::InvalidConfig(
                format!("group id {g}: data-parallel fair pruning takes fewer than 2^24 groups"),
            ));
        }
        for (i, &g) in local.groups.iter().enumerate() {
            buf[at + 2 * i] = if g == NO_GROUP { 0.0 } else { g as f32 + 1.0 };
            buf[at + 2 * i + 1] = f32::from(u8::from(correct.is_some_and(|c| c[i])));
        }
        parallel.sum(&mut buf)?;
        let groups: Vec<u32> = buf
            .chunks_exact(2)
            .map(|p| {
                if p[0] == 0.0 {
                    NO_GROUP
                } else {
                    p[0] as u32 - 1
                }
            })
            .collect();
        let correct = buf.chunks_exact(2).map(|p| p[1] > 0.5).collect();
        let (mut present, mut counts) = (Vec::<usize>::new(), Vec::<f32>::new());
        for &g in groups.iter().filter(|&&g| g != NO_GROUP) {
            match present.iter().position(|&p| p == g as usize) {
                Some(k) => counts[k] += 1.0,
                None => {
                    present.push(g as usize);
                    counts.push(1.0);
                }
            }
        }
        Ok(Self {
            groups,
            correct,
            present,
            counts,
        })
    }
}

/// Each group's most recent per-sample correctness, `capacity` per group, plus the most
/// recent `overall_capacity` samples of any group for the overall accuracy; running sums
/// make a query O(1).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReplayBuffer {
    capacity: Vec<usize>,
    overall_capacity: usize,
    rings: Vec<Ring>,
    overall: Ring,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Ring {
    slots: Vec<bool>,
    next: usize,
    hits: usize,
}

impl Ring {
    fn push(&mut self, capacity: usize, correct: bool) {
        if self.slots.len() < capacity {
            self.slots.push(correct);
        } else {
            let old = std::mem::replace(&mut self.slots[self.next], correct);
            self.hits -= usize::from(old);
            self.next = (self.next + 1) % capacity;
        }
        self.hits += usize::from(correct);
    }

    fn accuracy(&self) -> Option<f64> {
        (!self.slots.is_empty()).then(|| self.hits as f64 / self.slots.len() as f64)
    }
}

impl ReplayBuffer {
    /// A buffer for `groups` groups keeping `capacity` samples each (and `capacity *
    /// groups` for the overall accuracy).
    pub fn new(groups: usize, capacity: usize) -> Self {
        Self::with_capacities(vec![capacity; groups])
    }

    /// A buffer keeping `capacities[g]` samples of group `g` (at least 1), and their sum
    /// for the overall accuracy.
    pub fn with_capacities(capacities: Vec<usize>) -> Self {
        let capacity: Vec<usize> = capacities.into_iter().map(|c| c.max(1)).collect();
        Self {
            overall_capacity: capacity.iter().sum::<usize>().max(1),
            rings: vec![Ring::default(); capacity.len()],
            capacity,
            overall: Ring::default(),
        }
    }

    /// Records a sample of group `group` (or of none).
    pub fn push(&mut self, group: u32, correct: bool) {
        self.overall.push(self.overall_capacity, correct);
        if group != NO_GROUP {
            let g = group as usize;
            self.rings[g].push(self.capacity[g], correct);
        }
    }

    /// The accuracy of `group` over its buffered samples (`None` before any).
    pub fn group_accuracy(&self, group: usize) -> Option<f64> {
        self.rings[group].accuracy()
    }

    /// The accuracy over the overall buffer.
    pub fn overall_accuracy(&self) -> Option<f64> {
        self.overall.accuracy()
    }

    /// Whether `group`'s buffer is full (false for a group the buffer does not track).
    pub fn is_full(&self, group: usize) -> bool {
        self.rings
            .get(group)
            .is_some_and(|r| r.slots.len() == self.capacity[group])
    }
}

/// The dense model's accuracy and loss, per group and overall, on the training set: what
/// the sparse model's drops are measured against.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupMetrics {
    /// Accuracy of each group.
    pub group_accuracy: Vec<f64>,
    /// Mean cross-entropy of each group.
    pub group_loss: Vec<f64>,
    /// Samples of each group.
    pub group_count: Vec<usize>,
    /// Accuracy over all samples.
    pub accuracy: f64,
    /// Mean cross-entropy over all samples.
    pub loss: f64,
}

impl GroupMetrics {
    /// Evaluates `model` over `set` (batches of `batch`).
    pub fn measure<B: Backend, M: Classifier<B>>(
        model: &M,
        set: &GroupedSet<B>,
        groups: usize,
        batch: usize,
    ) -> Self {
        let mut hits = vec![0usize; groups];
        let mut loss = vec![0f64; groups];
        let mut count = vec![0usize; groups];
        let (mut all_hits, mut all_loss, mut n) = (0usize, 0f64, 0usize);
        // One batch at a time, assembled as it is measured.
        let order: Vec<usize> = (0..set.len()).collect();
        for b in order.chunks(batch.max(1)).map(|rows| set.batch(rows)) {
            let logits = model.logits(b.inputs.clone());
            let ce = per_sample_cross_entropy(logits.clone(), b.labels.clone());
            let correct = correctness(logits, b.labels.clone());
            let ce: Vec<f32> = host::read(ce).convert::<f32>().into_vec().expect("f32");
            let correct: Vec<bool> = host::read(correct).into_vec().expect("bool");
            for ((&g, &c), &l) in b.groups.iter().zip(&correct).zip(&ce) {
                all_hits += usize::from(c);
                all_loss += l as f64;
                n += 1;
                if g != NO_GROUP {
                    hits[g as usize] += usize::from(c);
                    loss[g as usize] += l as f64;
                    count[g as usize] += 1;
                }
            }
        }
        let per = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .zip(&count)
                .map(|(&x, &c)| if c == 0 { f64::NAN } else { x / c as f64 })
                .collect()
        };
        Self {
            group_accuracy: per(&hits.iter().map(|&h| h as f64).collect::<Vec<_>>()),
            group_loss: per(&loss),
            group_count: count,
            accuracy: all_hits as f64 / n.max(1) as f64,
            loss: all_loss / n.max(1) as f64,
        }
    }

    /// The excess accuracy gap of every group of `sparse` against `self` (the dense
    /// model): `(A_g(d) - A_g(s)) - (A(d) - A(s))`.
    pub fn excess_gaps(&self, sparse: &GroupMetrics) -> Vec<f64> {
        let overall = self.accuracy - sparse.accuracy;
        self.group_accuracy
            .iter()
            .zip(&sparse.group_accuracy)
            .map(|(d, s)| (d - s) - overall)
            .collect()
    }
}

/// What the fine-tuning minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mitigation {
    /// Cross-entropy only (naive fine-tuning; also the dense training).
    None,
    /// One equality constraint per group: `L_g - L = 0` (equalised loss).
    EqualizedLoss,
    /// One inequality per group: excess accuracy gap `<= eps` (CEAG).
    ExcessAccuracyGap,
}

/// The fine-tuning problem for a classifier of grouped samples.
///
/// For CEAG, every evaluation of the problem pushes the batch's per-sample correctness
/// into the replay buffer: with the alternating update scheme (which evaluates the
/// violations a second time after the primal step) each batch enters the buffer twice,
/// once before and once after the step.
pub struct FairProblem {
    mitigation: Mitigation,
    /// The per-group constraint (indexed; absent for [`Mitigation::None`]).
    constraint: Option<ConstraintId>,
    /// The dense model's training-set metrics (CEAG only).
    reference: Option<GroupMetrics>,
    epsilon: f64,
    /// How far under `epsilon` the multipliers aim (see [`FairProblem::with_margin`]).
    margin: f64,
    buffer: RefCell<ReplayBuffer>,
    detach_overall: bool,
    /// The data-parallel group whose ranks each see a shard of every batch (`None`: one).
    group: Option<Rc<dyn Collective>>,
    /// The gathering of a global batch failed ([`FairProblem::take_failure`]).
    failure: RefCell<Option<crate::constrained::ConstrainedError>>,
}

impl FairProblem {
    /// Plain cross-entropy.
    pub fn unconstrained() -> Self {
        Self {
            mitigation: Mitigation::None,
            constraint: None,
            reference: None,
            epsilon: 0.0,
            margin: 0.0,
            buffer: RefCell::new(ReplayBuffer::new(0, 1)),
            detach_overall: false,
            group: None,
            failure: RefCell::new(None),
        }
    }

    /// The equalised-loss baseline on `constraint` (an indexed equality constraint with
    /// one entry per group).
    pub fn equalized_loss(constraint: ConstraintId) -> Self {
        Self {
            mitigation: Mitigation::EqualizedLoss,
            constraint: Some(constraint),
            ..Self::unconstrained()
        }
    }

    /// CEAG on `constraint` (an indexed inequality constraint with one entry per group):
    /// excess accuracy gaps against `dense` (training-set metrics) at most `epsilon`,
    /// estimated from a replay buffer of up to `buffer` samples per group. A group with
    /// fewer training samples than that keeps as many as it has: its buffer then holds
    /// its most recent epoch, each sample once, rather than samples many steps stale.
    pub fn excess_accuracy_gap(
        constraint: ConstraintId,
        dense: GroupMetrics,
        epsilon: f64,
        buffer: usize,
    ) -> Self {
        let capacities = dense.group_count.iter().map(|&n| buffer.min(n)).collect();
        Self {
            mitigation: Mitigation::ExcessAccuracyGap,
            constraint: Some(constraint),
            reference: Some(dense),
            epsilon,
            margin: 0.0,
            buffer: RefCell::new(ReplayBuffer::with_capacities(capacities)),
            detach_overall: false,
            group: None,
            failure: RefCell::new(None),
        }
    }

    /// The multipliers aim at `epsilon - margin` instead of `epsilon` (the bound the
    /// result is judged by stays `epsilon`). A constrained optimum sits *on* its active
    /// bounds, and the replay buffer's estimate of a group's accuracy is noisy (about
    /// 0.02 standard error with 256 samples, twice a 0.01 epsilon), so iterates aimed at
    /// epsilon itself end on either side of it about as often; a tightened target moves
    /// them under. The surrogate's gradient is unchanged (the target is a constant).
    ///
    /// # Panics
    /// When `margin` is not in `[0, epsilon]`.
    pub fn with_margin(mut self, margin: f64) -> Self {
        assert!(
            (0.0..=self.epsilon).contains(&margin),
            "the margin must lie in [0, epsilon = {}], got {margin}",
            self.epsilon
        );
        self.margin = margin;
        self
    }

    /// Detaches the overall loss inside the constraints' surrogate (the reference code's
    /// `detach_model_constraint_contribution`): the primal step then sees `sum_g lambda_g
    /// grad L_g` instead of `sum_g lambda_g (grad L_g - grad L)`. Without it, once the
    /// observed multipliers sum past 1 the overall loss enters the Lagrangian with a
    /// negative weight and the step *raises* it.
    pub fn with_detached_overall(mut self, detach: bool) -> Self {
        self.detach_overall = detach;
        self
    }

    /// Data parallel over `group` (`None`: one process): each rank evaluates its shard of
    /// every global batch (the batch's `r`-th contiguous part, [`crate::parallel::shard`])
    /// and the ranks observe the single-process batch's constraints. Per-group means are
    /// not linear in the shards, so the ranks share *sums and counts*: every sample's
    /// group (and, for CEAG, its correctness) is gathered, so each rank knows the global
    /// batch's groups, their counts and order, and pushes the whole batch into its replay
    /// buffer (identical on every rank: the same strict violations, the same
    /// multipliers); a rank's group term is its part of the group's sum over the global
    /// count, scaled so that the weighted mean [`DataParallel::reduce_state`] takes over
    /// the ranks is the global group mean (and the weighted gradient sum the global
    /// gradient).
    pub fn with_group(mut self, group: Option<Rc<dyn Collective>>) -> Self {
        self.group = group.filter(|g| g.size() > 1);
        self
    }

    /// Why the last evaluation could not gather its global batch, if it could not (a
    /// replica stopped: the state it returned has a NaN loss, which fails the step).
    pub fn take_failure(&self) -> Option<crate::constrained::ConstrainedError> {
        self.failure.borrow_mut().take()
    }

    /// The mitigation this problem applies.
    pub fn mitigation(&self) -> Mitigation {
        self.mitigation
    }

    /// A copy of the replay buffer as it stands.
    pub fn buffer(&self) -> ReplayBuffer {
        self.buffer.borrow().clone()
    }

    /// Replaces the replay buffer (a resumed run's, from its checkpoint).
    pub fn set_buffer(&self, buffer: ReplayBuffer) {
        *self.buffer.borrow_mut() = buffer;
    }
}

/// Whether each sample's argmax is its label, `[batch]`.
fn correctness<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1, Bool> {
    logits.argmax(1).squeeze_dim::<1>(1).equal(labels)
}

fn floats<B: Backend>(v: Vec<f32>, device: &B::Device) -> Tensor<B, 1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

impl<B, M> ConstrainedProblem<B, M> for FairProblem
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Classifier<B>,
{
    type Input = GroupedBatch<B>;

    fn compute_cmp_state(&self, model: &M, batch: &GroupedBatch<B>) -> CmpState<B> {
        let logits = model.logits(batch.inputs.clone());
        let per_sample = per_sample_cross_entropy(logits.clone(), batch.labels.clone());
        let loss = per_sample.clone().mean();
        let Some(id) = self
            .constraint
            .filter(|_| self.mitigation != Mitigation::None)
        else {
            return CmpState::new(loss);
        };
        // Without a group, a batch with no sample of any group has nothing to observe.
        if self.group.is_none() && batch.present.is_empty() {
            return CmpState::new(loss);
        }
        let ceag = self.mitigation == Mitigation::ExcessAccuracyGap;
        // The buffer takes this batch's correctness (one host read).
        let correct: Option<Vec<bool>> = ceag.then(|| {
            host::read(correctness(logits, batch.labels.clone()))
                .into_vec()
                .expect("bool")
        });
        let (present, group_loss) = match &self.group {
            None => {
                if let Some(correct) = &correct {
                    let mut buffer = self.buffer.borrow_mut();
                    for (&g, &c) in batch.groups.iter().zip(correct) {
                        buffer.push(g, c);
                    }
                }
                (batch.present.clone(), batch.group_means(per_sample))
            }
            Some(group) => {
                let n = batch.groups.len();
                let global =
                    DataParallel::new(group.clone(), n, n * group.size()).and_then(|parallel| {
                        GlobalBatch::gather(&parallel, batch, correct.as_deref())
                            .map(|g| (parallel, g))
                    });
                let (parallel, global) = match global {
                    Ok(g) => g,
                    Err(e) => {
                        // The step must fail on this rank too (the others' next
                        // collective call fails): a NaN loss does.
                        *self.failure.borrow_mut() = Some(e);
                        return CmpState::new(loss.add_scalar(f32::NAN));
                    }
                };
                if global.present.is_empty() {
                    return CmpState::new(loss);
                }
                if correct.is_some() {
                    let mut buffer = self.buffer.borrow_mut();
                    for (&g, &c) in global.groups.iter().zip(&global.correct) {
                        buffer.push(g, c);
                    }
                }
                // This rank's part of each group's sum over the global count, divided by
                // its weight: the ranks' weighted mean is the group's mean.
                let scale: Vec<f32> = global
                    .counts
                    .iter()
                    .map(|&c| 1.0 / (parallel.weight() * c))
                    .collect();
                let sums = batch.group_sums_over(per_sample, &global.present);
                let device = sums.device();
                (global.present, sums * floats(scale, &device))
            }
        };
        let m = present.len();
        let device = loss.device();
        match self.mitigation {
            Mitigation::None => CmpState::new(loss),
            Mitigation::EqualizedLoss => {
                let violation = group_loss - loss.clone().expand([m]);
                CmpState::new(loss).with(id, ConstraintState::indexed(violation, present))
            }
            Mitigation::ExcessAccuracyGap => {
                let dense = self.reference.as_ref().expect("CEAG has a reference");
                let buffer = self.buffer.borrow();
                let overall_drop = dense.accuracy - buffer.overall_accuracy().expect("just filled");
                let strict: Vec<f32> = present
                    .iter()
                    .map(|&g| {
                        let acc = buffer.group_accuracy(g).expect("just filled");
                        let target = self.epsilon - self.margin;
                        ((dense.group_accuracy[g] - acc) - overall_drop - target) as f32
                    })
                    .collect();
                let dense_group_loss: Vec<f32> = present
                    .iter()
                    .map(|&g| dense.group_loss[g] as f32)
                    .collect();
                // The surrogate: the same gap with the loss in place of the error rate;
                // its constants (dense losses, eps) do not change its gradient.
                let overall = if self.detach_overall {
                    loss.clone().detach()
                } else {
                    loss.clone()
                };
                let surrogate = (group_loss - floats(dense_group_loss, &device))
                    - (overall - dense.loss as f32).expand([m])
                    - self.epsilon as f32;
                CmpState::new(loss).with(
                    id,
                    ConstraintState::indexed(surrogate, present)
                        .with_strict_violation(floats(strict, &device)),
                )
            }
        }
    }
}

impl<B: AutodiffBackend> GroupedSet<B> {
    /// The same set on the inner (non-autodiff) backend, for evaluation.
    pub fn inner(self) -> GroupedSet<B::InnerBackend> {
        GroupedSet {
            inputs: self.inputs.inner(),
            labels: self.labels.inner(),
            groups: self.groups,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests read results back to check them"
)]
mod tests {
    use super::*;
    use crate::constrained::{
        ConstrainedOptimizer, ConstraintKind, ConstraintSet, DualOptimizer, FormulationConfig,
        MultiplierConfig, UpdateScheme,
    };
    use burn::backend::{Autodiff, Flex};
    use burn::optim::SgdConfig;
    use tether_models::mlp::MlpConfig;

    type B = Autodiff<Flex>;

    fn set(n: usize, groups: &[u32]) -> GroupedSet<B> {
        let inputs: Vec<f32> = (0..n * 2)
            .map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
        GroupedSet::new(inputs, 2, &labels, groups.to_vec(), &Default::default())
    }

    #[test]
    fn group_means_match_a_loop() {
        let s = set(6, &[2, 0, NO_GROUP, 2, 0, 2]);
        let b = &s.in_order(6)[0];
        assert_eq!(b.present, [2, 0]);
        let v = floats::<B>(vec![1.0, 2.0, 100.0, 3.0, 4.0, 5.0], &Default::default());
        let means: Vec<f32> = b.group_means(v).into_data().into_vec().unwrap();
        assert_eq!(means, [3.0, 3.0]);
    }

    #[test]
    fn the_replay_buffer_keeps_the_latest_samples() {
        let mut buf = ReplayBuffer::new(2, 3);
        assert_eq!(buf.group_accuracy(0), None);
        for c in [false, false, true, true, true] {
            buf.push(0, c);
        }
        buf.push(NO_GROUP, false);
        assert!(buf.is_full(0) && !buf.is_full(1));
        assert_eq!(buf.group_accuracy(0), Some(1.0));
        // The overall ring holds 6 samples: all six pushed so far.
        assert_eq!(buf.overall_accuracy(), Some(0.5));
    }

    #[test]
    fn excess_gaps_follow_the_definition() {
        let dense = GroupMetrics {
            group_accuracy: vec![0.9, 0.8],
            group_loss: vec![0.0; 2],
            group_count: vec![1, 1],
            accuracy: 0.85,
            loss: 0.0,
        };
        let sparse = GroupMetrics {
            group_accuracy: vec![0.88, 0.6],
            accuracy: 0.75,
            ..dense.clone()
        };
        let g = dense.excess_gaps(&sparse);
        assert!((g[0] - (0.02 - 0.1)).abs() < 1e-12 && (g[1] - (0.2 - 0.1)).abs() < 1e-12);
    }

    /// An indexed inequality constraint with one entry per group, for CEAG.
    fn gap_constraint(cset: &mut ConstraintSet<B>, groups: usize) -> ConstraintId {
        cset.add(
            "gap",
            ConstraintKind::Inequality,
            groups,
            FormulationConfig::Lagrangian(
                MultiplierConfig::new(DualOptimizer::gradient_ascent(1.0)).indexed(),
            ),
        )
        .unwrap()
    }

    /// The strict violation the multipliers see is the paper's excess gap computed from
    /// the buffer, and the surrogate's gradient is that of `L_g - L`: checked against a
    /// direct computation on one batch.
    #[test]
    fn ceag_state_matches_a_direct_computation() {
        let device = Default::default();
        let groups = [0, 1, 1, 0, 1, NO_GROUP, 0, 1];
        let s = set(8, &groups);
        let batch = s.in_order(8).remove(0);
        let model = MlpConfig::new(vec![2, 4, 2]).init::<B>(&device);
        let mut cset = ConstraintSet::<B>::new(&device);
        let id = gap_constraint(&mut cset, 2);
        let dense = GroupMetrics {
            group_accuracy: vec![1.0, 0.5],
            group_loss: vec![0.1, 0.2],
            group_count: vec![300, 400],
            accuracy: 0.75,
            loss: 0.15,
        };
        let problem = FairProblem::excess_accuracy_gap(id, dense.clone(), 0.01, 16);
        let state = ConstrainedProblem::<B, _>::compute_cmp_state(&problem, &model, &batch);
        let (got_id, obs) = &state.observed[0];
        assert_eq!(*got_id, id);
        assert_eq!(obs.indices.as_deref(), Some(&[0usize, 1][..]));
        let strict: Vec<f32> = obs
            .strict_violation
            .clone()
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        // Direct: accuracies of the sparse model on this batch.
        let m = GroupMetrics::measure(&model.valid(), &s.clone().inner(), 2, 8);
        for (g, &got) in strict.iter().enumerate() {
            let want = (dense.group_accuracy[g] - m.group_accuracy[g])
                - (dense.accuracy - m.accuracy)
                - 0.01;
            assert!((got as f64 - want).abs() < 1e-6, "{g}: {got} vs {want}");
        }
        let surrogate: Vec<f32> = obs.violation.clone().into_data().into_vec().unwrap();
        for (g, &got) in surrogate.iter().enumerate() {
            let want = (m.group_loss[g] - dense.group_loss[g]) - (m.loss - dense.loss) - 0.01;
            assert!((got as f64 - want).abs() < 1e-5, "{g}");
        }
        // A margin moves the multipliers' target (the strict violation) by exactly itself,
        // and leaves the surrogate alone.
        let tight =
            FairProblem::excess_accuracy_gap(id, dense.clone(), 0.01, 16).with_margin(0.004);
        let tight_state = ConstrainedProblem::<B, _>::compute_cmp_state(&tight, &model, &batch);
        let tight_obs = &tight_state.observed[0].1;
        let tight_strict: Vec<f32> = tight_obs
            .strict_violation
            .clone()
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        for (t, s) in tight_strict.iter().zip(&strict) {
            assert!((t - s - 0.004).abs() < 1e-6, "{t} vs {s}");
        }
        let tight_surrogate: Vec<f32> = tight_obs.violation.clone().into_data().into_vec().unwrap();
        assert_eq!(tight_surrogate, surrogate);
        // One step runs through the optimizer.
        let mut opt =
            ConstrainedOptimizer::new(SgdConfig::new().init(), 0.1, UpdateScheme::Simultaneous);
        opt.roll(model, &mut cset, &problem, &batch).unwrap();
    }

    /// What a rank observes of a batch, read back: the loss, each observation's indices,
    /// violation and strict violation, and the replay buffer's per-group accuracies.
    type Observed = (
        f32,
        Vec<(Vec<usize>, Vec<f32>, Option<Vec<f32>>)>,
        Vec<Option<f64>>,
    );

    fn observe(
        problem: &FairProblem,
        model: &tether_models::mlp::Mlp<B>,
        batch: &GroupedBatch<B>,
        parallel: Option<&DataParallel>,
    ) -> Observed {
        let mut state = ConstrainedProblem::<B, _>::compute_cmp_state(problem, model, batch);
        if let Some(p) = parallel {
            state = p.reduce_state(state).unwrap();
        }
        let read = |t: &Tensor<B, 1>| -> Vec<f32> { t.clone().into_data().into_vec().unwrap() };
        let loss = read(&state.loss.clone().reshape([1]))[0];
        let observed = state
            .observed
            .iter()
            .map(|(_, o)| {
                (
                    o.indices.clone().unwrap_or_default(),
                    read(&o.violation),
                    o.strict_violation.as_ref().map(read),
                )
            })
            .collect();
        let buffer = problem.buffer();
        let accuracies = match problem.mitigation() {
            Mitigation::ExcessAccuracyGap => (0..3).map(|g| buffer.group_accuracy(g)).collect(),
            _ => Vec::new(),
        };
        (loss, observed, accuracies)
    }

    /// Two ranks, each with its half of a batch, observe what one process observes on
    /// the whole batch: the same groups in the same order (the first half holds only some
    /// of them), the per-group means of the whole batch (from the ranks' sums over the
    /// global counts, not the means of their halves), the same replay buffer and strict
    /// violations; for CEAG and the equalised loss.
    #[test]
    fn two_ranks_observe_the_groups_of_the_whole_batch() {
        let device = Default::default();
        // Rank 0's half has groups 2 and 0 (one sample each); rank 1's all three.
        let groups = [2, NO_GROUP, 0, NO_GROUP, 1, 2, 2, 0];
        let dense = GroupMetrics {
            group_accuracy: vec![1.0, 0.5, 0.75],
            group_loss: vec![0.1, 0.2, 0.3],
            group_count: vec![300, 400, 500],
            accuracy: 0.75,
            loss: 0.15,
        };
        let model = || {
            B::seed(&device, 11);
            MlpConfig::new(vec![2, 5, 2]).init::<B>(&device)
        };
        for ceag in [true, false] {
            let problem = |cset: &mut ConstraintSet<B>| {
                let id = gap_constraint(cset, 3);
                if ceag {
                    FairProblem::excess_accuracy_gap(id, dense.clone(), 0.01, 16)
                } else {
                    FairProblem::equalized_loss(id)
                }
            };
            let single = {
                let mut cset = ConstraintSet::<B>::new(&device);
                let p = problem(&mut cset);
                let s = set(8, &groups);
                observe(&p, &model(), &s.in_order(8)[0], None)
            };
            let devices = vec![device; 2];
            let ranks = crate::parallel::local::run_replicas::<Flex, _, _>(&devices, |rank| {
                let group = crate::parallel::group().expect("a replica's group");
                let mut cset = ConstraintSet::<B>::new(&device);
                let p = problem(&mut cset).with_group(Some(group.clone()));
                let net = model();
                let s = set(8, &groups);
                let rows: Vec<usize> = (4 * rank..4 * rank + 4).collect();
                let parallel = DataParallel::new(group, 4, 8)?;
                Ok(observe(&p, &net, &s.batch(&rows), Some(&parallel)))
            })
            .unwrap();
            for (rank, got) in ranks.iter().enumerate() {
                assert!((got.0 - single.0).abs() <= 1e-6, "rank {rank}: loss");
                assert_eq!(got.1.len(), 1, "one observation");
                let ((gi, gv, gs), (si, sv, ss)) = (&got.1[0], &single.1[0]);
                assert_eq!(gi, si, "rank {rank}: the global batch's groups, in order");
                assert_eq!(si, &[2, 0, 1]);
                for (a, b) in gv.iter().zip(sv) {
                    assert!(
                        (a - b).abs() <= 1e-6,
                        "rank {rank} ceag {ceag}: {gv:?} vs {sv:?}"
                    );
                }
                assert_eq!(gs, ss, "rank {rank}: the strict violations (the buffer's)");
                assert_eq!(got.2, single.2, "rank {rank}: the replay buffers");
            }
        }
    }

    #[test]
    #[should_panic(expected = "the margin must lie in [0, epsilon = 0.01]")]
    fn a_margin_beyond_epsilon_is_refused() {
        let dense = GroupMetrics {
            group_accuracy: vec![1.0],
            group_loss: vec![0.1],
            group_count: vec![3],
            accuracy: 1.0,
            loss: 0.1,
        };
        let mut cset = ConstraintSet::<B>::new(&Default::default());
        let id = gap_constraint(&mut cset, 1);
        let _ = FairProblem::excess_accuracy_gap(id, dense, 0.01, 4).with_margin(0.02);
    }
}
