//! The labelled set every reader produces, and what is done with it: held-out splits,
//! class alignment between splits, the model input check, groups and device tensors.

use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::{OwnError, canonical_name};
use crate::data::batches::{holdout, shuffled_order};
use crate::data::groups::{GroupError, Groups, NO_GROUP};

/// Samples in memory: features, class labels and (optionally) groups.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledSet {
    /// Features, `len() * sample_len()` values: sample `i` is
    /// `features[i * sample_len()..(i + 1) * sample_len()]`, row-major in `sample_shape`.
    pub features: Vec<f32>,
    /// One sample's shape (`[C, H, W]` for images, `[features]` for tables).
    pub sample_shape: Vec<usize>,
    /// Each sample's class index into `class_names`.
    pub labels: Vec<u32>,
    /// Class names, in class-index order.
    pub class_names: Vec<String>,
    /// Each sample's group, when the data has groups.
    pub groups: Option<SampleGroups>,
    /// Files that were skipped, with the reason (image folders with
    /// [`super::LoadOptions::skip_unreadable`]).
    pub skipped: Vec<(PathBuf, String)>,
}

/// The samples in memory, copied into each batch ([`crate::data::stream`]).
impl crate::data::stream::SampleSource for LabelledSet {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    fn read(&self, i: usize, out: &mut [f32]) -> anyhow::Result<i64> {
        out.copy_from_slice(self.sample(i));
        Ok(i64::from(self.labels[i]))
    }
}

/// Each sample's group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleGroups {
    /// Group names, in group-id order.
    pub names: Vec<String>,
    /// Each sample's group id ([`NO_GROUP`] when in none).
    pub ids: Vec<u32>,
}

impl LabelledSet {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Sample `i`'s features.
    pub fn sample(&self, i: usize) -> &[f32] {
        let d = self.sample_len();
        &self.features[i * d..(i + 1) * d]
    }

    /// Samples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Each sample's group id ([`NO_GROUP`] for all when the set has no groups).
    pub fn group_ids(&self) -> Vec<u32> {
        match &self.groups {
            Some(g) => g.ids.clone(),
            None => vec![NO_GROUP; self.len()],
        }
    }

    /// The labels as burn's integer tensors take them.
    pub fn labels_i64(&self) -> Vec<i64> {
        self.labels.iter().map(|&l| i64::from(l)).collect()
    }

    /// The samples at `indices`, in that order (classes and group names unchanged).
    pub fn subset(&self, indices: &[usize]) -> Self {
        let d = self.sample_len();
        let mut features = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            features.extend_from_slice(self.sample(i));
        }
        Self {
            features,
            sample_shape: self.sample_shape.clone(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            groups: self.groups.as_ref().map(|g| SampleGroups {
                names: g.names.clone(),
                ids: indices.iter().map(|&i| g.ids[i]).collect(),
            }),
            skipped: Vec::new(),
        }
    }

    /// Splits off a held-out set of about `fraction` of the samples, chosen by a shuffle
    /// seeded with `seed`; with `stratified`, that fraction of every class (rounded per
    /// class, and always leaving each class a training sample). Returns `(kept, held)`,
    /// each in the original order.
    pub fn split(
        &self,
        fraction: f64,
        seed: u64,
        stratified: bool,
    ) -> Result<(Self, Self), OwnError> {
        let (kept, held) =
            holdout_indices(&self.labels, self.num_classes(), fraction, seed, stratified)?;
        Ok((self.subset(&kept), self.subset(&held)))
    }

    /// Checks that the samples fit a model taking `model`-shaped inputs (no batch axis):
    /// the same shape, the same shape once axes of size 1 are dropped, or a flat vector of
    /// the same length (a sample is then flattened, as an MLP takes it).
    pub fn check_input_shape(&self, model: &[usize]) -> Result<(), OwnError> {
        let data = &self.sample_shape;
        let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
        let n: usize = data.iter().product();
        if data.as_slice() == model
            || squeeze(data) == squeeze(model)
            || (model.len() == 1 && model[0] == n)
        {
            return Ok(());
        }
        let hint = if model.iter().product::<usize>() == n {
            " (the same number of values in another layout: reshape the data to the model's input)"
                .to_string()
        } else if data.len() == 3 && model.len() == 3 {
            let size = if data[1..] != model[1..] {
                format!(" --image-size {}x{}", model[1], model[2])
            } else {
                String::new()
            };
            let channels = match model[0] {
                1 if data[0] != 1 => " --channels gray",
                3 if data[0] != 3 => " --channels rgb",
                _ => "",
            };
            if size.is_empty() && channels.is_empty() {
                String::new()
            } else {
                format!(" (load the images with{size}{channels})")
            }
        } else {
            String::new()
        };
        Err(OwnError::ShapeMismatch {
            data: data.clone(),
            model: model.to_vec(),
            hint,
        })
    }

    /// Relabels the samples with `classes` (names, in the order wanted): a label not among
    /// them is an [`OwnError::UnknownLabel`]; with `require_all`, a class without a sample
    /// is an [`OwnError::EmptyClass`]. Names compare as [`super::load`] names classes, so
    /// `"1.0"` matches a class `1`.
    pub fn align_classes(&mut self, classes: &[String], require_all: bool) -> Result<(), OwnError> {
        let wanted: Vec<String> = classes.iter().map(|c| canonical_name(c)).collect();
        let map: Vec<Option<u32>> = self
            .class_names
            .iter()
            .map(|n| wanted.iter().position(|w| w == n).map(|i| i as u32))
            .collect();
        let mut labels = Vec::with_capacity(self.len());
        for (sample, &l) in self.labels.iter().enumerate() {
            match map[l as usize] {
                Some(m) => labels.push(m),
                None => {
                    return Err(OwnError::UnknownLabel {
                        label: self.class_names[l as usize].clone(),
                        sample,
                        classes: wanted.join(", "),
                    });
                }
            }
        }
        if require_all {
            let mut count = vec![0usize; wanted.len()];
            for &l in &labels {
                count[l as usize] += 1;
            }
            if let Some(c) = count.iter().position(|&c| c == 0) {
                return Err(OwnError::EmptyClass {
                    class: wanted[c].clone(),
                    context: "none of the training samples has this label".into(),
                });
            }
        }
        self.labels = labels;
        self.class_names = wanted;
        Ok(())
    }

    /// Maps a test set onto `train`'s classes and groups (by name): a label the training
    /// set does not have is an error; a group it does not have becomes [`NO_GROUP`].
    pub fn align_to(&mut self, train: &LabelledSet) -> Result<(), OwnError> {
        self.align_classes(&train.class_names, false)?;
        if let (Some(g), Some(tg)) = (&mut self.groups, &train.groups) {
            g.ids = g
                .ids
                .iter()
                .map(|&id| {
                    g.names
                        .get(id as usize)
                        .and_then(|n| tg.names.iter().position(|t| t == n))
                        .map_or(NO_GROUP, |i| i as u32)
                })
                .collect();
            g.names = tg.names.clone();
        }
        Ok(())
    }

    /// Features `[len, sample_len]` (reshape for convolutions) and labels `[len]` on
    /// `device`.
    pub fn tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
        let n = self.len();
        let x = TensorData::new(self.features.clone(), [n, self.sample_len()]);
        let y = TensorData::new(self.labels_i64(), [n]);
        (Tensor::from_data(x, device), Tensor::from_data(y, device))
    }
}

/// The groups of a training and a test set (aligned with [`LabelledSet::align_to`]) for
/// the fairness tasks: groups with fewer than `min_size` training samples are left out,
/// as [`Groups::from_keys`] does.
pub fn groups(
    train: &LabelledSet,
    test: &LabelledSet,
    min_size: usize,
) -> Result<Groups, OwnError> {
    let need = |s: &LabelledSet| {
        s.groups.clone().ok_or_else(|| {
            OwnError::Invalid("the data has no groups: name a group column or array".into())
        })
    };
    let (tg, sg) = (need(train)?, need(test)?);
    if sg.names != tg.names {
        return Err(OwnError::Invalid(
            "the test set's groups are not the training set's: align it first (LabelledSet::align_to)"
                .into(),
        ));
    }
    let mut count = vec![0usize; tg.names.len()];
    for &id in tg.ids.iter().filter(|&&id| id != NO_GROUP) {
        count[id as usize] += 1;
    }
    let mut names = Vec::new();
    let new_id: Vec<u32> = count
        .iter()
        .zip(&tg.names)
        .map(|(&c, name)| {
            if c >= min_size.max(1) {
                names.push(name.clone());
                (names.len() - 1) as u32
            } else {
                NO_GROUP
            }
        })
        .collect();
    if names.is_empty() {
        return Err(GroupError::None { min_size }.into());
    }
    let remap = |ids: &[u32]| -> Vec<u32> {
        ids.iter()
            .map(|&id| new_id.get(id as usize).copied().unwrap_or(NO_GROUP))
            .collect()
    };
    Ok(Groups::new(names, remap(&tg.ids), remap(&sg.ids))?)
}

/// Indices of a held-out split: `(kept, held)`, each increasing. `fraction` of the samples
/// (in `(0, 1)`) are held out, chosen by a shuffle seeded with `seed`; with `stratified`,
/// `round(fraction * n_c)` of each class `c` (at most `n_c - 1`).
pub fn holdout_indices(
    labels: &[u32],
    classes: usize,
    fraction: f64,
    seed: u64,
    stratified: bool,
) -> Result<(Vec<usize>, Vec<usize>), OwnError> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(OwnError::Invalid(format!(
            "the held-out fraction must lie strictly between 0 and 1, got {fraction}"
        )));
    }
    let (kept, held) = if stratified {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (i, &l) in labels.iter().enumerate() {
            members[l as usize].push(i);
        }
        let (mut kept, mut held) = (Vec::new(), Vec::new());
        for (c, m) in members.iter().enumerate() {
            let order = shuffled_order(m.len(), seed, STRATIFY_SALT.wrapping_add(c as u64));
            let h = ((fraction * m.len() as f64).round() as usize).min(m.len().saturating_sub(1));
            held.extend(order[..h].iter().map(|&k| m[k]));
            kept.extend(order[h..].iter().map(|&k| m[k]));
        }
        kept.sort_unstable();
        held.sort_unstable();
        (kept, held)
    } else {
        holdout(labels.len(), fraction, seed)
    };
    if held.is_empty() || kept.is_empty() {
        return Err(OwnError::Invalid(format!(
            "holding out {fraction} of {} samples leaves {} held out and {} to train on: \
             give a test set or another fraction",
            labels.len(),
            held.len(),
            kept.len()
        )));
    }
    Ok((kept, held))
}

/// The "epoch" of the stratified shuffles (class `c` uses this plus `c`).
const STRATIFY_SALT: u64 = 0x5742_a71f_0000;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: Vec<u32>, classes: &[&str]) -> LabelledSet {
        let n = labels.len();
        LabelledSet {
            features: (0..n * 2).map(|v| v as f32).collect(),
            sample_shape: vec![2],
            labels,
            class_names: classes.iter().map(|s| s.to_string()).collect(),
            groups: None,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn stratified_holdout_takes_the_fraction_of_every_class() {
        // 90 of class 0, 10 of class 1.
        let labels: Vec<u32> = (0..100).map(|i| u32::from(i % 10 == 3)).collect();
        let (kept, held) = holdout_indices(&labels, 2, 0.2, 5, true).unwrap();
        assert_eq!((kept.len(), held.len()), (80, 20));
        let ones = held.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(ones, 2);
        let mut all: Vec<usize> = kept.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(holdout_indices(&labels, 2, 0.2, 5, true).unwrap().1, held);
        assert_ne!(holdout_indices(&labels, 2, 0.2, 6, true).unwrap().1, held);
        // A one-sample class stays in training.
        let (kept, held) = holdout_indices(&[0, 0, 0, 0, 1], 2, 0.5, 1, true).unwrap();
        assert!(kept.contains(&4) && held.len() == 2);
        // Unstratified: the plain seeded holdout.
        let (_, held) = holdout_indices(&labels, 2, 0.2, 5, false).unwrap();
        assert_eq!(held.len(), 20);
    }

    #[test]
    fn bad_fractions_are_errors() {
        for f in [0.0, 1.0, -0.1, f64::NAN] {
            let e = holdout_indices(&[0, 1], 2, f, 0, true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("strictly between 0 and 1"), "{e}");
        }
        let e = holdout_indices(&[0, 1], 2, 0.1, 0, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves 0 held out"), "{e}");
    }

    #[test]
    fn split_keeps_features_with_their_labels() {
        let s = set((0..10).map(|i| i % 2).collect(), &["a", "b"]);
        let (kept, held) = s.split(0.4, 3, true).unwrap();
        assert_eq!((kept.len(), held.len()), (6, 4));
        assert_eq!(held.class_counts(), vec![2, 2]);
        for part in [&kept, &held] {
            for i in 0..part.len() {
                let orig = part.sample(i)[0] as usize / 2;
                assert_eq!(part.labels[i], s.labels[orig]);
            }
        }
    }

    #[test]
    fn input_shapes_are_checked_with_a_clear_message() {
        let mut s = set(vec![0], &["a"]);
        s.sample_shape = vec![1, 28, 28];
        s.features = vec![0.0; 784];
        s.check_input_shape(&[1, 28, 28]).unwrap();
        s.check_input_shape(&[784]).unwrap();
        s.check_input_shape(&[28, 28]).unwrap();
        let e = s.check_input_shape(&[3, 32, 32]).unwrap_err().to_string();
        assert!(
            e.starts_with("data samples are [1, 28, 28] but the model takes [3, 32, 32]"),
            "{e}"
        );
        assert!(e.contains("--image-size 32x32 --channels rgb"), "{e}");
        let e = s.check_input_shape(&[4, 196]).unwrap_err().to_string();
        assert!(e.contains("another layout"), "{e}");
        let e = s.check_input_shape(&[10]).unwrap_err().to_string();
        assert_eq!(e, "data samples are [1, 28, 28] but the model takes [10]");
    }

    #[test]
    fn classes_align_by_name() {
        let train = set(vec![0, 1, 2], &["1", "2", "3"]);
        let mut test = set(vec![0, 1, 1], &["2", "3"]);
        test.align_to(&train).unwrap();
        assert_eq!(test.labels, vec![1, 2, 2]);
        assert_eq!(test.class_names, train.class_names);
        let mut bad = set(vec![0, 1], &["1", "7"]);
        let e = bad.align_to(&train).unwrap_err().to_string();
        assert_eq!(
            e,
            "label \"7\" of sample 1 is not one of the training classes (1, 2, 3)"
        );
        // Pinning the classes: "1.0" names class 1; a class without samples is an error.
        let mut s = set(vec![0, 1], &["1", "2"]);
        s.align_classes(&["0".into(), "1.0".into(), "2".into()], false)
            .unwrap();
        assert_eq!(s.labels, vec![1, 2]);
        let e = s
            .align_classes(&["0".into(), "1".into(), "2".into()], true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "class \"0\" has no samples: none of the training samples has this label"
        );
    }

    #[test]
    fn groups_align_and_become_fairness_groups() {
        let mut train = set(vec![0, 0, 1, 1], &["a", "b"]);
        train.groups = Some(SampleGroups {
            names: vec!["f".into(), "m".into()],
            ids: vec![0, 1, 0, NO_GROUP],
        });
        let mut test = set(vec![1, 0, 0], &["a", "b"]);
        test.labels = vec![1, 0, 0];
        test.groups = Some(SampleGroups {
            names: vec!["m".into(), "x".into(), "f".into()],
            ids: vec![0, 1, 2],
        });
        test.align_to(&train).unwrap();
        assert_eq!(test.group_ids(), vec![1, NO_GROUP, 0]);
        let g = groups(&train, &test, 1).unwrap();
        assert_eq!(g.names, vec!["f".to_string(), "m".into()]);
        assert_eq!(g.train, vec![0, 1, 0, NO_GROUP]);
        assert_eq!(g.test, vec![1, NO_GROUP, 0]);
        let e = groups(&train, &set(vec![0], &["a"]), 1).unwrap_err();
        assert!(e.to_string().contains("no groups"), "{e}");
    }

    #[test]
    fn tensors_have_the_flat_shape() {
        type B = burn::backend::Flex;
        let s = set(vec![0, 1, 1], &["a", "b"]);
        let (x, y) = s.tensors::<B>(&Default::default());
        assert_eq!(x.dims(), [3, 2]);
        assert_eq!(
            y.into_data().convert::<i64>().to_vec::<i64>().unwrap(),
            vec![0, 1, 1]
        );
    }
}
