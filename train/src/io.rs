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
/// fails at its end over an output path wastes the run), without creating it: the folder
/// appears with the run's first file, so a run killed before it has written anything
/// leaves no empty folder behind. `dir` must be a folder or not exist, and it, or its
/// nearest existing ancestor, must be a folder this process can write in (a probe file is
/// written and removed). `flag` names the setting in errors (`--out`).
///
/// # Errors
/// `dir` or an ancestor is a file, or the folder is not writable; the message names the
/// path.
pub fn check_output_dir(dir: &Path, flag: &str) -> anyhow::Result<()> {
    let name = dir.display();
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("{flag} {name}: is a file, not a folder");
    }
    let mut at = Some(dir);
    while let Some(d) = at {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        if d.exists() {
            anyhow::ensure!(
                d.is_dir(),
                "{flag} {name}: {} is a file, not a folder (cannot create the folder)",
                d.display()
            );
            let probe = d.join(format!(".tether-write-probe-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(|e| {
                anyhow::anyhow!("{flag} {name}: cannot write in {}: {e}", d.display())
            })?;
            let _ = std::fs::remove_file(&probe);
            return Ok(());
        }
        at = d.parent();
    }
    Ok(())
}

/// Makes sure the file `path` can be written when a run ends, without creating anything:
/// it is not a folder, and its nearest existing ancestor is a folder this process can
/// write in (the folders in between are created when the file is written). `flag` names
/// the setting in errors (`-o`).
///
/// # Errors
/// `path` is a folder, an ancestor is a file, or the folder is not writable; the message
/// names the path.
pub fn check_output_file(path: &Path, flag: &str) -> anyhow::Result<()> {
    let name = path.display();
    if path.is_dir() {
        anyhow::bail!("{flag} {name}: is a folder, not a file");
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if dir.exists() {
            anyhow::ensure!(
                dir.is_dir(),
                "{flag} {name}: {} is a file, not a folder",
                dir.display()
            );
            let probe = dir.join(format!(".tether-write-probe-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(|e| {
                anyhow::anyhow!("{flag} {name}: cannot write in {}: {e}", dir.display())
            })?;
            let _ = std::fs::remove_file(&probe);
            return Ok(());
        }
        ancestor = dir.parent();
    }
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
    fn an_output_file_is_checked_without_creating_anything() {
        let base = std::env::temp_dir().join(format!("tether-io-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        check_output_file(&base.join("new/deeper/out.tc"), "-o").unwrap();
        assert!(!base.join("new").exists(), "nothing created");
        let e = check_output_file(&base, "-o").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        let file = base.join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_output_file(&file.join("out.tc"), "-o")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a file, not a folder"), "{e}");
        check_output_file(&file, "-o").unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_output_folder_is_checked_before_the_work() {
        let base = std::env::temp_dir().join(format!("tether-io-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let dir = base.join("a/b");
        check_output_dir(&dir, "--out").unwrap();
        assert!(
            !base.join("a").exists(),
            "nothing created before the first file"
        );
        std::fs::create_dir_all(&dir).unwrap();
        check_output_dir(&dir, "--out").unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no probe stays"
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
