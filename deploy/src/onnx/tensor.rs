//! ONNX tensors: decoded by hand (every element type the ops read, from `raw_data` or the
//! typed fields, lengths checked against the shape) and encoded as little-endian
//! `raw_data`.

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use onnx_protobuf::TensorProto;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};

use super::error::OnnxError;

/// Most elements a tensor may hold (1 GiB of f32): a hostile header cannot make the
/// importer allocate without bound.
const MAX_ELEMENTS: usize = 1 << 28;

/// A decoded tensor: floating-point types as f32, integer and boolean types as i64.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxTensor {
    /// Shape (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: Values,
}

/// The elements of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// FLOAT, FLOAT16, BFLOAT16, DOUBLE (rounded to f32).
    F32(Vec<f32>),
    /// INT8..INT64, UINT8..UINT64, BOOL.
    I64(Vec<i64>),
}

impl OnnxTensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The elements as f32 (integers converted), for weights and constants.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Values::F32(v) => v.clone(),
            Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as integers, for shapes, axes and indices; `None` for a float tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Values::I64(v) => Some(v),
            Values::F32(_) => None,
        }
    }
}

fn chunks<const N: usize>(raw: &[u8], numel: usize, name: &str) -> Result<Vec<[u8; N]>, OnnxError> {
    if raw.len() != numel * N {
        return Err(OnnxError::malformed(format!(
            "tensor {name:?}: raw_data has {} bytes, its shape needs {}",
            raw.len(),
            numel * N
        )));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| c.try_into().expect("exact chunks"))
        .collect())
}

fn count<T>(v: &[T], numel: usize, field: &str, name: &str) -> Result<(), OnnxError> {
    if v.len() == numel {
        Ok(())
    } else {
        Err(OnnxError::malformed(format!(
            "tensor {name:?}: {field} has {} elements, its shape needs {numel}",
            v.len()
        )))
    }
}

/// Decodes a `TensorProto`, validating its shape and data length.
pub fn decode_tensor(t: &TensorProto) -> Result<OnnxTensor, OnnxError> {
    let name = t.name.as_str();
    if t.data_location.value() == DataLocation::EXTERNAL as i32 || !t.external_data.is_empty() {
        return Err(OnnxError::unsupported(format!(
            "tensor {name:?} keeps its data in an external file: import the model from its \
             path (`tether-deploy import MODEL.onnx`, `onnx::import_file`) so that the data \
             file beside it can be read"
        )));
    }
    if t.segment.is_some() {
        return Err(OnnxError::unsupported(format!(
            "tensor {name:?} is segmented"
        )));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut numel = 1usize;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| {
            OnnxError::malformed(format!("tensor {name:?} has a negative dimension {d}"))
        })?;
        numel = numel
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| OnnxError::unsupported(format!("tensor {name:?} is too large")))?;
        dims.push(d);
    }
    let raw = t.raw_data.as_slice();
    let has_raw = !raw.is_empty() || numel == 0;
    let dt = <DataType as protobuf::Enum>::from_i32(t.data_type);
    let data = match dt {
        Some(DataType::FLOAT) => Values::F32(if has_raw {
            chunks::<4>(raw, numel, name)?
                .into_iter()
                .map(f32::from_le_bytes)
                .collect()
        } else {
            count(&t.float_data, numel, "float_data", name)?;
            t.float_data.clone()
        }),
        Some(DataType::DOUBLE) => Values::F32(if has_raw {
            chunks::<8>(raw, numel, name)?
                .into_iter()
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect()
        } else {
            count(&t.double_data, numel, "double_data", name)?;
            t.double_data.iter().map(|&v| v as f32).collect()
        }),
        Some(DataType::FLOAT16 | DataType::BFLOAT16) => {
            let bits: Vec<u16> = if has_raw {
                chunks::<2>(raw, numel, name)?
                    .into_iter()
                    .map(u16::from_le_bytes)
                    .collect()
            } else {
                count(&t.int32_data, numel, "int32_data", name)?;
                t.int32_data.iter().map(|&v| v as u16).collect()
            };
            let bf = dt == Some(DataType::BFLOAT16);
            Values::F32(
                bits.into_iter()
                    .map(|b| {
                        if bf {
                            f32::from_bits((b as u32) << 16)
                        } else {
                            half::f16::from_bits(b).to_f32()
                        }
                    })
                    .collect(),
            )
        }
        Some(
            DataType::INT8
            | DataType::UINT8
            | DataType::INT16
            | DataType::UINT16
            | DataType::INT32
            | DataType::BOOL,
        ) => {
            let dt = dt.expect("matched");
            Values::I64(if has_raw {
                match dt {
                    DataType::INT8 => raw.iter().map(|&b| b as i8 as i64).collect(),
                    DataType::UINT8 | DataType::BOOL => raw.iter().map(|&b| b as i64).collect(),
                    DataType::INT16 => chunks::<2>(raw, numel, name)?
                        .into_iter()
                        .map(|b| i16::from_le_bytes(b) as i64)
                        .collect(),
                    DataType::UINT16 => chunks::<2>(raw, numel, name)?
                        .into_iter()
                        .map(|b| u16::from_le_bytes(b) as i64)
                        .collect(),
                    _ => chunks::<4>(raw, numel, name)?
                        .into_iter()
                        .map(|b| i32::from_le_bytes(b) as i64)
                        .collect(),
                }
            } else {
                count(&t.int32_data, numel, "int32_data", name)?;
                t.int32_data.iter().map(|&v| v as i64).collect()
            })
        }
        Some(DataType::INT64) => Values::I64(if has_raw {
            chunks::<8>(raw, numel, name)?
                .into_iter()
                .map(i64::from_le_bytes)
                .collect()
        } else {
            count(&t.int64_data, numel, "int64_data", name)?;
            t.int64_data.clone()
        }),
        Some(DataType::UINT32 | DataType::UINT64) => {
            let v: Vec<u64> = if has_raw {
                if dt == Some(DataType::UINT32) {
                    chunks::<4>(raw, numel, name)?
                        .into_iter()
                        .map(|b| u32::from_le_bytes(b) as u64)
                        .collect()
                } else {
                    chunks::<8>(raw, numel, name)?
                        .into_iter()
                        .map(u64::from_le_bytes)
                        .collect()
                }
            } else {
                count(&t.uint64_data, numel, "uint64_data", name)?;
                t.uint64_data.clone()
            };
            Values::I64(
                v.into_iter()
                    .map(|x| {
                        i64::try_from(x).map_err(|_| {
                            OnnxError::unsupported(format!("tensor {name:?}: value {x} over i64"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            return Err(OnnxError::unsupported(format!(
                "tensor {name:?} has element type {} ({})",
                t.data_type,
                dt.map_or("unknown".to_string(), |d| format!("{d:?}"))
            )));
        }
    };
    let n = match &data {
        Values::F32(v) => v.len(),
        Values::I64(v) => v.len(),
    };
    if n != numel {
        return Err(OnnxError::malformed(format!(
            "tensor {name:?}: {n} elements for a shape of {numel}"
        )));
    }
    Ok(OnnxTensor { dims, data })
}

/// An f32 tensor as a `TensorProto` with little-endian `raw_data`.
pub fn encode_f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = String::from(name);
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// An i64 tensor as a `TensorProto` (shapes, axes, sparse indices).
pub fn encode_i64(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = String::from(name);
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::INT64 as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn raw_and_typed_fields_decode_alike_and_lengths_are_checked() {
        let t = encode_f32("w", &[2, 2], &[1.0, -2.0, 3.5, 0.0]);
        let d = decode_tensor(&t).unwrap();
        assert_eq!(d.dims, [2, 2]);
        assert_eq!(d.data, Values::F32(vec![1.0, -2.0, 3.5, 0.0]));
        let mut typed = TensorProto::new();
        typed.dims = vec![2, 2];
        typed.data_type = DataType::FLOAT as i32;
        typed.float_data = vec![1.0, -2.0, 3.5, 0.0];
        assert_eq!(decode_tensor(&typed).unwrap(), d);
        // Half precision in raw bytes; int8 in raw bytes; int64 typed.
        let mut h = TensorProto::new();
        h.dims = vec![2];
        h.data_type = DataType::FLOAT16 as i32;
        h.raw_data = [half::f16::from_f32(1.5), half::f16::from_f32(-0.25)]
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        assert_eq!(decode_tensor(&h).unwrap().to_f32(), [1.5, -0.25]);
        let mut i8t = TensorProto::new();
        i8t.dims = vec![3];
        i8t.data_type = DataType::INT8 as i32;
        i8t.raw_data = vec![0xff, 0x01, 0x80];
        assert_eq!(
            decode_tensor(&i8t).unwrap().as_i64().unwrap(),
            [-1, 1, -128]
        );
        // A short raw_data, a negative dimension and an external file are errors.
        let mut short = t.clone();
        short.raw_data.pop();
        assert!(decode_tensor(&short).is_err());
        let mut neg = t.clone();
        neg.dims = vec![-1, 4];
        assert!(decode_tensor(&neg).is_err());
        let mut ext = t.clone();
        ext.data_location = DataLocation::EXTERNAL.into();
        assert!(decode_tensor(&ext).unwrap_err().unsupported);
    }
}
