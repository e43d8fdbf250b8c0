//! Element-wise ops: activations, arithmetic with broadcasting, comparisons and casts.
//! Arithmetic and comparisons whose inputs are all constants fold (see [`super::fold`]).
//! On runtime values, booleans are f32 0 and 1 (the runtime computes in f32): comparisons
//! give 0 or 1, `Not` is `x == 0`, `Where` selects on `c != 0`, a Cast to bool is
//! `x != 0`.

use std::format;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::fold::{broadcast_any, broadcast_index, has_batch, map_const, no_batch};
use super::importer::{Importer, Val, malformed, unsupported};
use crate::format::{Binary, Unary, broadcast};
use crate::onnx::error::OnnxError;
use crate::onnx::tensor::{OnnxTensor, Values};
use crate::write::OpSpec;

/// ONNX element types the runtime computes in (f32; half and double are converted).
const FLOAT_TYPES: [i64; 2] = [1, 11];
/// Integer and boolean element types (folded constants hold them as i64).
const INT_TYPES: [i64; 10] = [2, 3, 4, 5, 6, 7, 9, 12, 13, 14];

impl Importer {
    /// A one-input, same-shape op.
    pub(super) fn elementwise(&mut self, n: &NodeProto, spec: OpSpec) -> Result<(), OnnxError> {
        let (x, d, batched) = self.operand(n, 0)?;
        let y = self.b.op(spec, &[x]);
        self.set(n, 0, y, d, batched);
        Ok(())
    }

    /// A binary op with ONNX (multidirectional) broadcasting.
    pub(super) fn binary(&mut self, n: &NodeProto, op: Binary) -> Result<(), OnnxError> {
        let (a, mut da, ba) = self.operand(n, 0)?;
        let (b, mut db, bb) = self.operand(n, 1)?;
        let (a, b) = (
            self.align(a, &mut da, ba, bb, &db)?,
            self.align(b, &mut db, bb, ba, &da)?,
        );
        let out = broadcast(&da, &db)
            .ok_or_else(|| {
                OnnxError::malformed(format!("shapes {da:?} and {db:?} do not broadcast"))
            })?
            .as_slice()
            .to_vec();
        let y = self.b.op(OpSpec::Binary(op), &[a, b]);
        self.set(n, 0, y, out, ba || bb);
        Ok(())
    }

    /// Functions of one input without attributes.
    pub(super) fn simple_unary(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        let f = match n.op_type.as_str() {
            "Sigmoid" => Unary::Sigmoid,
            "Tanh" => Unary::Tanh,
            "Exp" => Unary::Exp,
            "Log" => Unary::Log,
            "Sqrt" => Unary::Sqrt,
            "Neg" => Unary::Neg,
            "Abs" => Unary::Abs,
            "Reciprocal" => Unary::Reciprocal,
            "Softplus" => Unary::Softplus,
            "Floor" => Unary::Floor,
            "Ceil" => Unary::Ceil,
            "Sin" => Unary::Sin,
            "Cos" => Unary::Cos,
            "Erf" => Unary::Erf,
            other => return unsupported(format!("op {other:?}")),
        };
        // Shape arithmetic negates and takes absolute values of constants.
        if let Some(t) = self.const_input(n, 0)
            && (n.op_type == "Neg" || n.op_type == "Abs")
        {
            no_batch(&[t], &n.op_type)?;
            let neg = n.op_type == "Neg";
            let t = map_const(
                &[t],
                &n.op_type,
                |a| Ok(if neg { -a[0] } else { a[0].abs() }),
                |a| if neg { -a[0] } else { a[0].abs() },
            )?;
            self.set_const(n, t);
            return Ok(());
        }
        self.elementwise(n, OpSpec::Unary(f))
    }

    /// Activations with attributes.
    pub(super) fn activation(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let spec = match n.op_type.as_str() {
            "Relu" => OpSpec::Relu,
            "LeakyRelu" => OpSpec::Unary(Unary::LeakyRelu(at.float("alpha", 0.01))),
            "Elu" => OpSpec::Unary(Unary::Elu(at.float("alpha", 1.0))),
            "HardSigmoid" => OpSpec::Unary(Unary::HardSigmoid(
                at.float("alpha", 0.2),
                at.float("beta", 0.5),
            )),
            "HardSwish" => OpSpec::Unary(Unary::HardSwish),
            "Gelu" => match at.string("approximate").as_deref() {
                None | Some("none") => OpSpec::Unary(Unary::Gelu),
                Some("tanh") => OpSpec::Unary(Unary::GeluTanh),
                Some(other) => return malformed(format!("Gelu approximate {other:?}")),
            },
            other => return unsupported(format!("op {other:?}")),
        };
        self.elementwise(n, spec)
    }

    pub(super) fn clip(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let (lo, hi) = if self.opset < 11 {
            (at.float("min", f32::MIN), at.float("max", f32::MAX))
        } else {
            let scalar = |t: Option<OnnxTensor>, d: f32| -> Result<f32, OnnxError> {
                match t {
                    None => Ok(d),
                    Some(t) if t.numel() == 1 => Ok(t.to_f32()[0]),
                    Some(_) => malformed("Clip bounds must be scalars"),
                }
            };
            (
                scalar(self.constant(n, 1, "min")?, f32::NEG_INFINITY)?,
                scalar(self.constant(n, 2, "max")?, f32::INFINITY)?,
            )
        };
        if lo.is_nan() || hi.is_nan() {
            return malformed("Clip bound is NaN");
        }
        self.elementwise(n, OpSpec::Unary(Unary::Clip(lo, hi)))
    }

    /// Identity, and Dropout at inference (the identity).
    pub(super) fn identity(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        if n.op_type == "Dropout" {
            at.get("ratio");
            at.get("seed");
            if at.int("is_test", 1) == 0 {
                return unsupported("Dropout in training mode");
            }
            if self.opset >= 12
                && let Some(Val::Const(t)) = self.get(n, 2)?
                && t.as_i64().is_some_and(|v| v.iter().any(|&x| x != 0))
            {
                return unsupported("Dropout with training_mode = true");
            }
            if self.opset >= 12 && matches!(self.get(n, 2)?, Some(Val::Run { .. })) {
                return unsupported("Dropout whose training_mode is a runtime input");
            }
        }
        let v = self.input(n, 0)?.clone();
        self.vals.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// Add, Sub, Mul, Div: folded when both operands are constants.
    pub(super) fn arithmetic(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        if self.opset < 7 {
            at.get("broadcast");
            if at.get("axis").is_some() {
                return unsupported("legacy broadcast axis");
            }
        }
        let op = n.op_type.as_str();
        if let (Some(a), Some(b)) = (self.const_input(n, 0), self.const_input(n, 1)) {
            no_batch(&[a, b], op)?;
            let t = match op {
                "Add" => map_const(
                    &[a, b],
                    op,
                    |v| Ok(v[0].wrapping_add(v[1])),
                    |v| v[0] + v[1],
                ),
                "Sub" => map_const(
                    &[a, b],
                    op,
                    |v| Ok(v[0].wrapping_sub(v[1])),
                    |v| v[0] - v[1],
                ),
                "Mul" => map_const(
                    &[a, b],
                    op,
                    |v| Ok(v[0].wrapping_mul(v[1])),
                    |v| v[0] * v[1],
                ),
                _ => map_const(
                    &[a, b],
                    op,
                    // Integer division truncates (ONNX follows C).
                    |v| {
                        v[0].checked_div(v[1])
                            .ok_or_else(|| OnnxError::malformed("integer division by zero"))
                    },
                    |v| v[0] / v[1],
                ),
            }?;
            self.set_const(n, t);
            return Ok(());
        }
        let kind = match op {
            "Add" => Binary::Add,
            "Sub" => Binary::Sub,
            "Mul" => Binary::Mul,
            _ => Binary::Div,
        };
        self.binary(n, kind)
    }

    /// `x^y`: a constant scalar exponent is an element-wise function (x^2 is one multiply).
    pub(super) fn pow(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        if let (Some(a), Some(b)) = (self.const_input(n, 0), self.const_input(n, 1)) {
            no_batch(&[a, b], "Pow")?;
            let t = map_const(
                &[a, b],
                "Pow",
                |v| {
                    u32::try_from(v[1])
                        .ok()
                        .and_then(|e| v[0].checked_pow(e))
                        .ok_or_else(|| OnnxError::unsupported("integer Pow out of range"))
                },
                |v| libm::powf(v[0], v[1]),
            )?;
            self.set_const(n, t);
            return Ok(());
        }
        if let Some(e) = self.const_input(n, 1)
            && e.numel() == 1
        {
            let p = e.to_f32()[0];
            if !p.is_finite() {
                return unsupported(format!("Pow with exponent {p}"));
            }
            return if p == 1.0 {
                self.elementwise(n, OpSpec::Unary(Unary::Identity))
            } else {
                self.elementwise(n, OpSpec::Unary(Unary::Pow(p)))
            };
        }
        self.binary(n, Binary::Pow)
    }

    /// PRelu: the slope broadcasts to the input (one per channel as PyTorch exports it,
    /// `[C, 1, 1]`).
    pub(super) fn prelu(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        self.binary(n, Binary::PRelu)
    }

    /// Max and Min of one or more inputs, broadcasting; NaN propagates.
    pub(super) fn variadic_extreme(
        &mut self,
        n: &NodeProto,
        _: &mut Attrs,
    ) -> Result<(), OnnxError> {
        let op = if n.op_type == "Max" {
            Binary::Max
        } else {
            Binary::Min
        };
        let inputs: Vec<usize> = (0..n.input.len())
            .filter(|&i| !n.input[i].is_empty())
            .collect();
        if self.all_const(n) {
            let ts: Vec<&OnnxTensor> = inputs
                .iter()
                .filter_map(|&i| self.const_input(n, i))
                .collect();
            no_batch(&ts, &n.op_type)?;
            let max = op == Binary::Max;
            let t = map_const(
                &ts,
                &n.op_type,
                |v| {
                    Ok(if max {
                        *v.iter().max().expect("inputs")
                    } else {
                        *v.iter().min().expect("inputs")
                    })
                },
                |v| {
                    v.iter()
                        .copied()
                        .reduce(|a, b| {
                            if a.is_nan() || b.is_nan() {
                                f32::NAN
                            } else if (a >= b) == max {
                                a
                            } else {
                                b
                            }
                        })
                        .expect("inputs")
                },
            )?;
            self.set_const(n, t);
            return Ok(());
        }
        let (mut acc, mut d, mut batched) = self.operand(n, inputs[0])?;
        for &i in &inputs[1..] {
            let (b, mut db, bb) = self.operand(n, i)?;
            let a = self.align(acc, &mut d, batched, bb, &db)?;
            let b = self.align(b, &mut db, bb, batched, &d)?;
            let out = broadcast(&d, &db)
                .ok_or_else(|| {
                    OnnxError::malformed(format!("shapes {d:?} and {db:?} do not broadcast"))
                })?
                .as_slice()
                .to_vec();
            acc = self.b.op(OpSpec::Binary(op), &[a, b]);
            d = out;
            batched |= bb;
        }
        if inputs.len() == 1 {
            acc = self.b.op(OpSpec::Unary(Unary::Identity), &[acc]);
        }
        self.set(n, 0, acc, d, batched);
        Ok(())
    }

    /// Cast: constants convert; a runtime value may only be cast to a float type (the
    /// runtime computes in f32, so that is the identity).
    pub(super) fn cast(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let to = at
            .get("to")
            .map(|a| a.i)
            .ok_or_else(|| OnnxError::malformed("Cast without `to`"))?;
        at.get("saturate");
        if let Some(t) = self.const_input(n, 0) {
            let t = if FLOAT_TYPES.contains(&to) || [10, 16].contains(&to) {
                no_batch(&[t], "a Cast to float")?;
                OnnxTensor {
                    dims: t.dims.clone(),
                    data: Values::F32(t.to_f32()),
                }
            } else if INT_TYPES.contains(&to) {
                let data = match &t.data {
                    Values::I64(v) if to == 9 => {
                        Values::I64(v.iter().map(|&x| i64::from(x != 0)).collect())
                    }
                    Values::I64(v) => Values::I64(v.clone()),
                    Values::F32(v) if to == 9 => {
                        Values::I64(v.iter().map(|&x| i64::from(x != 0.0)).collect())
                    }
                    Values::F32(v) => Values::I64(
                        v.iter()
                            .map(|&x| {
                                if x.is_finite() {
                                    Ok(x.trunc() as i64)
                                } else {
                                    malformed(format!("Cast of {x} to an integer"))
                                }
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                };
                OnnxTensor {
                    dims: t.dims.clone(),
                    data,
                }
            } else {
                return unsupported(format!("Cast to element type {to}"));
            };
            self.set_const(n, t);
            return Ok(());
        }
        if to == 9 {
            // To bool: `x != 0` as 0 or 1 (NaN is true).
            let (x, d, batched) = self.operand(n, 0)?;
            let zero = self.b.dense(&[1], &[0.0]);
            let z = self.b.op(OpSpec::Const(zero), &[]);
            let is_zero = self.b.op(OpSpec::Binary(Binary::Equal), &[x, z]);
            let y = self.b.op(OpSpec::Binary(Binary::Equal), &[is_zero, z]);
            self.set(n, 0, y, d, batched);
            return Ok(());
        }
        if !FLOAT_TYPES.contains(&to) {
            return unsupported(format!(
                "Cast of a runtime value to element type {to} (the runtime computes in f32)"
            ));
        }
        let v = self.input(n, 0)?.clone();
        self.vals.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// Equal, Greater, Less and the like: folded on constants (as booleans), else a
    /// runtime comparison giving 0 or 1.
    pub(super) fn compare(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        let (Some(a), Some(b)) = (self.const_input(n, 0), self.const_input(n, 1)) else {
            let op = match n.op_type.as_str() {
                "Equal" => Binary::Equal,
                "Greater" => Binary::Greater,
                "GreaterOrEqual" => Binary::GreaterOrEqual,
                "Less" => Binary::Less,
                _ => Binary::LessOrEqual,
            };
            for i in 0..2 {
                if let Some(t) = self.const_input(n, i) {
                    no_batch(&[t], &n.op_type)?;
                }
            }
            return self.binary(n, op);
        };
        no_batch(&[a, b], &n.op_type)?;
        let op = n.op_type.clone();
        let cmp = |o: core::cmp::Ordering| -> i64 {
            use core::cmp::Ordering::*;
            i64::from(match op.as_str() {
                "Equal" => o == Equal,
                "Greater" => o == Greater,
                "GreaterOrEqual" => o != Less,
                "Less" => o == Less,
                _ => o != Greater,
            })
        };
        let dims = broadcast_any(&[&a.dims, &b.dims]).ok_or_else(|| {
            OnnxError::malformed(format!(
                "{}: shapes {:?} and {:?} do not broadcast",
                n.op_type, a.dims, b.dims
            ))
        })?;
        let (ia, ib) = (
            broadcast_index(&a.dims, &dims),
            broadcast_index(&b.dims, &dims),
        );
        let (af, bf) = (a.to_f32(), b.to_f32());
        let out: Vec<i64> = (0..ia.len())
            .map(|k| {
                let order = match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => Some(x[ia[k]].cmp(&y[ib[k]])),
                    // Floats: NaN compares false (and unequal) with everything.
                    _ => af[ia[k]].partial_cmp(&bf[ib[k]]),
                };
                order.map_or(0, cmp)
            })
            .collect();
        let t = OnnxTensor {
            dims,
            data: Values::I64(out),
        };
        self.set_const(n, t);
        Ok(())
    }

    /// Logical not: folded on constants; on a runtime value, `x == 0`.
    pub(super) fn not(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        let Some(t) = self.const_input(n, 0) else {
            let (x, d, batched) = self.operand(n, 0)?;
            let zero = self.b.dense(&[1], &[0.0]);
            let z = self.b.op(OpSpec::Const(zero), &[]);
            let y = self.b.op(OpSpec::Binary(Binary::Equal), &[x, z]);
            self.set(n, 0, y, d, batched);
            return Ok(());
        };
        no_batch(&[t], "Not")?;
        let t = map_const(
            &[t],
            "Not",
            |v| Ok(i64::from(v[0] == 0)),
            |v| f32::from(v[0] == 0.0),
        )?;
        self.set_const(n, t);
        Ok(())
    }

    /// `Where(cond, x, y)`: folded on constants (the symbolic batch size may be selected:
    /// it is moved, not computed with); else the runtime selection, broadcasting.
    pub(super) fn where_(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        let (Some(c), Some(x), Some(y)) = (
            self.const_input(n, 0),
            self.const_input(n, 1),
            self.const_input(n, 2),
        ) else {
            return self.where_runtime(n);
        };
        no_batch(&[c], "Where's condition")?;
        let mixed = x.as_i64().is_some() != y.as_i64().is_some();
        if mixed && (has_batch(x) || has_batch(y)) {
            return unsupported("Where mixing the symbolic batch size with floats");
        }
        let t = map_const(
            &[c, x, y],
            "Where",
            |v| Ok(if v[0] != 0 { v[1] } else { v[2] }),
            |v| if v[0] != 0.0 { v[1] } else { v[2] },
        )?;
        self.set_const(n, t);
        Ok(())
    }

    /// `Where` with a runtime operand. The batched operands must share a rank (their
    /// broadcast would mix the batch axis otherwise); constants that span the batch axis
    /// with extent 1 drop it.
    fn where_runtime(&mut self, n: &NodeProto) -> Result<(), OnnxError> {
        for i in 0..3 {
            if let Some(t) = self.const_input(n, i) {
                no_batch(&[t], "Where on runtime values")?;
            }
        }
        let mut ops = Vec::with_capacity(3);
        for i in 0..3 {
            ops.push(self.operand(n, i)?);
        }
        let batched = ops.iter().any(|o| o.2);
        // The per-sample rank of a batched operand (every batched one must agree).
        let rank = ops.iter().filter(|o| o.2).map(|o| o.1.len()).max();
        let mut ids = Vec::with_capacity(3);
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(3);
        for (id, mut d, b) in ops {
            let id = match rank {
                Some(r) if self.batch_mode && b && d.len() != r => {
                    return unsupported(
                        "Where on batched operands of different ranks (their broadcast mixes \
                         the batch axis)",
                    );
                }
                Some(r) if self.batch_mode && !b && d.len() > r => {
                    if d.len() == r + 1 && d[0] == 1 {
                        d.remove(0);
                        let nd = super::importer::dims(&d)?;
                        self.b.op(OpSpec::Reshape(nd), &[id])
                    } else {
                        return unsupported("a constant operand that spans the batch axis");
                    }
                }
                _ => id,
            };
            ids.push(id);
            shapes.push(d);
        }
        let out = broadcast_any(&[&shapes[0], &shapes[1], &shapes[2]]).ok_or_else(|| {
            OnnxError::malformed(format!(
                "Where: shapes {:?}, {:?} and {:?} do not broadcast",
                shapes[0], shapes[1], shapes[2]
            ))
        })?;
        let y = self.b.op(OpSpec::Where, &ids);
        self.set(n, 0, y, out, batched);
        Ok(())
    }
}
