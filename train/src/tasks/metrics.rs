//! The classification loss and accuracy every classifying task shares (pruning, the dense
//! baseline, fairness, meshes). They live apart from any one task so that tasks depend on
//! this module, never on each other.

use burn::tensor::activation::log_softmax;
use burn::tensor::{ElementConversion, Int, Tensor, backend::Backend};

use crate::data::batches::Batch;

/// Mean cross-entropy of logits `[batch, classes]` against class indices.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    per_sample_cross_entropy(logits, labels).mean()
}

/// Cross-entropy of each sample `[batch]` (per-group losses average it by group).
pub fn per_sample_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .squeeze_dim::<1>(1)
        .neg()
}

/// Accuracy (in `[0, 1]`) of the classifier `logits` over `batches` (a slice, or batches
/// streamed as they are assembled, [`crate::data::stream`]).
pub fn accuracy<B: Backend, I>(batches: I, logits: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>) -> f64
where
    I: IntoIterator,
    I::Item: std::borrow::Borrow<Batch<B>>,
{
    let (mut correct, mut total) = (0i64, 0usize);
    for b in batches {
        let b: &Batch<B> = std::borrow::Borrow::borrow(&b);
        let pred = logits(b.images.clone()).argmax(1).squeeze_dim::<1>(1);
        let hits: i64 = pred
            .equal(b.labels.clone())
            .int()
            .sum()
            .into_scalar()
            .elem();
        correct += hits;
        total += b.labels.dims()[0];
    }
    correct as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = burn::backend::Flex;

    #[test]
    fn accuracy_counts_argmax_hits() {
        let device = Default::default();
        let images = Tensor::<B, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], [4, 2]),
            &device,
        );
        let labels = Tensor::from_data(TensorData::new(vec![0i64, 1, 1, 0], [4]), &device);
        let batch = Batch { images, labels };
        // The identity "network" predicts the larger coordinate: 2 of 4 labels agree.
        assert_eq!(accuracy(std::slice::from_ref(&batch), |x| x), 0.5);
        assert_eq!(accuracy(&[batch], |x| x.neg()), 0.5);
        assert_eq!(accuracy::<B, _>(&[] as &[Batch<B>], |x| x), 0.0);
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_classes() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::zeros([3, 4], &device);
        let labels = Tensor::from_data(TensorData::new(vec![0i64, 2, 3], [3]), &device);
        let per = per_sample_cross_entropy(logits.clone(), labels.clone()).into_data();
        for v in per.to_vec::<f32>().unwrap() {
            assert!((v - 4f32.ln()).abs() < 1e-6, "{v}");
        }
        let mean: f32 = cross_entropy(logits, labels).into_scalar().elem();
        assert!((mean - 4f32.ln()).abs() < 1e-6, "{mean}");
    }
}
