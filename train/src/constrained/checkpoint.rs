//! Checkpoints of a constrained run: the model, the primal optimizer state, the
//! multipliers (with their dual-optimizer states and penalties) and the step counter.
//! Tensors are stored with their exact bytes, so a resumed run continues bit for bit.
//!
//! A checkpoint is a directory. It is written next to its destination and renamed into
//! place, so an interrupted save never leaves a half-written checkpoint behind.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
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
    save_checkpoint_with(dir, step, model, optimizer, set, &[])
}

/// [`save_checkpoint`] with a caller's files (`(name, bytes)`, e.g. a task's own state)
/// written into the same directory, so they are replaced together or not at all. Every
/// file and the directory are synced to disk before the rename.
pub fn save_checkpoint_with<B, M, O>(
    dir: &Path,
    step: u64,
    model: &M,
    optimizer: &ConstrainedOptimizer<O>,
    set: &ConstraintSet<B>,
    extra: &[(&str, &[u8])],
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
    install(&tmp, dir, extra)
}

/// Writes `files` into the checkpoint folder under construction `tmp`, syncs everything to
/// disk, and renames `tmp` into place as `dir` (the older `dir`, if any, moved aside and
/// removed): a crash leaves the old checkpoint or the new one, never a mixture.
fn install(tmp: &Path, dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    for (name, bytes) in files {
        fs::write(tmp.join(name), bytes).map_err(|e| io("cannot write", &tmp.join(name), e))?;
    }
    // The bytes reach the disk before the rename makes them the checkpoint: a power cut
    // leaves the old checkpoint or the new one, never a renamed folder of empty files.
    for entry in fs::read_dir(tmp).map_err(|e| io("cannot list", tmp, e))? {
        let path = entry.map_err(|e| io("cannot list", tmp, e))?.path();
        sync(&path)?;
    }
    sync(tmp)?;

    let old = sibling(dir, "old");
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| io("cannot clear", &old, e))?;
        }
        fs::rename(dir, &old).map_err(|e| io("cannot move aside", dir, e))?;
    }
    fs::rename(tmp, dir).map_err(|e| io("cannot move into place", dir, e))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| io("cannot remove", &old, e))?;
    }
    Ok(())
}

/// A checkpoint of byte files only (a task whose state is not a constrained run's), with
/// the same guarantees as [`save_checkpoint`]: written beside `dir`, synced, renamed into
/// place.
///
/// # Errors
/// A file or folder that cannot be written, synced or renamed (the path named).
pub fn save_files_checkpoint(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io("cannot clear", &tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    install(&tmp, dir, files)
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

/// `fsync` of a file or directory (directories: their entries; not supported everywhere,
/// where it is a no-op).
fn sync(path: &Path) -> Result<()> {
    match fs::File::open(path).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(()),
        Err(_) if path.is_dir() => Ok(()),
        Err(e) => Err(io("cannot sync", path, e)),
    }
}

/// `model` (freshly built, as at the start of the run that wrote the checkpoint in `dir`)
/// with the checkpoint's parameter ids and its own values.
///
/// Burn gives each parameter a random id when a module is built, and a record carries
/// the ids it was saved with: loaded, they replace the fresh ones. Whatever a run keys by
/// id before the checkpoint is loaded (a parameter group, a mask) must therefore use the
/// checkpoint's ids: call this first, build those from the result, then
/// [`load_checkpoint`]. The values stay the fresh model's, so anything computed from the
/// initial network is computed as in the interrupted run.
pub fn adopt_checkpoint_ids<B: Backend, M: Module<B>>(dir: &Path, model: M) -> Result<M> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| io("a model without parameters for", dir, "nothing to restore"))?;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let record = recorder
        .load(dir.join(MODEL), &device)
        .map_err(|e| io("cannot read model in", dir, e))?;
    let saved = model.clone().load_record(record);
    let mut ids = Ids(Vec::new());
    saved.visit(&mut ids);
    let expected = ids.0.len();
    let mut adopt = Adopt {
        ids: ids.0.into_iter(),
        missing: false,
    };
    let model = model.map(&mut adopt);
    if adopt.missing || adopt.ids.next().is_some() {
        return Err(io(
            "the model's parameters do not match",
            dir,
            format!("the checkpoint has {expected}"),
        ));
    }
    Ok(model)
}

/// Every parameter id of a module, in visiting order.
struct Ids(Vec<ParamId>);

impl<B: Backend> ModuleVisitor<B> for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.id);
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.0.push(param.id);
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.0.push(param.id);
    }
}

/// Gives each parameter the next id of `ids`, in visiting order.
struct Adopt<I> {
    ids: I,
    missing: bool,
}

impl<I: Iterator<Item = ParamId>> Adopt<I> {
    fn next(&mut self, own: ParamId) -> ParamId {
        self.ids.next().unwrap_or_else(|| {
            self.missing = true;
            own
        })
    }
}

impl<B: Backend, I: Iterator<Item = ParamId>> ModuleMapper<B> for Adopt<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(self.next(id), tensor, mapper)
    }
    fn map_int<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Int>>,
    ) -> Param<Tensor<B, D, Int>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(self.next(id), tensor, mapper)
    }
    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<B, D, Bool>>,
    ) -> Param<Tensor<B, D, Bool>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(self.next(id), tensor, mapper)
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    dir.with_file_name(format!(".{name}.{suffix}"))
}
