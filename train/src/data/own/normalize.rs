//! Input standardisation: `(x - mean) / std`, with one `(mean, std)` pair for all inputs,
//! one per channel, or one per feature. The statistics come from the training split (or
//! from the caller) and are applied unchanged to every split.

use super::{LabelledSet, OwnError};

/// Which inputs share a mean and a deviation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NormAxis {
    /// One pair for every input.
    Global,
    /// One pair per channel: the first axis of a `[C, ...]` sample.
    Channel,
    /// One pair per input position (a table's columns).
    Feature,
}

impl NormAxis {
    /// The default for samples of `shape`: per channel for images (`[C, H, W]`), per
    /// feature for flat vectors (`[D]`), one pair otherwise.
    pub fn default_for(shape: &[usize]) -> Self {
        match shape.len() {
            1 => Self::Feature,
            3 => Self::Channel,
            _ => Self::Global,
        }
    }

    /// Number of statistics for samples of `shape`.
    pub fn count(self, shape: &[usize]) -> usize {
        match self {
            Self::Global => 1,
            Self::Channel => shape.first().copied().unwrap_or(1),
            Self::Feature => shape.iter().product(),
        }
    }

    /// The statistic of input `k` (flat index within a sample) of a sample of `shape`.
    fn slot(self, k: usize, shape: &[usize]) -> usize {
        match self {
            Self::Global => 0,
            Self::Channel => k / shape.iter().skip(1).product::<usize>().max(1),
            Self::Feature => k,
        }
    }
}

/// How to normalise.
#[derive(Clone, Debug, PartialEq)]
pub enum Normalize {
    /// Keep the values.
    None,
    /// Statistics of the training split along [`NormAxis::default_for`] the sample shape.
    Auto,
    /// Statistics of the training split along this axis.
    Fit(NormAxis),
    /// The caller's statistics: one pair for all inputs, one per channel or one per input
    /// (told apart by their number).
    Given {
        /// Means.
        mean: Vec<f32>,
        /// Standard deviations (positive).
        std: Vec<f32>,
    },
}

impl std::str::FromStr for Normalize {
    type Err = String;

    /// `auto`, `none`, `global`, `channel`, `feature` (statistics of the training split
    /// along that axis), or given statistics `MEANS/STDS`, each one number or a
    /// comma-separated list (one per channel, or one per input): `0.1307/0.3081` (MNIST),
    /// `0.485,0.456,0.406/0.229,0.224,0.225` (ImageNet, what torchvision's pretrained
    /// networks expect).
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "auto" => return Ok(Self::Auto),
            "none" => return Ok(Self::None),
            "global" => return Ok(Self::Fit(NormAxis::Global)),
            "channel" => return Ok(Self::Fit(NormAxis::Channel)),
            "feature" => return Ok(Self::Fit(NormAxis::Feature)),
            _ => {}
        }
        let usage = || {
            format!(
                "normalisation {text:?}: expected auto, none, global, channel, feature or \
                 MEANS/STDS (e.g. 0.1307/0.3081, or 0.485,0.456,0.406/0.229,0.224,0.225)"
            )
        };
        let (m, s) = t.split_once('/').ok_or_else(usage)?;
        let list = |part: &str| -> Result<Vec<f32>, String> {
            part.split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(usage)
                })
                .collect()
        };
        let (mean, std) = (list(m)?, list(s)?);
        if mean.len() != std.len() {
            return Err(format!(
                "normalisation {text:?}: {} means but {} deviations",
                mean.len(),
                std.len()
            ));
        }
        if std.iter().any(|&d| d <= 0.0) {
            return Err(format!(
                "normalisation {text:?}: deviations must be positive"
            ));
        }
        Ok(Self::Given { mean, std })
    }
}

/// Fitted (or given) statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Which inputs share a statistic.
    pub axis: NormAxis,
    /// Means.
    pub mean: Vec<f32>,
    /// Standard deviations (a constant input's is 1: it is only centred).
    pub std: Vec<f32>,
}

impl Normalization {
    /// The mean and (population) standard deviation of `set` along `axis`.
    pub fn fit(set: &LabelledSet, axis: NormAxis) -> Self {
        let each = |visit: &mut dyn FnMut(&[f32])| {
            (0..set.len()).for_each(|i| visit(set.sample(i)));
            Ok::<(), std::convert::Infallible>(())
        };
        match Self::fit_samples(&set.sample_shape, axis, each) {
            Ok(n) => n,
            Err(never) => match never {},
        }
    }

    /// [`Normalization::fit`] over samples of `shape` that `each` hands to its visitor,
    /// in order, without holding them: it is called twice (the mean, then the squared
    /// deviations from it, in `f64`), so an image folder read from its files gives the
    /// same statistics, bit for bit, as the same images in memory.
    pub fn fit_samples<E>(
        shape: &[usize],
        axis: NormAxis,
        mut each: impl FnMut(&mut dyn FnMut(&[f32])) -> Result<(), E>,
    ) -> Result<Self, E> {
        let slots = axis.count(shape);
        let (mut sum, mut count) = (vec![0f64; slots], vec![0usize; slots]);
        each(&mut |x: &[f32]| {
            for (k, &v) in x.iter().enumerate() {
                let s = axis.slot(k, shape);
                sum[s] += f64::from(v);
                count[s] += 1;
            }
        })?;
        let mean: Vec<f64> = sum
            .iter()
            .zip(&count)
            .map(|(&s, &c)| s / c.max(1) as f64)
            .collect();
        let mut sq = vec![0f64; slots];
        each(&mut |x: &[f32]| {
            for (k, &v) in x.iter().enumerate() {
                let s = axis.slot(k, shape);
                sq[s] += (f64::from(v) - mean[s]).powi(2);
            }
        })?;
        let std = sq
            .iter()
            .zip(&count)
            .map(|(&q, &c)| {
                let s = (q / c.max(1) as f64).sqrt();
                if s > 1e-12 { s as f32 } else { 1.0 }
            })
            .collect();
        Ok(Self {
            axis,
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    /// Given statistics for samples of `shape`: their number picks the axis (1: global,
    /// the channel count: per channel, the sample length: per feature).
    pub fn given(mean: Vec<f32>, std: Vec<f32>, shape: &[usize]) -> Result<Self, OwnError> {
        if mean.len() != std.len() {
            return Err(OwnError::Invalid(format!(
                "{} means but {} standard deviations",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(OwnError::Invalid(format!(
                "standard deviation {s} is not a positive number"
            )));
        }
        let axis = [NormAxis::Global, NormAxis::Channel, NormAxis::Feature]
            .into_iter()
            .find(|a| a.count(shape) == mean.len() && (*a != NormAxis::Channel || shape.len() > 1))
            .ok_or_else(|| {
                OwnError::Invalid(format!(
                    "{} means for samples of shape {shape:?}: give 1, one per channel ({}) \
                     or one per input ({})",
                    mean.len(),
                    shape.first().copied().unwrap_or(1),
                    shape.iter().product::<usize>()
                ))
            })?;
        Ok(Self { axis, mean, std })
    }

    /// What `normalize` asks for on training set `train` (`None` for [`Normalize::None`]).
    pub fn for_data(normalize: &Normalize, train: &LabelledSet) -> Result<Option<Self>, OwnError> {
        Self::for_samples(normalize, &train.sample_shape, |visit| {
            (0..train.len()).for_each(|i| visit(train.sample(i)));
            Ok(())
        })
    }

    /// [`Normalization::for_data`] on training samples of `shape` visited by `each` (see
    /// [`Normalization::fit_samples`]), which is not called when nothing is fitted.
    pub fn for_samples(
        normalize: &Normalize,
        shape: &[usize],
        each: impl FnMut(&mut dyn FnMut(&[f32])) -> Result<(), OwnError>,
    ) -> Result<Option<Self>, OwnError> {
        Ok(match normalize {
            Normalize::None => None,
            Normalize::Auto => Some(Self::fit_samples(
                shape,
                NormAxis::default_for(shape),
                each,
            )?),
            Normalize::Fit(axis) => Some(Self::fit_samples(shape, *axis, each)?),
            Normalize::Given { mean, std } => Some(Self::given(mean.clone(), std.clone(), shape)?),
        })
    }

    /// Standardises `set` in place.
    pub fn apply(&self, set: &mut LabelledSet) -> Result<(), OwnError> {
        let shape = set.sample_shape.clone();
        if self.axis.count(&shape) != self.mean.len() {
            return Err(OwnError::Invalid(format!(
                "{} statistics do not fit samples of shape {shape:?} ({:?})",
                self.mean.len(),
                self.axis
            )));
        }
        let d = set.sample_len().max(1);
        for sample in set.features.chunks_mut(d) {
            self.apply_sample(sample, &shape);
        }
        Ok(())
    }

    /// Standardises one sample of `shape` in place (whose statistics' count
    /// [`Normalization::apply`] checked): what a streamed batch does to each sample it reads.
    pub fn apply_sample(&self, sample: &mut [f32], shape: &[usize]) {
        let (mean, std) = (&self.mean, &self.std);
        for (k, v) in sample.iter_mut().enumerate() {
            let s = self.axis.slot(k, shape);
            *v = (*v - mean[s]) / std[s];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisations_parse_from_their_flag_text() {
        assert_eq!("auto".parse(), Ok(Normalize::Auto));
        assert_eq!("None".parse(), Ok(Normalize::None));
        assert_eq!("channel".parse(), Ok(Normalize::Fit(NormAxis::Channel)));
        assert_eq!(
            "0.485,0.456,0.406/0.229,0.224,0.225".parse(),
            Ok(Normalize::Given {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225]
            })
        );
        assert_eq!(
            "0.1307 / 0.3081".parse(),
            Ok(Normalize::Given {
                mean: vec![0.1307],
                std: vec![0.3081]
            })
        );
        for bad in ["", "imagenet", "1,2/3", "0.5/0", "0.5/-1", "a/1", "0.5/nan"] {
            let e = bad.parse::<Normalize>().unwrap_err();
            assert!(e.contains(bad.trim()) || bad.is_empty(), "{bad}: {e}");
        }
    }

    fn images() -> LabelledSet {
        // Two 2-channel 1x2 images: channel 0 holds 1, 3, 1, 3; channel 1 holds 10 everywhere.
        LabelledSet {
            features: vec![1.0, 3.0, 10.0, 10.0, 1.0, 3.0, 10.0, 10.0],
            sample_shape: vec![2, 1, 2],
            labels: vec![0, 0],
            class_names: vec!["a".into()],
            groups: None,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn per_channel_statistics_pool_the_pixels() {
        let mut s = images();
        let n = Normalization::fit(&s, NormAxis::Channel);
        assert_eq!(n.mean, vec![2.0, 10.0]);
        assert_eq!(n.std, vec![1.0, 1.0]); // channel 1 is constant: centred only.
        n.apply(&mut s).unwrap();
        assert_eq!(s.features, vec![-1.0, 1.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0]);
        let g = Normalization::fit(&images(), NormAxis::Global);
        assert_eq!(g.mean, vec![6.0]);
        let f = Normalization::fit(&images(), NormAxis::Feature);
        assert_eq!(f.mean, vec![1.0, 3.0, 10.0, 10.0]);
    }

    #[test]
    fn given_statistics_pick_their_axis_by_count() {
        let shape = [3, 4, 4];
        let g = Normalization::given(vec![0.5], vec![0.25], &shape).unwrap();
        assert_eq!(g.axis, NormAxis::Global);
        let c = Normalization::given(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225], &shape)
            .unwrap();
        assert_eq!(c.axis, NormAxis::Channel);
        let e = Normalization::given(vec![0.0; 2], vec![1.0; 2], &shape)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("give 1, one per channel (3) or one per input (48)"),
            "{e}"
        );
        let e = Normalization::given(vec![0.0], vec![0.0], &shape).unwrap_err();
        assert!(e.to_string().contains("not a positive number"), "{e}");
        let e = Normalization::given(vec![0.0], vec![1.0, 1.0], &shape).unwrap_err();
        assert!(e.to_string().contains("1 means but 2"), "{e}");
        // Applying statistics fitted on other shapes is an error.
        let mut s = images();
        assert!(c.apply(&mut s).is_err());
        assert_eq!(NormAxis::default_for(&[5]), NormAxis::Feature);
        assert_eq!(NormAxis::default_for(&[1, 8, 8]), NormAxis::Channel);
        assert_eq!(NormAxis::default_for(&[8, 8]), NormAxis::Global);
    }
}
