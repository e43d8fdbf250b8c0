//! A fair-pruning dataset in memory: encoded features, labels and group ids of the
//! training, held-out and test splits.

use crate::data::adult::{self, AdultEncoder, AdultSplit};
use crate::data::batches::holdout;
use crate::data::groups::{self, Groups};
use crate::data::mnist::{ImageSet, MnistKind, Split};
use crate::data::own;

use super::{FairConfig, FairDataset};

/// Features (row-major, `dim` per sample) and labels of one split.
pub(super) type Samples = (Vec<f32>, Vec<i64>);

/// A dataset in memory: features, labels and groups of both splits.
pub(super) struct FairData {
    /// Features per sample.
    pub dim: usize,
    /// Classes of the labels.
    pub classes: usize,
    /// The training samples (less the held-out ones).
    pub train: Samples,
    /// Held out from `train` (`val_fraction`) to choose the dense model.
    pub val: Samples,
    /// The test samples.
    pub test: Samples,
    /// Group ids of the training and test samples, and the groups' names.
    pub groups: Groups,
}

/// MNIST's mean and standard deviation, as every image task normalises with.
const MNIST_MEAN: f32 = 0.1307;
const MNIST_STD: f32 = 0.3081;

/// Loads `--data` (the user's, see [`load_own`]) or `config.dataset`, limited to
/// `train_limit` training samples, holds out `val_fraction` of them, and builds the
/// grouping `config.groups` (or the dataset's default: race-sex on Adult, class on
/// images). Adult's one-hot encoder is fitted on the training part only. `input_shape` is
/// the user's network's per-sample input, checked against the data's samples.
pub(super) fn load(
    config: &FairConfig,
    input_shape: Option<Vec<usize>>,
) -> anyhow::Result<FairData> {
    if let Some(path) = &config.own.data {
        return load_own(config, path, input_shape);
    }
    let limit = |n: usize| config.train_limit.map_or(n, |l| l.min(n));
    match config.dataset {
        FairDataset::Adult => {
            let mut rows = adult::load(AdultSplit::Train)?;
            let test = adult::load(AdultSplit::Test)?;
            rows.truncate(limit(rows.len()));
            let (kept, held) = holdout(rows.len(), config.val_fraction, config.seed);
            let pick = |idx: &[usize]| idx.iter().map(|&i| rows[i].clone()).collect::<Vec<_>>();
            let (train, val) = (pick(&kept), pick(&held));
            let name = config.groups.as_deref().unwrap_or("race-sex");
            let groups = groups::adult(name, &train, &test, config.min_group_size, config.seed)?;
            let enc = AdultEncoder::fit(&train);
            let labels = |rows: &[adult::AdultRow]| -> Vec<i64> {
                rows.iter().map(|r| i64::from(r.high_income)).collect()
            };
            Ok(FairData {
                dim: enc.dim(),
                classes: 2,
                train: (enc.encode(&train), labels(&train)),
                val: (enc.encode(&val), labels(&val)),
                test: (enc.encode(&test), labels(&test)),
                groups,
            })
        }
        FairDataset::Mnist | FairDataset::FashionMnist => {
            let kind = if config.dataset == FairDataset::Mnist {
                MnistKind::Mnist
            } else {
                MnistKind::FashionMnist
            };
            let train = ImageSet::load(kind, Split::Train)?;
            let test = ImageSet::load(kind, Split::Test)?;
            let (kept, held) = holdout(limit(train.len()), config.val_fraction, config.seed);
            let all: Vec<usize> = (0..test.len()).collect();
            let name = config.groups.as_deref().unwrap_or("class");
            let class = |set: &ImageSet, idx: &[usize]| -> Vec<u8> {
                idx.iter().map(|&i| set.labels[i]).collect()
            };
            let groups = groups::by_class(
                name,
                kind.name(),
                &class(&train, &kept),
                &test.labels,
                config.seed,
            )?;
            let pixels = |set: &ImageSet, idx: &[usize]| -> Vec<f32> {
                idx.iter()
                    .flat_map(|&i| &set.pixels[i * 784..(i + 1) * 784])
                    .map(|&p| (p as f32 / 255.0 - MNIST_MEAN) / MNIST_STD)
                    .collect()
            };
            let labels = |set: &ImageSet, idx: &[usize]| -> Vec<i64> {
                idx.iter().map(|&i| set.labels[i] as i64).collect()
            };
            Ok(FairData {
                dim: 784,
                classes: 10,
                train: (pixels(&train, &kept), labels(&train, &kept)),
                val: (pixels(&train, &held), labels(&train, &held)),
                test: (pixels(&test, &all), labels(&test, &all)),
                groups,
            })
        }
    }
}

/// The user's data: `path` (and its test data, or `--holdout` of `path` held
/// out), read as [`own::prepare`] does for `prune --data` (classes aligned by name, the
/// training split's normalisation), its groups from `--group-column` or `--groups-file`
/// (groups with fewer than `min_group_size` training samples left unconstrained).
fn load_own(
    config: &FairConfig,
    path: &std::path::Path,
    input_shape: Option<Vec<usize>>,
) -> anyhow::Result<FairData> {
    let groups_file = config.groups_file.clone();
    let load = own::LoadOptions {
        group_column: config.group_column.clone(),
        // One flag for both: an image folder's `path,group` CSV, or NPY features' array.
        groups_file: groups_file.clone(),
        groups_path: groups_file,
        ..config.own.load_options()?
    };
    let prep = config.own.prepare_options(config.seed, input_shape)?;
    let p = own::prepare(path, config.own.test_data.as_deref(), &load, &prep)?;
    anyhow::ensure!(
        p.train.groups.is_some(),
        "{} has no groups: fair-prune bounds each group's accuracy drop; name the group \
         column of a CSV with --group-column, or give --groups-file (image folders, NPY)",
        path.display()
    );
    let n = config
        .train_limit
        .map_or(p.train.len(), |l| l.min(p.train.len()));
    let (kept, held) = holdout(n, config.val_fraction, config.seed);
    let (train, val) = (p.train.subset(&kept), p.train.subset(&held));
    let groups = own::set::groups(&train, &p.test, config.min_group_size)?;
    let samples = |s: &own::LabelledSet| (s.features.clone(), s.labels_i64());
    Ok(FairData {
        dim: train.sample_len(),
        classes: train.num_classes(),
        train: samples(&train),
        val: samples(&val),
        test: samples(&p.test),
        groups,
    })
}
