//! Writing output files safely: to a temporary file next to the destination, then renamed,
//! so an interrupted run never leaves a half-written file behind.

use std::path::Path;

/// Writes `bytes` to `path` atomically (temporary file + rename), creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Makes sure `dir` can take a run's outputs before the run starts (a training run that
/// fails at its end over an output path wastes the run): creates it if needed, and writes
/// and removes a probe file in it. `flag` names the setting in errors (`--out`).
///
/// # Errors
/// `dir` is a file, cannot be created, or is not writable; the message names the path.
pub fn check_output_dir(dir: &Path, flag: &str) -> anyhow::Result<()> {
    let name = dir.display();
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("{flag} {name}: is a file, not a folder");
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{flag} {name}: cannot create the folder: {e}"))?;
    let probe = dir.join(format!(".tether-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| anyhow::anyhow!("{flag} {name}: cannot write in the folder: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Renders rows as CSV (no quoting needed: the project writes numbers and plain names).
pub fn csv(header: &[String], rows: &[Vec<f64>]) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_folder_is_checked_before_the_work() {
        let base = std::env::temp_dir().join(format!("tether-io-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        check_output_dir(&dir, "--out").unwrap();
        assert!(dir.is_dir());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the probe stays"
        );
        let file = base.join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_output_dir(&file, "--out").unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains("is a file"), "{e}");
        let e = check_output_dir(&file.join("under"), "--out")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot create"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
