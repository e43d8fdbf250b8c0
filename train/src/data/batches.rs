//! Mini-batches of an image-classification set on a device, reshuffled every epoch with a
//! seeded generator (runs are reproducible; no hidden global RNG).

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::mnist::{ImageSet, SIDE};

/// MNIST's pixel mean and standard deviation (of `pixel / 255` over the training set).
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

/// One mini-batch.
#[derive(Clone, Debug)]
pub struct Batch<B: Backend> {
    /// Normalised images, `[batch, 784]`.
    pub images: Tensor<B, 2>,
    /// Class indices, `[batch]`.
    pub labels: Tensor<B, 1, Int>,
}

/// A whole split held on the device.
#[derive(Clone, Debug)]
pub struct DeviceSet<B: Backend> {
    images: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    len: usize,
}

impl<B: Backend> DeviceSet<B> {
    /// Normalises `set` (first `limit` images, if given) and uploads it.
    pub fn new(set: &ImageSet, limit: Option<usize>, device: &B::Device) -> Self {
        let n = limit.map_or(set.len(), |l| l.min(set.len()));
        let px = SIDE * SIDE;
        let pixels: Vec<f32> = set.pixels[..n * px]
            .iter()
            .map(|&p| (p as f32 / 255.0 - MEAN) / STD)
            .collect();
        let labels: Vec<i64> = set.labels[..n].iter().map(|&l| l as i64).collect();
        Self {
            images: Tensor::from_data(TensorData::new(pixels, [n, px]), device),
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
            len: n,
        }
    }

    /// Uploads samples already normalised: `features` holds `labels.len()` samples of
    /// `sample_len` values each, row-major (the user's own data, [`crate::data::own`]).
    pub fn from_features(
        features: &[f32],
        sample_len: usize,
        labels: &[i64],
        device: &B::Device,
    ) -> Self {
        let n = labels.len();
        Self {
            images: Tensor::from_data(
                TensorData::new(features[..n * sample_len].to_vec(), [n, sample_len]),
                device,
            ),
            labels: Tensor::from_data(TensorData::new(labels.to_vec(), [n]), device),
            len: n,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batches of one epoch, in a shuffled order determined by `(seed, epoch)`; the last
    /// partial batch is dropped when `drop_last`.
    pub fn epoch(&self, batch: usize, seed: u64, epoch: u64, drop_last: bool) -> Vec<Batch<B>> {
        self.batches_in(&shuffled_order(self.len, seed, epoch), batch, drop_last)
    }

    /// The batches in the stored order (evaluation).
    pub fn in_order(&self, batch: usize) -> Vec<Batch<B>> {
        let order: Vec<usize> = (0..self.len).collect();
        self.batches_in(&order, batch, false)
    }

    fn batches_in(&self, order: &[usize], batch: usize, drop_last: bool) -> Vec<Batch<B>> {
        let device = self.images.device();
        order
            .chunks(batch.max(1))
            .filter(|c| !drop_last || c.len() == batch)
            .map(|c| {
                let idx: Vec<i64> = c.iter().map(|&i| i as i64).collect();
                let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [c.len()]), &device);
                Batch {
                    images: self.images.clone().select(0, idx.clone()),
                    labels: self.labels.clone().select(0, idx),
                }
            })
            .collect()
    }
}

/// MNIST's bytes read one image at a time, normalised as [`DeviceSet::new`] does (the
/// streamed batches of the built-in datasets, [`super::stream`]).
impl super::stream::SampleSource for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample_len(&self) -> usize {
        SIDE * SIDE
    }

    fn read(&self, i: usize, out: &mut [f32]) -> anyhow::Result<i64> {
        let px = SIDE * SIDE;
        for (o, &p) in out.iter_mut().zip(&self.pixels[i * px..(i + 1) * px]) {
            *o = (p as f32 / 255.0 - MEAN) / STD;
        }
        Ok(i64::from(self.labels[i]))
    }
}

/// `0..len` in the order that `(seed, epoch)` shuffles it to (Fisher-Yates).
pub fn shuffled_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = SplitMix64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    order
}

/// Splits `0..len` into a training part and a held-out part of `round(fraction * len)`
/// indices, chosen by a seeded shuffle; both parts in increasing order.
///
/// # Panics
/// When `fraction` is not in `[0, 1)`.
pub fn holdout(len: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    assert!(
        (0.0..1.0).contains(&fraction),
        "the held-out fraction must lie in [0, 1), got {fraction}"
    );
    let order = shuffled_order(len, seed, HOLDOUT_SALT);
    let held = (fraction * len as f64).round() as usize;
    let (mut out, mut kept) = (order[..held].to_vec(), order[held..].to_vec());
    out.sort_unstable();
    kept.sort_unstable();
    (kept, out)
}

/// The "epoch" of [`holdout`]'s shuffle: no training epoch's order.
const HOLDOUT_SALT: u64 = 0x0ba1_da7e;

/// SplitMix64 (Steele et al. 2014): a tiny, well-distributed seeded generator.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` (the top 53 bits).
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn holdout_partitions_the_indices() {
        let (kept, held) = super::holdout(1000, 0.1, 7);
        assert_eq!(held.len(), 100);
        assert_eq!(kept.len(), 900);
        let mut all: Vec<usize> = kept.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert!(held.windows(2).all(|w| w[0] < w[1]));
        // Spread over the range, not a block: both halves hold some.
        assert!(held.iter().any(|&i| i < 500) && held.iter().any(|&i| i >= 500));
        assert_eq!(super::holdout(1000, 0.1, 7), (kept, held));
        assert_ne!(
            super::holdout(1000, 0.1, 8).1,
            super::holdout(1000, 0.1, 7).1
        );
        assert!(super::holdout(10, 0.0, 1).1.is_empty());
    }
}
