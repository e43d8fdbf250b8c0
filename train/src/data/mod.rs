//! Loaders for the registry datasets that `scripts/fetch-data` puts into the data cache.
//!
//! The cache is `$TETHER_DATA` when set, else `./data-cache`, else the `data-cache`
//! folder of the source checkout this binary was built from.

pub mod iris;

use std::path::{Path, PathBuf};

/// A dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset is not in the cache.
    #[error(
        "{dataset} not found at {path}: run `scripts/fetch-data {dataset}` (or set TETHER_DATA to where it is)"
    )]
    Missing {
        /// Dataset name, as `scripts/fetch-data` knows it.
        dataset: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file exists but is not what it should be.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when not line-specific).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The data cache directory.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TETHER_DATA") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("data-cache");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-cache")
}

/// The path of `file` of `dataset` in the cache, or [`DataError::Missing`].
pub fn dataset_file(dataset: &'static str, file: &str) -> Result<PathBuf, DataError> {
    let path = data_dir().join(dataset).join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::Missing { dataset, path })
    }
}
