//! Loaders for the registry datasets that `scripts/fetch-data` puts into the data cache.
//!
//! The cache is `$TETHER_DATA` when set, else `./data-cache`, else the `data-cache`
//! folder of the source checkout this binary was built from.

pub mod adult;
pub mod batches;
pub mod cortex;
pub mod groups;
pub mod idx;
pub mod iris;
pub mod mixtures;
pub mod mnist;
pub mod own;
pub mod stream;

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

/// For tests that need a fetched dataset: whether its absence may be skipped. It may,
/// unless `TETHER_REQUIRE_DATA` is `1`/`all` or lists the dataset (comma-separated), as CI
/// sets it for the datasets it fetched.
pub fn may_skip(dataset: &str) -> bool {
    match std::env::var("TETHER_REQUIRE_DATA") {
        Err(_) => true,
        Ok(v) => {
            let v = v.trim();
            !(v == "1" || v == "all" || v.split(',').any(|d| d.trim() == dataset))
        }
    }
}
