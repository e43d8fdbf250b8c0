//! Shape inference: each op's output shape from its inputs' shapes and its tensors, or
//! what does not fit.

use super::dims::broadcast_three;
use super::dims::{Dims, broadcast};
use super::geometry::{PadMode, conv_out};
use super::layout::MAX_RANK;
use super::op::{MeshFeatures, Node, Op};
use super::tensor::{Tensor, TensorData};
use crate::error::Error;

pub(super) fn infer_shape(
    node: &Node,
    shapes: &[Dims],
    tensors: &[Tensor],
    index: usize,
) -> Result<Dims, Error> {
    let bad = |reason| Error::ShapeMismatch { index, reason };
    let x = node.inputs().first().map(|&v| shapes[v]);
    let xs = x.as_ref().map_or(&[][..], |x| x.as_slice());
    let check_bias = |bias: Option<usize>, n: usize| -> Result<(), Error> {
        if let Some(b) = bias {
            let t = &tensors[b];
            if matches!(t.data, TensorData::Csr(_)) || t.dims.as_slice() != [n] {
                return Err(bad("bias is not a dense vector of the output size"));
            }
        }
        Ok(())
    };
    let with_last = |lead: &[usize], tail: &[usize]| -> Option<Dims> {
        let mut d = [0usize; MAX_RANK];
        let n = lead.len() + tail.len();
        if n > MAX_RANK {
            return None;
        }
        d[..lead.len()].copy_from_slice(lead);
        d[lead.len()..n].copy_from_slice(tail);
        Dims::new(&d[..n])
    };
    let out = match node.op {
        Op::Linear { weight, bias } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 2 {
                return Err(bad("linear weight must be [out, in]"));
            }
            if xs.last() != Some(&w[1]) {
                return Err(bad("linear input's last axis is not the weight's width"));
            }
            check_bias(bias, w[0])?;
            with_last(&xs[..xs.len() - 1], &[w[0]])
        }
        Op::Conv2d { weight, bias, geom } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 4 {
                return Err(bad("conv weight must be [oc, ic / group, kh, kw]"));
            }
            if xs.len() < 3 {
                return Err(bad("conv input is not [.., c, h, w]"));
            }
            let r = xs.len();
            let g = geom.group;
            if !xs[r - 3].is_multiple_of(g) || !w[0].is_multiple_of(g) || xs[r - 3] / g != w[1] {
                return Err(bad("conv channels do not match the weight and groups"));
            }
            check_bias(bias, w[0])?;
            let oh = conv_out(
                xs[r - 2],
                w[2],
                geom.stride[0],
                [geom.pads[0], geom.pads[2]],
                geom.dilation[0],
            )
            .ok_or(bad("kernel larger than the (padded) input"))?;
            let ow = conv_out(
                xs[r - 1],
                w[3],
                geom.stride[1],
                [geom.pads[1], geom.pads[3]],
                geom.dilation[1],
            )
            .ok_or(bad("kernel larger than the (padded) input"))?;
            with_last(&xs[..r - 3], &[w[0], oh, ow])
        }
        Op::MaxPool2d(g) | Op::AvgPool2d(g) => {
            if xs.len() < 3 {
                return Err(bad("pooling input is not [.., c, h, w]"));
            }
            let r = xs.len();
            let oh = g
                .out(0, xs[r - 2])
                .ok_or(bad("window larger than the (padded) input"))?;
            let ow = g
                .out(1, xs[r - 1])
                .ok_or(bad("window larger than the (padded) input"))?;
            with_last(&xs[..r - 2], &[oh, ow])
        }
        Op::Flatten => x.and_then(|x| Dims::new(&[x.numel()])),
        Op::Reduce { axes, .. } => {
            if usize::from(axes) >= 1 << xs.len() {
                return Err(bad("reduction axes beyond the input's rank"));
            }
            let mut d = [0usize; MAX_RANK];
            for (i, o) in d.iter_mut().enumerate().take(xs.len()) {
                *o = if axes & (1 << i) != 0 { 1 } else { xs[i] };
            }
            Dims::new(&d[..xs.len()])
        }
        Op::Pad(g) => {
            let rank = xs.len();
            let mut d = [0usize; MAX_RANK];
            for i in 0..rank {
                if g.mode == PadMode::Reflect && (g.begin[i] >= xs[i] || g.end[i] >= xs[i]) {
                    return Err(bad("reflect padding as wide as the axis"));
                }
                d[i] = xs[i]
                    .checked_add(g.begin[i])
                    .and_then(|v| v.checked_add(g.end[i]))
                    .filter(|&v| v <= 1 << 24)
                    .ok_or(bad("padded axis too large"))?;
            }
            if (rank..MAX_RANK).any(|i| g.begin[i] != 0 || g.end[i] != 0) {
                return Err(bad("pad widths beyond the input's rank"));
            }
            Dims::new(&d[..rank])
        }
        Op::Relu | Op::Sine { .. } | Op::Unary(_) => x,
        Op::Softmax { axis, end } => {
            let (a, e) = if (axis, end) == (0, 0) {
                (xs.len() - 1, xs.len())
            } else {
                (axis, end)
            };
            if a >= e || e > xs.len() {
                return Err(bad("softmax axes out of range"));
            }
            x
        }
        Op::Binary(_) => {
            let (a, b) = (node.inputs[0], node.inputs[1]);
            broadcast(shapes[a].as_slice(), shapes[b].as_slice())
                .ok_or(bad("operands do not broadcast"))
                .map(Some)?
        }
        Op::MatMul => {
            let a = xs;
            let b = shapes[node.inputs[1]].as_slice();
            let (m, k1) = if a.len() == 1 {
                (None, a[0])
            } else {
                (Some(a[a.len() - 2]), a[a.len() - 1])
            };
            let (k2, n) = if b.len() == 1 {
                (b[0], None)
            } else {
                (b[b.len() - 2], Some(b[b.len() - 1]))
            };
            if k1 != k2 {
                return Err(bad("matmul inner dimensions differ"));
            }
            let lead = broadcast(
                &a[..a.len().saturating_sub(2)],
                &b[..b.len().saturating_sub(2)],
            );
            let lead_s: &[usize] = match (&lead, a.len() > 2 || b.len() > 2) {
                (Some(l), true) => l.as_slice(),
                (None, true) => return Err(bad("matmul batch axes do not broadcast")),
                _ => &[],
            };
            let tail: [usize; 2] = [m.unwrap_or(0), n.unwrap_or(0)];
            let tail: &[usize] = match (m, n) {
                (Some(_), Some(_)) => &tail,
                (Some(_), None) => &tail[..1],
                (None, Some(_)) => &tail[1..],
                (None, None) => &[1],
            };
            with_last(lead_s, tail)
        }
        Op::Transpose { perm, rank } => {
            if rank != xs.len() {
                return Err(bad("transpose perm does not match the input rank"));
            }
            let mut d = [0usize; MAX_RANK];
            for (i, o) in d.iter_mut().enumerate().take(xs.len()) {
                *o = xs[perm[i]];
            }
            Dims::new(&d[..xs.len()])
        }
        Op::Concat { axis } => {
            if axis >= xs.len() {
                return Err(bad("concat axis out of range"));
            }
            let mut total = 0usize;
            for &v in node.inputs() {
                let s = shapes[v].as_slice();
                if s.len() != xs.len()
                    || s.iter()
                        .zip(xs)
                        .enumerate()
                        .any(|(i, (a, b))| i != axis && a != b)
                {
                    return Err(bad("concat inputs differ off the axis"));
                }
                total = total.checked_add(s[axis]).ok_or(bad("too large"))?;
            }
            let mut d = [0usize; MAX_RANK];
            d[..xs.len()].copy_from_slice(xs);
            d[axis] = total;
            Dims::new(&d[..xs.len()])
        }
        Op::Reshape(d) => {
            if Some(d.numel()) != x.map(|x| x.numel()) {
                return Err(bad("reshape changes the number of elements"));
            }
            Some(d)
        }
        Op::Resize(g) => {
            let r = xs.len();
            if (r..MAX_RANK).any(|i| g.out[i] != 0) || (0..r).any(|i| g.out[i] == 0) {
                return Err(bad("resize rank differs from the input's"));
            }
            Dims::new(&g.out[..r])
        }
        Op::ConvTranspose2d { weight, bias, geom } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 4 {
                return Err(bad(
                    "transposed conv weight must be [ic, oc / group, kh, kw]",
                ));
            }
            if xs.len() < 3 {
                return Err(bad("transposed conv input is not [.., c, h, w]"));
            }
            let r = xs.len();
            let g = geom.group;
            if xs[r - 3] != w[0] || !w[0].is_multiple_of(g) {
                return Err(bad(
                    "transposed conv channels do not match the weight and groups",
                ));
            }
            let oc = w[1].checked_mul(g).ok_or(bad("too large"))?;
            check_bias(bias, oc)?;
            let oh = geom
                .out(0, xs[r - 2], w[2])
                .filter(|&o| o <= 1 << 24)
                .ok_or(bad("transposed conv output empty or too large"))?;
            let ow = geom
                .out(1, xs[r - 1], w[3])
                .filter(|&o| o <= 1 << 24)
                .ok_or(bad("transposed conv output empty or too large"))?;
            with_last(&xs[..r - 3], &[oc, oh, ow])
        }
        Op::Where => {
            let [c, a, b] = [node.inputs[0], node.inputs[1], node.inputs[2]];
            broadcast_three(
                shapes[c].as_slice(),
                shapes[a].as_slice(),
                shapes[b].as_slice(),
            )
            .ok_or(bad("where operands do not broadcast"))
            .map(Some)?
        }
        Op::Output { .. } => x,
        Op::Const { tensor } => Some(tensors[tensor].dims),
        Op::Input { shape, .. } => Some(shape),
        Op::MeshFeatures(f) => {
            if node.inputs[0] != 0 || xs != [3] {
                return Err(bad(
                    "mesh features read the input value 0, a vertex position [3]",
                ));
            }
            match f {
                MeshFeatures::RelTan { count, .. } => Dims::new(&[count, 3]),
                MeshFeatures::Xyz { .. } => Dims::new(&[3, 1]),
            }
        }
        Op::EmanConv {
            key,
            value,
            query,
            self_kernel,
            bias,
            heads,
            order_out,
        } => {
            let (c_in, d_in) = match xs {
                &[c, d] if d % 2 == 1 => (c, d),
                _ => return Err(bad("EMAN input is not [channels, 2m + 1]")),
            };
            let c_out = tensors[bias].dims.as_slice()[0];
            let d_out = order_out
                .checked_mul(2)
                .and_then(|d| d.checked_add(1))
                .ok_or(bad("EMAN output order too large"))?;
            let dense = |t: usize| !matches!(tensors[t].data, TensorData::Csr(_));
            let kernel = [c_out * d_out, c_in * d_in];
            let shared = 1 + 2 * order_out.min(d_in / 2);
            if tensors[bias].dims.as_slice().len() != 1 || !dense(bias) {
                return Err(bad("EMAN bias is not a dense vector"));
            }
            if tensors[key].dims.as_slice() != kernel || tensors[value].dims.as_slice() != kernel {
                return Err(bad(
                    "EMAN key/value kernels are not [c_out d_out, c_in d_in]",
                ));
            }
            for t in [query, self_kernel] {
                if tensors[t].dims.as_slice() != [shared, c_in, c_out] || !dense(t) {
                    return Err(bad("EMAN self kernels are not dense [1 + 2s, c_in, c_out]"));
                }
            }
            if !c_out.is_multiple_of(heads) {
                return Err(bad("EMAN heads do not divide the output channels"));
            }
            Dims::new(&[c_out, d_out])
        }
        Op::Gate => match xs {
            &[_, d] if d % 2 == 1 => x,
            _ => return Err(bad("gate input is not [channels, 2m + 1]")),
        },
        Op::Scalars => match xs {
            &[c, d] if d % 2 == 1 => Dims::new(&[c]),
            _ => return Err(bad("scalars input is not [channels, 2m + 1]")),
        },
    };
    out.ok_or(bad("output shape too large or empty"))
}
