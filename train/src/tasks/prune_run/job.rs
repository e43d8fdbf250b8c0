//! One run's settings, data and checkpoint state: [`Job`], whose methods the sibling
//! modules define (the epoch loop, the methods, the outputs).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::PruneConfig;
use super::report::EpochResult;
use super::samples::Samples;
use crate::resume::{Interrupt, RunControl, RunState, open_checkpoint, settings_key};
use crate::tasks::budget::latency::LatencyModel;

/// One run's settings and data.
pub(super) struct Job<'a> {
    pub(super) config: &'a PruneConfig,
    pub(super) train: &'a Samples<'a>,
    pub(super) test: &'a Samples<'a>,
    pub(super) progress: bool,
    /// Stops the run (checkpoint written) when raised.
    pub(super) interrupt: Interrupt,
    /// The checkpoint `--resume` continues from, read and checked before any work.
    pub(super) resume: Option<Resumed>,
    /// The data-parallel group ([`crate::parallel::set_group`]).
    pub(super) collective: Option<std::rc::Rc<dyn crate::parallel::Collective>>,
    /// The latency model fitted for this run (timings differ from process to process: a
    /// resumed run takes the interrupted run's from its checkpoint).
    pub(super) latency: std::cell::RefCell<Option<LatencyModel>>,
}

/// A checkpoint to continue from.
pub(super) struct Resumed {
    pub(super) dir: PathBuf,
    pub(super) state: RunState,
}

/// The run's state beyond the constrained checkpoint: the epochs finished, the metrics
/// rows so far and the method's own (the magnitude masks).
#[derive(Serialize, Deserialize)]
pub(super) struct PruneState {
    pub(super) epochs: Vec<EpochResult>,
    pub(super) rows: Vec<Vec<f64>>,
    pub(super) method: serde_json::Value,
    #[serde(default)]
    pub(super) latency: Option<LatencyModel>,
}

/// A method's state for the checkpoint, saved and restored by the method (the L0 and
/// dense runs keep theirs in the optimizer and multipliers: none).
pub(super) struct MethodState<'a> {
    pub(super) save: &'a dyn Fn() -> serde_json::Value,
    pub(super) restore: &'a dyn Fn(serde_json::Value) -> anyhow::Result<()>,
}

impl MethodState<'_> {
    pub(super) fn none() -> MethodState<'static> {
        MethodState {
            save: &|| serde_json::Value::Null,
            restore: &|_| Ok(()),
        }
    }
}

/// Reads and checks `--resume`'s checkpoint (before any data is read).
pub(super) fn read_resume(config: &PruneConfig) -> anyhow::Result<Option<Resumed>> {
    let Some(path) = &config.resume else {
        return Ok(None);
    };
    let (dir, state) = open_checkpoint(path, "prune", &settings_key(config)?)?;
    Ok(Some(Resumed { dir, state }))
}

impl<'a> Job<'a> {
    pub(super) fn new(
        config: &'a PruneConfig,
        train: &'a Samples<'a>,
        test: &'a Samples<'a>,
        control: &RunControl,
        resume: Option<Resumed>,
    ) -> Self {
        Job {
            config,
            train,
            test,
            progress: control.progress,
            interrupt: control.interrupt.clone(),
            resume,
            collective: crate::parallel::group(),
            latency: Default::default(),
        }
    }
}
