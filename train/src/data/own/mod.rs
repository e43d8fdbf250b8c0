//! Your own data: an image folder, a CSV table, NPY/NPZ arrays or IDX files, loaded into one
//! in-memory labelled set ([`LabelledSet`]) that the training and pruning commands take, or,
//! for a large image folder, indexed and read from its files as batches take the images
//! ([`loading`], [`ImageFiles`]).
//!
//! # Formats
//!
//! [`load`] picks the reader by what the path is ([`detect_format`]):
//!
//! | path | reader | samples |
//! |---|---|---|
//! | a directory | [`folder::load_image_folder`]: one subfolder per class of PNG/JPEG images | `[C, H, W]`, `C` 1 (grey) or 3 (RGB) |
//! | `*.csv`, `*.tsv` (`.gz` too) | [`table::load_csv`]: a header, a label column, numeric features | `[features]` |
//! | `*.npy` (`.gz` too) | [`npy::load_npy_pair`]: `x.npy` and the `y.npy` beside it | `x`'s shape less its first axis |
//! | `*.npz` | [`npy::load_npz`]: arrays `x` and `y` (or the names given) | as for `.npy` |
//! | an IDX file (`*-ubyte`, `*.idx`, or by its magic number) | [`idx_files::load_idx_pair`]: images and labels files | the images' shape less the first axis |
//!
//! Anything else is an [`OwnError::UnknownFormat`] that lists these.
//!
//! # Choices, and why
//!
//! - **Class order.** Class indices follow the *sorted* class names, so that the same data
//!   gives the same indices on every machine and in every tool: image folders sort their
//!   subfolder names as strings (byte order), as torchvision's `ImageFolder` and Keras'
//!   `image_dataset_from_directory` do, so a model trained there keeps its output order;
//!   label columns and arrays sort their distinct values as scikit-learn's `LabelEncoder`
//!   does: numerically when every value is a number (so `10` comes after `9`, and `1` and
//!   `1.0` are one class, named `1`), else as strings. A test set's labels are mapped onto
//!   the *training* classes by name ([`LabelledSet::align_to`]): a label the training set
//!   does not have is an error, never a silently added class.
//! - **Empty classes.** An image folder's class folder with no image is an error (it would
//!   be an output the model can never learn). Tables and arrays only know the classes
//!   they contain; to pin the class list (say, the ten digits a model was built for) give
//!   it to [`LabelledSet::align_classes`] (or [`PrepareOptions::classes`]), and a class
//!   without a training sample is then an error too.
//! - **Pixel scale.** Image pixels (any bit depth) and unsigned-byte arrays (`|u1` NPY,
//!   IDX) are divided by their maximum (255 for bytes) into `[0, 1]`; other arrays and
//!   tables are taken as they are.
//! - **Normalisation** ([`Normalize`]). By default each input is standardised with the
//!   mean and deviation of the *training* split, computed after the held-out split is
//!   taken out (so no statistic sees validation or test data) and applied unchanged to
//!   the test split: per channel for images (`[C, H, W]` samples: the statistics pool
//!   every pixel of a channel, as torchvision's `Normalize` takes them), per feature for
//!   tables and flat arrays (columns come in unrelated units), one pair for everything
//!   else. Callers that trained elsewhere give the mean and deviation instead
//!   ([`Normalize::Given`], e.g. ImageNet's), and [`Normalize::None`] keeps the values.
//!   A constant input has deviation 0: it is centred and not scaled.
//! - **Layout.** Samples are stored row-major, one after the other; images as `CHW`, the
//!   layout burn's convolutions take. Grey `[H, W]` arrays become `[1, H, W]`.
//! - **Held-out split.** Without a test set, [`LabelledSet::split`] holds out a fraction
//!   chosen by a seeded shuffle, by default within each class (stratified), so that small
//!   classes are represented in both parts in proportion.
//! - **Groups** (for fairness constraints): a CSV column, an NPY array or an NPZ member,
//!   or a `path,group` CSV beside an image folder; group names are sorted like classes.
//!   Test samples whose group has no training sample get [`NO_GROUP`] (they carry no
//!   constraint), as in [`crate::data::groups`].

pub mod args;
pub mod files;
pub mod folder;
pub mod idx_files;
pub mod loading;
pub mod normalize;
pub mod npy;
mod pixels;
pub mod set;
pub mod table;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use args::OwnDataArgs;
pub use files::ImageFiles;
pub use loading::{IN_MEMORY_MAX_BYTES, Loading, OwnSet, PreparedSets, prepare_sets};
pub use normalize::{NormAxis, Normalization, Normalize};
pub use set::{LabelledSet, SampleGroups, holdout_indices};

use super::groups::{GroupError, NO_GROUP};

/// What [`load`] accepts, for error messages.
pub const ACCEPTED: &str = "a directory with one subfolder of PNG/JPEG images per class; \
a .csv or .tsv table with a header (label column by name, numeric features); \
x.npy with the y.npy beside it; an .npz with arrays x and y; \
an IDX images file (e.g. train-images-idx3-ubyte) with its labels file \
(.csv, .tsv, .npy and IDX files may be gzipped)";

/// Why own data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    /// Reading a file or folder failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what its format says it should be.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file (or folder).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A row of a table is wrong.
    #[error("{path}: line {line}: {reason}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An image folder has no class subfolder.
    #[error(
        "no class folders in {dir}: expected one subfolder per class, holding that class's images{found}"
    )]
    NoClasses {
        /// The folder.
        dir: PathBuf,
        /// What was found instead (may be empty).
        found: String,
    },
    /// A class has no sample.
    #[error("class {class:?} has no samples: {context}")]
    EmptyClass {
        /// The class's name.
        class: String,
        /// Where it was expected.
        context: String,
    },
    /// A label is not one of the training classes.
    #[error("label {label:?} of sample {sample} is not one of the training classes ({classes})")]
    UnknownLabel {
        /// The label.
        label: String,
        /// The sample's index in its set.
        sample: usize,
        /// The training classes, comma-separated.
        classes: String,
    },
    /// The samples do not fit the model.
    #[error("data samples are {data:?} but the model takes {model:?}{hint}")]
    ShapeMismatch {
        /// A sample's shape.
        data: Vec<usize>,
        /// The model's input shape (without the batch axis).
        model: Vec<usize>,
        /// A suggestion (may be empty).
        hint: String,
    },
    /// The path is no format [`load`] reads.
    #[error("{path}: {reason}; accepted: {ACCEPTED}")]
    UnknownFormat {
        /// The path.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// The options are inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The groups are unusable.
    #[error(transparent)]
    Groups(#[from] GroupError),
}

/// Grey or colour images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Channels {
    /// One channel (Rec. 709 luma of colour images).
    Gray,
    /// Three channels, red, green, blue (alpha dropped).
    Rgb,
}

impl Channels {
    /// The number of channels.
    pub fn count(self) -> usize {
        match self {
            Self::Gray => 1,
            Self::Rgb => 3,
        }
    }
}

/// How to read a dataset. Each reader uses the fields that concern it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Image folders: resize every image to `(height, width)` (bilinear). Without it every
    /// image must have the first image's size.
    pub image_size: Option<(u32, u32)>,
    /// Image folders: grey or RGB; without it, what the first image is.
    pub channels: Option<Channels>,
    /// Image folders: skip files that are not PNG/JPEG images or do not decode (they are
    /// listed in [`LabelledSet::skipped`]) instead of failing on the first one.
    pub skip_unreadable: bool,
    /// Image folders: a CSV with columns `path` (relative to the folder, `/`-separated,
    /// e.g. `cat/001.png`) and `group`, giving images their group.
    pub groups_file: Option<PathBuf>,
    /// Tables: the label column's name (required for tables).
    pub label_column: Option<String>,
    /// Tables: the group column's name, or several comma-separated names (where no column
    /// has the whole name) whose values joined by `/` name the group.
    pub group_column: Option<String>,
    /// Tables: columns to leave out (ids, free text, ...).
    pub ignore_columns: Vec<String>,
    /// Tables: the field separator; without it `\t` for `.tsv` files, else `,`.
    pub delimiter: Option<u8>,
    /// Tables: whether the first line names the columns. Without a header the columns
    /// are named by their 0-based position (`"0"`, `"1"`, ...), as pandas does.
    pub header: bool,
    /// NPY and IDX: the labels file; without it the file beside the features whose name
    /// has `x` replaced by `y` (`x_train.npy` -> `y_train.npy`), or `images` by `labels`
    /// (and `idx3` by `idx1`).
    pub labels_path: Option<PathBuf>,
    /// NPY: an array of group ids or names, one per sample.
    pub groups_path: Option<PathBuf>,
    /// NPZ: the names of the features, labels and (optional) groups arrays.
    pub npz_arrays: NpzArrays,
    /// NPY, NPZ and IDX: samples are `[H, W, C]` (NumPy's and TensorFlow's image layout):
    /// transpose them to `[C, H, W]`.
    pub channels_last: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            image_size: None,
            channels: None,
            skip_unreadable: false,
            groups_file: None,
            label_column: None,
            group_column: None,
            ignore_columns: Vec::new(),
            delimiter: None,
            header: true,
            labels_path: None,
            groups_path: None,
            npz_arrays: NpzArrays::default(),
            channels_last: false,
        }
    }
}

/// Member names of an NPZ archive (without `.npy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpzArrays {
    /// Features, `[N, ...]`.
    pub x: String,
    /// Labels, `[N]`.
    pub y: String,
    /// Groups, `[N]`, if any.
    pub groups: Option<String>,
}

impl Default for NpzArrays {
    fn default() -> Self {
        Self {
            x: "x".into(),
            y: "y".into(),
            groups: None,
        }
    }
}

/// A dataset format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A folder of class folders of images.
    ImageFolder,
    /// A CSV (or TSV) table.
    Csv,
    /// An NPY features array with a labels array beside it.
    Npy,
    /// An NPZ archive of arrays.
    Npz,
    /// IDX images and labels files.
    Idx,
}

/// The format of `path`: a directory is an image folder; files go by their extension
/// (after any `.gz`), else by their first bytes.
pub fn detect_format(path: &Path) -> Result<Format, OwnError> {
    let meta = std::fs::metadata(path).map_err(|source| io(path, source))?;
    if meta.is_dir() {
        return Ok(Format::ImageFolder);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let base = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "csv" | "tsv" => return Ok(Format::Csv),
        "npy" => return Ok(Format::Npy),
        "npz" => return Ok(Format::Npz),
        "idx" => return Ok(Format::Idx),
        _ if base.ends_with("-ubyte") || base.ends_with("_ubyte") => return Ok(Format::Idx),
        _ => {}
    }
    let head = read_file(path)?;
    if head.starts_with(b"\x93NUMPY") {
        Ok(Format::Npy)
    } else if head.starts_with(b"PK\x03\x04") {
        Ok(Format::Npz)
    } else if head.len() >= 4 && head[..3] == [0, 0, 8] && head[3] > 0 {
        Ok(Format::Idx)
    } else {
        let reason = if matches!(ext, "png" | "jpg" | "jpeg") {
            "a single image: give the folder that holds the class folders".to_string()
        } else {
            "not a recognised dataset format".to_string()
        };
        Err(OwnError::UnknownFormat {
            path: path.to_path_buf(),
            reason,
        })
    }
}

/// Loads a dataset in whichever format `path` is ([`detect_format`]).
pub fn load(path: &Path, options: &LoadOptions) -> Result<LabelledSet, OwnError> {
    match detect_format(path)? {
        Format::ImageFolder => folder::load_image_folder(path, options),
        Format::Csv => table::load_csv(path, options),
        Format::Npy => npy::load_npy_pair(path, options),
        Format::Npz => npy::load_npz(path, options),
        Format::Idx => idx_files::load_idx_pair(path, options),
    }
}

/// How [`prepare`] turns loaded data into training and test sets.
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareOptions {
    /// The normalisation.
    pub normalize: Normalize,
    /// Without a test set: the fraction of the training data held out as the test set.
    pub holdout: f64,
    /// The held-out split's seed.
    pub seed: u64,
    /// Hold out the same fraction of every class.
    pub stratify: bool,
    /// The model's input shape (without the batch axis), checked against the samples.
    pub input_shape: Option<Vec<usize>>,
    /// The classes, in the model's output order; without it the training set's.
    pub classes: Option<Vec<String>>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            normalize: Normalize::Auto,
            holdout: 0.2,
            seed: 0,
            stratify: true,
            input_shape: None,
            classes: None,
        }
    }
}

/// Training and test sets ready for a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The training set, normalised.
    pub train: LabelledSet,
    /// The test set (given, or held out of the training data), normalised the same way and
    /// labelled with the training classes.
    pub test: LabelledSet,
    /// The statistics applied to both (`None` for [`Normalize::None`]).
    pub normalization: Option<Normalization>,
    /// Whether the test set was held out of the training data.
    pub held_out: bool,
}

/// Loads a training set and a test set (or holds one out of the training set), maps the
/// test labels and groups onto the training ones, checks the samples against the model's
/// input shape, and normalises both with statistics of the training split.
pub fn prepare(
    train: &Path,
    test: Option<&Path>,
    load_options: &LoadOptions,
    options: &PrepareOptions,
) -> Result<Prepared, OwnError> {
    let mut train_set = load(train, load_options)?;
    if let Some(classes) = &options.classes {
        train_set.align_classes(classes, true)?;
    }
    if let Some(model) = &options.input_shape {
        train_set.check_input_shape(model)?;
    }
    let (train_set, test_set, held_out) = match test {
        Some(path) => {
            let mut opts = load_options.clone();
            // A grey test image must not turn a colour training set's test into 1 channel.
            if opts.channels.is_none() && train_set.sample_shape.len() == 3 {
                opts.channels = match train_set.sample_shape[0] {
                    1 => Some(Channels::Gray),
                    3 => Some(Channels::Rgb),
                    _ => None,
                };
            }
            let mut test_set = load(path, &opts)?;
            if test_set.sample_shape != train_set.sample_shape {
                return Err(OwnError::Invalid(format!(
                    "test samples ({}) are {:?} but training samples ({}) are {:?}",
                    path.display(),
                    test_set.sample_shape,
                    train.display(),
                    train_set.sample_shape
                )));
            }
            test_set.align_to(&train_set)?;
            (train_set, test_set, false)
        }
        None => {
            let (kept, held) = train_set.split(options.holdout, options.seed, options.stratify)?;
            (kept, held, true)
        }
    };
    let (mut train_set, mut test_set) = (train_set, test_set);
    let normalization = Normalization::for_data(&options.normalize, &train_set)?;
    if let Some(n) = &normalization {
        n.apply(&mut train_set)?;
        n.apply(&mut test_set)?;
    }
    Ok(Prepared {
        train: train_set,
        test: test_set,
        normalization,
        held_out,
    })
}

/// Parses an image size `HxW` (or one number for a square).
pub fn parse_image_size(text: &str) -> Result<(u32, u32), String> {
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("image size {text:?}: expected HxW, e.g. 28x28"))
    };
    match text.split_once(['x', 'X']) {
        Some((h, w)) => Ok((num(h)?, num(w)?)),
        None => num(text).map(|s| (s, s)),
    }
}

/// An I/O error on `path`.
pub(crate) fn io(path: &Path, source: std::io::Error) -> OwnError {
    OwnError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A [`OwnError::Malformed`] on `path`.
pub(crate) fn malformed(path: &Path, reason: impl Into<String>) -> OwnError {
    OwnError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The bytes of `path`, gunzipped when they are gzip data.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, OwnError> {
    let bytes = std::fs::read(path).map_err(|source| io(path, source))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| malformed(path, format!("not valid gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Distinct keys in sorted order and each key's index: numerically sorted (and named by
/// their value) when every key is a number, else sorted as strings.
pub(crate) fn index_keys(keys: &[String]) -> (Vec<String>, Vec<u32>) {
    let numbers: Option<Vec<f64>> = keys
        .iter()
        .map(|k| k.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect();
    let canonical: Vec<String> = match &numbers {
        Some(v) if !keys.is_empty() => v.iter().map(|&x| number_name(x)).collect(),
        _ => keys.iter().map(|k| k.trim().to_string()).collect(),
    };
    let mut names: Vec<(Option<f64>, String)> = canonical
        .iter()
        .enumerate()
        .map(|(i, c)| (numbers.as_ref().map(|v| v[i]), c.clone()))
        .collect();
    names.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.1.cmp(&b.1),
    });
    names.dedup_by(|a, b| a.1 == b.1);
    let names: Vec<String> = names.into_iter().map(|(_, n)| n).collect();
    let ids = canonical.iter().map(|c| position(&names, c)).collect();
    (names, ids)
}

/// The index of `name` in `names` (which holds it).
fn position(names: &[String], name: &str) -> u32 {
    let i = names.iter().position(|n| n == name).expect("a listed key");
    u32::try_from(i).expect("fewer than 2^32 classes")
}

/// A number as a class name: integers without a fraction (`1`, not `1.0`).
pub(crate) fn number_name(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A class or group name as [`index_keys`] would name it.
pub(crate) fn canonical_name(key: &str) -> String {
    match key.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => number_name(v),
        _ => key.trim().to_string(),
    }
}

/// Group ids from optional keys: `None` keys (no group) get [`NO_GROUP`].
pub(crate) fn index_group_keys(keys: &[Option<String>]) -> SampleGroups {
    let present: Vec<String> = keys.iter().flatten().cloned().collect();
    let (names, ids) = index_keys(&present);
    let mut ids = ids.into_iter();
    let ids = keys
        .iter()
        .map(|k| match k {
            Some(_) => ids.next().expect("one id per key"),
            None => NO_GROUP,
        })
        .collect();
    SampleGroups { names, ids }
}

/// The file beside `path` whose name has the tokens in `swaps` replaced (tokens are the
/// parts of the name between `-`, `_` and `.`), when it exists; else an error listing
/// what was tried and `hint`.
pub(crate) fn sibling(
    path: &Path,
    swaps: &[(&str, &str)],
    what: &str,
) -> Result<PathBuf, OwnError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let mut token = String::new();
    let mut changed = false;
    let flush = |token: &mut String, out: &mut String, changed: &mut bool| {
        let lower = token.to_lowercase();
        match swaps.iter().find(|(from, _)| {
            *from == lower
                || from.strip_suffix('*').is_some_and(|prefix| {
                    lower.len() > prefix.len()
                        && lower.starts_with(prefix)
                        && lower[prefix.len()..].bytes().all(|b| b.is_ascii_digit())
                })
        }) {
            Some((_, to)) => {
                out.push_str(to);
                *changed = true;
            }
            None => out.push_str(token),
        }
        token.clear();
    };
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            flush(&mut token, &mut out, &mut changed);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out, &mut changed);
    let candidate = path.with_file_name(&out);
    if changed && candidate.is_file() {
        return Ok(candidate);
    }
    let tried = if changed {
        format!("looked for {}", candidate.display())
    } else {
        "its name has no part to swap".to_string()
    };
    Err(OwnError::Invalid(format!(
        "no {what} file for {} ({tried}): give the {what} file's path",
        path.display()
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh temporary directory, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("tether-own-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(crate) fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }

        pub(crate) fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
            let p = self.path(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_sort_numerically_when_all_are_numbers() {
        let (names, ids) = index_keys(&strings(&["10", "9", "1.0", "1", "-2"]));
        assert_eq!(names, strings(&["-2", "1", "9", "10"]));
        assert_eq!(ids, vec![3, 2, 1, 1, 0]);
        let (names, ids) = index_keys(&strings(&["dog", "cat", "10", "9", "cat"]));
        assert_eq!(names, strings(&["10", "9", "cat", "dog"]));
        assert_eq!(ids, vec![3, 2, 0, 1, 2]);
        assert_eq!(
            index_keys(&strings(&["0.5", "2"])).0,
            strings(&["0.5", "2"])
        );
        let g = index_group_keys(&[Some("b".into()), None, Some("a".into())]);
        assert_eq!(g.names, strings(&["a", "b"]));
        assert_eq!(g.ids, vec![1, NO_GROUP, 0]);
    }

    #[test]
    fn image_sizes_parse() {
        assert_eq!(parse_image_size("28x32"), Ok((28, 32)));
        assert_eq!(parse_image_size("64"), Ok((64, 64)));
        assert!(parse_image_size("0x3").is_err());
        assert!(
            parse_image_size("axb")
                .unwrap_err()
                .contains("expected HxW")
        );
    }

    #[test]
    fn formats_are_detected_by_name_then_content() {
        let dir = TempDir::new("detect");
        assert_eq!(detect_format(&dir.0).unwrap(), Format::ImageFolder);
        let cases = [
            ("a.csv", Format::Csv),
            ("a.TSV", Format::Csv),
            ("a.csv.gz", Format::Csv),
            ("x.npy", Format::Npy),
            ("d.npz", Format::Npz),
            ("train-images-idx3-ubyte", Format::Idx),
            ("train-images-idx3-ubyte.gz", Format::Idx),
        ];
        for (name, want) in cases {
            let p = dir.write(name, b"");
            assert_eq!(detect_format(&p).unwrap(), want, "{name}");
        }
        let p = dir.write("blob", b"\x93NUMPY\x01\x00");
        assert_eq!(detect_format(&p).unwrap(), Format::Npy);
        let p = dir.write("blob2", b"PK\x03\x04rest");
        assert_eq!(detect_format(&p).unwrap(), Format::Npz);
        let p = dir.write("blob3", &[0, 0, 8, 1, 0, 0, 0, 0]);
        assert_eq!(detect_format(&p).unwrap(), Format::Idx);
        let p = dir.write("notes.txt", b"hello");
        let e = detect_format(&p).unwrap_err().to_string();
        assert!(e.contains("notes.txt: not a recognised dataset format; accepted: a directory"));
        assert!(e.contains(".npz") && e.contains("IDX"), "{e}");
        let p = dir.write("cat.png", b"\x89PNG");
        let e = detect_format(&p).unwrap_err().to_string();
        assert!(e.contains("a single image: give the folder"), "{e}");
        let e = load(&dir.path("absent.csv"), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, OwnError::Io { .. }), "{e}");
    }

    #[test]
    fn siblings_swap_name_parts() {
        let dir = TempDir::new("sibling");
        let x = dir.write("x_train.npy", b"");
        let y = dir.write("y_train.npy", b"");
        let swaps = [("x", "y")];
        assert_eq!(sibling(&x, &swaps, "labels").unwrap(), y);
        let i = dir.write("t10k-images-idx3-ubyte", b"");
        let l = dir.write("t10k-labels-idx1-ubyte", b"");
        let swaps = [("images", "labels"), ("idx*", "idx1")];
        assert_eq!(sibling(&i, &swaps, "labels").unwrap(), l);
        let lonely = dir.write("feats.npy", b"");
        let e = sibling(&lonely, &[("x", "y")], "labels").unwrap_err();
        assert!(e.to_string().contains("give the labels file's path"), "{e}");
        let x2 = dir.write("x.npy", b"");
        let e = sibling(&x2, &[("x", "y")], "labels")
            .unwrap_err()
            .to_string();
        assert!(e.contains("looked for") && e.contains("y.npy"), "{e}");
    }

    #[test]
    fn prepare_holds_out_and_normalises_with_training_statistics() {
        let dir = TempDir::new("prepare");
        let mut text = String::from("a,b,label,sex\n");
        for i in 0..40 {
            text += &format!(
                "{},{},{},{}\n",
                i,
                2 * i + 1,
                ["x", "y"][i % 2],
                ["f", "m"][i % 3 % 2]
            );
        }
        let train = dir.write("train.csv", text.as_bytes());
        let load_opts = LoadOptions {
            label_column: Some("label".into()),
            group_column: Some("sex".into()),
            ..LoadOptions::default()
        };
        let p = prepare(&train, None, &load_opts, &PrepareOptions::default()).unwrap();
        assert!(p.held_out);
        assert_eq!((p.train.len(), p.test.len()), (32, 8));
        assert_eq!(p.test.class_counts(), vec![4, 4]);
        let n = p.normalization.clone().unwrap();
        assert_eq!(n.axis, NormAxis::Feature);
        // Training columns have mean 0 and deviation 1; the test set used the same numbers.
        let col: Vec<f32> = p.train.features.iter().step_by(2).copied().collect();
        let mean = col.iter().sum::<f32>() / col.len() as f32;
        assert!(mean.abs() < 1e-5, "{mean}");
        let raw = p.test.features[0] * n.std[0] + n.mean[0];
        assert!((raw - raw.round()).abs() < 1e-3, "{raw}");
        let g = set::groups(&p.train, &p.test, 1).unwrap();
        assert_eq!(g.names, vec!["f".to_string(), "m".into()]);

        // A test file: labels mapped onto the training classes, unknown ones rejected.
        let test = dir.write("test.csv", b"a,b,label,sex\n1,2,y,m\n");
        let opts = PrepareOptions {
            normalize: Normalize::None,
            input_shape: Some(vec![2]),
            ..PrepareOptions::default()
        };
        let p = prepare(&train, Some(&test), &load_opts, &opts).unwrap();
        assert!(!p.held_out && p.normalization.is_none());
        assert_eq!((p.train.len(), p.test.labels.clone()), (40, vec![1]));
        let bad = dir.write("bad.csv", b"a,b,label,sex\n1,2,z,m\n");
        let e = prepare(&train, Some(&bad), &load_opts, &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "label \"z\" of sample 0 is not one of the training classes (x, y)"
        );
        let wide = dir.write("wide.csv", b"a,b,c,label,sex\n1,2,3,x,m\n");
        let e = prepare(&train, Some(&wide), &load_opts, &opts).unwrap_err();
        assert!(e.to_string().contains("test samples"), "{e}");
        let opts = PrepareOptions {
            input_shape: Some(vec![3]),
            ..PrepareOptions::default()
        };
        let e = prepare(&train, None, &load_opts, &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data samples are [2] but the model takes [3]"
        );
        let opts = PrepareOptions {
            classes: Some(vec!["x".into(), "y".into(), "z".into()]),
            ..PrepareOptions::default()
        };
        let e = prepare(&train, None, &load_opts, &opts).unwrap_err();
        assert!(
            matches!(e, OwnError::EmptyClass { ref class, .. } if class == "z"),
            "{e}"
        );
    }

    #[test]
    fn prepare_image_folders_per_channel() {
        let dir = TempDir::new("prepare-img");
        let put = |rel: &str, px: [u8; 3]| {
            let p = dir.path(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::from_pixel(4, 4, image::Rgb(px))
                .save(&p)
                .unwrap();
        };
        put("train/a/1.png", [0, 0, 0]);
        put("train/a/2.png", [255, 0, 0]);
        put("train/b/3.png", [0, 255, 0]);
        put("train/b/4.png", [255, 255, 0]);
        // A grey test image still loads as RGB, like the training images.
        let p = dir.path("test/b/5.png");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([255]))
            .save(&p)
            .unwrap();
        let load_opts = LoadOptions {
            image_size: Some((4, 4)),
            ..LoadOptions::default()
        };
        let opts = PrepareOptions {
            input_shape: Some(vec![3, 4, 4]),
            ..PrepareOptions::default()
        };
        let p = prepare(
            &dir.path("train"),
            Some(&dir.path("test")),
            &load_opts,
            &opts,
        )
        .unwrap();
        let n = p.normalization.unwrap();
        assert_eq!(n.axis, NormAxis::Channel);
        assert_eq!(n.mean, vec![0.5, 0.5, 0.0]);
        assert_eq!(n.std, vec![0.5, 0.5, 1.0]);
        assert_eq!(p.test.sample_shape, vec![3, 4, 4]);
        assert_eq!(p.test.labels, vec![1]);
        assert_eq!(&p.test.sample(0)[..1], &[1.0]);
        assert_eq!(p.test.sample(0)[32], 1.0); // blue 1.0, centred on 0, scale 1.
        let given = PrepareOptions {
            normalize: Normalize::Given {
                mean: vec![0.5],
                std: vec![0.25],
            },
            ..PrepareOptions::default()
        };
        let p = prepare(
            &dir.path("train"),
            Some(&dir.path("test")),
            &load_opts,
            &given,
        )
        .unwrap();
        assert_eq!(p.train.sample(0)[0], -2.0);
        assert_eq!(p.normalization.unwrap().axis, NormAxis::Global);
    }

    #[test]
    fn gzipped_files_are_read_through() {
        use std::io::Write;
        let dir = TempDir::new("gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"a,b\n1,2\n").unwrap();
        let p = dir.write("t.csv.gz", &enc.finish().unwrap());
        assert_eq!(read_file(&p).unwrap(), b"a,b\n1,2\n");
        let p = dir.write("bad.csv.gz", &[0x1f, 0x8b, 1, 2, 3]);
        assert!(
            read_file(&p)
                .unwrap_err()
                .to_string()
                .contains("not valid gzip")
        );
    }
}
