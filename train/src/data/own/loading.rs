//! Whether the user's data is held in memory or read from its files for each batch.
//!
//! Tables, arrays and IDX files are single files read whole: they are always in memory
//! (their batches are still assembled on the fly, [`crate::data::stream`]). An image folder
//! can be either. In memory every image is decoded once and kept as `f32` (4 bytes a value):
//! no decoding during training, but memory that grows with the folder. Streamed
//! ([`ImageFiles`]), memory holds one path per image and a few batches, whatever the
//! folder's size, and each image is decoded again every epoch on the prefetch thread.
//!
//! [`Loading::Auto`] keeps a folder in memory while its decoded samples (training and test
//! together) take at most [`IN_MEMORY_MAX_BYTES`], and streams it beyond. The threshold is
//! a tenth of what a small run of `tether-train prune` takes without any data (about
//! 80 MB peak RSS, BENCHMARKS.md "Streaming data"): below it the copy cannot move a run's
//! memory by more than about 10%, and such a folder (a few thousand small images) costs
//! little to decode anyway; above it memory would grow with the folder.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::ImageFiles;
use super::folder::{count_images, first_image, index_image_folder};
use super::{
    Channels, Format, LabelledSet, LoadOptions, Normalization, OwnError, PrepareOptions, Prepared,
    detect_format, prepare,
};
use crate::data::stream::SampleSource;

/// The largest decoded size (bytes of `f32` samples, training and test sets together) at
/// which [`Loading::Auto`] keeps an image folder in memory: 8 MiB, about 2,700 grey 28x28
/// images or 680 RGB 32x32 ones.
pub const IN_MEMORY_MAX_BYTES: usize = 8 << 20;

/// How an image folder is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loading {
    /// In memory up to 8 MiB of decoded samples (`IN_MEMORY_MAX_BYTES`), streamed beyond.
    #[default]
    Auto,
    /// Every image decoded once and kept.
    Memory,
    /// Every image decoded from its file each time a batch takes it.
    Stream,
}

/// A training or test set of the user's: in memory, or an image folder read from its files.
#[derive(Clone, Debug)]
pub enum OwnSet {
    /// Decoded and normalised, in memory.
    Memory(LabelledSet),
    /// Read from the files as batches take the samples.
    Files(ImageFiles),
}

impl OwnSet {
    /// Labels, classes, groups and sample shape (the features only when in memory).
    pub fn index(&self) -> &LabelledSet {
        match self {
            Self::Memory(s) => s,
            Self::Files(f) => f.index(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.index().len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.index().is_empty()
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.index().sample_len()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.index().num_classes()
    }

    /// Whether the samples are read from their files.
    pub fn is_streamed(&self) -> bool {
        matches!(self, Self::Files(_))
    }
}

impl SampleSource for OwnSet {
    fn len(&self) -> usize {
        self.index().len()
    }

    fn sample_len(&self) -> usize {
        self.index().sample_len()
    }

    fn read(&self, i: usize, out: &mut [f32]) -> anyhow::Result<i64> {
        match self {
            Self::Memory(s) => s.read(i, out),
            Self::Files(f) => f.read(i, out),
        }
    }
}

/// Training and test sets ready for a model, in memory or streamed: [`Prepared`] with
/// the choice of [`Loading`].
#[derive(Clone, Debug)]
pub struct PreparedSets {
    /// The training set, normalised (as it is read, when streamed).
    pub train: OwnSet,
    /// The test set, normalised the same way and labelled with the training classes.
    pub test: OwnSet,
    /// The statistics applied to both.
    pub normalization: Option<Normalization>,
    /// Whether the test set was held out of the training data.
    pub held_out: bool,
}

/// [`prepare`], streaming an image folder when `loading` asks for it (or, with
/// [`Loading::Auto`], when it is larger than [`IN_MEMORY_MAX_BYTES`] decoded): the same
/// checks, split, classes and normalisation, with the same values in each sample.
///
/// # Errors
/// As [`prepare`]; [`Loading::Stream`] on data that is not an image folder (or with a
/// test set that is not one).
pub fn prepare_sets(
    train: &Path,
    test: Option<&Path>,
    load_options: &LoadOptions,
    options: &PrepareOptions,
    loading: Loading,
) -> Result<PreparedSets, OwnError> {
    let folders = detect_format(train)? == Format::ImageFolder
        && test.map_or(Ok(true), |t| {
            detect_format(t).map(|f| f == Format::ImageFolder)
        })?;
    let stream = match loading {
        Loading::Memory => false,
        Loading::Stream if !folders => {
            return Err(OwnError::Invalid(format!(
                "streamed loading reads image folders from their files; {} is read whole \
                 (tables, arrays and IDX files are one file): load it in memory",
                if detect_format(train)? == Format::ImageFolder {
                    test.unwrap_or(train).display()
                } else {
                    train.display()
                }
            )));
        }
        Loading::Stream => true,
        Loading::Auto => {
            folders
                && decoded_bytes(train, load_options)?
                    + match test {
                        Some(t) => decoded_bytes(t, load_options)?,
                        None => 0,
                    }
                    > IN_MEMORY_MAX_BYTES
        }
    };
    if !stream {
        let Prepared {
            train,
            test,
            normalization,
            held_out,
        } = prepare(train, test, load_options, options)?;
        return Ok(PreparedSets {
            train: OwnSet::Memory(train),
            test: OwnSet::Memory(test),
            normalization,
            held_out,
        });
    }
    prepare_files(train, test, load_options, options)
}

/// An estimate of an image folder's decoded size: its image files (by name) times the
/// values of one sample (the first image's channels and size, or the ones asked for).
fn decoded_bytes(root: &Path, options: &LoadOptions) -> Result<usize, OwnError> {
    let Some((_, img)) = first_image(root)? else {
        return Ok(0);
    };
    let channels = options.channels.map_or_else(
        || if img.color().has_color() { 3 } else { 1 },
        Channels::count,
    );
    let (h, w) = options.image_size.unwrap_or((img.height(), img.width()));
    Ok(count_images(root)? * channels * h as usize * w as usize * 4)
}

/// [`prepare`]'s steps on indexed image folders.
fn prepare_files(
    train: &Path,
    test: Option<&Path>,
    load_options: &LoadOptions,
    options: &PrepareOptions,
) -> Result<PreparedSets, OwnError> {
    let mut train_files = index_image_folder(train, load_options)?;
    if let Some(classes) = &options.classes {
        train_files.index_mut().align_classes(classes, true)?;
    }
    if let Some(model) = &options.input_shape {
        train_files.index().check_input_shape(model)?;
    }
    let shape = train_files.index().sample_shape.clone();
    let (mut train_files, mut test_files, held_out) = match test {
        Some(path) => {
            let mut opts = load_options.clone();
            // A grey test image must not turn a colour training set's test into 1 channel.
            if opts.channels.is_none() {
                opts.channels = match shape[0] {
                    1 => Some(Channels::Gray),
                    _ => Some(Channels::Rgb),
                };
            }
            let mut test_files = index_image_folder(path, &opts)?;
            if test_files.index().sample_shape != shape {
                return Err(OwnError::Invalid(format!(
                    "test samples ({}) are {:?} but training samples ({}) are {:?}",
                    path.display(),
                    test_files.index().sample_shape,
                    train.display(),
                    shape
                )));
            }
            test_files.index_mut().align_to(train_files.index())?;
            (train_files, test_files, false)
        }
        None => {
            let index = train_files.index();
            let (kept, held) = super::holdout_indices(
                &index.labels,
                index.num_classes(),
                options.holdout,
                options.seed,
                options.stratify,
            )?;
            let (kept, held) = train_files.split(&kept, &held);
            (kept, held, true)
        }
    };
    let normalization = Normalization::for_samples(&options.normalize, &shape, |visit| {
        train_files.each_raw(visit)
    })?;
    train_files.set_normalization(normalization.clone());
    test_files.set_normalization(normalization.clone());
    Ok(PreparedSets {
        train: OwnSet::Files(train_files),
        test: OwnSet::Files(test_files),
        normalization,
        held_out,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;

    /// `n` noisy RGB images of `w`x`h` per class under `dir/rel/<class>/`.
    fn folder(dir: &TempDir, rel: &str, classes: &[&str], n: u32, (w, h): (u32, u32)) {
        for (c, class) in classes.iter().enumerate() {
            for i in 0..n {
                let seed = c as u32 * 1000 + i;
                let img = image::RgbImage::from_fn(w, h, |x, y| {
                    let v = (x * 29 + y * 13 + seed * 7) as u8;
                    image::Rgb([v, v.wrapping_mul(5), (v ^ 0x3c).wrapping_add(c as u8 * 40)])
                });
                let p = dir.path(&format!("{rel}/{class}/{i:03}.png"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                img.save(&p).unwrap();
            }
        }
    }

    /// Every sample of `set` as the batches read it, with its label.
    fn read_all(set: &OwnSet) -> Vec<(Vec<f32>, i64)> {
        let mut out = vec![0f32; set.sample_len()];
        (0..set.len())
            .map(|i| {
                let label = set.read(i, &mut out).unwrap();
                (out.clone(), label)
            })
            .collect()
    }

    #[test]
    fn streamed_folders_give_the_in_memory_samples_bit_for_bit() {
        let dir = TempDir::new("loading");
        folder(&dir, "train", &["cat", "dog", "eel"], 9, (6, 5));
        folder(&dir, "test", &["dog", "cat"], 3, (6, 5));
        let load = LoadOptions::default();
        for (test, normalize) in [
            (None, super::super::Normalize::Auto),
            (Some(dir.path("test")), super::super::Normalize::Auto),
            (None, "0.5/0.25".parse().unwrap()),
        ] {
            let options = PrepareOptions {
                normalize,
                holdout: 0.3,
                seed: 4,
                input_shape: Some(vec![3, 5, 6]),
                ..PrepareOptions::default()
            };
            let prep = |loading| {
                prepare_sets(
                    &dir.path("train"),
                    test.as_deref(),
                    &load,
                    &options,
                    loading,
                )
                .unwrap()
            };
            let (mem, stream) = (prep(Loading::Memory), prep(Loading::Stream));
            assert!(!mem.train.is_streamed() && stream.train.is_streamed());
            assert!(stream.test.is_streamed());
            assert_eq!(stream.normalization, mem.normalization);
            assert_eq!(stream.held_out, test.is_none());
            for (s, m) in [(&stream.train, &mem.train), (&stream.test, &mem.test)] {
                assert_eq!(s.index().labels, m.index().labels);
                assert_eq!(s.index().class_names, m.index().class_names);
                assert_eq!(read_all(s), read_all(m));
            }
            // The split took some of every class, and the test set is the given one.
            let want = if test.is_some() { 6 } else { 9 };
            assert_eq!(stream.test.len(), want);
            // A small folder stays in memory unless streaming is asked for.
            assert!(!prep(Loading::Auto).train.is_streamed());
        }
    }

    #[test]
    fn streaming_is_refused_for_data_read_whole() {
        let dir = TempDir::new("loading-csv");
        let csv = dir.write("t.csv", b"a,label\n1,x\n2,y\n3,x\n4,y\n");
        let load = LoadOptions {
            label_column: Some("label".into()),
            ..LoadOptions::default()
        };
        let opts = PrepareOptions {
            holdout: 0.5,
            ..PrepareOptions::default()
        };
        let e = prepare_sets(&csv, None, &load, &opts, Loading::Stream).unwrap_err();
        assert!(e.to_string().contains("t.csv is read whole"), "{e}");
        let p = prepare_sets(&csv, None, &load, &opts, Loading::Auto).unwrap();
        assert!(!p.train.is_streamed());
    }

    #[test]
    fn auto_streams_a_folder_larger_than_the_threshold() {
        let dir = TempDir::new("loading-auto");
        // 2 x 120 RGB images of 96x96: 240 * 27,648 * 4 bytes = 26.5 MB > 8 MiB.
        folder(&dir, "big", &["a", "b"], 120, (96, 96));
        let load = LoadOptions::default();
        assert_eq!(
            decoded_bytes(&dir.path("big"), &load).unwrap(),
            240 * 3 * 96 * 96 * 4
        );
        let small = LoadOptions {
            image_size: Some((16, 16)),
            channels: Some(Channels::Gray),
            ..LoadOptions::default()
        };
        assert_eq!(
            decoded_bytes(&dir.path("big"), &small).unwrap(),
            240 * 256 * 4
        );
        let opts = PrepareOptions::default();
        let p = prepare_sets(&dir.path("big"), None, &load, &opts, Loading::Auto).unwrap();
        assert!(p.train.is_streamed() && p.test.is_streamed());
        let p = prepare_sets(&dir.path("big"), None, &small, &opts, Loading::Auto).unwrap();
        assert!(!p.train.is_streamed());
    }
}
