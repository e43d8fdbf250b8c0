//! What the sweep benchmarks (`prune_table`, `fair_table`, `gang_table`) share: the flags
//! that make a sweep resumable (each run is skipped when its `summary.json` exists) and
//! reading a run's summary back.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// Resuming, aggregating and where the runs live.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// Rerun runs whose results exist.
    #[arg(long)]
    pub fresh: bool,
    /// Only aggregate the runs that exist; train nothing.
    #[arg(long)]
    pub report_only: bool,
    /// Output folder.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../out/bench"))]
    pub out: PathBuf,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// A JSON file (a run's `summary.json`), with its path in the error.
pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}
