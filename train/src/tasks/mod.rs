//! Problems built on [`crate::constrained`], each a [`ConstrainedProblem`] run by the one
//! training loop ([`crate::trainer::fit`]).
//!
//! - [`prune`]: L0 pruning under a density constraint (Controlled Sparsity);
//!   [`prune_run`]: the whole job (data, schedule, outputs) behind `tether-train prune`;
//!   [`prune_warmup`]: its dense warm-up and the gate locations it hands over to;
//!   [`prune_ramp`]: its targets asked gradually, on gmp's cubic schedule;
//!   [`prune_replicas`]: the job on `--devices N` replica threads.
//! - [`classify`]: the dense baseline (no constraint).
//! - [`fair`]: fine-tuning a pruned model with every group's excess accuracy gap bounded
//!   (CEAG, Balancing Act); [`fair_run`]: the job behind `tether-train fair-prune` (data
//!   and groups, dense training, pruning, fine-tuning, per-group report).
//! - [`svm`]: a hard-margin linear SVM, checked against an exact QP solve; [`svm_run`]:
//!   the job behind `tether-train svm` (Iris, the QP reference, multiplier plots).
//! - [`mesh`]: per-vertex labels of a mesh with an EMAN; [`mesh_run`]: the job behind
//!   `tether-train mesh` (cortex parcellation, transformed test copies, deploy check).
//! - [`gang`], [`nash_memory`], [`matrix_game`]: GANGs solved by Parallel Nash Memory;
//!   [`gang_run`]: the job behind `tether-train gang` (PNM or the GAN baseline, mode
//!   metrics, exploitability, plots).
//! - [`outputs`]: the output files the jobs share (burn records, `summary.json`).
//! - [`metrics`]: the cross-entropy and accuracy the classifying tasks share (kept apart
//!   so that no task imports them from another).
//!
//! [`ConstrainedProblem`]: crate::constrained::ConstrainedProblem

#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod budget;
pub mod classify;
pub mod fair;
pub mod fair_run;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod gang;
pub mod gang_run;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod magnitude;
pub mod matrix_game;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod mesh;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod mesh_run;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod metrics;
pub mod nash_memory;
pub mod outputs;
pub mod prune;
pub mod prune_ramp;
pub mod prune_replicas;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod prune_run;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod prune_warmup;
pub mod svm;
pub mod svm_run;

/// A config's defaults as its flags give them: `T`'s arguments parsed from an empty
/// command line. The configs that derive [`clap::Args`] take their [`Default`] from here,
/// so a default is written once, on its flag.
///
/// # Panics
/// When `T` has a required argument (a programmer error; each config's tests build its
/// default).
pub(crate) fn flag_defaults<T: clap::Args>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"));
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every flag of a config has a default");
    T::from_arg_matches(&matches).expect("the defaults are valid values")
}
