//! Helpers shared by the EMAN tests.

use std::path::PathBuf;

use tether_deploy::mesh::Mesh;
use tether_deploy::mesh::io::read;

/// A mesh of a fetched dataset (`scripts/fetch-data DATASET`); `None` (the test skips,
/// loudly) when absent, unless `TETHER_REQUIRE_DATA` names the dataset.
pub fn mesh(dataset: &str, file: &str) -> Option<Mesh> {
    let root = std::env::var_os("TETHER_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data-cache"));
    let path = root.join(dataset).join(file);
    if !path.is_file() {
        let required = std::env::var("TETHER_REQUIRE_DATA").unwrap_or_default();
        assert!(
            !required
                .split(',')
                .any(|d| [dataset, "1", "all"].contains(&d.trim())),
            "{dataset} is required but absent: scripts/fetch-data {dataset}"
        );
        eprintln!(
            "skipped: {} absent (scripts/fetch-data {dataset})",
            path.display()
        );
        return None;
    }
    Some(read(&path, false).unwrap())
}
