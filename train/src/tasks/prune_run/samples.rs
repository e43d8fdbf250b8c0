//! The samples a run trains and tests on: a registry dataset or the user's own.

use std::borrow::Cow;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::data::batches::{Batch, shuffled_order};
use crate::data::mnist::ImageSet;
use crate::data::stream::{HostBatch, PREFETCH_DEPTH, SampleSource, with_batches};

/// Training or test samples: a registry dataset's images, or the user's own data
/// (normalised already).
pub(super) enum Samples<'a> {
    /// MNIST or Fashion-MNIST (loaded for this run, or [`run_with_data`]'s), normalised
    /// with MNIST's statistics on upload.
    Mnist(Cow<'a, ImageSet>),
    /// The user's data: in memory, or an image folder read from its files.
    Own(Box<crate::data::own::OwnSet>),
}

impl Samples<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            Samples::Mnist(s) => s.len(),
            Samples::Own(s) => s.len(),
        }
    }

    pub(super) fn sample_len(&self) -> usize {
        match self {
            Samples::Mnist(_) => 784,
            Samples::Own(s) => s.sample_len(),
        }
    }

    pub(super) fn classes(&self) -> usize {
        match self {
            Samples::Mnist(_) => 10,
            Samples::Own(s) => s.num_classes(),
        }
    }

    /// `n` samples (all if fewer) drawn at random (seeded), normalised as training sees
    /// them, on the device: the batch that measures the BatchNorms' starting statistics.
    ///
    /// # Errors
    /// A sample that cannot be read (it names the file).
    pub(super) fn calibration_batch<B: Backend>(
        &self,
        n: usize,
        seed: u64,
        device: &B::Device,
    ) -> anyhow::Result<Tensor<B, 2>> {
        let order = shuffled_order(self.len(), seed, u64::MAX);
        let pick = &order[..n.min(order.len())];
        Ok(HostBatch::assemble(self.source(), pick)?
            .to_device::<B>(device)
            .images)
    }

    /// The samples, read one at a time into the batches ([`crate::data::stream`]).
    pub(super) fn source(&self) -> &dyn SampleSource {
        match self {
            Samples::Mnist(s) => s.as_ref(),
            Samples::Own(s) => &**s,
        }
    }

    /// How many of the samples a run reads: the first `limit`.
    pub(super) fn limited(&self, limit: Option<usize>) -> usize {
        limit.map_or(self.len(), |l| l.min(self.len()))
    }

    /// Runs `evaluate` on `model` over the first `n` samples in order, in batches of
    /// [`EVAL_BATCH`] assembled as the evaluation goes.
    pub(super) fn evaluate<B: Backend, M, R>(
        &self,
        model: &M,
        n: usize,
        device: &B::Device,
        evaluate: &impl Fn(&M, &mut dyn Iterator<Item = Batch<B>>) -> R,
    ) -> anyhow::Result<R> {
        let order: Vec<usize> = (0..n).collect();
        with_batches(
            self.source(),
            &order,
            EVAL_BATCH,
            false,
            PREFETCH_DEPTH,
            |batches| {
                let mut failed = None;
                let mut each = batches.map_while(|b| match b {
                    Ok(b) => Some(b.to_device::<B>(device)),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                });
                let out = evaluate(model, &mut each);
                drop(each);
                match failed {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            },
        )
    }
}

/// Samples per evaluation batch (a forward pass only: larger than a training batch).
const EVAL_BATCH: usize = 1000;
