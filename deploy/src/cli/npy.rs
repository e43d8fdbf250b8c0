//! NumPy's `.npy` files (format versions 1 to 3, numpy's `lib/format.py`): read as f32
//! (from f4, f8, f2, booleans and integers, C order) with their shape, and written as `<f4`,
//! all at once through a temporary file renamed into place, so a failed write leaves no
//! half-written file.

use std::borrow::ToOwned;
use std::format;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

use anyhow::{Context, bail, ensure};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The values of a `.npy` file as f32, and its shape.
///
/// # Errors
/// An unreadable file, one that is not `.npy`, Fortran order, or an element type other
/// than little-endian floats, integers and booleans.
pub fn read_npy(path: &Path) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display();
    ensure!(
        b.starts_with(MAGIC) && b.len() >= 10,
        "{name}: not a .npy file"
    );
    let (len, at) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 => {
            ensure!(b.len() >= 12, "{name}: truncated .npy header");
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        v => bail!("{name}: .npy format version {v} (1 to 3 are read)"),
    };
    let end = at.checked_add(len).filter(|&e| e <= b.len());
    let end = end.with_context(|| format!("{name}: truncated .npy header"))?;
    let header = String::from_utf8_lossy(&b[at..end]).into_owned();
    let field = |key: &str| -> anyhow::Result<String> {
        let k = header
            .find(&format!("'{key}'"))
            .with_context(|| format!("{name}: .npy header without {key:?}"))?;
        let rest = header[k + key.len() + 2..].trim_start();
        let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
        Ok(rest.to_string())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .with_context(|| format!("{name}: bad .npy descr"))?
        .to_string();
    ensure!(
        field("fortran_order")?.starts_with("False"),
        "{name}: Fortran-order arrays are not read (save it C-contiguous)"
    );
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .with_context(|| format!("{name}: bad .npy shape"))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{name}: bad .npy shape {inner:?}"))?;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .with_context(|| format!("{name}: .npy shape too large"))?;
    let data = &b[end..];
    let width = match descr.as_str() {
        "<f4" | "<i4" | "<u4" => 4,
        "<f8" | "<i8" | "<u8" => 8,
        "<f2" | "<i2" | "<u2" => 2,
        "|b1" | "|u1" | "|i1" => 1,
        other => bail!(
            "{name}: element type {other:?} (little-endian floats, integers and booleans \
             are read)"
        ),
    };
    ensure!(
        n.checked_mul(width) == Some(data.len()),
        "{name}: {} data bytes, the shape {dims:?} of {descr} needs {}",
        data.len(),
        n.saturating_mul(width)
    );
    let values = data
        .chunks_exact(width)
        .map(|c| match descr.as_str() {
            "<f4" => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            "<f8" => f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
            "<f2" => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
            "<i4" => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
            "<u4" => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
            "<i8" => i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
            "<u8" => u64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
            "<i2" => i16::from_le_bytes([c[0], c[1]]) as f32,
            "<u2" => u16::from_le_bytes([c[0], c[1]]) as f32,
            "|i1" => c[0] as i8 as f32,
            _ => c[0] as f32,
        })
        .collect();
    Ok((values, dims))
}

/// The bytes of a `<f4` `.npy` file (version 1.0) holding `values` of shape `dims`.
pub fn npy_bytes(values: &[f32], dims: &[usize]) -> Vec<u8> {
    let shape = match dims {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Padded with spaces to a multiple of 64 bytes in all, ending in a newline.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed into place.
///
/// # Errors
/// The temporary file cannot be written or renamed (it is removed then).
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let done = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_npy_reads_back_with_its_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let v = [1.0, -2.5, f32::NAN, 4.0, 5.0, 6.0];
        write_whole(&p, &npy_bytes(&v, &[2, 3])).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 4 * 6) % 64, 0, "header padded to 64 bytes");
        let (r, d) = read_npy(&p).unwrap();
        assert_eq!(d, [2, 3]);
        assert_eq!(r[..2], v[..2]);
        assert!(r[2].is_nan());
        write_whole(&p, &npy_bytes(&v[..2], &[2])).unwrap();
        assert_eq!(read_npy(&p).unwrap().1, [2]);
        assert!(!dir.path().join("a.npy.partial").exists());
    }

    #[test]
    fn a_file_that_is_not_npy_or_is_cut_short_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.npy");
        std::fs::write(&p, b"not numpy").unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("not a .npy"));
        let full = npy_bytes(&[1.0, 2.0], &[2]);
        std::fs::write(&p, &full[..full.len() - 1]).unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("data bytes"));
    }
}
