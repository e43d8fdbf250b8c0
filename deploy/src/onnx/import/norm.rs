//! Normalisation and reductions: BatchNormalization (folded into a per-channel scale and
//! shift), LayerNormalization, Softmax and LogSoftmax, and the Reduce ops.

use std::format;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::importer::{Importer, dims, malformed, unsupported};
use crate::format::{Binary, Reduce, Unary};
use crate::onnx::error::OnnxError;
use crate::write::{OpSpec, ValueId};

impl Importer {
    pub(super) fn batch_norm(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let eps = at.float("epsilon", 1e-5);
        at.get("momentum");
        at.get("spatial");
        if at.int("training_mode", 0) != 0 {
            return unsupported("BatchNormalization in training mode");
        }
        let c = |i, w| self.constant(n, i, w);
        let (scale, bias, mean, var) = (c(1, "scale")?, c(2, "B")?, c(3, "mean")?, c(4, "var")?);
        let (Some(scale), Some(bias), Some(mean), Some(var)) = (scale, bias, mean, var) else {
            return malformed("BatchNormalization needs scale, B, mean and var");
        };
        let (x, d, batched) = self.operand(n, 0)?;
        let ch_axis = if self.batch_mode && batched { 0 } else { 1 };
        let ch = *d
            .get(ch_axis)
            .ok_or_else(|| OnnxError::malformed("BatchNormalization of a vector"))?;
        let (s, bi, m, v) = (scale.to_f32(), bias.to_f32(), mean.to_f32(), var.to_f32());
        if [s.len(), bi.len(), m.len(), v.len()]
            .iter()
            .any(|&l| l != ch)
        {
            return malformed("BatchNormalization parameters do not match the channels");
        }
        // y = x * k + (b - mean * k), k = scale / sqrt(var + eps), per channel.
        let k: Vec<f32> = (0..ch).map(|i| s[i] / (v[i] + eps).sqrt()).collect();
        let sh: Vec<f32> = (0..ch).map(|i| bi[i] - m[i] * k[i]).collect();
        let mut cd = vec![ch];
        cd.extend(std::iter::repeat_n(1, d.len() - ch_axis - 1));
        let kt = self.b.dense(&cd, &k);
        let st = self.b.dense(&cd, &sh);
        let kv = self.b.op(OpSpec::Const(kt), &[]);
        let sv = self.b.op(OpSpec::Const(st), &[]);
        let y = self.b.op(OpSpec::Binary(Binary::Mul), &[x, kv]);
        let y = self.b.op(OpSpec::Binary(Binary::Add), &[y, sv]);
        self.set(n, 0, y, d, batched);
        Ok(())
    }

    /// `Reduce{kind}(x)` over the per-sample axes in `mask`, which keep extent 1.
    fn reduce_op(
        &mut self,
        x: ValueId,
        d: &[usize],
        mask: u8,
        kind: Reduce,
    ) -> (ValueId, Vec<usize>) {
        let y = self.b.op(OpSpec::Reduce { kind, axes: mask }, &[x]);
        let out = d
            .iter()
            .enumerate()
            .map(|(i, &e)| if mask & (1 << i) != 0 { 1 } else { e })
            .collect();
        (y, out)
    }

    /// Softmax and LogSoftmax. Before opset 13 both flatten the axes from `axis` on; since,
    /// they take one axis. LogSoftmax is `z - ln(sum(e^z))` with `z = x - max(x)`, which
    /// stays finite where `ln(softmax(x))` would underflow to -inf.
    pub(super) fn softmax(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let (x, d, batched) = self.operand(n, 0)?;
        let legacy = self.opset < 13;
        let a = at.int("axis", if legacy { 1 } else { -1 });
        let a = self.sample_axis(a, d.len(), batched)?;
        let end = if legacy { d.len() } else { a + 1 };
        if n.op_type == "Softmax" {
            let y = self.b.op(OpSpec::SoftmaxAxes { axis: a, end }, &[x]);
            self.set(n, 0, y, d, batched);
            return Ok(());
        }
        let mask = (a..end).fold(0u8, |m, i| m | 1 << i);
        let (m, _) = self.reduce_op(x, &d, mask, Reduce::Max);
        let z = self.b.op(OpSpec::Binary(Binary::Sub), &[x, m]);
        let e = self.b.op(OpSpec::Unary(Unary::Exp), &[z]);
        let (s, _) = self.reduce_op(e, &d, mask, Reduce::Sum);
        let l = self.b.op(OpSpec::Unary(Unary::Log), &[s]);
        let y = self.b.op(OpSpec::Binary(Binary::Sub), &[z, l]);
        self.set(n, 0, y, d, batched);
        Ok(())
    }

    /// ReduceMean, ReduceSum, ReduceMax, ReduceMin over axes other than the batch axis.
    pub(super) fn reduce(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let kind = match n.op_type.as_str() {
            "ReduceMean" => Reduce::Mean,
            "ReduceSum" => Reduce::Sum,
            "ReduceMax" => Reduce::Max,
            _ => Reduce::Min,
        };
        let keep = at.int("keepdims", 1) != 0;
        let noop_empty = at.int("noop_with_empty_axes", 0) != 0;
        // Axes moved from an attribute to an input: ReduceSum at opset 13, the rest at 18.
        let axes_input = if kind == Reduce::Sum { 13 } else { 18 };
        let axes: Option<Vec<i64>> = if self.opset < axes_input {
            at.ints("axes")
        } else {
            match self.constant(n, 1, "the axes")? {
                Some(t) => Some(
                    t.as_i64()
                        .ok_or_else(|| OnnxError::malformed("axes are not integers"))?
                        .to_vec(),
                ),
                None => None,
            }
        };
        let (x, d, batched) = self.operand(n, 0)?;
        let full_rank = self.full_shape(&d, batched).len();
        let batch = usize::from(self.batch_mode && batched);
        let axes = match axes.filter(|a| !a.is_empty()) {
            Some(a) => a,
            None if noop_empty => {
                let v = self.input(n, 0)?.clone();
                self.vals.insert(n.output[0].clone(), v);
                return Ok(());
            }
            None => (0..full_rank as i64).collect(),
        };
        let mut mask = 0u8;
        for &a in &axes {
            let s = self.sample_axis(a, d.len(), batched).map_err(|_| {
                OnnxError::unsupported(format!(
                    "{} over axes {axes:?} of a rank-{full_rank} value{}",
                    n.op_type,
                    if batch == 1 {
                        " (not over the batch axis)"
                    } else {
                        ""
                    }
                ))
            })?;
            mask |= 1 << s;
        }
        let (y, kept) = self.reduce_op(x, &d, mask, kind);
        if keep {
            self.set(n, 0, y, kept, batched);
            return Ok(());
        }
        let mut out: Vec<usize> = (0..d.len())
            .filter(|&i| mask & (1 << i) == 0)
            .map(|i| d[i])
            .collect();
        if out.is_empty() {
            out.push(1);
        }
        let y = if out == kept {
            y
        } else {
            self.b.op(OpSpec::Reshape(dims(&out)?), &[y])
        };
        self.set(n, 0, y, out, batched);
        Ok(())
    }

    /// LayerNormalization (opset 17) over the axes from `axis` on: `(x - mean) /
    /// sqrt(var + eps) * scale + bias`, the variance biased (as PyTorch and ONNX).
    pub(super) fn layer_norm(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let eps = at.float("epsilon", 1e-5);
        let a = at.int("axis", -1);
        at.get("stash_type");
        if !(eps.is_finite() && eps >= 0.0) {
            return malformed(format!("LayerNormalization epsilon {eps}"));
        }
        let scale = self
            .constant(n, 1, "the scale")?
            .ok_or_else(|| OnnxError::malformed("LayerNormalization without a scale"))?;
        let bias = self.constant(n, 2, "the bias")?;
        let (x, d, batched) = self.operand(n, 0)?;
        let a = self.sample_axis(a, d.len(), batched)?;
        let mask = (a..d.len()).fold(0u8, |m, i| m | 1 << i);
        let norm_dims = &d[a..];
        for (what, t) in [("scale", Some(&scale)), ("bias", bias.as_ref())] {
            if let Some(t) = t {
                let fits = t.dims.len() <= norm_dims.len()
                    && t.dims
                        .iter()
                        .rev()
                        .zip(norm_dims.iter().rev())
                        .all(|(&s, &e)| s == e || s == 1);
                if !fits {
                    return unsupported(format!(
                        "LayerNormalization {what} of shape {:?} over {norm_dims:?}",
                        t.dims
                    ));
                }
            }
        }
        let (mu, _) = self.reduce_op(x, &d, mask, Reduce::Mean);
        let c = self.b.op(OpSpec::Binary(Binary::Sub), &[x, mu]);
        let sq = self.b.op(OpSpec::Binary(Binary::Mul), &[c, c]);
        let (var, _) = self.reduce_op(sq, &d, mask, Reduce::Mean);
        let et = self.b.dense(&[1], &[eps]);
        let ev = self.b.op(OpSpec::Const(et), &[]);
        let v = self.b.op(OpSpec::Binary(Binary::Add), &[var, ev]);
        let sd = self.b.op(OpSpec::Unary(Unary::Sqrt), &[v]);
        let mut y = self.b.op(OpSpec::Binary(Binary::Div), &[c, sd]);
        for (t, op) in [(Some(scale), Binary::Mul), (bias, Binary::Add)] {
            if let Some(t) = t {
                let sd = if t.dims.is_empty() {
                    vec![1]
                } else {
                    t.dims.clone()
                };
                let tid = self.b.dense(&sd, &t.to_f32());
                let tv = self.b.op(OpSpec::Const(tid), &[]);
                y = self.b.op(OpSpec::Binary(op), &[y, tv]);
            }
        }
        self.set(n, 0, y, d, batched);
        Ok(())
    }
}
