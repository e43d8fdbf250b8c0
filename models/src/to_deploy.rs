//! Export of trained (pruned, gates folded) networks to `tether-deploy`'s model format.
//!
//! Weights go in PyTorch's layout (a linear weight `[out, in]`, burn stores the transpose; a
//! convolution `[out, in, kh, kw]`). Each weight is stored in whichever encoding is smaller:
//! CSR (6 bytes a nonzero plus 4 a row) or dense f32 (4 bytes a weight), unless
//! [`Storage`] forces one. The runtime picks its kernels by density, independently.

use burn::tensor::{Tensor, backend::Backend};
use tether_deploy::{ModelBuilder, OpSpec, TensorId, ValueId};

use crate::lenet5::Lenet5;
use crate::mlp::Mlp;
use crate::resnet::Resnet;

/// How weight matrices are encoded in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// The smaller of CSR and dense, per tensor.
    #[default]
    Smallest,
    /// Dense f32 everywhere.
    Dense,
    /// CSR everywhere.
    Csr,
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data converts to f32")
}

fn weight(b: &mut ModelBuilder, dims: &[usize], v: &[f32], storage: Storage) -> TensorId {
    match storage {
        Storage::Smallest => b.smallest(dims, v),
        Storage::Dense => b.dense(dims, v),
        Storage::Csr => b.csr(dims, v),
    }
}

fn linear<B: Backend>(
    b: &mut ModelBuilder,
    layer: &burn::nn::Linear<B>,
    x: ValueId,
    storage: Storage,
) -> ValueId {
    let [d_in, d_out] = layer.weight.dims();
    let w = weight(
        b,
        &[d_out, d_in],
        &values(layer.weight.val().transpose()),
        storage,
    );
    let bias = layer
        .bias
        .as_ref()
        .map(|bias| b.dense(&[d_out], &values(bias.val())));
    b.op(OpSpec::Linear { weight: w, bias }, &[x])
}

fn conv<B: Backend>(
    b: &mut ModelBuilder,
    layer: &burn::nn::conv::Conv2d<B>,
    x: ValueId,
    storage: Storage,
) -> Result<ValueId, tether_deploy::Error> {
    use burn::nn::PaddingConfig2d;
    let padding = match layer.padding {
        PaddingConfig2d::Valid => 0,
        PaddingConfig2d::Explicit(t, l, bo, r) if t == l && l == bo && bo == r => t,
        _ => {
            return Err(tether_deploy::Error::BadOptions(
                "only symmetric explicit or no padding exports",
            ));
        }
    };
    if layer.stride[0] != layer.stride[1] || layer.dilation != [1, 1] || layer.groups != 1 {
        return Err(tether_deploy::Error::BadOptions(
            "only square strides, no dilation and one group export",
        ));
    }
    let dims = layer.weight.dims();
    let w = weight(b, &dims, &values(layer.weight.val()), storage);
    let bias = layer
        .bias
        .as_ref()
        .map(|bias| b.dense(&[dims[0]], &values(bias.val())));
    Ok(b.op(
        OpSpec::Conv2d {
            weight: w,
            bias,
            stride: layer.stride[0] as u32,
            padding: padding as u32,
        },
        &[x],
    ))
}

/// The model bytes of `mlp` (input `[widths[0]]`, output logits).
pub fn mlp_to_deploy<B: Backend>(
    mlp: &Mlp<B>,
    storage: Storage,
) -> Result<Vec<u8>, tether_deploy::Error> {
    let [d_in, _] = mlp.layers[0].weight.dims();
    let mut b = ModelBuilder::new(&[d_in]);
    let mut x = b.input();
    let last = mlp.layers.len() - 1;
    for (i, layer) in mlp.layers.iter().enumerate() {
        x = linear(&mut b, layer, x, storage);
        if i < last {
            x = b.op(OpSpec::Relu, &[x]);
        }
    }
    b.finish(x)
}

/// The model bytes of LeNet-5 (input `[1, 28, 28]`, i.e. the flattened 784 pixels in
/// row-major order; output logits).
pub fn lenet5_to_deploy<B: Backend>(
    net: &Lenet5<B>,
    storage: Storage,
) -> Result<Vec<u8>, tether_deploy::Error> {
    let mut b = ModelBuilder::new(&[1, 28, 28]);
    let pool = OpSpec::MaxPool2d {
        kernel: 2,
        stride: 2,
    };
    let mut x = b.input();
    x = conv(&mut b, &net.conv1, x, storage)?;
    x = b.op(OpSpec::Relu, &[x]);
    x = b.op(pool, &[x]);
    x = conv(&mut b, &net.conv2, x, storage)?;
    x = b.op(OpSpec::Relu, &[x]);
    x = b.op(pool, &[x]);
    x = b.op(OpSpec::Flatten, &[x]);
    x = linear(&mut b, &net.fc1, x, storage);
    x = b.op(OpSpec::Relu, &[x]);
    x = linear(&mut b, &net.fc2, x, storage);
    b.finish(x)
}

/// The model bytes of a small ResNet (input `[1, 28, 28]`; output logits).
pub fn resnet_to_deploy<B: Backend>(
    net: &Resnet<B>,
    storage: Storage,
) -> Result<Vec<u8>, tether_deploy::Error> {
    let mut b = ModelBuilder::new(&[1, 28, 28]);
    let mut x = b.input();
    x = conv(&mut b, &net.stem, x, storage)?;
    x = b.op(OpSpec::Relu, &[x]);
    for block in &net.blocks {
        let mut h = conv(&mut b, &block.conv1, x, storage)?;
        h = b.op(OpSpec::Relu, &[h]);
        h = conv(&mut b, &block.conv2, h, storage)?;
        let skip = match &block.shortcut {
            Some(s) => conv(&mut b, s, x, storage)?,
            None => x,
        };
        x = b.op(OpSpec::Add, &[h, skip]);
        x = b.op(OpSpec::Relu, &[x]);
    }
    let side = 7;
    x = b.op(
        OpSpec::AvgPool2d {
            kernel: side,
            stride: side,
        },
        &[x],
    );
    x = b.op(OpSpec::Flatten, &[x]);
    x = linear(&mut b, &net.fc, x, storage);
    b.finish(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lenet5::Lenet5Config;
    use crate::mlp::MlpConfig;
    use crate::resnet::ResnetConfig;
    use burn::backend::Flex;
    use burn::tensor::Distribution;
    use tether_deploy::{AlignedBytes, KernelChoice, Model, Plan, PlanOptions};

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Prunes `t` by zeroing entries below the magnitude quantile `q`.
    fn prune<const D: usize>(t: Tensor<Flex, D>, q: f32) -> Tensor<Flex, D> {
        let mut v = values(t.clone());
        let mut mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
        mags.sort_by(f32::total_cmp);
        let cut = mags[(q * (mags.len() - 1) as f32) as usize];
        v.iter_mut()
            .filter(|x| x.abs() < cut)
            .for_each(|x| *x = 0.0);
        Tensor::from_data(burn::tensor::TensorData::new(v, t.dims()), &t.device())
    }

    #[test]
    fn deploy_matches_burn_for_mlp_lenet5_and_resnet_in_every_storage_and_kernel() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([5, 784], Distribution::Normal(0.0, 1.0), &device);
        let mut mlp = MlpConfig::new(vec![784, 300, 100, 10]).init::<Flex>(&device);
        for l in mlp.layers.iter_mut() {
            l.weight = l.weight.clone().map(|w| prune(w, 0.9));
        }
        let mut lenet = Lenet5Config::new().init::<Flex>(&device);
        lenet.conv2.weight = lenet.conv2.weight.clone().map(|w| prune(w, 0.8));
        lenet.fc1.weight = lenet.fc1.weight.clone().map(|w| prune(w, 0.95));
        let mut resnet = ResnetConfig::new().init::<Flex>(&device);
        for b in resnet.blocks.iter_mut() {
            b.conv2.weight = b.conv2.weight.clone().map(|w| prune(w, 0.9));
        }
        let cases = [
            (
                values(mlp.forward(x.clone())),
                [Storage::Smallest, Storage::Dense, Storage::Csr]
                    .map(|s| mlp_to_deploy(&mlp, s).unwrap()),
            ),
            (
                values(lenet.forward(x.clone())),
                [Storage::Smallest, Storage::Dense, Storage::Csr]
                    .map(|s| lenet5_to_deploy(&lenet, s).unwrap()),
            ),
            (
                values(resnet.forward(x.clone())),
                [Storage::Smallest, Storage::Dense, Storage::Csr]
                    .map(|s| resnet_to_deploy(&resnet, s).unwrap()),
            ),
        ];
        let input = values(x);
        for (expected, files) in &cases {
            for bytes in files {
                for kernels in [
                    KernelChoice::Auto,
                    KernelChoice::Dense,
                    KernelChoice::Sparse,
                ] {
                    for batch in [1, 5] {
                        let bytes = AlignedBytes::from_slice(bytes);
                        let opts = PlanOptions {
                            batch,
                            kernels,
                            ..Default::default()
                        };
                        let mut plan = Plan::new(Model::parse(&bytes).unwrap(), &opts).unwrap();
                        let mut got = Vec::new();
                        for chunk in input.chunks(784 * batch) {
                            got.extend_from_slice(plan.run(chunk).unwrap());
                        }
                        let d = max_diff(&got, expected);
                        assert!(d < 1e-4, "{kernels:?} batch {batch}: {d}");
                    }
                }
            }
        }
        // The pruned MLP is smaller as CSR.
        let [smallest, dense, _] = &cases[0].1;
        assert!(smallest.len() < dense.len() / 2);
    }
}
