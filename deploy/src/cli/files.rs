//! Model files in and out: a tether model or an ONNX file read, parsed, and files written
//! whole or not at all.

use std::borrow::ToOwned;
use std::format;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

use crate::aligned::AlignedBytes;
use crate::format::Model;

/// Model bytes: a tether model as is, an `.onnx` file imported.
///
/// # Errors
/// An unreadable or empty file, or an ONNX file the importer refuses.
pub fn load_model(path: &Path) -> anyhow::Result<AlignedBytes> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return load_onnx(path);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        !bytes.is_empty(),
        "{} is not a tether model (empty file)",
        path.display()
    );
    Ok(AlignedBytes::from_slice(&bytes))
}

/// An ONNX file imported, whatever its name (`import` reads nothing else).
///
/// # Errors
/// An unreadable, empty or tether (`TTHR`) file, an ONNX model the importer refuses, or a
/// build without the `onnx` feature.
pub fn load_onnx(path: &Path) -> anyhow::Result<AlignedBytes> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // What the file is, when it is plainly not ONNX: said before the importer reports
    // what an empty or foreign protobuf lacks ("the model has no graph").
    ensure!(
        !bytes.is_empty(),
        "{} is not an ONNX model (empty file)",
        path.display()
    );
    ensure!(
        !bytes.starts_with(b"TTHR"),
        "{} is not an ONNX model: it is a tether model (.tthr) already",
        path.display()
    );
    #[cfg(feature = "onnx")]
    {
        // From the path, so that weights in an external data file beside it (PyTorch's
        // default export) are found.
        let model = crate::onnx::import_file(path)
            .with_context(|| format!("importing {}", path.display()))?;
        Ok(AlignedBytes::from_slice(&model))
    }
    #[cfg(not(feature = "onnx"))]
    anyhow::bail!(
        "{}: this build has no ONNX support (feature onnx)",
        path.display()
    );
}

/// [`Model::parse`], its error naming the file.
///
/// # Errors
/// The bytes are not a valid tether model.
pub fn parse_model<'a>(bytes: &'a AlignedBytes, path: &Path) -> anyhow::Result<Model<'a>> {
    Model::parse(bytes).with_context(|| format!("{} is not a valid tether model", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename (never half a file).
/// A directory is refused before anything is written (the rename onto it used to fail
/// after `DIR.partial` was written, and left it behind), and the temporary file is
/// removed when writing or renaming fails (a full disk), so a failed run leaves nothing.
///
/// # Errors
/// `path` is a directory, or writing or renaming fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    ensure!(
        !path.is_dir(),
        "{} is a directory: give the file to write",
        path.display()
    );
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::write(&tmp, bytes)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        });
    if written.is_err() {
        // Best effort: the error being reported is the one that matters.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
