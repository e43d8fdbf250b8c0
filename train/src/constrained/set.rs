//! The registry of a problem's constraints: it validates every observation, builds the
//! primal Lagrangian and applies the dual step.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::AutodiffBackend, backend::Backend};
use serde::{Deserialize, Serialize};

use super::constraint::{ConstraintId, ConstraintKind, ConstraintState};
use super::error::{ConstrainedError, Result};
use super::formulation::{Formulation, FormulationConfig, primal_contribution};
use super::multiplier::MultiplierRecord;
use super::problem::CmpState;

static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

type Inner<B> = <B as AutodiffBackend>::InnerBackend;
/// Which entries of an indexed constraint a step observed.
type Mask<B> = Tensor<Inner<B>, 1, Bool>;
/// The indices of an indexed constraint's observed entries, on the device.
pub(super) type IndexTensor<B> = Tensor<Inner<B>, 1, Int>;

/// One registered constraint.
#[derive(Clone, Debug)]
pub struct Constraint<B: Backend> {
    name: String,
    kind: ConstraintKind,
    len: usize,
    formulation: Formulation<B>,
}

impl<B: Backend> Constraint<B> {
    /// The name given at registration (also the checkpoint key).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Inequality or equality.
    pub fn kind(&self) -> ConstraintKind {
        self.kind
    }
    /// Number of entries (multipliers).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the constraint has no entries (never true for a registered constraint).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The formulation and its state.
    pub fn formulation(&self) -> &Formulation<B> {
        &self.formulation
    }
}

/// The host copy of one step's values (read once per step, for the finiteness check and
/// for logging), or [`ObservedValues::unread`] on a step observed without a host read
/// ([`ConstraintSet::observe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedValues {
    /// The objective.
    pub loss: f64,
    /// Per observed constraint: id, violation and strict violation (if any).
    pub constraints: Vec<(ConstraintId, Vec<f64>, Option<Vec<f64>>)>,
}

impl ObservedValues {
    /// The values of a step that was not read back: a NaN loss and no constraints.
    pub fn unread() -> Self {
        Self {
            loss: f64::NAN,
            constraints: Vec::new(),
        }
    }

    /// Whether these are [`Self::unread`]'s values (a read step's loss is finite).
    pub fn is_unread(&self) -> bool {
        self.loss.is_nan() && self.constraints.is_empty()
    }
}

/// The finiteness of the steps observed without a host read since the last read, kept on
/// the device: the number of non-finite values they held, and how many steps they were.
#[derive(Clone, Debug)]
struct Unread<B: Backend> {
    non_finite: Tensor<B, 1>,
    steps: usize,
}

/// All constraints of a problem, with their multipliers and penalties.
#[derive(Clone, Debug)]
pub struct ConstraintSet<B: AutodiffBackend> {
    id: u64,
    constraints: Vec<Constraint<Inner<B>>>,
    device: B::Device,
    unread: Option<Unread<Inner<B>>>,
}

impl<B: AutodiffBackend> ConstraintSet<B> {
    /// An empty set whose state lives on `device`.
    pub fn new(device: &B::Device) -> Self {
        Self {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            constraints: Vec::new(),
            device: device.clone(),
            unread: None,
        }
    }

    /// Registers a constraint with `len` entries (one multiplier each).
    pub fn add(
        &mut self,
        name: impl Into<String>,
        kind: ConstraintKind,
        len: usize,
        formulation: FormulationConfig,
    ) -> Result<ConstraintId> {
        let name = name.into();
        if len == 0 {
            return Err(ConstrainedError::InvalidConfig(format!(
                "constraint `{name}` must have at least one entry"
            )));
        }
        if self.constraints.iter().any(|c| c.name == name) {
            return Err(ConstrainedError::InvalidConfig(format!(
                "a constraint named `{name}` is already registered"
            )));
        }
        let formulation = formulation.build::<Inner<B>>(kind, len, &self.device)?;
        self.constraints.push(Constraint {
            name,
            kind,
            len,
            formulation,
        });
        Ok(ConstraintId {
            set: self.id,
            index: self.constraints.len() - 1,
        })
    }

    /// The constraint behind `id`.
    pub fn get(&self, id: ConstraintId) -> Result<&Constraint<Inner<B>>> {
        self.check_id(id)?;
        Ok(&self.constraints[id.index])
    }

    /// All constraints, in registration order.
    pub fn constraints(&self) -> &[Constraint<Inner<B>>] {
        &self.constraints
    }

    /// The device of the multipliers.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    fn check_id(&self, id: ConstraintId) -> Result<()> {
        if id.set != self.id || id.index >= self.constraints.len() {
            return Err(ConstrainedError::UnknownConstraint {
                id: id.to_string(),
                len: self.constraints.len(),
            });
        }
        Ok(())
    }

    /// Checks ids, shapes, indices and finiteness of a state, and reads its values back
    /// to the host (one device synchronisation).
    pub fn validate(&self, state: &CmpState<B>) -> Result<ObservedValues> {
        self.check_structure(state)?;
        let host = tether_models::host::read_f64(self.device_values(state));
        self.parse(state, &host)
    }

    /// [`Self::validate`] on the steps where `read` says so, and on the others the same
    /// checks of ids, shapes and indices (host metadata) with the finiteness check kept
    /// on the device: its count of non-finite values is added up over the unread steps and
    /// read with the next read step's values, in the same host read. A training step on a
    /// GPU then synchronises with the host only on the steps logging reads; a NaN is still
    /// an error, reported at the next read step ([`ConstrainedError::NonFiniteUnread`]),
    /// after the steps between have been taken with it.
    pub fn observe(&mut self, state: &CmpState<B>, read: bool) -> Result<ObservedValues> {
        self.check_structure(state)?;
        let values = self.device_values(state);
        if !read {
            let non_finite = values.is_finite().bool_not().float().sum();
            self.unread = Some(match self.unread.take() {
                Some(u) => Unread {
                    non_finite: u.non_finite + non_finite,
                    steps: u.steps + 1,
                },
                None => Unread {
                    non_finite,
                    steps: 1,
                },
            });
            return Ok(ObservedValues::unread());
        }
        let Some(unread) = self.unread.take() else {
            return self.parse(state, &tether_models::host::read_f64(values));
        };
        let mut host =
            tether_models::host::read_f64(Tensor::cat(vec![values, unread.non_finite], 0));
        let non_finite = host.pop().expect("the unread count");
        if non_finite != 0.0 {
            return Err(ConstrainedError::NonFiniteUnread {
                steps: unread.steps,
                values: non_finite as usize,
            });
        }
        self.parse(state, &host)
    }

    /// This set with `other`'s count of unread values (the same set's state at a later
    /// point): what the extragradient step keeps when it restores the multipliers.
    pub(super) fn with_unread_of(mut self, other: &Self) -> Self {
        self.unread = other.unread.clone();
        self
    }

    /// Ids, duplicates, shapes and indices: everything checked without reading a value.
    fn check_structure(&self, state: &CmpState<B>) -> Result<()> {
        let mut seen = vec![false; self.constraints.len()];
        for (id, obs) in &state.observed {
            self.check_id(*id)?;
            let c = &self.constraints[id.index];
            if std::mem::replace(&mut seen[id.index], true) {
                return Err(ConstrainedError::DuplicateConstraint {
                    constraint: c.name.clone(),
                });
            }
            check_observation(c, obs)?;
        }
        let loss_dims = state.loss.dims();
        if loss_dims != [1] {
            return Err(ConstrainedError::InvalidConfig(format!(
                "the loss must have shape [1], got {loss_dims:?}"
            )));
        }
        Ok(())
    }

    /// The loss and every violation (and strict violation) in one device tensor, so that
    /// one host read serves them all.
    fn device_values(&self, state: &CmpState<B>) -> Tensor<Inner<B>, 1> {
        let mut parts: Vec<Tensor<Inner<B>, 1>> = vec![state.loss.clone().inner()];
        for (_, obs) in state.observed.iter().filter(|(_, o)| !is_empty(o)) {
            parts.push(obs.violation.clone().inner());
            if let Some(s) = &obs.strict_violation {
                parts.push(s.clone().inner());
            }
        }
        Tensor::cat(parts, 0)
    }

    /// Splits the host copy of [`Self::device_values`] and checks its finiteness.
    fn parse(&self, state: &CmpState<B>, host: &[f64]) -> Result<ObservedValues> {
        let loss = host[0];
        if !loss.is_finite() {
            return Err(ConstrainedError::NonFiniteLoss { value: loss });
        }
        let mut at = 1;
        let mut take = |n: usize| {
            let v = host[at..at + n].to_vec();
            at += n;
            v
        };
        let mut constraints = Vec::with_capacity(state.observed.len());
        for (id, obs) in &state.observed {
            let name = &self.constraints[id.index].name;
            let n = obs.violation.dims()[0];
            let v = take(n);
            finite(name, "violation", &v)?;
            let s = match obs.strict_violation {
                Some(_) => {
                    let s = take(n);
                    finite(name, "strict_violation", &s)?;
                    Some(s)
                }
                None => None,
            };
            constraints.push((*id, v, s));
        }
        Ok(ObservedValues { loss, constraints })
    }

    /// The primal Lagrangian `f(x) + sum of the formulations' contributions`, with the
    /// multipliers and penalties held constant. Call [`validate`](Self::validate) first.
    pub fn lagrangian(&self, state: &CmpState<B>) -> Tensor<B, 1> {
        self.lagrangian_at(state, &self.index_tensors(state))
    }

    /// [`Self::lagrangian`] with the state's index tensors already uploaded.
    pub(super) fn lagrangian_at(
        &self,
        state: &CmpState<B>,
        indices: &[Option<IndexTensor<B>>],
    ) -> Tensor<B, 1> {
        let mut total = state.loss.clone();
        for ((id, obs), indices) in state.observed.iter().zip(indices) {
            if !obs.contributes_to_primal || is_empty(obs) {
                continue;
            }
            let c = &self.constraints[id.index];
            let gather = |t: Tensor<Inner<B>, 1>| -> Tensor<B, 1> {
                let t = match &indices {
                    Some(i) => t.select(0, i.clone()),
                    None => t,
                };
                Tensor::from_inner(t)
            };
            let lambda = c.formulation.multiplier().map(|m| gather(m.value()));
            let penalty = c.formulation.penalty().map(|p| gather(p.value()));
            total = total + primal_contribution(c.kind, obs.violation.clone(), lambda, penalty);
        }
        total
    }

    /// The dual step: moves every observed multiplier along its (strict) violation with
    /// its dual optimizer, projects it, applies dual restarts, then grows penalties.
    pub fn dual_step(&mut self, state: &CmpState<B>) -> Result<()> {
        let indices = self.index_tensors(state);
        self.dual_step_at(state, &indices)
    }

    /// [`Self::dual_step`] with the state's index tensors already uploaded.
    pub(super) fn dual_step_at(
        &mut self,
        state: &CmpState<B>,
        indices: &[Option<IndexTensor<B>>],
    ) -> Result<()> {
        for ((id, obs), indices) in state.observed.iter().zip(indices) {
            self.check_id(*id)?;
            if !obs.contributes_to_dual || is_empty(obs) {
                continue;
            }
            let indices = indices.clone();
            let c = &mut self.constraints[id.index];
            let observed_error = obs
                .strict_violation
                .as_ref()
                .unwrap_or(&obs.violation)
                .clone()
                .inner();
            // Scatter onto zeros: adding to 0 is exact, so an indexed multiplier computes
            // bit for bit what a dense one would on the observed entries.
            let (error, observed): (Tensor<Inner<B>, 1>, Option<Mask<B>>) = match indices {
                None => (observed_error, None),
                Some(idx) => {
                    let zeros = Tensor::<Inner<B>, 1>::zeros([c.len], &self.device);
                    let ones = observed_error.ones_like();
                    let error = zeros.clone().select_assign(
                        0,
                        idx.clone(),
                        observed_error,
                        burn::tensor::IndexingUpdateOp::Add,
                    );
                    let mask = zeros
                        .select_assign(0, idx, ones, burn::tensor::IndexingUpdateOp::Add)
                        .greater_elem(0.5);
                    (error, Some(mask))
                }
            };
            let feasible = match c.kind {
                ConstraintKind::Inequality => Some(error.clone().lower_elem(0.0)),
                ConstraintKind::Equality => None,
            };
            let scaled = if c.formulation.scales_dual_error() {
                let penalty = c.formulation.penalty().expect("AL has a penalty").value();
                error.clone() * penalty
            } else {
                error.clone()
            };
            let kind = c.kind;
            if let Some(m) = c.formulation.multiplier_mut() {
                m.dual_step(scaled, observed.clone(), feasible)?;
            }
            if let Some(p) = c.formulation.penalty_mut() {
                p.update(kind, error, observed);
            }
        }
        Ok(())
    }

    /// The indices of each observed indexed constraint on the device, in the order of
    /// `state.observed`: uploaded once per state, for the Lagrangian and the dual step
    /// both (they were uploaded by each).
    pub(super) fn index_tensors(&self, state: &CmpState<B>) -> Vec<Option<IndexTensor<B>>> {
        state
            .observed
            .iter()
            .map(|(_, obs)| {
                obs.indices.as_ref().map(|indices| {
                    let data: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
                    Tensor::from_data(TensorData::new(data, [indices.len()]), &self.device)
                })
            })
            .collect()
    }

    /// The multipliers, penalties and dual-optimizer states, keyed by constraint name.
    pub fn to_record(&self) -> ConstraintSetRecord {
        ConstraintSetRecord {
            constraints: self
                .constraints
                .iter()
                .map(|c| ConstraintRecord {
                    name: c.name.clone(),
                    multiplier: c.formulation.multiplier().map(|m| m.to_record()),
                    penalty: c.formulation.penalty().map(|p| p.to_record()),
                })
                .collect(),
        }
    }

    /// Restores a record made by [`to_record`](Self::to_record) on a set built with the
    /// same constraints. Every constraint must be present, with matching shapes.
    pub fn load_record(&mut self, record: ConstraintSetRecord) -> Result<()> {
        if record.constraints.len() != self.constraints.len() {
            return Err(ConstrainedError::Checkpoint(format!(
                "the checkpoint has {} constraints, this set has {}",
                record.constraints.len(),
                self.constraints.len()
            )));
        }
        for r in record.constraints {
            let c = self
                .constraints
                .iter_mut()
                .find(|c| c.name == r.name)
                .ok_or_else(|| {
                    ConstrainedError::Checkpoint(format!(
                        "the checkpoint has a constraint `{}` this set does not",
                        r.name
                    ))
                })?;
            match (c.formulation.multiplier_mut(), r.multiplier) {
                (Some(m), Some(mr)) => m.load_record(mr, &r.name)?,
                (None, None) => {}
                _ => {
                    return Err(ConstrainedError::Checkpoint(format!(
                        "constraint `{}`: formulation differs from the checkpoint's",
                        r.name
                    )));
                }
            }
            match (c.formulation.penalty_mut(), r.penalty) {
                (Some(p), Some(pr)) => p.load_record(pr, &r.name)?,
                (None, None) => {}
                _ => {
                    return Err(ConstrainedError::Checkpoint(format!(
                        "constraint `{}`: formulation differs from the checkpoint's",
                        r.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_observation<B: Backend, BO: Backend>(
    c: &Constraint<B>,
    obs: &ConstraintState<BO>,
) -> Result<()> {
    let n = obs.violation.dims()[0];
    let indexed = c
        .formulation
        .multiplier()
        .map(|m| m.config().indexed)
        .unwrap_or(false);
    match (&obs.indices, indexed) {
        (None, false) => {
            if n != c.len {
                return Err(ConstrainedError::ShapeMismatch {
                    constraint: c.name.clone(),
                    what: "violation",
                    expected: c.len,
                    got: n,
                });
            }
        }
        (Some(idx), true) => {
            if idx.len() != n {
                return Err(ConstrainedError::ShapeMismatch {
                    constraint: c.name.clone(),
                    what: "indices",
                    expected: n,
                    got: idx.len(),
                });
            }
            let mut hit = vec![false; c.len];
            for &i in idx {
                if i >= c.len {
                    return Err(ConstrainedError::IndexOutOfRange {
                        constraint: c.name.clone(),
                        index: i,
                        len: c.len,
                    });
                }
                if std::mem::replace(&mut hit[i], true) {
                    return Err(ConstrainedError::DuplicateIndex {
                        constraint: c.name.clone(),
                        index: i,
                    });
                }
            }
        }
        (Some(_), false) => {
            return Err(ConstrainedError::IndexingMismatch {
                constraint: c.name.clone(),
                reason: "indices given for a dense constraint (make its multiplier indexed)",
            });
        }
        (None, true) => {
            return Err(ConstrainedError::IndexingMismatch {
                constraint: c.name.clone(),
                reason: "an indexed constraint needs the indices of its observed entries",
            });
        }
    }
    if let Some(s) = &obs.strict_violation {
        let m = s.dims()[0];
        if m != n {
            return Err(ConstrainedError::ShapeMismatch {
                constraint: c.name.clone(),
                what: "strict_violation",
                expected: n,
                got: m,
            });
        }
    }
    Ok(())
}

/// An indexed observation may see no entry at all (no sample of any group in a batch).
fn is_empty<B: Backend>(obs: &ConstraintState<B>) -> bool {
    obs.violation.dims()[0] == 0
}

fn finite(name: &str, which: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(ConstrainedError::NonFiniteViolation {
            constraint: name.to_string(),
            which,
            value,
        }),
        None => Ok(()),
    }
}

/// Saved state of a [`ConstraintSet`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConstraintSetRecord {
    constraints: Vec<ConstraintRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ConstraintRecord {
    name: String,
    multiplier: Option<MultiplierRecord>,
    penalty: Option<TensorData>,
}
