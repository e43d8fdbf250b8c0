//! Constant folding: ops whose inputs are all constants are evaluated here, on the host,
//! at import. Exporters compute shapes in the graph (`Shape -> Gather -> Unsqueeze ->
//! Concat -> Reshape` for `x.view(x.size(0), -1)`); folded, such a subgraph leaves one
//! Reshape with a constant target.
//!
//! The batch axis is symbolic: `Shape` of a batched value gives [`BATCH`] for it. The
//! ops that only move shape elements (Gather, Slice, Unsqueeze, Squeeze, Concat, Reshape,
//! integer Cast) carry it; arithmetic or a comparison on it is refused (the result would
//! depend on the batch size), and Reshape reads it at position 0 as "keep the batch axis".

use std::format;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::importer::{Importer, Val, unsupported};
use crate::onnx::error::OnnxError;
use crate::onnx::tensor::{OnnxTensor, Values};

/// The symbolic batch size inside a folded integer tensor. No real extent or index is
/// this large, and any arithmetic on it is refused before it could be mistaken for one.
pub(super) const BATCH: i64 = -(1 << 62);

impl Importer {
    /// True when every input the node names is a constant.
    pub(super) fn all_const(&self, n: &NodeProto) -> bool {
        n.input
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| matches!(self.vals.get(s), Some(Val::Const(_))))
    }

    /// Input `i` as a constant, if it is given and constant.
    pub(super) fn const_input(&self, n: &NodeProto, i: usize) -> Option<&OnnxTensor> {
        match n
            .input
            .get(i)
            .filter(|s| !s.is_empty())
            .map(|s| self.vals.get(s))
        {
            Some(Some(Val::Const(t))) => Some(t),
            _ => None,
        }
    }

    /// Output 0 of the node is the constant `t`.
    pub(super) fn set_const(&mut self, n: &NodeProto, t: OnnxTensor) {
        self.vals.insert(n.output[0].clone(), Val::Const(t));
    }
}

/// True when the tensor holds the symbolic batch size.
pub(super) fn has_batch(t: &OnnxTensor) -> bool {
    t.as_i64().is_some_and(|v| v.contains(&BATCH))
}

/// Refuses arithmetic that would compute with the symbolic batch size.
pub(super) fn no_batch(ts: &[&OnnxTensor], op: &str) -> Result<(), OnnxError> {
    if ts.iter().any(|t| has_batch(t)) {
        return unsupported(format!(
            "{op} on the symbolic batch size (the result would depend on the batch)"
        ));
    }
    Ok(())
}

/// Numpy's broadcast of shapes of any rank.
pub(super) fn broadcast_any(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// For each element of `out` (row-major), the index of the element of `dims` that
/// broadcasts to it.
pub(super) fn broadcast_index(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let off = out.len() - dims.len();
    let mut strides = vec![0usize; out.len()];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        strides[off + i] = if dims[i] == 1 { 0 } else { acc };
        acc *= dims[i];
    }
    let mut idx = Vec::with_capacity(total);
    let mut pos = vec![0usize; out.len()];
    for _ in 0..total {
        idx.push(pos.iter().zip(&strides).map(|(p, s)| p * s).sum());
        for a in (0..out.len()).rev() {
            pos[a] += 1;
            if pos[a] < out[a] {
                break;
            }
            pos[a] = 0;
        }
    }
    idx
}

/// An element-wise function of constants, broadcasting: integer when every input is
/// integer (`int`), else f32 (`float`).
pub(super) fn map_const(
    ts: &[&OnnxTensor],
    op: &str,
    int: impl Fn(&[i64]) -> Result<i64, OnnxError>,
    float: impl Fn(&[f32]) -> f32,
) -> Result<OnnxTensor, OnnxError> {
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.dims.as_slice()).collect();
    let dims = broadcast_any(&shapes)
        .ok_or_else(|| OnnxError::malformed(format!("{op}: shapes {shapes:?} do not broadcast")))?;
    let idx: Vec<Vec<usize>> = ts.iter().map(|t| broadcast_index(&t.dims, &dims)).collect();
    let total: usize = dims.iter().product();
    let data = if ts.iter().all(|t| t.as_i64().is_some()) {
        let vs: Vec<&[i64]> = ts.iter().map(|t| t.as_i64().expect("integer")).collect();
        let mut out = Vec::with_capacity(total);
        let mut args = vec![0i64; ts.len()];
        for e in 0..total {
            for (k, a) in args.iter_mut().enumerate() {
                *a = vs[k][idx[k][e]];
            }
            out.push(int(&args)?);
        }
        Values::I64(out)
    } else {
        let vs: Vec<Vec<f32>> = ts.iter().map(|t| t.to_f32()).collect();
        let mut args = vec![0f32; ts.len()];
        Values::F32(
            (0..total)
                .map(|e| {
                    for (k, a) in args.iter_mut().enumerate() {
                        *a = vs[k][idx[k][e]];
                    }
                    float(&args)
                })
                .collect(),
        )
    };
    Ok(OnnxTensor { dims, data })
}

/// Elements of `t` along `axis` at `indices` (numpy `take`), negative indices from the
/// end.
pub(super) fn take(
    t: &OnnxTensor,
    axis: usize,
    indices: &OnnxTensor,
) -> Result<OnnxTensor, OnnxError> {
    let ix = indices
        .as_i64()
        .ok_or_else(|| OnnxError::malformed("Gather indices are not integers"))?;
    let n = t.dims[axis];
    let outer: usize = t.dims[..axis].iter().product();
    let inner: usize = t.dims[axis + 1..].iter().product();
    let resolved: Vec<usize> = ix
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            usize::try_from(j).ok().filter(|&j| j < n).ok_or_else(|| {
                OnnxError::malformed(format!("Gather index {i} out of range for {n}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut dims = t.dims[..axis].to_vec();
    dims.extend_from_slice(&indices.dims);
    dims.extend_from_slice(&t.dims[axis + 1..]);
    let mut at = Vec::with_capacity(outer * resolved.len() * inner);
    for o in 0..outer {
        for &j in &resolved {
            at.extend((0..inner).map(|i| (o * n + j) * inner + i));
        }
    }
    let data = match &t.data {
        Values::I64(v) => Values::I64(at.iter().map(|&k| v[k]).collect()),
        Values::F32(v) => Values::F32(at.iter().map(|&k| v[k]).collect()),
    };
    Ok(OnnxTensor { dims, data })
}
