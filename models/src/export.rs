//! Export of trained networks to exchange formats.
//!
//! [`mlp_to_safetensors`] writes an [`Mlp`] (e.g. a pruned network with its gates folded)
//! as safetensors with PyTorch's `nn.Linear` conventions, so `torch`, `safetensors` or any
//! other reader loads it directly: `layers.{i}.weight` is `[out_features, in_features]`
//! (burn stores the transpose) and `layers.{i}.bias` is `[out_features]`, both `F32`.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use safetensors::{Dtype, tensor::TensorView};

use crate::mlp::Mlp;

/// The safetensors bytes of `mlp`; `metadata` goes into the file's header.
pub fn mlp_to_safetensors<B: Backend>(
    mlp: &Mlp<B>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, layer) in mlp.layers.iter().enumerate() {
        let [d_in, d_out] = layer.weight.dims();
        let w = layer.weight.val().transpose().into_data().convert::<f32>();
        buffers.push((
            format!("layers.{i}.weight"),
            vec![d_out, d_in],
            w.into_bytes().to_vec(),
        ));
        if let Some(b) = &layer.bias {
            let b = b.val().into_data().convert::<f32>();
            buffers.push((
                format!("layers.{i}.bias"),
                vec![d_out],
                b.into_bytes().to_vec(),
            ));
        }
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize(views, Some(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::MlpConfig;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};
    use safetensors::SafeTensors;

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
