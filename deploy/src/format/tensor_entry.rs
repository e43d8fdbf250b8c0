//! Reading one tensor-table entry: its kind, shape and data, every byte checked.

use super::bytes::{dims_at, u32_at};
use super::kind;
use super::layout::DATA_ALIGN;
use super::tensor::{Csr, Tensor, TensorData};
use crate::error::Error;

pub(super) fn read_tensor<'a>(
    bytes: &'a [u8],
    at: usize,
    index: usize,
    data_start: usize,
) -> Result<Tensor<'a>, Error> {
    let bad = |reason| Error::BadTensor { index, reason };
    let kind = bytes[at];
    let rank = bytes[at + 1] as usize;
    let dims = dims_at(bytes, at + 4, rank).ok_or(bad("bad rank or dimensions"))?;
    let nnz = u32_at(bytes, at + 20) as usize;
    let offset = u32_at(bytes, at + 24) as usize;
    let len = u32_at(bytes, at + 28) as usize;
    if !offset.is_multiple_of(DATA_ALIGN) || offset < data_start {
        return Err(bad("data offset not aligned or inside the tables"));
    }
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or(bad("data past the end of the file"))?;
    let raw = &bytes[offset..end];
    let numel = dims.numel();
    let data = match kind {
        kind::F32 => {
            if len != 4 * numel || nnz != 0 {
                return Err(bad("f32 data length does not match the shape"));
            }
            let v: &[f32] = bytemuck::try_cast_slice(raw).map_err(|_| bad("misaligned data"))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad("non-finite weight"));
            }
            TensorData::F32(v)
        }
        kind::F16 => {
            if len != 2 * numel || nnz != 0 {
                return Err(bad("f16 data length does not match the shape"));
            }
            let v: &[u16] = bytemuck::try_cast_slice(raw).map_err(|_| bad("misaligned data"))?;
            if v.iter().any(|&h| !half::f16::from_bits(h).is_finite()) {
                return Err(bad("non-finite weight"));
            }
            TensorData::F16(v)
        }
        kind::CSR => {
            let rows = dims.as_slice()[0];
            let cols = numel / rows;
            if rank < 2 || cols > u16::MAX as usize + 1 {
                return Err(bad("CSR needs rank >= 2 and at most 65536 columns"));
            }
            if nnz > numel {
                return Err(bad("more nonzeros than elements"));
            }
            let vals = 4 * nnz;
            let ptrs = 4 * (rows + 1);
            if len != vals + ptrs + 2 * nnz {
                return Err(bad("CSR data length does not match rows and nonzeros"));
            }
            let values: &[f32] =
                bytemuck::try_cast_slice(&raw[..vals]).map_err(|_| bad("misaligned data"))?;
            let row_ptr: &[u32] = bytemuck::try_cast_slice(&raw[vals..vals + ptrs])
                .map_err(|_| bad("misaligned data"))?;
            let col_idx: &[u16] = bytemuck::try_cast_slice(&raw[vals + ptrs..])
                .map_err(|_| bad("misaligned data"))?;
            if values.iter().any(|x| !x.is_finite()) {
                return Err(bad("non-finite weight"));
            }
            TensorData::Csr(Csr::new(rows, cols, row_ptr, col_idx, values).ok_or(bad(
                "CSR row pointers not monotonic from 0 to nnz, or a column index out of range",
            ))?)
        }
        _ => return Err(bad("unknown tensor kind")),
    };
    Ok(Tensor { dims, data })
}
