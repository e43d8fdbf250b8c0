//! An [`EmanNet`] as a `tether-deploy` mesh model (`deploy/FORMAT.md`, ops 20 to 23),
//! run by `tether_deploy::mesh::MeshPlan` on any mesh.

use burn::tensor::{Tensor, backend::Backend};
use tether_deploy::format::MAX_RELTAN_POWERS;
use tether_deploy::{Error, MeshFeatures, ModelBuilder, OpSpec, TensorId, ValueId};

use super::conv::EmanConv;
use super::kernel::SelfKernel;
use super::net::{EmanInput, EmanNet};

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 after convert")
}

/// `[1 + 2s, c_in, c_out]`: the scalar matrix, then each shared order's real and
/// imaginary matrices.
fn self_kernel<B: Backend>(b: &mut ModelBuilder, k: &SelfKernel<B>) -> TensorId {
    let [c_in, c_out] = k.scalar.dims();
    let mut data = values(k.scalar.val());
    for (re, im) in k.re.iter().zip(&k.im) {
        data.extend(values(re.val()));
        data.extend(values(im.val()));
    }
    b.dense(&[1 + 2 * k.re.len(), c_in, c_out], &data)
}

/// A burn `Linear` weight (`[in, out]`) as the format's `[out, in]`.
fn transposed<B: Backend>(w: Tensor<B, 2>) -> (Vec<f32>, [usize; 2]) {
    let [i, o] = w.dims();
    (values(w.transpose()), [o, i])
}

fn conv<B: Backend>(b: &mut ModelBuilder, c: &EmanConv<B>, x: ValueId) -> ValueId {
    let (k, dims) = transposed(c.key.weight.val());
    let key = b.dense(&dims, &k);
    let (v, dims) = transposed(c.value.weight.val());
    let value = b.dense(&dims, &v);
    let query = self_kernel(b, &c.query);
    let self_k = self_kernel(b, &c.self_interaction);
    let bias = b.dense(&[c.channels_out], &values(c.bias.val()));
    b.op(
        OpSpec::EmanConv {
            key,
            value,
            query,
            self_kernel: self_k,
            bias,
            heads: c.heads as u32,
            order_out: c.order_out as u32,
        },
        &[x],
    )
}

/// The format's bytes of `net` fed `input`; errors when `input` does not fit the format
/// (more than six RelTan powers) or the model would not load.
pub fn to_deploy<B: Backend>(net: &EmanNet<B>, input: &EmanInput) -> Result<Vec<u8>, Error> {
    let features = match input {
        EmanInput::RelTan(o) => {
            if o.powers.len() > MAX_RELTAN_POWERS {
                return Err(Error::BadOptions("at most 6 RelTan powers"));
            }
            let mut powers = [0.0f32; MAX_RELTAN_POWERS];
            for (p, &r) in powers.iter_mut().zip(&o.powers) {
                *p = r as f32;
            }
            MeshFeatures::RelTan {
                powers,
                count: o.powers.len(),
                degree_power: o.degree_power as f32,
                constant: o.constant as f32,
            }
        }
        EmanInput::Xyz { mean, scale } => MeshFeatures::Xyz {
            mean: mean.map(|m| m as f32),
            scale: *scale as f32,
        },
    };
    let mut b = ModelBuilder::new(&[3]);
    let x = b.op(OpSpec::MeshFeatures(features), &[b.input()]);
    let mut h = conv(&mut b, &net.lift, x);
    for block in &net.blocks {
        let a = b.op(OpSpec::Gate, &[h]);
        let a = conv(&mut b, &block.a, a);
        let a = b.op(OpSpec::Gate, &[a]);
        let a = conv(&mut b, &block.b, a);
        h = b.op(OpSpec::Add, &[h, a]);
    }
    let g = b.op(OpSpec::Gate, &[h]);
    let s = b.op(OpSpec::Scalars, &[g]);
    let (w, dims) = transposed(net.head.weight.val());
    let weight = b.dense(&dims, &w);
    let bias = net
        .head
        .bias
        .as_ref()
        .map(|bias| b.dense(&[dims[0]], &values(bias.val())));
    let y = b.op(OpSpec::Linear { weight, bias }, &[s]);
    b.finish(y)
}
