//! An image folder read from its files as training goes ([`crate::data::stream`]): the
//! index of the images (paths, labels, groups) in memory, each image decoded, resized and
//! normalised again every time a batch takes it. Memory then holds a path per image, not its
//! pixels: 40,000 MNIST-sized images are 125 MB as `f32`, their paths about 3 MB.
//!
//! A sample reads to exactly the values [`super::folder::load_image_folder`] stores for
//! it (the same decoder, `push_pixels` and
//! [`Normalization::apply_sample`]), so a streamed run and an in-memory one of the same
//! seed train on the same numbers.

use std::path::{Path, PathBuf};

use super::pixels::{decode, push_pixels};
use super::{Channels, LabelledSet, Normalization, OwnError, malformed};
use crate::data::stream::SampleSource;

/// An indexed image folder (or a part of one: a held-out split).
#[derive(Clone, Debug)]
pub struct ImageFiles {
    /// Labels, classes, groups, sample shape and skipped files, as the in-memory set has
    /// them; its `features` stay empty (the pixels are in the files).
    index: LabelledSet,
    /// Each sample's file.
    paths: Vec<PathBuf>,
    /// Grey or colour, as the index was read.
    channels: Channels,
    /// Every sample's `(height, width)`.
    size: (u32, u32),
    /// Whether images are resized to `size` (an image size was given); else each must have
    /// it already.
    resize: bool,
    /// Applied to each sample as it is read.
    normalization: Option<Normalization>,
}

impl ImageFiles {
    /// Files indexed by [`super::folder::index_image_folder`].
    pub(super) fn new(
        mut index: LabelledSet,
        paths: Vec<PathBuf>,
        channels: Channels,
        size: (u32, u32),
        resize: bool,
    ) -> Self {
        index.features = Vec::new();
        Self {
            index,
            paths,
            channels,
            size,
            resize,
            normalization: None,
        }
    }

    /// The in-memory set: the index with the pixels the scan kept (`features`, in index
    /// order).
    pub(super) fn into_set(self, features: Vec<f32>) -> LabelledSet {
        LabelledSet {
            features,
            ..self.index
        }
    }

    /// The index: labels, classes, groups and sample shape (no features).
    pub fn index(&self) -> &LabelledSet {
        &self.index
    }

    /// The index, to align its classes and groups with another set's
    /// ([`LabelledSet::align_classes`], [`LabelledSet::align_to`]): those touch labels,
    /// names and groups only.
    pub fn index_mut(&mut self) -> &mut LabelledSet {
        &mut self.index
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Each sample's file.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The statistics applied to each sample as it is read (`None`: the values in `[0, 1]`).
    pub fn set_normalization(&mut self, normalization: Option<Normalization>) {
        self.normalization = normalization;
    }

    /// Splits into the samples at `kept` and at `held` (each in that order), moving the
    /// paths rather than copying them: the index is the one part of a streamed set that
    /// grows with the folder, and two copies of it would double that.
    pub fn split(mut self, kept: &[usize], held: &[usize]) -> (Self, Self) {
        let mut paths: Vec<Option<PathBuf>> = std::mem::take(&mut self.paths)
            .into_iter()
            .map(Some)
            .collect();
        let mut take = |indices: &[usize]| -> Vec<PathBuf> {
            indices
                .iter()
                .map(|&i| paths[i].take().expect("each sample in one part"))
                .collect()
        };
        let (kept_paths, held_paths) = (take(kept), take(held));
        (self.part(kept, kept_paths), self.part(held, held_paths))
    }

    /// The samples at `indices`, in that order (classes and group names unchanged).
    pub fn subset(&self, indices: &[usize]) -> Self {
        let paths = indices.iter().map(|&i| self.paths[i].clone()).collect();
        self.part(indices, paths)
    }

    /// The samples at `indices`, whose files are `paths`.
    fn part(&self, indices: &[usize], paths: Vec<PathBuf>) -> Self {
        let index = &self.index;
        Self {
            index: LabelledSet {
                features: Vec::new(),
                sample_shape: index.sample_shape.clone(),
                labels: indices.iter().map(|&i| index.labels[i]).collect(),
                class_names: index.class_names.clone(),
                groups: index.groups.as_ref().map(|g| super::SampleGroups {
                    names: g.names.clone(),
                    ids: indices.iter().map(|&i| g.ids[i]).collect(),
                }),
                skipped: Vec::new(),
            },
            paths,
            channels: self.channels,
            size: self.size,
            resize: self.resize,
            normalization: self.normalization.clone(),
        }
    }

    /// Decodes sample `i` into `out` (`C * H * W` values), normalised.
    ///
    /// # Errors
    /// The file no longer reads, or no longer has the folder's size: the error names it.
    pub fn read_into(&self, i: usize, out: &mut [f32]) -> Result<(), OwnError> {
        let path = &self.paths[i];
        self.read_raw(path, out)?;
        if let Some(n) = &self.normalization {
            n.apply_sample(out, &self.index.sample_shape);
        }
        Ok(())
    }

    /// Visits every sample in order, decoded but not normalised: what the training
    /// statistics are computed from ([`Normalization::for_samples`]).
    ///
    /// # Errors
    /// The first file that does not read.
    pub fn each_raw(&self, visit: &mut dyn FnMut(&[f32])) -> Result<(), OwnError> {
        let mut buf = vec![0f32; self.index.sample_len()];
        for path in &self.paths {
            self.read_raw(path, &mut buf)?;
            visit(&buf);
        }
        Ok(())
    }

    /// Every sample decoded into memory, normalised: the in-memory set of the same files.
    ///
    /// # Errors
    /// The first file that does not read.
    pub fn to_memory(&self) -> Result<LabelledSet, OwnError> {
        let d = self.index.sample_len();
        let mut set = self.index.clone();
        set.features = vec![0f32; self.len() * d];
        for (i, out) in set.features.chunks_exact_mut(d.max(1)).enumerate() {
            self.read_into(i, out)?;
        }
        Ok(set)
    }

    fn read_raw(&self, path: &Path, out: &mut [f32]) -> Result<(), OwnError> {
        let img = decode(path).map_err(|reason| malformed(path, reason))?;
        let (h, w) = (img.height(), img.width());
        if !self.resize && (h, w) != self.size {
            return Err(malformed(
                path,
                format!(
                    "image is {h}x{w} (HxW) but the folder's images are {}x{} (was the file \
                     changed after the folder was read?)",
                    self.size.0, self.size.1
                ),
            ));
        }
        let mut pixels = Vec::with_capacity(out.len());
        push_pixels(&mut pixels, &img, self.channels, self.size);
        out.copy_from_slice(&pixels);
        Ok(())
    }
}

impl SampleSource for ImageFiles {
    fn len(&self) -> usize {
        self.paths.len()
    }

    fn sample_len(&self) -> usize {
        self.index.sample_len()
    }

    fn read(&self, i: usize, out: &mut [f32]) -> anyhow::Result<i64> {
        self.read_into(i, out)?;
        Ok(i64::from(self.index.labels[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::folder::{index_image_folder, load_image_folder};
    use super::super::tests::TempDir;
    use super::super::{LoadOptions, NormAxis};
    use super::*;

    fn noisy(dir: &TempDir, rel: &str, seed: u32, w: u32, h: u32) {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 31 + y * 17 + seed * 7) as u8;
            image::Rgb([v, v.wrapping_mul(3), v ^ 0x5a])
        });
        let p = dir.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save(&p).unwrap();
    }

    #[test]
    fn files_read_to_the_values_the_in_memory_set_holds() {
        let dir = TempDir::new("files");
        for i in 0..5 {
            noisy(&dir, &format!("a/{i}.png"), i, 5, 4);
            noisy(&dir, &format!("b/{i}.jpg"), 10 + i, 5, 4);
        }
        for opts in [
            LoadOptions::default(),
            LoadOptions {
                image_size: Some((3, 6)),
                channels: Some(Channels::Gray),
                ..LoadOptions::default()
            },
        ] {
            let mem = load_image_folder(&dir.0, &opts).unwrap();
            let files = index_image_folder(&dir.0, &opts).unwrap();
            assert_eq!(files.index().labels, mem.labels);
            assert_eq!(files.index().sample_shape, mem.sample_shape);
            assert!(files.index().features.is_empty());
            assert_eq!(files.to_memory().unwrap(), mem);
            // Normalised the same, sample by sample and in the statistics.
            let n = Normalization::fit(&mem, NormAxis::Channel);
            let streamed = Normalization::fit_samples(
                &mem.sample_shape,
                NormAxis::Channel,
                |v: &mut dyn FnMut(&[f32])| files.each_raw(v),
            )
            .unwrap();
            assert_eq!(streamed, n);
            let mut mem = mem;
            n.apply(&mut mem).unwrap();
            let (mut files, rest) = files.split(&[7, 2], &[0, 9]);
            assert_eq!(rest.paths().len(), 2);
            assert_eq!(rest.index().labels, vec![0, 1]);
            assert!(rest.paths()[1].ends_with("b/4.jpg"), "{:?}", rest.paths());
            files.set_normalization(Some(n));
            let mut out = vec![0f32; mem.sample_len()];
            assert_eq!(files.read(0, &mut out).unwrap(), 1);
            assert_eq!(out, mem.sample(7));
            files.read(1, &mut out).unwrap();
            assert_eq!(out, mem.sample(2));
        }
    }

    #[test]
    fn a_file_changed_after_indexing_is_an_error_naming_it() {
        let dir = TempDir::new("files-changed");
        noisy(&dir, "a/1.png", 1, 4, 4);
        noisy(&dir, "b/2.png", 2, 4, 4);
        let files = index_image_folder(&dir.0, &LoadOptions::default()).unwrap();
        let mut out = vec![0f32; 48];
        noisy(&dir, "b/2.png", 2, 5, 4);
        let e = files.read(1, &mut out).unwrap_err().to_string();
        assert!(
            e.contains("2.png: image is 4x5 (HxW) but the folder's images are 4x4"),
            "{e}"
        );
        dir.write("b/2.png", b"\x89PNG\r\n\x1a\ntruncated");
        let e = files.read(1, &mut out).unwrap_err().to_string();
        assert!(e.contains("2.png: cannot decode the image"), "{e}");
        std::fs::remove_file(dir.path("b/2.png")).unwrap();
        let e = files.read(1, &mut out).unwrap_err().to_string();
        assert!(e.contains("2.png: cannot read the image"), "{e}");
    }
}
