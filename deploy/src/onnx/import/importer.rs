//! The importer's state while it lowers a graph ([`Importer`]: the runtime graph being
//! built and every ONNX value seen so far, constant or computed) and the helpers every op
//! family's lowering shares. Kept apart from the driver (`mod.rs`) so that the op modules
//! import from here and nothing here imports from them (no cycle between files).

use std::collections::HashMap;
use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use onnx_protobuf::{NodeProto, TensorProto};

use super::external::{self, ExternalData};
use crate::format::{Dims, MAX_RANK};
use crate::onnx::error::OnnxError;
use crate::onnx::tensor::{OnnxTensor, decode_tensor};
use crate::write::{ModelBuilder, OpSpec, ValueId};

/// A value during translation: a constant (initializer or folded), or a runtime value
/// with its per-sample shape.
#[derive(Clone, Debug)]
pub(super) enum Val {
    Const(OnnxTensor),
    Run {
        id: ValueId,
        dims: Vec<usize>,
        batched: bool,
    },
}

pub(super) struct Importer {
    pub(super) b: ModelBuilder,
    pub(super) vals: HashMap<String, Val>,
    /// Constants already added to the runtime graph as values.
    pub(super) materialized: HashMap<String, (ValueId, Vec<usize>)>,
    pub(super) batch_mode: bool,
    /// The fixed size of a leading axis imported as the batch axis ([`BatchAxis::Leading`]).
    pub(super) batch_hint: Option<usize>,
    pub(super) opset: i64,
    /// Where tensors kept outside the model are read from.
    pub(super) ext: Option<ExternalData>,
}

/// Decodes a tensor, reading its data through `ext` when it is stored externally.
pub(super) fn decode(
    t: &TensorProto,
    ext: Option<&mut ExternalData>,
) -> Result<OnnxTensor, OnnxError> {
    match ext {
        Some(e) if external::is_external(t) => decode_tensor(&e.resolve(t)?),
        _ => decode_tensor(t),
    }
}

pub(super) fn unsupported<T>(msg: impl Into<String>) -> Result<T, OnnxError> {
    Err(OnnxError::unsupported(msg))
}

pub(super) fn malformed<T>(msg: impl Into<String>) -> Result<T, OnnxError> {
    Err(OnnxError::malformed(msg))
}

pub(super) fn axis(a: i64, rank: usize) -> Result<usize, OnnxError> {
    let r = rank as i64;
    if a < -r || a >= r {
        return malformed(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

pub(super) fn dims(d: &[usize]) -> Result<Dims, OnnxError> {
    let d = if d.is_empty() { &[1][..] } else { d };
    if d.iter().any(|&x| u32::try_from(x).is_err()) {
        return unsupported(format!(
            "shape {d:?}: the tether format holds dimensions up to {}",
            u32::MAX
        ));
    }
    Dims::new(d).ok_or_else(|| {
        OnnxError::unsupported(format!(
            "shape {d:?} (the runtime holds rank 1 to {MAX_RANK}, no empty axis)"
        ))
    })
}

/// `v` (`[rows, cols]`) transposed.
pub(super) fn transpose2(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    crate::kernels::sparse::transpose(v, rows, cols, &mut t);
    t
}

impl Importer {
    /// The ONNX shape of a value: the batch axis in front of a batched value's per-sample
    /// shape (1 stands for the symbolic batch).
    pub(super) fn full_shape(&self, d: &[usize], batched: bool) -> Vec<usize> {
        if self.batch_mode && batched {
            let mut f = vec![1];
            f.extend_from_slice(d);
            f
        } else {
            d.to_vec()
        }
    }

    pub(super) fn get(&self, n: &NodeProto, i: usize) -> Result<Option<&Val>, OnnxError> {
        match n.input.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => self
                .vals
                .get(name)
                .map(Some)
                .ok_or_else(|| OnnxError::malformed(format!("input {name:?} is undefined"))),
        }
    }

    pub(super) fn input(&self, n: &NodeProto, i: usize) -> Result<&Val, OnnxError> {
        self.get(n, i)?
            .ok_or_else(|| OnnxError::malformed(format!("input {i} is missing")))
    }

    pub(super) fn constant(
        &self,
        n: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<OnnxTensor>, OnnxError> {
        match self.get(n, i)? {
            None => Ok(None),
            Some(Val::Const(t)) => Ok(Some(t.clone())),
            Some(Val::Run { .. }) => unsupported(format!(
                "{what} (input {i}) must be a constant (an initializer)"
            )),
        }
    }

    /// A runtime operand: a runtime value, or a constant added to the graph once.
    pub(super) fn operand(
        &mut self,
        n: &NodeProto,
        i: usize,
    ) -> Result<(ValueId, Vec<usize>, bool), OnnxError> {
        let name = n.input[i].clone();
        match self.input(n, i)?.clone() {
            Val::Run { id, dims, batched } => Ok((id, dims, batched)),
            Val::Const(t) => {
                if let Some((id, d)) = self.materialized.get(&name) {
                    return Ok((*id, d.clone(), false));
                }
                let d = dims(&t.dims)?.as_slice().to_vec();
                let tid = self.b.dense(&d, &t.to_f32());
                let id = self.b.op(OpSpec::Const(tid), &[]);
                self.materialized.insert(name, (id, d.clone()));
                Ok((id, d, false))
            }
        }
    }

    pub(super) fn set(
        &mut self,
        n: &NodeProto,
        k: usize,
        id: ValueId,
        d: Vec<usize>,
        batched: bool,
    ) {
        if let Some(name) = n.output.get(k).filter(|s| !s.is_empty()) {
            self.vals.insert(
                name.clone(),
                Val::Run {
                    id,
                    dims: d,
                    batched,
                },
            );
        }
    }

    /// A per-sample axis from an ONNX axis of a value of per-sample rank `rank`.
    pub(super) fn sample_axis(
        &self,
        a: i64,
        rank: usize,
        batched: bool,
    ) -> Result<usize, OnnxError> {
        if self.batch_mode && batched {
            let a = axis(a, rank + 1)?;
            if a == 0 {
                return unsupported("an op along the batch axis");
            }
            Ok(a - 1)
        } else {
            axis(a, rank)
        }
    }

    /// In batch mode, a constant that spans the batch axis (ONNX rank above the other
    /// operand's per-sample rank) must be 1 there; it is then reshaped to drop that axis.
    pub(super) fn align(
        &mut self,
        v: ValueId,
        d: &mut Vec<usize>,
        batched: bool,
        other_batched: bool,
        other: &[usize],
    ) -> Result<ValueId, OnnxError> {
        if !self.batch_mode || batched || !other_batched || d.len() <= other.len() {
            if self.batch_mode && batched && other_batched && d.len() != other.len() {
                return unsupported(
                    "two batched operands of different ranks (their broadcast mixes the batch axis)",
                );
            }
            return Ok(v);
        }
        if d.len() == other.len() + 1 && d[0] == 1 {
            d.remove(0);
            let nd = dims(d)?;
            return Ok(self.b.op(OpSpec::Reshape(nd), &[v]));
        }
        unsupported("a constant operand that spans the batch axis")
    }
}
