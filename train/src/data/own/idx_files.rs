//! IDX files (MNIST's format): an images file `[N, ...]` and a labels file `[N]`, both of
//! unsigned bytes (the only IDX type [`crate::data::idx`] reads), optionally gzipped. A
//! sample is `images[i]`, with `[H, W]` read as `[1, H, W]` (one grey channel), and bytes
//! divided by 255. Labels are sorted into classes like any integer labels (MNIST's
//! `0..9` stay `0..9`).

use std::path::Path;

use super::npy::hwc_to_chw;
use super::{LabelledSet, LoadOptions, OwnError, index_keys, malformed, read_file, sibling};
use crate::data::idx::{self, IdxError};

/// Loads an IDX images file and its labels file ([`LoadOptions::labels_path`], else the
/// file beside it named with `images` -> `labels` and `idx3` -> `idx1`).
pub fn load_idx_pair(images: &Path, options: &LoadOptions) -> Result<LabelledSet, OwnError> {
    let labels = match &options.labels_path {
        Some(p) => p.clone(),
        None => sibling(images, &[("images", "labels"), ("idx*", "idx1")], "labels")?,
    };
    let parse = |p: &Path, rank: Option<usize>| -> Result<idx::IdxArray, OwnError> {
        let bytes = read_file(p)?;
        let rank = rank.unwrap_or_else(|| bytes.get(3).copied().unwrap_or(0) as usize);
        idx::parse(&bytes, rank).map_err(|e| {
            let hint = match e {
                IdxError::BadMagic(_) => " (only unsigned-byte IDX files are read)",
                _ => "",
            };
            malformed(p, format!("{e}{hint}"))
        })
    };
    let img = parse(images, None)?;
    let lab = parse(&labels, Some(1))?;
    let n = img.dims.first().copied().unwrap_or(0);
    if lab.dims[0] != n {
        return Err(malformed(
            &labels,
            format!(
                "{} labels for {n} images in {}",
                lab.dims[0],
                images.display()
            ),
        ));
    }
    if n == 0 {
        return Err(malformed(images, "no samples"));
    }
    let mut sample_shape = match &img.dims[1..] {
        [] => vec![1],
        [h, w] => vec![1, *h, *w],
        s => s.to_vec(),
    };
    let mut features: Vec<f32> = img.data.iter().map(|&b| f32::from(b) / 255.0).collect();
    if options.channels_last {
        let [h, w, c] = sample_shape[..] else {
            return Err(malformed(
                images,
                format!(
                    "channels-last needs [N, H, W, C] images, not {:?}",
                    img.dims
                ),
            ));
        };
        features = hwc_to_chw(&features, h, w, c);
        sample_shape = vec![c, h, w];
    }
    let keys: Vec<String> = lab.data.iter().map(|l| l.to_string()).collect();
    let (class_names, labels) = index_keys(&keys);
    Ok(LabelledSet {
        features,
        sample_shape,
        labels,
        class_names,
        groups: None,
        skipped: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn pairs_of_any_sample_shape() {
        let dir = TempDir::new("idx");
        let images = dir.write(
            "train-images-idx3-ubyte",
            &idx_bytes(&[2, 2, 3], &[0, 51, 255, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
        );
        dir.write("train-labels-idx1-ubyte", &idx_bytes(&[2], &[4, 2]));
        let s = super::super::load(&images, &LoadOptions::default()).unwrap();
        assert_eq!(s.sample_shape, vec![1, 2, 3]);
        assert_eq!(s.class_names, vec!["2", "4"]);
        assert_eq!(s.labels, vec![1, 0]);
        assert!((s.sample(0)[1] - 0.2).abs() < 1e-6);
        // Flat samples, labels named explicitly.
        let flat = dir.write("f.idx", &idx_bytes(&[3, 2], &[1, 2, 3, 4, 5, 6]));
        let lab = dir.write("l.idx", &idx_bytes(&[3], &[0, 1, 0]));
        let o = LoadOptions {
            labels_path: Some(lab.clone()),
            ..LoadOptions::default()
        };
        let s = load_idx_pair(&flat, &o).unwrap();
        assert_eq!((s.sample_shape.clone(), s.len()), (vec![2], 3));
        // Errors: counts, non-byte types, missing labels file.
        let short = dir.write("l2.idx", &idx_bytes(&[2], &[0, 1]));
        let o = LoadOptions {
            labels_path: Some(short),
            ..LoadOptions::default()
        };
        let e = load_idx_pair(&flat, &o).unwrap_err().to_string();
        assert!(e.contains("2 labels for 3 images"), "{e}");
        let mut floats = idx_bytes(&[1], &[0, 0, 0, 0]);
        floats[2] = 0x0d;
        let fl = dir.write("float-images.idx", &floats);
        let o = LoadOptions {
            labels_path: Some(lab),
            ..LoadOptions::default()
        };
        let e = load_idx_pair(&fl, &o).unwrap_err().to_string();
        assert!(e.contains("only unsigned-byte IDX files"), "{e}");
        let e = load_idx_pair(&flat, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no labels file for"), "{e}");
    }

    /// The real MNIST test files, when fetched: the same counts as [`crate::data::mnist`].
    #[test]
    fn real_mnist_files() {
        let images = match crate::data::dataset_file("mnist", "t10k-images-idx3-ubyte") {
            Ok(p) => p,
            Err(e) if crate::data::may_skip("mnist") => {
                eprintln!("SKIPPED: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let s = load_idx_pair(&images, &LoadOptions::default()).unwrap();
        assert_eq!(s.sample_shape, vec![1, 28, 28]);
        assert_eq!(
            s.class_counts(),
            vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        s.check_input_shape(&[784]).unwrap();
        let e = s.check_input_shape(&[3, 32, 32]).unwrap_err().to_string();
        assert!(e.starts_with("data samples are [1, 28, 28] but the model takes [3, 32, 32]"));
    }
}
