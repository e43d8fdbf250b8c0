//! Export of trained networks to exchange formats.
//!
//! [`mlp_to_safetensors`] and [`lenet5_to_safetensors`] write a network (e.g. a pruned one
//! with its gates folded) as safetensors in PyTorch's layout, so `torch`, `safetensors` or
//! any other reader loads it directly: a linear `weight` is `[out_features, in_features]` (burn
//! stores the transpose), a convolution `weight` is `[out, in, kh, kw]`, biases are
//! `[out]`, all `F32`.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use safetensors::{Dtype, tensor::TensorView};

use crate::lenet5::Lenet5;
use crate::mlp::Mlp;
use crate::resnet::Resnet;

/// Named little-endian `F32` tensors: `(name, shape, bytes)`.
type Entry = (String, Vec<usize>, Vec<u8>);

fn f32_bytes<B: Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<u8> {
    t.into_data().convert::<f32>().into_bytes().to_vec()
}

/// `name.weight` as PyTorch's `[out, in]` and `name.bias`.
fn linear_entries<B: Backend>(name: &str, layer: &burn::nn::Linear<B>, out: &mut Vec<Entry>) {
    let [d_in, d_out] = layer.weight.dims();
    out.push((
        format!("{name}.weight"),
        vec![d_out, d_in],
        f32_bytes(layer.weight.val().transpose()),
    ));
    if let Some(b) = &layer.bias {
        out.push((format!("{name}.bias"), vec![d_out], f32_bytes(b.val())));
    }
}

/// `name.weight` as `[out, in, kh, kw]` (burn and PyTorch agree) and `name.bias`.
fn conv_entries<B: Backend>(name: &str, layer: &burn::nn::conv::Conv2d<B>, out: &mut Vec<Entry>) {
    out.push((
        format!("{name}.weight"),
        layer.weight.dims().to_vec(),
        f32_bytes(layer.weight.val()),
    ));
    if let Some(b) = &layer.bias {
        out.push((
            format!("{name}.bias"),
            b.dims().to_vec(),
            f32_bytes(b.val()),
        ));
    }
}

fn serialize(
    entries: &[Entry],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let views = entries
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, None)?;
    Ok(with_sorted_metadata(bytes, &metadata))
}

/// `bytes` (a safetensors file without metadata) with `metadata` in its header, keys in
/// sorted order. The safetensors crate writes a `HashMap`'s keys in its random iteration
/// order, so the same model gave different bytes from run to run; a resumed run is
/// checked byte for byte against the uninterrupted one, and reproducible files are what
/// a user expects of a fixed seed.
fn with_sorted_metadata(bytes: Vec<u8>, metadata: &HashMap<String, String>) -> Vec<u8> {
    if metadata.is_empty() {
        return bytes;
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(len) as usize;
    let header = String::from_utf8_lossy(&bytes[8..8 + n]);
    let body = header.trim_end();
    let sorted: std::collections::BTreeMap<&String, &String> = metadata.iter().collect();
    let meta = serde_json::to_string(&sorted).expect("a map of strings serializes");
    let rest = &body[1..];
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let mut new_header = format!("{{\"__metadata__\":{meta}{sep}{rest}").into_bytes();
    // The data starts 8-byte aligned, as the crate writes it (spaces pad the header).
    while new_header.len() % 8 != 0 {
        new_header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + new_header.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(new_header.len() as u64).to_le_bytes());
    out.extend_from_slice(&new_header);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// The safetensors bytes of `mlp` (`layers.{i}.weight`, `layers.{i}.bias`); `metadata` goes
/// into the file's header.
pub fn mlp_to_safetensors<B: Backend>(
    mlp: &Mlp<B>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut entries = Vec::new();
    for (i, layer) in mlp.layers.iter().enumerate() {
        linear_entries(&format!("layers.{i}"), layer, &mut entries);
    }
    serialize(&entries, metadata)
}

/// The safetensors bytes of a LeNet-5 (`conv1`, `conv2`, `fc1`, `fc2`, each `.weight` and
/// `.bias`).
pub fn lenet5_to_safetensors<B: Backend>(
    net: &Lenet5<B>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut entries = Vec::new();
    conv_entries("conv1", &net.conv1, &mut entries);
    conv_entries("conv2", &net.conv2, &mut entries);
    linear_entries("fc1", &net.fc1, &mut entries);
    linear_entries("fc2", &net.fc2, &mut entries);
    serialize(&entries, metadata)
}

/// The safetensors bytes of a small ResNet (`stem`, `blocks.{i}.conv1`, `.conv2`,
/// `.shortcut` where present, `fc`; each `.weight` and `.bias`).
pub fn resnet_to_safetensors<B: Backend>(
    net: &Resnet<B>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut entries = Vec::new();
    conv_entries("stem", &net.stem, &mut entries);
    for (i, b) in net.blocks.iter().enumerate() {
        conv_entries(&format!("blocks.{i}.conv1"), &b.conv1, &mut entries);
        conv_entries(&format!("blocks.{i}.conv2"), &b.conv2, &mut entries);
        if let Some(s) = &b.shortcut {
            conv_entries(&format!("blocks.{i}.shortcut"), s, &mut entries);
        }
    }
    linear_entries("fc", &net.fc, &mut entries);
    serialize(&entries, metadata)
}

/// The safetensors bytes of an imported graph's layers with their gates folded in
/// (`layers.{i}.weight` in PyTorch's layout, `layers.{i}.bias`, in graph order).
pub fn graph_to_safetensors<B: Backend>(
    net: &crate::graph::GraphNet<B>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, l) in net.folded_layers().into_iter().enumerate() {
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        entries.push((
            format!("layers.{i}.weight"),
            l.dims.clone(),
            bytes(&l.weight),
        ));
        if let Some(b) = &l.bias {
            entries.push((format!("layers.{i}.bias"), vec![b.len()], bytes(b)));
        }
    }
    serialize(&entries, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::MlpConfig;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};
    use safetensors::SafeTensors;

    /// The same network and metadata give the same bytes every time (the metadata's keys
    /// sorted), and the file reads back with its metadata whole.
    #[test]
    fn the_bytes_are_reproducible_and_the_metadata_reads_back() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![5, 4, 3]).init::<Flex>(&device);
        let meta = || -> HashMap<String, String> {
            (0..20)
                .map(|i| (format!("key{i:02}"), format!("value \"{i}\"")))
                .collect()
        };
        let a = mlp_to_safetensors(&mlp, meta()).unwrap();
        for _ in 0..5 {
            assert!(a == mlp_to_safetensors(&mlp, meta()).unwrap());
        }
        let (n, header) = SafeTensors::read_metadata(&a).unwrap();
        assert_eq!(n % 8, 0, "the data starts 8-byte aligned");
        assert_eq!(header.metadata().as_ref().unwrap(), &meta());
        let text = String::from_utf8_lossy(&a[8..8 + n]);
        assert!(text.find("key00").unwrap() < text.find("key19").unwrap());
        let st = SafeTensors::deserialize(&a).unwrap();
        assert_eq!(st.tensor("layers.1.weight").unwrap().shape(), [3, 4]);
        // Without metadata the crate's own bytes are kept.
        let plain = mlp_to_safetensors(&mlp, HashMap::new()).unwrap();
        assert!(SafeTensors::deserialize(&plain).is_ok());
    }

    /// Reading the file back and applying PyTorch's `x W^T + b` by hand reproduces the
    /// network's output.
    #[test]
    fn round_trip_reproduces_the_forward_pass() {
        let device = Default::default();
        let mlp = MlpConfig::new(vec![5, 4, 3]).init::<Flex>(&device);
        let bytes =
            mlp_to_safetensors(&mlp, HashMap::from([("model".into(), "test".into())])).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let get = |n: &str| -> (Vec<usize>, Vec<f32>) {
            let t = st.tensor(n).unwrap();
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (t.shape().to_vec(), v)
        };
        let x = Tensor::<Flex, 2>::random([2, 5], Distribution::Normal(0.0, 1.0), &device);
        let mut h: Vec<Vec<f32>> = x
            .to_data()
            .into_vec::<f32>()
            .unwrap()
            .chunks(5)
            .map(<[f32]>::to_vec)
            .collect();
        for (i, relu) in [(0, true), (1, false)] {
            let (ws, w) = get(&format!("layers.{i}.weight"));
            let (_, b) = get(&format!("layers.{i}.bias"));
            let (out, inp) = (ws[0], ws[1]);
            h = h
                .iter()
                .map(|row| {
                    (0..out)
                        .map(|o| {
                            let v = b[o] + (0..inp).map(|k| w[o * inp + k] * row[k]).sum::<f32>();
                            if relu { v.max(0.0) } else { v }
                        })
                        .collect()
                })
                .collect();
        }
        let want = mlp.forward(x).into_data().into_vec::<f32>().unwrap();
        let got: Vec<f32> = h.concat();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
