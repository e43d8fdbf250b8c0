//! ConvTranspose (2-D, and 1-D through 2-D as Conv does): the weight `[ic, oc / group,
//! k..]` constant; `pads`, `auto_pad` or `output_shape` fix the cropping of the full
//! output `(in - 1) s + (k - 1) d + 1 + output_padding` (ONNX's formulas).

use std::format;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::conv::Geometry;
use super::importer::{Importer, dims, malformed, unsupported};
use crate::format::ConvTransposeGeom;
use crate::onnx::error::OnnxError;
use crate::write::OpSpec;

impl Importer {
    pub(super) fn conv_transpose(
        &mut self,
        n: &NodeProto,
        at: &mut Attrs,
    ) -> Result<(), OnnxError> {
        let mut w = self
            .constant(n, 1, "the weight")?
            .ok_or_else(|| OnnxError::malformed("ConvTranspose without a weight"))?;
        let bias = self.constant(n, 2, "the bias")?;
        let one_d = w.dims.len() == 3;
        if w.dims.len() != 4 && !one_d {
            return unsupported(format!(
                "ConvTranspose with a {}-D kernel (1-D and 2-D only)",
                w.dims.len().saturating_sub(2)
            ));
        }
        if w.dims.contains(&0) {
            return malformed(format!("ConvTranspose weight of shape {:?}", w.dims));
        }
        let sd = w.dims.len() - 2;
        let auto_pad = at.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let ks = at.ints("kernel_shape");
        let strides = at.ints("strides").unwrap_or_else(|| vec![1; sd]);
        let dil = at.ints("dilations").unwrap_or_else(|| vec![1; sd]);
        let pads = at.ints("pads").unwrap_or_else(|| vec![0; 2 * sd]);
        let mut out_pad = at.ints("output_padding").unwrap_or_else(|| vec![0; sd]);
        let mut out_shape = at.ints("output_shape");
        let group = at.int("group", 1);
        let (x0, d0, batched) = self.operand(n, 0)?;
        let rank = if one_d { 3 } else { 4 };
        if self.full_shape(&d0, batched).len() != rank {
            return unsupported(format!(
                "{sd}-D ConvTranspose of other than [N, C, {}]",
                if one_d { "L" } else { "H, W" }
            ));
        }
        if one_d {
            // ConvTranspose's own per-axis lists gain the unit axis too.
            if out_pad.len() != 1 {
                return malformed("1-D ConvTranspose attributes of another rank");
            }
            out_pad.insert(0, 0);
            if let Some(v) = &mut out_shape {
                v.insert(0, 1);
            }
        }
        let mut geom = Geometry {
            kernel_shape: ks,
            strides,
            dilations: dil,
            pads,
        };
        let (x, d) = self.lift_1d("ConvTranspose", one_d, &mut geom, &mut w.dims, x0, d0)?;
        let Geometry {
            strides,
            dilations: dil,
            pads,
            ..
        } = geom;
        let r = d.len();
        let pair = |v: &[i64], what: &str, lo: i64| -> Result<[usize; 2], OnnxError> {
            if v.len() != 2 || v.iter().any(|&x| !(lo..=65535).contains(&x)) {
                return malformed(format!("{what} {v:?}"));
            }
            Ok([v[0] as usize, v[1] as usize])
        };
        let stride = pair(&strides, "strides", 1)?;
        let dilation = pair(&dil, "dilations", 1)?;
        let mut output_padding = pair(&out_pad, "output_padding", 0)?;
        let k = [w.dims[2], w.dims[3]];
        let input = [d[r - 2], d[r - 1]];
        if !(1..=65536).contains(&group) {
            return malformed(format!("group {group}"));
        }
        // The full output's extent along each axis (before cropping).
        let full =
            |a: usize, op: usize| (input[a] - 1) * stride[a] + (k[a] - 1) * dilation[a] + 1 + op;
        // An explicit output shape or SAME padding: the crop that gives that extent, split
        // as ONNX specifies (the odd element at the end for SAME_UPPER, else at the start).
        let target: Option<[usize; 2]> = match (&out_shape, auto_pad.as_str()) {
            (Some(s), _) => {
                let s = if s.len() > 2 {
                    &s[s.len() - 2..]
                } else {
                    &s[..]
                };
                Some(pair(s, "output_shape", 1)?)
            }
            (None, "SAME_UPPER" | "SAME_LOWER") => {
                Some([input[0] * stride[0], input[1] * stride[1]])
            }
            (None, "NOTSET" | "" | "VALID") => None,
            (None, other) => return malformed(format!("auto_pad {other:?}")),
        };
        let crop = match target {
            Some(t) => {
                let mut p = [0usize; 4];
                for a in 0..2 {
                    // Without output padding the full extent may fall short of the target
                    // by less than a stride; output padding makes up the difference.
                    let f = full(a, output_padding[a]);
                    if t[a] > f {
                        let short = t[a] - f;
                        if output_padding[a] + short >= stride[a].max(dilation[a]) {
                            return unsupported(format!(
                                "ConvTranspose output_shape {t:?} larger than the input allows"
                            ));
                        }
                        output_padding[a] += short;
                    }
                    let total = full(a, output_padding[a]) - t[a];
                    let small = total / 2;
                    let (begin, end) = if auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    p[a] = begin;
                    p[a + 2] = end;
                }
                p
            }
            None if auto_pad == "VALID" => [0; 4],
            None => {
                if pads.len() != 4 || pads.iter().any(|&p| !(0..=65536).contains(&p)) {
                    return malformed(format!("pads {pads:?}"));
                }
                [
                    pads[0] as usize,
                    pads[1] as usize,
                    pads[2] as usize,
                    pads[3] as usize,
                ]
            }
        };
        let geom = ConvTransposeGeom {
            stride,
            pads: crop,
            dilation,
            group: group as usize,
            output_padding,
        };
        for a in 0..2 {
            if output_padding[a] >= stride[a].max(dilation[a]) {
                return malformed(format!(
                    "output_padding {output_padding:?} not below the stride or the dilation"
                ));
            }
        }
        let (ic, ocg) = (w.dims[0], w.dims[1]);
        if d[r - 3] != ic || !ic.is_multiple_of(geom.group) {
            return malformed(format!(
                "ConvTranspose input channels {} do not match the weight {:?} with group {group}",
                d[r - 3],
                w.dims
            ));
        }
        let oc = ocg * geom.group;
        let (Some(oh), Some(ow)) = (geom.out(0, input[0], k[0]), geom.out(1, input[1], k[1]))
        else {
            return malformed("ConvTranspose crops more than its whole output");
        };
        let wt = self.b.dense(&w.dims, &w.to_f32());
        let bt = match bias {
            Some(b) if b.numel() == oc => Some(self.b.dense(&[oc], &b.to_f32())),
            Some(_) => return malformed("ConvTranspose bias does not match the output channels"),
            None => None,
        };
        let y = self.b.op(
            OpSpec::ConvTranspose {
                weight: wt,
                bias: bt,
                geom,
            },
            &[x],
        );
        let mut nd: Vec<usize> = d[..r - 3].to_vec();
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
}
