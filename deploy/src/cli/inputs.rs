//! Reading inputs in their formats: little-endian f32 files, text, IDX images and labels;
//! and finding the samples that are not finite.

use std::format;
use std::path::Path;
use std::string::String;
use std::vec::Vec;

use anyhow::{Context, ensure};

/// The values of an input file: little-endian f32 for `.f32` and `.bin`, otherwise text of
/// numbers separated by spaces, commas or newlines.
///
/// # Errors
/// An unreadable file, a binary file that is not a whole number of f32, text that is not
/// UTF-8 or a token that is not a number.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "f32" | "bin") {
        ensure!(
            bytes.len() % 4 == 0,
            "{}: {} bytes is not a whole number of f32",
            path.display(),
            bytes.len()
        );
        return Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect());
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{}: neither .f32 nor UTF-8 text", path.display()))?;
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .with_context(|| format!("{}: {t:?} is not a number", path.display()))
        })
        .collect()
}

/// IDX magic of u8 images (rank 3).
const IDX_IMAGES: u32 = 0x0000_0803;
/// IDX magic of u8 labels (rank 1).
const IDX_LABELS: u32 = 0x0000_0801;

/// The data and dimensions of an IDX file of u8 whose magic is `magic`.
fn read_idx(path: &Path, magic: u32) -> anyhow::Result<(Vec<u8>, Vec<usize>)> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(b.len() >= 4, "{}: too short for IDX", path.display());
    let m = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    ensure!(
        m == magic,
        "{}: IDX magic {m:#x}, expected {magic:#x}",
        path.display()
    );
    let rank = (magic & 0xff) as usize;
    ensure!(
        b.len() >= 4 + 4 * rank,
        "{}: truncated header",
        path.display()
    );
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let n: usize = dims.iter().product();
    let data = &b[4 + 4 * rank..];
    ensure!(
        data.len() == n,
        "{}: {} data bytes, the header says {n}",
        path.display(),
        data.len()
    );
    Ok((data.to_vec(), dims))
}

/// u8 IDX images (e.g. MNIST's `t10k-images-idx3-ubyte`), each pixel normalised to
/// `(p / 255 - mean) / std`: the values, image after image, and the number of images.
///
/// # Errors
/// `mean` not finite or `std` not positive and finite (every pixel would be NaN or an
/// infinity, warned about as if the images held them), an unreadable file or one that is
/// not u8 IDX images.
pub fn read_idx_images(path: &Path, mean: f32, std: f32) -> anyhow::Result<(Vec<f32>, usize)> {
    ensure!(
        mean.is_finite() && std.is_finite() && std > 0.0,
        "--normalize: the mean must be a finite number and std a positive one (got mean \
         {mean}, std {std})"
    );
    let (data, dims) = read_idx(path, IDX_IMAGES)?;
    Ok((
        data.iter()
            .map(|&p| (p as f32 / 255.0 - mean) / std)
            .collect(),
        dims[0],
    ))
}

/// u8 IDX labels (e.g. MNIST's `t10k-labels-idx1-ubyte`).
///
/// # Errors
/// An unreadable file or one that is not u8 IDX labels.
pub fn read_idx_labels(path: &Path) -> anyhow::Result<Vec<usize>> {
    Ok(read_idx(path, IDX_LABELS)?
        .0
        .into_iter()
        .map(usize::from)
        .collect())
}

/// The samples of `x` (`per` values each) holding NaN or an infinity: the sample, the
/// first such value's position in it, and the value.
pub fn non_finite_samples(x: &[f32], per: usize) -> Vec<(usize, usize, f32)> {
    x.chunks(per)
        .enumerate()
        .filter_map(|(i, s)| {
            let at = s.iter().position(|v| !v.is_finite())?;
            Some((i, at, s[at]))
        })
        .collect()
}
