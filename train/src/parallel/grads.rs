//! The gradients of a step as one flat buffer: every parameter's gradient (zeros where
//! it has none) in the model's visiting order, then one presence flag per parameter, so
//! every rank's buffer has the same length and layout and one all-reduce carries all.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use super::{DataParallel, to_host};
use crate::constrained::ConstrainedError;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// Takes every parameter's gradient out of `grads`, flattened.
struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<Inner<B>, 1>>,
    present: Vec<f32>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let numel = param.shape().num_elements();
        let part = match self.grads.remove::<Inner<B>, D>(param.id) {
            Some(g) => {
                self.present.push(1.0);
                g.reshape([numel])
            }
            None => {
                self.present.push(0.0);
                Tensor::zeros([numel], &param.device())
            }
        };
        self.parts.push(part);
    }
}

/// Puts the reduced gradients back, for the parameters that had one everywhere.
struct Unflatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<Inner<B>, 1>,
    present: &'a [f32],
    ranks: f32,
    at: usize,
    index: usize,
    mismatch: Option<ParamId>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let shape = param.shape();
        let numel = shape.num_elements();
        let seen = self.present[self.index];
        self.index += 1;
        let at = self.at;
        self.at += numel;
        if seen == 0.0 {
            return;
        }
        if seen != self.ranks {
            self.mismatch.get_or_insert(param.id);
            return;
        }
        let g = self.flat.clone().narrow(0, at, numel).reshape(shape);
        self.grads.register::<Inner<B>, D>(param.id, g);
    }
}

/// [`DataParallel::reduce_grads`].
pub(super) fn all_reduce<B: AutodiffBackend, M: AutodiffModule<B>>(
    parallel: &DataParallel,
    mut grads: GradientsParams,
    model: &M,
) -> Result<GradientsParams, ConstrainedError> {
    let mut flatten = Flatten::<B> {
        grads: &mut grads,
        parts: Vec::new(),
        present: Vec::new(),
    };
    model.visit(&mut flatten);
    let Flatten { parts, present, .. } = flatten;
    let Some(device) = parts.first().map(Tensor::device) else {
        return Ok(grads);
    };
    // Weighted on the device, read once: the gradients, then the flags (unweighted).
    let values = Tensor::cat(parts, 0).mul_scalar(parallel.weight);
    let n = values.dims()[0];
    let mut host = to_host(values);
    host.extend_from_slice(&present);
    parallel.sum(&mut host)?;
    let flat = Tensor::<Inner<B>, 1>::from_data(TensorData::new(host[..n].to_vec(), [n]), &device);
    let mut unflatten = Unflatten::<B> {
        grads: &mut grads,
        flat,
        present: &host[n..],
        ranks: parallel.collective.size() as f32,
        at: 0,
        index: 0,
        mismatch: None,
    };
    model.visit(&mut unflatten);
    if let Some(id) = unflatten.mismatch {
        return Err(ConstrainedError::Optimizer(format!(
            "parameter {id} has a gradient on some ranks and not on others: the ranks \
             do not train the same graph"
        )));
    }
    Ok(grads)
}
