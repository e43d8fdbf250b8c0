//! Convolutions and pooling (2-D, and 1-D convolutions through 2-D), global pooling,
//! and Pad.

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::importer::{Importer, dims, malformed, unsupported};
use crate::format::{ConvGeom, MAX_RANK, PadGeom, PadMode, PoolGeom, conv_out};
use crate::onnx::error::OnnxError;
use crate::write::{OpSpec, ValueId};

/// The geometry attributes Conv and ConvTranspose share, as read (1-D or 2-D).
pub(super) struct Geometry {
    pub kernel_shape: Option<Vec<i64>>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub pads: Vec<i64>,
}

impl Importer {
    /// A 1-D convolution (`[.., C, L]`, PyTorch's Conv1d and ConvTranspose1d) as a 2-D one
    /// of height 1: the input reshaped to `[.., C, 1, L]`, the weight `[.., k]` to
    /// `[.., 1, k]`, and each attribute given a leading unit axis (no padding on it); a
    /// 2-D one as it is. Then `kernel_shape`, where given, must be the weight's.
    pub(super) fn lift_1d(
        &mut self,
        op: &str,
        one_d: bool,
        g: &mut Geometry,
        weight: &mut Vec<usize>,
        x: ValueId,
        d: Vec<usize>,
    ) -> Result<(ValueId, Vec<usize>), OnnxError> {
        let lifted = if one_d {
            if g.strides.len() != 1 || g.dilations.len() != 1 || g.pads.len() != 2 {
                return malformed(format!("1-D {op} attributes of another rank"));
            }
            g.strides.insert(0, 1);
            g.dilations.insert(0, 1);
            g.pads = vec![0, g.pads[0], 0, g.pads[1]];
            if let Some(k) = &mut g.kernel_shape {
                k.insert(0, 1);
            }
            weight.insert(2, 1);
            let mut d2 = d.clone();
            d2.insert(d2.len() - 1, 1);
            let y = self.b.op(OpSpec::Reshape(dims(&d2)?), &[x]);
            (y, d2)
        } else {
            (x, d)
        };
        if let Some(ks) = &g.kernel_shape
            && (ks.len() != 2 || ks[0] as usize != weight[2] || ks[1] as usize != weight[3])
        {
            return malformed(format!(
                "kernel_shape {ks:?} differs from the weight {weight:?}"
            ));
        }
        Ok(lifted)
    }

    /// Conv, 2-D; a 1-D Conv (`[N, C, L]`, PyTorch's Conv1d) runs as a 2-D one of height
    /// 1 between two reshapes.
    pub(super) fn conv(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let mut w = self
            .constant(n, 1, "the weight")?
            .ok_or_else(|| OnnxError::malformed("Conv without a weight"))?;
        let bias = self.constant(n, 2, "the bias")?;
        let one_d = w.dims.len() == 3;
        if w.dims.len() != 4 && !one_d {
            return unsupported(format!(
                "Conv with a {}-D kernel (1-D and 2-D only)",
                w.dims.len().saturating_sub(2)
            ));
        }
        let sd = w.dims.len() - 2;
        let auto_pad = at.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let ks = at.ints("kernel_shape");
        let strides = at.ints("strides").unwrap_or_else(|| vec![1; sd]);
        let dil = at.ints("dilations").unwrap_or_else(|| vec![1; sd]);
        let pads = at.ints("pads").unwrap_or_else(|| vec![0; 2 * sd]);
        let group = at.int("group", 1);
        let (x0, d0, batched) = self.operand(n, 0)?;
        if one_d && self.full_shape(&d0, batched).len() != 3 {
            return unsupported("1-D Conv of other than [N, C, L]");
        }
        let mut geom = Geometry {
            kernel_shape: ks,
            strides,
            dilations: dil,
            pads,
        };
        let (x, d) = self.lift_1d("Conv", one_d, &mut geom, &mut w.dims, x0, d0)?;
        let Geometry {
            strides,
            dilations: dil,
            pads,
            ..
        } = geom;
        if self.full_shape(&d, batched).len() != 4 {
            return unsupported("Conv of other than [N, C, H, W]");
        }
        let r = d.len();
        let pos = |v: &[i64], what: &str| -> Result<[usize; 2], OnnxError> {
            if v.len() != 2 || v.iter().any(|&x| !(1..=65535).contains(&x)) {
                return malformed(format!("{what} {v:?}"));
            }
            Ok([v[0] as usize, v[1] as usize])
        };
        let stride = pos(&strides, "strides")?;
        let dilation = pos(&dil, "dilations")?;
        let k = [w.dims[2], w.dims[3]];
        let pads = resolve_pads(&auto_pad, &pads, [d[r - 2], d[r - 1]], k, stride, dilation)?;
        if group < 1 {
            return malformed(format!("group {group}"));
        }
        let geom = ConvGeom {
            stride,
            pads,
            dilation,
            group: group as usize,
        };
        let (oc, icg) = (w.dims[0], w.dims[1]);
        if d[r - 3] != icg * geom.group || !oc.is_multiple_of(geom.group) {
            return malformed(format!(
                "Conv input channels {} do not match the weight {:?} with group {group}",
                d[r - 3],
                w.dims
            ));
        }
        let oh = conv_out(d[r - 2], k[0], stride[0], [pads[0], pads[2]], dilation[0]);
        let ow = conv_out(d[r - 1], k[1], stride[1], [pads[1], pads[3]], dilation[1]);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return malformed("Conv kernel larger than the padded input");
        };
        let wt = self.b.smallest(&w.dims, &w.to_f32());
        let bt = match bias {
            Some(b) if b.numel() == oc => Some(self.b.dense(&[oc], &b.to_f32())),
            Some(_) => return malformed("Conv bias does not match the output channels"),
            None => None,
        };
        let y = self.b.op(
            OpSpec::Conv {
                weight: wt,
                bias: bt,
                geom,
            },
            &[x],
        );
        let mut nd = d[..r - 3].to_vec();
        nd.extend_from_slice(&[oc, oh, ow]);
        if one_d {
            nd.remove(nd.len() - 2);
            let y = self.b.op(OpSpec::Reshape(dims(&nd)?), &[y]);
            self.set(n, 0, y, nd, batched);
        } else {
            self.set(n, 0, y, nd, batched);
        }
        Ok(())
    }

    pub(super) fn pool(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let max = n.op_type == "MaxPool";
        let ks = at
            .ints("kernel_shape")
            .ok_or_else(|| OnnxError::malformed("pooling without kernel_shape"))?;
        let auto_pad = at.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let strides = at.ints("strides").unwrap_or_else(|| vec![1; ks.len()]);
        let dil = at.ints("dilations").unwrap_or_else(|| vec![1; ks.len()]);
        let pads = at.ints("pads").unwrap_or_else(|| vec![0; 2 * ks.len()]);
        let ceil = at.int("ceil_mode", 0) != 0;
        let count_pad = if max {
            if at.int("storage_order", 0) != 0 {
                return unsupported("storage_order 1");
            }
            false
        } else {
            at.int("count_include_pad", 0) != 0
        };
        if ks.len() != 2 {
            return unsupported(format!("{}-D pooling (2-D only)", ks.len()));
        }
        let (x, d, batched) = self.operand(n, 0)?;
        if self.full_shape(&d, batched).len() != 4 {
            return unsupported("pooling of other than [N, C, H, W]");
        }
        let pos = |v: &[i64], what: &str| -> Result<[usize; 2], OnnxError> {
            if v.len() != 2 || v.iter().any(|&x| !(1..=65535).contains(&x)) {
                return malformed(format!("{what} {v:?}"));
            }
            Ok([v[0] as usize, v[1] as usize])
        };
        let kernel = pos(&ks, "kernel_shape")?;
        let stride = pos(&strides, "strides")?;
        let dilation = pos(&dil, "dilations")?;
        let r = d.len();
        let pads = resolve_pads(
            &auto_pad,
            &pads,
            [d[r - 2], d[r - 1]],
            kernel,
            stride,
            dilation,
        )?;
        let g = PoolGeom {
            kernel,
            stride,
            pads,
            dilation,
            ceil,
            count_pad,
        };
        if (0..4).any(|i| pads[i] >= kernel[i % 2] * dilation[i % 2]) {
            return unsupported("padding as large as the pooling window");
        }
        let (Some(oh), Some(ow)) = (g.out(0, d[r - 2]), g.out(1, d[r - 1])) else {
            return malformed("pooling window larger than the padded input");
        };
        let y = self.b.op(
            if max {
                OpSpec::MaxPool(g)
            } else {
                OpSpec::AvgPool(g)
            },
            &[x],
        );
        let mut nd = d.clone();
        nd[r - 2] = oh;
        nd[r - 1] = ow;
        self.set(n, 0, y, nd, batched);
        Ok(())
    }

    pub(super) fn global_pool(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        let (x, d, batched) = self.operand(n, 0)?;
        if self.full_shape(&d, batched).len() != 4 || d.len() < 3 {
            return unsupported("global pooling of other than [N, C, H, W]");
        }
        let r = d.len();
        let mut g = PoolGeom::simple(1, 1);
        g.kernel = [d[r - 2], d[r - 1]];
        let spec = if n.op_type == "GlobalMaxPool" {
            OpSpec::MaxPool(g)
        } else {
            OpSpec::AvgPool(g)
        };
        let y = self.b.op(spec, &[x]);
        let mut od = d.clone();
        od[r - 2] = 1;
        od[r - 1] = 1;
        self.set(n, 0, y, od, batched);
        Ok(())
    }

    /// Pad: constant, reflect or edge, on every axis but the batch axis. Pads and the
    /// constant are attributes before opset 11, inputs since (`axes` since 18).
    pub(super) fn pad(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let mode = at
            .string("mode")
            .unwrap_or_else(|| String::from("constant"));
        let (pads, value, axes) = if self.opset < 11 {
            let p = at
                .ints("pads")
                .ok_or_else(|| OnnxError::malformed("Pad without pads"))?;
            (p, at.float("value", 0.0), None)
        } else {
            let p = self
                .constant(n, 1, "the pads")?
                .ok_or_else(|| OnnxError::malformed("Pad without pads"))?;
            let p = p
                .as_i64()
                .ok_or_else(|| OnnxError::malformed("Pad pads are not integers"))?
                .to_vec();
            let v = match self.constant(n, 2, "the constant value")? {
                Some(t) if t.numel() == 1 => t.to_f32()[0],
                Some(_) => return malformed("Pad constant_value is not a scalar"),
                None => 0.0,
            };
            let axes = match self.constant(n, 3, "the axes")? {
                Some(t) => Some(
                    t.as_i64()
                        .ok_or_else(|| OnnxError::malformed("Pad axes are not integers"))?
                        .to_vec(),
                ),
                None => None,
            };
            (p, v, axes)
        };
        let (x, d, batched) = self.operand(n, 0)?;
        let full_rank = self.full_shape(&d, batched).len();
        let axes: Vec<i64> = axes.unwrap_or_else(|| (0..full_rank as i64).collect());
        if pads.len() != 2 * axes.len() {
            return malformed(format!("Pad pads {pads:?} for {} axes", axes.len()));
        }
        if pads.iter().any(|&p| p < 0) {
            return unsupported("Pad with negative pads (cropping)");
        }
        let mode = match mode.as_str() {
            "constant" => {
                if value.is_nan() {
                    return unsupported("Pad with a NaN constant");
                }
                PadMode::Constant(value)
            }
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            other => return unsupported(format!("Pad mode {other:?}")),
        };
        let (mut begin, mut end) = ([0usize; MAX_RANK], [0usize; MAX_RANK]);
        let k = axes.len();
        for (i, &a) in axes.iter().enumerate() {
            let (b, e) = (pads[i] as usize, pads[k + i] as usize);
            if b == 0 && e == 0 {
                continue;
            }
            let s = self.sample_axis(a, d.len(), batched)?;
            begin[s] = b;
            end[s] = e;
        }
        let mut out = d.clone();
        for (i, o) in out.iter_mut().enumerate() {
            *o += begin[i] + end[i];
        }
        let geom = PadGeom { begin, end, mode };
        let y = self.b.op(
            OpSpec::Pad {
                geom,
                rank: d.len(),
            },
            &[x],
        );
        self.set(n, 0, y, out, batched);
        Ok(())
    }
}

/// ONNX `auto_pad` and `pads` to explicit padding (top, left, bottom, right).
pub(super) fn resolve_pads(
    auto_pad: &str,
    pads: &[i64],
    input: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
) -> Result<[usize; 4], OnnxError> {
    match auto_pad {
        "NOTSET" | "" => {
            if pads.len() != 4 || pads.iter().any(|&p| !(0..=65536).contains(&p)) {
                return malformed(format!("pads {pads:?}"));
            }
            Ok([
                pads[0] as usize,
                pads[1] as usize,
                pads[2] as usize,
                pads[3] as usize,
            ])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for a in 0..2 {
                let out = input[a].div_ceil(stride[a]);
                let span = (k[a] - 1) * dil[a] + 1;
                let total = ((out - 1) * stride[a] + span).saturating_sub(input[a]);
                let small = total / 2;
                let (begin, end) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[a] = begin;
                p[a + 2] = end;
            }
            Ok(p)
        }
        other => malformed(format!("auto_pad {other:?}")),
    }
}
