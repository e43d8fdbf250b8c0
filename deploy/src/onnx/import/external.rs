//! Tensors stored outside the model file (ONNX "external data"): `torch.onnx.export`
//! writes a model's weights into `model.onnx.data` beside `model.onnx` and references them
//! by `location`, `offset` and `length`. The ONNX spec makes `location` a path relative to
//! the model's directory; like onnxruntime, an absolute path or one that leaves that
//! directory is refused (a hostile model must not read arbitrary files).

use std::collections::HashMap;
use std::format;
use std::path::{Component, Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use onnx_protobuf::TensorProto;
use onnx_protobuf::tensor_proto::DataLocation;

use crate::onnx::error::OnnxError;

/// Reads external tensor data from files in one directory, each file read once.
#[derive(Debug)]
pub struct ExternalData {
    dir: PathBuf,
    files: HashMap<String, Vec<u8>>,
}

/// True when the tensor's data is stored outside the model.
pub(super) fn is_external(t: &TensorProto) -> bool {
    t.data_location.value() == DataLocation::EXTERNAL as i32 || !t.external_data.is_empty()
}

impl ExternalData {
    /// External data relative to `dir` (the model file's directory).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
        }
    }

    /// The tensor with its data read into `raw_data` (location, offset and length checked
    /// against the file).
    pub(super) fn resolve(&mut self, t: &TensorProto) -> Result<TensorProto, OnnxError> {
        let name = t.name.as_str();
        let bad = |what: String| OnnxError::malformed(format!("tensor {name:?}: {what}"));
        let (mut location, mut offset, mut length) = (None, 0u64, None);
        for kv in &t.external_data {
            let parse = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("external data {} {v:?} is not a number", kv.key)))
            };
            match kv.key.as_str() {
                "location" => location = Some(kv.value.as_str()),
                "offset" => offset = parse(&kv.value)?,
                "length" => length = Some(parse(&kv.value)?),
                // A SHA-1 of the bytes, optional: the lengths are checked, not the hash.
                "checksum" => {}
                other => return Err(bad(format!("unknown external data key {other:?}"))),
            }
        }
        let location = location.ok_or_else(|| bad("external data without a location".into()))?;
        let rel = Path::new(location);
        if location.is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(bad(format!(
                "external data location {location:?} must be a path inside the model's \
                 directory"
            )));
        }
        if !self.files.contains_key(location) {
            let path = self.dir.join(rel);
            let bytes = std::fs::read(&path).map_err(|e| {
                bad(format!(
                    "cannot read its external data file {}: {e}",
                    path.display()
                ))
            })?;
            self.files.insert(location.into(), bytes);
        }
        let file = &self.files[location];
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = match length {
            Some(l) => start.checked_add(usize::try_from(l).unwrap_or(usize::MAX)),
            None => Some(file.len()),
        };
        let bytes = end
            .filter(|&e| start <= e && e <= file.len())
            .map(|e| &file[start..e])
            .ok_or_else(|| {
                bad(format!(
                    "external data at offset {offset} length {length:?} lies outside {location:?} \
                     ({} bytes)",
                    file.len()
                ))
            })?;
        let mut out = t.clone();
        out.external_data.clear();
        out.data_location = DataLocation::DEFAULT.into();
        out.raw_data = bytes.to_vec();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_protobuf::StringStringEntryProto;
    use std::string::ToString;
    use std::vec;

    fn ext_tensor(location: &str, offset: u64, length: u64) -> TensorProto {
        let mut t = TensorProto::new();
        t.name = "w".into();
        t.dims = vec![2];
        t.data_type = 1;
        t.data_location = DataLocation::EXTERNAL.into();
        for (k, v) in [
            ("location", location.to_string()),
            ("offset", offset.to_string()),
            ("length", length.to_string()),
        ] {
            let mut e = StringStringEntryProto::new();
            e.key = k.into();
            e.value = v;
            t.external_data.push(e);
        }
        t
    }

    #[test]
    fn reads_the_slice_and_refuses_escapes_and_overruns() {
        let dir = std::env::temp_dir().join(format!("tether-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 4];
        data.extend(1.5f32.to_le_bytes());
        data.extend((-2.0f32).to_le_bytes());
        std::fs::write(dir.join("m.onnx.data"), &data).unwrap();
        let mut ext = ExternalData::new(&dir);
        let t = ext.resolve(&ext_tensor("m.onnx.data", 4, 8)).unwrap();
        let d = crate::onnx::decode_tensor(&t).unwrap();
        assert_eq!(d.to_f32(), vec![1.5, -2.0]);
        for bad in ["../m.onnx.data", "/etc/passwd", ""] {
            let e = ext.resolve(&ext_tensor(bad, 0, 8)).unwrap_err();
            assert!(
                e.to_string().contains("inside the model's directory"),
                "{e}"
            );
        }
        let e = ext.resolve(&ext_tensor("m.onnx.data", 8, 8)).unwrap_err();
        assert!(e.to_string().contains("lies outside"), "{e}");
        let e = ext.resolve(&ext_tensor("missing.data", 0, 8)).unwrap_err();
        assert!(e.to_string().contains("missing.data"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
