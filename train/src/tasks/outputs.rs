//! Output files the task runs share: a burn record saved so that an interrupted run never
//! leaves a half-written one, and a pretty-printed JSON file (`summary.json`).
//!
//! Kept apart from [`crate::io`] because it needs burn's recorder; `tasks::prune_run` has a
//! private copy of [`save_record`] that can move onto this one.

use std::path::Path;

use anyhow::Context;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::io::write_atomic;

/// Saves `module` as the burn record `dir/name.mpk`: written under a partial name, then
/// renamed into place (the recorder appends `.mpk` itself, so it cannot go through
/// [`write_atomic`]). `what` names the module in the error ("saving the dense model").
///
/// # Errors
/// The record cannot be written or renamed.
pub fn save_record<B: Backend, M: Module<B>>(
    module: M,
    dir: &Path,
    name: &str,
    what: &str,
) -> anyhow::Result<()> {
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    // The output folder appears with its first file (`check_output_dir` creates nothing).
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(format!("{name}-partial"));
    module
        .save_file(&partial, &recorder)
        .with_context(|| format!("saving {what}"))?;
    let done = dir.join(format!("{name}.mpk"));
    std::fs::rename(partial.with_extension("mpk"), &done)
        .with_context(|| format!("saving {what}: renaming into {}", done.display()))?;
    Ok(())
}

/// Writes `value` as pretty-printed JSON to `path`, atomically.
///
/// # Errors
/// The value cannot be serialised or the file cannot be written.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
