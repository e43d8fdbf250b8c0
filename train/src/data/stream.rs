//! Mini-batches assembled on the fly, with a bounded prefetch on another thread.
//!
//! A training set is a [`SampleSource`]: something that writes sample `i`'s features into a
//! buffer and gives its label, whether it holds the samples in memory (MNIST's bytes, a
//! decoded [`crate::data::own::LabelledSet`]) or decodes them from files on request (an
//! image folder, [`crate::data::own::ImageFiles`]). [`with_batches`] walks an epoch's order
//! in batches: a producer thread assembles each batch on the host and hands it over through
//! a `std::sync::mpsc::sync_channel` of depth `depth`, so decoding overlaps the training
//! step and at most `depth + 2` batches exist at once (the queue, the one being assembled,
//! the one being trained on). Memory is then bounded by the batch size times the prefetch
//! depth plus the model, not by the dataset; only the epoch's order (one index per sample)
//! grows with it.
//!
//! A batch holds the samples of its indices in order, whatever the source and the depth:
//! the same seed gives the same batches, bit for bit, streamed or in memory.

use std::sync::mpsc::{Receiver, sync_channel};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::batches::Batch;

/// Batches the producer thread assembles ahead of the training step: two keep the step fed
/// while the next one is decoded, without holding more than a few batches.
pub const PREFETCH_DEPTH: usize = 2;

/// A labelled set read one sample at a time.
pub trait SampleSource: Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per sample.
    fn sample_len(&self) -> usize;

    /// Writes sample `i`'s features into `out` (`sample_len()` long) and returns its class.
    ///
    /// # Errors
    /// When the sample cannot be read (a file that no longer decodes): the error names it.
    fn read(&self, i: usize, out: &mut [f32]) -> anyhow::Result<i64>;
}

/// One batch on the host: features row-major `[rows, sample_len]` and labels `[rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// Features, `labels.len() * sample_len` values.
    pub features: Vec<f32>,
    /// Class indices.
    pub labels: Vec<i64>,
}

impl HostBatch {
    /// The samples of `rows`, in that order.
    ///
    /// # Errors
    /// The first sample that cannot be read.
    pub fn assemble(source: &dyn SampleSource, rows: &[usize]) -> anyhow::Result<Self> {
        let d = source.sample_len();
        let mut features = vec![0f32; rows.len() * d];
        let mut labels = Vec::with_capacity(rows.len());
        for (&i, out) in rows.iter().zip(features.chunks_exact_mut(d.max(1))) {
            labels.push(source.read(i, out)?);
        }
        Ok(Self { features, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The batch as tensors on `device`: images `[rows, sample_len]`, labels `[rows]`.
    pub fn to_device<B: Backend>(self, device: &B::Device) -> Batch<B> {
        let n = self.labels.len();
        let d = self.features.len().checked_div(n).unwrap_or(0);
        Batch {
            images: Tensor::from_data(TensorData::new(self.features, [n, d]), device),
            labels: Tensor::<B, 1, Int>::from_data(TensorData::new(self.labels, [n]), device),
        }
    }
}

/// The batches of `order` taken `batch` at a time (the last, partial one dropped when
/// `drop_last`).
pub fn chunks(order: &[usize], batch: usize, drop_last: bool) -> impl Iterator<Item = &[usize]> {
    let batch = batch.max(1);
    order
        .chunks(batch)
        .filter(move |c| !drop_last || c.len() == batch)
}

/// Number of batches [`chunks`] gives.
pub fn batch_count(len: usize, batch: usize, drop_last: bool) -> usize {
    let batch = batch.max(1);
    if drop_last {
        len / batch
    } else {
        len.div_ceil(batch)
    }
}

/// The batches of one pass, in order, as [`with_batches`] hands them to its consumer.
pub struct Batches<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    /// Assembled on the consumer's thread when asked for (`depth` 0).
    Inline {
        source: &'a dyn SampleSource,
        chunks: Box<dyn Iterator<Item = &'a [usize]> + 'a>,
    },
    /// Received from the producer thread.
    Prefetched(Receiver<anyhow::Result<HostBatch>>),
}

impl Iterator for Batches<'_> {
    type Item = anyhow::Result<HostBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Inline { source, chunks } => {
                chunks.next().map(|rows| HostBatch::assemble(*source, rows))
            }
            // The producer hangs up after the last batch (or after an error).
            Inner::Prefetched(rx) => rx.recv().ok(),
        }
    }
}

/// Calls `consume` with the batches of `order` (`batch` samples each, see [`chunks`]) read
/// from `source`. With `depth > 0` a scoped producer thread assembles them up to `depth`
/// batches ahead; the consumer (the training loop, whose tensors stay on its own thread)
/// receives them in order. A batch that cannot be read arrives as its error, and nothing
/// after it. Returns what `consume` returns; when it stops early the producer is told to
/// stop and joined before this returns.
pub fn with_batches<R>(
    source: &dyn SampleSource,
    order: &[usize],
    batch: usize,
    drop_last: bool,
    depth: usize,
    consume: impl FnOnce(&mut Batches<'_>) -> R,
) -> R {
    if depth == 0 {
        let mut batches = Batches {
            inner: Inner::Inline {
                source,
                chunks: Box::new(chunks(order, batch, drop_last)),
            },
        };
        return consume(&mut batches);
    }
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(depth);
        scope.spawn(move || {
            for rows in chunks(order, batch, drop_last) {
                let b = HostBatch::assemble(source, rows);
                let failed = b.is_err();
                // A closed channel: the consumer stopped early.
                if tx.send(b).is_err() || failed {
                    break;
                }
            }
        });
        let mut batches = Batches {
            inner: Inner::Prefetched(rx),
        };
        let out = consume(&mut batches);
        // Hang up first, so that a producer blocked on a full queue returns and the scope
        // can join it.
        drop(batches);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample `i` is `[i, i + 0.5]` of class `i % 3`; sample `bad` fails.
    struct Counting {
        len: usize,
        bad: Option<usize>,
    }

    impl SampleSource for Counting {
        fn len(&self) -> usize {
            self.len
        }

        fn sample_len(&self) -> usize {
            2
        }

        fn read(&self, i: usize, out: &mut [f32]) -> anyhow::Result<i64> {
            anyhow::ensure!(Some(i) != self.bad, "sample {i} is broken");
            out.copy_from_slice(&[i as f32, i as f32 + 0.5]);
            Ok((i % 3) as i64)
        }
    }

    fn collect(source: &Counting, order: &[usize], depth: usize) -> Vec<anyhow::Result<HostBatch>> {
        with_batches(source, order, 4, true, depth, |b| b.collect())
    }

    #[test]
    fn batches_hold_their_samples_in_order_at_any_depth() {
        let source = Counting { len: 11, bad: None };
        let order = crate::data::batches::shuffled_order(11, 3, 0);
        let inline: Vec<HostBatch> = collect(&source, &order, 0)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(inline.len(), batch_count(11, 4, true));
        assert_eq!(inline.len(), 2);
        for (b, rows) in inline.iter().zip(order.chunks(4)) {
            let want: Vec<f32> = rows
                .iter()
                .flat_map(|&i| [i as f32, i as f32 + 0.5])
                .collect();
            assert_eq!(b.features, want);
            assert_eq!(
                b.labels,
                rows.iter().map(|&i| (i % 3) as i64).collect::<Vec<_>>()
            );
        }
        for depth in [1, 2, 5] {
            let fetched: Vec<HostBatch> = collect(&source, &order, depth)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(fetched, inline, "depth {depth}");
        }
        // Without drop_last the partial batch comes last.
        let all = with_batches(&source, &order, 4, false, 2, |b| b.count());
        assert_eq!((all, batch_count(11, 4, false)), (3, 3));
    }

    #[test]
    fn an_unreadable_sample_ends_the_pass_with_its_error() {
        let source = Counting {
            len: 12,
            bad: Some(6),
        };
        let order: Vec<usize> = (0..12).collect();
        for depth in [0, 2] {
            let got = collect(&source, &order, depth);
            // Batch 0 (0..4) reads; batch 1 (4..8) holds sample 6.
            assert!(got[0].is_ok());
            let e = got[1].as_ref().unwrap_err().to_string();
            assert_eq!(e, "sample 6 is broken");
            if depth > 0 {
                assert_eq!(got.len(), 2, "nothing after the error");
            }
        }
    }

    #[test]
    fn a_consumer_that_stops_early_releases_the_producer() {
        let source = Counting {
            len: 4000,
            bad: None,
        };
        let order: Vec<usize> = (0..4000).collect();
        // Takes one batch of 4000 / 4 and leaves; the producer blocks on the full queue until
        // the hang-up, and `with_batches` returns (a hang here would fail the test run).
        let first = with_batches(&source, &order, 4, true, 1, |b| b.next());
        assert_eq!(first.unwrap().unwrap().labels, vec![0, 1, 2, 0]);
    }

    #[test]
    fn host_batches_become_tensors_of_their_shape() {
        type B = burn::backend::Flex;
        let source = Counting { len: 3, bad: None };
        let b = HostBatch::assemble(&source, &[2, 0]).unwrap();
        let t = b.to_device::<B>(&Default::default());
        assert_eq!(t.images.dims(), [2, 2]);
        assert_eq!(
            t.images.into_data().to_vec::<f32>().unwrap(),
            vec![2.0, 2.5, 0.0, 0.5]
        );
        assert_eq!(
            t.labels
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap(),
            vec![2, 0]
        );
    }
}
