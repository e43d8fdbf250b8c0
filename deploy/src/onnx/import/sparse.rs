//! Sparse initializers (`SparseTensorProto`), densified: the runtime's writer picks its
//! own storage (dense or CSR) from the measured sparsity.

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use super::external::ExternalData;
use super::importer::{decode, malformed};
use crate::onnx::error::OnnxError;
use crate::onnx::tensor::{OnnxTensor, Values};

/// A `SparseTensorProto` as a dense tensor: values `[nnz]` at indices given either as
/// linear offsets `[nnz]` or coordinates `[nnz, rank]`, each checked in range.
pub(super) fn decode_sparse(
    s: &onnx_protobuf::SparseTensorProto,
    mut ext: Option<&mut ExternalData>,
) -> Result<(String, OnnxTensor), OnnxError> {
    let values = decode(
        s.values
            .as_ref()
            .ok_or_else(|| OnnxError::malformed("sparse initializer without values"))?,
        ext.as_deref_mut(),
    )?;
    let name = s
        .values
        .as_ref()
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let idx = decode(
        s.indices.as_ref().ok_or_else(|| {
            OnnxError::malformed(format!("sparse initializer {name:?} without indices"))
        })?,
        ext,
    )?;
    let shape: Vec<usize> = s
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            OnnxError::malformed(format!("sparse initializer {name:?}: negative dimension"))
        })?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 28)
        .ok_or_else(|| {
            OnnxError::unsupported(format!("sparse initializer {name:?} is too large"))
        })?;
    let vals = values.to_f32();
    let ix = idx.as_i64().ok_or_else(|| {
        OnnxError::malformed(format!("sparse initializer {name:?}: float indices"))
    })?;
    let nnz = vals.len();
    let linear: Vec<i64> = if idx.dims.len() == 1 && ix.len() == nnz {
        ix.to_vec()
    } else if idx.dims == [nnz, shape.len()] {
        if ix.chunks_exact(shape.len().max(1)).any(|c| {
            c.iter()
                .zip(&shape)
                .any(|(&i, &d)| i < 0 || i as usize >= d)
        }) {
            return malformed(format!("sparse initializer {name:?}: index out of range"));
        }
        ix.chunks_exact(shape.len().max(1))
            .map(|c| {
                c.iter()
                    .zip(&shape)
                    .fold(0i64, |a, (&i, &d)| a * d as i64 + i)
            })
            .collect()
    } else {
        return malformed(format!(
            "sparse initializer {name:?}: indices of shape {:?}",
            idx.dims
        ));
    };
    let mut dense = vec![0.0f32; numel];
    for (&i, &v) in linear.iter().zip(&vals) {
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < numel)
            .ok_or_else(|| {
                OnnxError::malformed(format!(
                    "sparse initializer {name:?}: index {i} out of range"
                ))
            })?;
        dense[i] = v;
    }
    Ok((
        name,
        OnnxTensor {
            dims: shape,
            data: Values::F32(dense),
        },
    ))
}
