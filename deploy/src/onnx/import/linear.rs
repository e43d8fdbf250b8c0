//! Matrix products: MatMul and Gemm. A constant 2-D right operand makes a linear layer
//! (the runtime's dense or sparse kernels); anything else is a general matrix product.

use std::format;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::importer::{Importer, Val, malformed, transpose2, unsupported};
use crate::format::{Binary, broadcast};
use crate::onnx::error::OnnxError;
use crate::write::{OpSpec, ValueId};

impl Importer {
    pub(super) fn matmul(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        // A constant 2-D right operand is a linear layer (sparse kernels apply).
        if let (Val::Run { .. }, Val::Const(w)) =
            (self.input(n, 0)?.clone(), self.input(n, 1)?.clone())
            && w.dims.len() == 2
        {
            let (x, d, batched) = self.operand(n, 0)?;
            let (k, m) = (w.dims[0], w.dims[1]);
            if d.last() != Some(&k) {
                return malformed(format!("MatMul of {d:?} by [{k}, {m}]: dimension mismatch"));
            }
            let wt = transpose2(&w.to_f32(), k, m);
            let tid = self.b.smallest(&[m, k], &wt);
            let y = self.b.op(
                OpSpec::Linear {
                    weight: tid,
                    bias: None,
                },
                &[x],
            );
            let mut nd = d.clone();
            *nd.last_mut().expect("rank >= 1") = m;
            self.set(n, 0, y, nd, batched);
            return Ok(());
        }
        let (a, da, ba) = self.operand(n, 0)?;
        let (b, db, bb) = self.operand(n, 1)?;
        if self.batch_mode {
            let ok = |d: &[usize], batched: bool| if batched { d.len() >= 2 } else { d.len() <= 2 };
            if !ok(&da, ba) || !ok(&db, bb) || (ba && bb && da.len() != db.len()) {
                return unsupported("a MatMul whose broadcast mixes the batch axis");
            }
        }
        let out = matmul_shape(&da, &db)?;
        let y = self.b.op(OpSpec::MatMul, &[a, b]);
        self.set(n, 0, y, out, ba || bb);
        Ok(())
    }

    pub(super) fn gemm(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let alpha = at.float("alpha", 1.0);
        let beta = at.float("beta", 1.0);
        let ta = at.int("transA", 0) != 0;
        let tb = at.int("transB", 0) != 0;
        if self.opset < 7 {
            at.get("broadcast");
        }
        let a_val = self.input(n, 0)?.clone();
        let b_val = self.input(n, 1)?.clone();
        let c = self.get(n, 2)?.cloned();
        let a_batched = matches!(a_val, Val::Run { batched: true, .. });
        if let (Val::Run { .. }, Val::Const(bt)) = (&a_val, &b_val)
            && !(ta && self.batch_mode && a_batched)
        {
            if bt.dims.len() != 2 {
                return malformed("Gemm B is not a matrix");
            }
            let (mut x, mut d, batched) = self.operand(n, 0)?;
            if self.full_shape(&d, batched).len() != 2 {
                return malformed(format!("Gemm A has shape {d:?}, not a matrix"));
            }
            if ta {
                let y = self.b.op(
                    OpSpec::Transpose {
                        perm: [1, 0, 0, 0],
                        rank: 2,
                    },
                    &[x],
                );
                d.reverse();
                x = y;
            }
            let (bk, bn) = (bt.dims[0], bt.dims[1]);
            let mut w = bt.to_f32();
            // Weight rows are output units: [n, k].
            let (k, nn) = if tb { (bn, bk) } else { (bk, bn) };
            if !tb {
                w = transpose2(&w, bk, bn);
            }
            if d.last() != Some(&k) {
                return malformed(format!(
                    "Gemm of A {d:?} by B {:?} (transB {tb}): dimension mismatch",
                    bt.dims
                ));
            }
            for v in &mut w {
                *v *= alpha;
            }
            let tid = self.b.smallest(&[nn, k], &w);
            let mut out = d.clone();
            *out.last_mut().expect("rank >= 1") = nn;
            // A constant bias that is one value per output unit folds into the layer;
            // any other C is added after it.
            let folded = match &c {
                Some(Val::Const(ct))
                    if ct.numel() == 1
                        || (ct.numel() == nn && ct.dims.iter().rev().skip(1).all(|&x| x == 1)) =>
                {
                    let cv = ct.to_f32();
                    let per_unit: Vec<f32> = (0..nn).map(|i| beta * cv[i % cv.len()]).collect();
                    Some(self.b.dense(&[nn], &per_unit))
                }
                _ => None,
            };
            let mut y = self.b.op(
                OpSpec::Linear {
                    weight: tid,
                    bias: folded,
                },
                &[x],
            );
            let mut batched = batched;
            if c.is_some() && folded.is_none() {
                (y, batched) = self.add_c(n, y, &out, batched, beta)?;
            }
            self.set(n, 0, y, out, batched);
            return Ok(());
        }
        if self.batch_mode {
            return unsupported("Gemm with a non-constant B in a batched model");
        }
        // General form: transposes, a matrix product, scaling and the bias as ops.
        let (mut a, mut da, ba) = self.operand(n, 0)?;
        let (mut b, mut db, bb) = self.operand(n, 1)?;
        if da.len() != 2 || db.len() != 2 {
            return malformed("Gemm operands are not matrices");
        }
        let t2 = OpSpec::Transpose {
            perm: [1, 0, 0, 0],
            rank: 2,
        };
        if ta {
            a = self.b.op(t2, &[a]);
            da.reverse();
        }
        if tb {
            b = self.b.op(t2, &[b]);
            db.reverse();
        }
        if da[1] != db[0] {
            return malformed(format!("Gemm of {da:?} by {db:?}: dimension mismatch"));
        }
        let y = self.b.op(OpSpec::MatMul, &[a, b]);
        let out = vec![da[0], db[1]];
        let mut y = self.scale(y, alpha);
        let mut batched = ba || bb;
        if c.is_some() {
            (y, batched) = self.add_c(n, y, &out, batched, beta)?;
        }
        self.set(n, 0, y, out, batched);
        Ok(())
    }

    /// `v * f` (a constant factor), or `v` when `f` is 1.
    pub(super) fn scale(&mut self, v: ValueId, f: f32) -> ValueId {
        if f == 1.0 {
            return v;
        }
        let t = self.b.dense(&[1], &[f]);
        let c = self.b.op(OpSpec::Const(t), &[]);
        self.b.op(OpSpec::Binary(Binary::Mul), &[v, c])
    }

    /// Gemm's `y + beta C` for a C not folded into the layer: C (input 2) must broadcast
    /// to `y`'s shape `out`.
    fn add_c(
        &mut self,
        n: &NodeProto,
        y: ValueId,
        out: &[usize],
        batched: bool,
        beta: f32,
    ) -> Result<(ValueId, bool), OnnxError> {
        let (c, mut cd, cb) = self.operand(n, 2)?;
        let c = self.align(c, &mut cd, cb, batched, out)?;
        if broadcast(out, &cd).map(|d| d.as_slice().to_vec()) != Some(out.to_vec()) {
            return malformed(format!("Gemm C {cd:?} does not broadcast to {out:?}"));
        }
        let c = self.scale(c, beta);
        Ok((
            self.b.op(OpSpec::Binary(Binary::Add), &[y, c]),
            batched || cb,
        ))
    }
}

fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OnnxError> {
    let k1 = *a
        .last()
        .ok_or_else(|| OnnxError::malformed("MatMul of a scalar"))?;
    let k2 = if b.len() == 1 { b[0] } else { b[b.len() - 2] };
    if k1 != k2 {
        return malformed(format!("MatMul of {a:?} by {b:?}: dimension mismatch"));
    }
    let lead = broadcast(
        &a[..a.len().saturating_sub(2)],
        &b[..b.len().saturating_sub(2)],
    );
    let mut out: Vec<usize> = if a.len() > 2 || b.len() > 2 {
        lead.ok_or_else(|| OnnxError::malformed("MatMul batch axes do not broadcast"))?
            .as_slice()
            .to_vec()
    } else {
        vec![]
    };
    if a.len() >= 2 {
        out.push(a[a.len() - 2]);
    }
    if b.len() >= 2 {
        out.push(b[b.len() - 1]);
    }
    if out.is_empty() {
        out.push(1);
    }
    Ok(out)
}
