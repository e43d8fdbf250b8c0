//! Checkpoints of a constrained run: the model, the primal optimizer state, the
//! multipliers (with their dual-optimizer states and penalties) and the step counter.
//! Tensors are stored with their exact bytes, so a resumed run continues bit for bit.
//!
//! A checkpoint is a directory. It is written next to its destination and renamed into
//! place, so an interrupted save never leaves a half-written checkpoint behind.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::error::{ConstrainedError, Result};
use super::optimizer::ConstrainedOptimizer;
use super::set::{ConstraintSet, ConstraintSetRecord};

const MODEL: &str = "model";
const OPTIMIZER: &str = "optimizer";
const DUAL: &str = "dual.json";

#[derive(Serialize, Deserialize)]
struct DualFile {
    format: u32,
    step: u64,
    constraints: ConstraintSetRecord,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> ConstrainedError {
    ConstrainedError::Checkpoint(format!("{what} {}: {e}", path.display()))
}

/// Writes a checkpoint directory at `dir` (replacing an older one atomically).
pub fn save_checkpoint<B, M, O>(
    dir: &Path,
    step: u64,
    model: &M,
    optimizer: &ConstrainedOptimizer<O>,
    set: &ConstraintSet<B>,
) -> Result<()>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io("cannot clear", &tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    recorder
        .record(model.clone().into_record(), tmp.join(MODEL))
        .map_err(|e| io("cannot write model in", &tmp, e))?;
    recorder
        .record(optimizer.primal().to_record(), tmp.join(OPTIMIZER))
        .map_err(|e| io("cannot write optimizer in", &tmp, e))?;
    let dual = DualFile {
        format: 1,
        step,
        constraints: set.to_record(),
    };
    let json = serde_json::to_vec(&dual).map_err(|e| io("cannot encode", &tmp, e))?;
    fs::write(tmp.join(DUAL), json).map_err(|e| io("cannot write", &tmp, e))?;

    let old = sibling(dir, "old");
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| io("cannot clear", &old, e))?;
        }
        fs::rename(dir, &old).map_err(|e| io("cannot move aside", dir, e))?;
    }
    fs::rename(&tmp, dir).map_err(|e| io("cannot move into place", dir, e))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| io("cannot remove", &old, e))?;
    }
    Ok(())
}

/// Restores a checkpoint written by [`save_checkpoint`] into freshly built objects of
/// the same shapes. Returns the model and the step counter.
pub fn load_checkpoint<B, M, O>(
    dir: &Path,
    model: M,
    optimizer: &mut ConstrainedOptimizer<O>,
    set: &mut ConstraintSet<B>,
) -> Result<(M, u64)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let device = set.device().clone();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let model_record = recorder
        .load(dir.join(MODEL), &device)
        .map_err(|e| io("cannot read model in", dir, e))?;
    let optim_record = recorder
        .load(dir.join(OPTIMIZER), &device)
        .map_err(|e| io("cannot read optimizer in", dir, e))?;
    let bytes = fs::read(dir.join(DUAL)).map_err(|e| io("cannot read", &dir.join(DUAL), e))?;
    let dual: DualFile =
        serde_json::from_slice(&bytes).map_err(|e| io("corrupt", &dir.join(DUAL), e))?;
    if dual.format != 1 {
        return Err(io("unsupported format version in", dir, dual.format));
    }
    set.load_record(dual.constraints)?;
    optimizer.set_primal(optimizer.primal().clone().load_record(optim_record));
    Ok((model.load_record(model_record), dual.step))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    dir.with_file_name(format!(".{name}.{suffix}"))
}
