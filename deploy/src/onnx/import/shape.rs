//! Ops that change shapes: Flatten, Reshape, Transpose, Concat, Squeeze, Unsqueeze, and
//! the shape arithmetic exporters emit (Shape, Gather, Slice, ConstantOfShape, Range,
//! Constant), folded on the host (see [`super::fold`]).

use std::format;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::fold::{BATCH, has_batch, take};
use super::importer::{Importer, Val, axis, decode, dims, malformed, unsupported};
use crate::format::MAX_RANK;
use crate::onnx::error::OnnxError;
use crate::onnx::tensor::{OnnxTensor, Values};
use crate::write::OpSpec;

impl Importer {
    pub(super) fn flatten(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let (x, d, batched) = self.operand(n, 0)?;
        let full = self.full_shape(&d, batched);
        let a = at.int("axis", 1);
        let a = if a == full.len() as i64 {
            full.len()
        } else {
            axis(a, full.len())?
        };
        if self.batch_mode && batched {
            if a != 1 {
                return unsupported("Flatten at an axis other than 1 of a batched value");
            }
            let total: usize = d.iter().product();
            let y = self.b.op(OpSpec::Flatten, &[x]);
            self.set(n, 0, y, vec![total], batched);
        } else {
            let outer: usize = full[..a].iter().product();
            let inner: usize = full[a..].iter().product();
            let nd = vec![outer, inner];
            let y = self.b.op(OpSpec::Reshape(dims(&nd)?), &[x]);
            self.set(n, 0, y, nd, batched);
        }
        Ok(())
    }

    pub(super) fn reshape(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let allowzero = at.int("allowzero", 0) != 0;
        let t: Vec<i64> = match (self.opset < 5, self.constant(n, 1, "the target shape")?) {
            (true, _) => at
                .ints("shape")
                .ok_or_else(|| OnnxError::malformed("Reshape without a shape"))?,
            (false, Some(shape)) => shape
                .as_i64()
                .ok_or_else(|| OnnxError::malformed("Reshape shape is not integer"))?
                .to_vec(),
            (false, None) => return malformed("Reshape without a shape"),
        };
        if let Some(data) = self.const_input(n, 0) {
            if has_batch(data) || t.contains(&BATCH) {
                return unsupported(
                    "Reshape of a shape constant to a shape that uses the batch size",
                );
            }
            let nd = resolve_shape(&data.dims, &t, allowzero)?;
            let mut data = data.clone();
            data.dims = nd;
            self.set_const(n, data);
            return Ok(());
        }
        // The batch axis is kept by a 0 in front (unless `allowzero`), a -1 in front, a
        // folded `x.size(0)` in front, or the fixed batch size of a graph whose leading
        // axis was imported as the batch axis.
        let hint = self.batch_hint.map(|b| b as i64);
        let keeps_batch =
            |t0: i64| t0 == BATCH || Some(t0) == hint || (t0 == 0 && !allowzero) || t0 == -1;
        if t[1..].contains(&BATCH) {
            return unsupported("Reshape that moves the symbolic batch size off the first axis");
        }
        let (x, d, batched) = self.operand(n, 0)?;
        let nd = if self.batch_mode && batched {
            match t.first() {
                Some(&t0) if keeps_batch(t0) => {
                    if t0 == -1 && t[1..].contains(&-1) {
                        return unsupported("Reshape with -1 twice");
                    }
                    resolve_shape(&d, &t[1..], allowzero)?
                }
                _ => return unsupported("Reshape that does not keep the batch axis"),
            }
        } else {
            if t.contains(&BATCH) {
                return unsupported("Reshape to the symbolic batch size of an unbatched value");
            }
            resolve_shape(&d, &t, allowzero)?
        };
        // To a vector per sample is the runtime's flatten (the same copy).
        let spec = if nd.len() == 1 && self.batch_mode && batched {
            OpSpec::Flatten
        } else {
            OpSpec::Reshape(dims(&nd)?)
        };
        let y = self.b.op(spec, &[x]);
        self.set(n, 0, y, nd, batched);
        Ok(())
    }

    pub(super) fn transpose(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        if let Some(t) = self.const_input(n, 0) {
            let t = t.clone();
            let r = t.dims.len();
            let perm: Vec<i64> = at
                .ints("perm")
                .unwrap_or_else(|| (0..r as i64).rev().collect());
            let p: Vec<usize> = perm.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?;
            let mut seen = vec![false; r];
            if p.len() != r || p.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
                return malformed(format!("perm {perm:?} for rank {r}"));
            }
            self.set_const(n, permute(&t, &p));
            return Ok(());
        }
        let (x, d, batched) = self.operand(n, 0)?;
        let full_rank = self.full_shape(&d, batched).len();
        let perm: Vec<i64> = at
            .ints("perm")
            .unwrap_or_else(|| (0..full_rank as i64).rev().collect());
        if perm.len() != full_rank {
            return malformed(format!("perm {perm:?} for rank {full_rank}"));
        }
        let mut p: Vec<usize> = perm
            .iter()
            .map(|&a| axis(a, full_rank))
            .collect::<Result<_, _>>()?;
        if self.batch_mode && batched {
            if p[0] != 0 {
                return unsupported("Transpose that moves the batch axis");
            }
            p = p[1..].iter().map(|&a| a - 1).collect();
        }
        let mut seen = vec![false; p.len()];
        for &a in &p {
            if std::mem::replace(&mut seen[a], true) {
                return malformed(format!("perm {perm:?} is not a permutation"));
            }
        }
        let nd: Vec<usize> = p.iter().map(|&a| d[a]).collect();
        let mut arr = [0usize; MAX_RANK];
        arr[..p.len()].copy_from_slice(&p);
        let y = self.b.op(
            OpSpec::Transpose {
                perm: arr,
                rank: p.len(),
            },
            &[x],
        );
        self.set(n, 0, y, nd, batched);
        Ok(())
    }

    pub(super) fn concat(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let axis_attr = at
            .get("axis")
            .map(|x| x.i)
            .ok_or_else(|| OnnxError::malformed("Concat without axis"))?;
        if self.all_const(n) {
            return self.concat_const(n, axis_attr);
        }
        let mut parts = Vec::new();
        for i in 0..n.input.len() {
            parts.push(self.operand(n, i)?);
        }
        if parts.is_empty() {
            return malformed("Concat of nothing");
        }
        let batched = parts.iter().any(|p| p.2);
        if self.batch_mode && parts.iter().any(|p| !p.2) && batched {
            return unsupported("Concat of a constant with a batched value");
        }
        let rank = parts[0].1.len();
        let ax = self.sample_axis(axis_attr, rank, batched)?;
        if parts.len() == 1 {
            let v = parts[0].clone();
            self.set(n, 0, v.0, v.1, v.2);
            return Ok(());
        }
        // Chains of at most four inputs.
        let mut acc = parts[0].clone();
        let mut rest = &parts[1..];
        while !rest.is_empty() {
            let take = rest.len().min(3);
            let mut ids = vec![acc.0];
            let mut total = acc.1[ax];
            for p in &rest[..take] {
                if p.1.len() != rank
                    || p.1
                        .iter()
                        .zip(&acc.1)
                        .enumerate()
                        .any(|(i, (a, b))| i != ax && a != b)
                {
                    return malformed(format!(
                        "Concat inputs {:?} and {:?} differ off axis {axis_attr}",
                        acc.1, p.1
                    ));
                }
                ids.push(p.0);
                total += p.1[ax];
            }
            let y = self.b.op(OpSpec::Concat { axis: ax }, &ids);
            let mut nd = acc.1.clone();
            nd[ax] = total;
            acc = (y, nd, batched);
            rest = &rest[take..];
        }
        self.set(n, 0, acc.0, acc.1, batched);
        Ok(())
    }

    /// Concat of constants (shape vectors, mostly).
    fn concat_const(&mut self, n: &NodeProto, axis_attr: i64) -> Result<(), OnnxError> {
        let ts: Vec<OnnxTensor> = (0..n.input.len())
            .filter_map(|i| self.const_input(n, i).cloned())
            .filter(|t| !(t.dims.len() == 1 && t.dims[0] == 0))
            .collect();
        let Some(first) = ts.first() else {
            return malformed("Concat of nothing");
        };
        let rank = first.dims.len();
        let a = axis(axis_attr, rank)?;
        let ints = ts.iter().all(|t| t.as_i64().is_some());
        if !ints && ts.iter().any(has_batch) {
            return unsupported("Concat of the symbolic batch size with floats");
        }
        for t in &ts {
            if t.dims.len() != rank
                || t.dims
                    .iter()
                    .zip(&first.dims)
                    .enumerate()
                    .any(|(i, (x, y))| i != a && x != y)
            {
                return malformed(format!(
                    "Concat inputs {:?} and {:?} differ off axis {axis_attr}",
                    first.dims, t.dims
                ));
            }
        }
        let outer: usize = first.dims[..a].iter().product();
        let mut out_dims = first.dims.clone();
        out_dims[a] = ts.iter().map(|t| t.dims[a]).sum();
        let (mut iv, mut fv) = (Vec::new(), Vec::new());
        for o in 0..outer {
            for t in &ts {
                let chunk: usize = t.dims[a..].iter().product();
                match &t.data {
                    Values::I64(v) if ints => iv.extend_from_slice(&v[o * chunk..(o + 1) * chunk]),
                    _ => fv.extend_from_slice(&t.to_f32()[o * chunk..(o + 1) * chunk]),
                }
            }
        }
        let data = if ints {
            Values::I64(iv)
        } else {
            Values::F32(fv)
        };
        self.set_const(
            n,
            OnnxTensor {
                dims: out_dims,
                data,
            },
        );
        Ok(())
    }

    pub(super) fn constant_node(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let t = if let Some(a) = at.get("value") {
            let t = a
                .t
                .as_ref()
                .ok_or_else(|| OnnxError::malformed("Constant value attribute holds no tensor"))?;
            decode(t, self.ext.as_mut())?
        } else if let Some(a) = at.get("sparse_value") {
            let sp = a.sparse_tensor.as_ref().ok_or_else(|| {
                OnnxError::malformed("Constant sparse_value attribute holds no tensor")
            })?;
            super::sparse::decode_sparse(sp, self.ext.as_mut())?.1
        } else if let Some(a) = at.get("value_float") {
            OnnxTensor {
                dims: vec![],
                data: Values::F32(vec![a.f]),
            }
        } else if let Some(a) = at.get("value_floats") {
            OnnxTensor {
                dims: vec![a.floats.len()],
                data: Values::F32(a.floats.clone()),
            }
        } else if let Some(a) = at.get("value_int") {
            OnnxTensor {
                dims: vec![],
                data: Values::I64(vec![a.i]),
            }
        } else if let Some(a) = at.get("value_ints") {
            OnnxTensor {
                dims: vec![a.ints.len()],
                data: Values::I64(a.ints.clone()),
            }
        } else {
            return unsupported("a Constant without value, value_float(s) or value_int(s)");
        };
        self.set_const(n, t);
        Ok(())
    }

    /// `Shape`: the extents of a value, the batch axis as [`BATCH`]; `start` and `end`
    /// (opset 15) slice it.
    pub(super) fn shape_of(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let full: Vec<i64> = match self.input(n, 0)? {
            Val::Const(t) => t.dims.iter().map(|&d| d as i64).collect(),
            Val::Run { dims, batched, .. } => {
                let (d, b) = (dims.clone(), *batched);
                let mut f: Vec<i64> = d.iter().map(|&x| x as i64).collect();
                if self.batch_mode && b {
                    f.insert(0, BATCH);
                }
                f
            }
        };
        let r = full.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(at.int("start", 0));
        let end = clamp(at.int("end", r));
        let v = full[start..end.max(start)].to_vec();
        self.set_const(
            n,
            OnnxTensor {
                dims: vec![v.len()],
                data: Values::I64(v),
            },
        );
        Ok(())
    }

    /// Gather of a constant (a shape element, mostly).
    pub(super) fn gather(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let a = at.int("axis", 0);
        let (Some(data), Some(ix)) = (self.const_input(n, 0), self.const_input(n, 1)) else {
            return unsupported("Gather of a runtime value (folded on constants only)");
        };
        if data.dims.is_empty() {
            return malformed("Gather from a scalar");
        }
        let t = take(data, axis(a, data.dims.len())?, ix)?;
        self.set_const(n, t);
        Ok(())
    }

    /// Slice of a constant (opset 10+: starts, ends, axes, steps as inputs; before:
    /// attributes).
    pub(super) fn slice(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let ints = |im: &Self, i: usize| -> Result<Option<Vec<i64>>, OnnxError> {
            match im.const_input(n, i) {
                Some(t) => t
                    .as_i64()
                    .map(|v| Some(v.to_vec()))
                    .ok_or_else(|| OnnxError::malformed("Slice parameters are not integers")),
                None if n.input.get(i).is_some_and(|s| !s.is_empty()) => {
                    unsupported("Slice with runtime parameters")
                }
                None => Ok(None),
            }
        };
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (at.ints("starts"), at.ints("ends"), at.ints("axes"), None)
        } else {
            (
                ints(self, 1)?,
                ints(self, 2)?,
                ints(self, 3)?,
                ints(self, 4)?,
            )
        };
        let (Some(starts), Some(ends)) = (starts, ends) else {
            return malformed("Slice without starts and ends");
        };
        let Some(data) = self.const_input(n, 0) else {
            return unsupported("Slice of a runtime value (folded on constants only)");
        };
        let rank = data.dims.len();
        let axes = match axes {
            Some(a) => a
                .iter()
                .map(|&a| axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if [ends.len(), axes.len(), steps.len()]
            .iter()
            .any(|&l| l != starts.len())
        {
            return malformed("Slice parameters differ in length");
        }
        // Per axis: the indices kept.
        let mut keep: Vec<Vec<usize>> = data.dims.iter().map(|&d| (0..d).collect()).collect();
        for k in 0..starts.len() {
            let (a, step) = (axes[k], steps[k]);
            let d = data.dims[a] as i64;
            if step == 0 {
                return malformed("Slice step 0");
            }
            let norm = |v: i64, lo: i64, hi: i64| (if v < 0 { v + d } else { v }).clamp(lo, hi);
            let mut idx = Vec::new();
            if step > 0 {
                let (mut i, e) = (norm(starts[k], 0, d), norm(ends[k], 0, d));
                while i < e {
                    idx.push(i as usize);
                    i += step;
                }
            } else {
                let (mut i, e) = (norm(starts[k], 0, d - 1), norm(ends[k], -1, d - 1));
                while i > e {
                    idx.push(i as usize);
                    i += step;
                }
            }
            keep[a] = idx;
        }
        let mut t = data.clone();
        for (a, idx) in keep.iter().enumerate() {
            if idx.len() != t.dims[a] || idx.iter().enumerate().any(|(i, &j)| i != j) {
                let ix = OnnxTensor {
                    dims: vec![idx.len()],
                    data: Values::I64(idx.iter().map(|&i| i as i64).collect()),
                };
                t = take(&t, a, &ix)?;
            }
        }
        self.set_const(n, t);
        Ok(())
    }

    /// The axes of Squeeze/Unsqueeze: an attribute before opset 13, an input since.
    fn axes_of(&self, n: &NodeProto, at: &mut Attrs) -> Result<Option<Vec<i64>>, OnnxError> {
        if self.opset < 13 {
            return Ok(at.ints("axes"));
        }
        match self.constant(n, 1, "the axes")? {
            Some(t) => Ok(Some(
                t.as_i64()
                    .ok_or_else(|| OnnxError::malformed("axes are not integers"))?
                    .to_vec(),
            )),
            None => Ok(None),
        }
    }

    /// New extent-1 axes. On a constant, a reshape of it; on a runtime value, a reshape
    /// that leaves the batch axis first.
    pub(super) fn unsqueeze(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let axes = self
            .axes_of(n, at)?
            .ok_or_else(|| OnnxError::malformed("Unsqueeze without axes"))?;
        let full = self.onnx_dims(n)?;
        let r = full.len() + axes.len();
        let mut ax: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?;
        ax.sort_unstable();
        if ax.windows(2).any(|w| w[0] == w[1]) {
            return malformed(format!("Unsqueeze axes {axes:?} repeat"));
        }
        let mut out = Vec::with_capacity(r);
        let mut src = full.iter();
        for i in 0..r {
            out.push(if ax.contains(&i) {
                1
            } else {
                *src.next().expect("rank")
            });
        }
        self.reshape_to(n, out)
    }

    /// Extent-1 axes removed (all of them when no axes are given).
    pub(super) fn squeeze(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let axes = self.axes_of(n, at)?;
        let full = self.onnx_dims(n)?;
        let ax: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| axis(a, full.len()))
                .collect::<Result<_, _>>()?,
            None => (0..full.len()).filter(|&i| full[i] == 1).collect(),
        };
        if let Some(&a) = ax.iter().find(|&&a| full[a] != 1) {
            return malformed(format!("Squeeze of axis {a} of extent {}", full[a]));
        }
        let out = full
            .iter()
            .enumerate()
            .filter(|(i, _)| !ax.contains(i))
            .map(|(_, &d)| d)
            .collect();
        self.reshape_to(n, out)
    }

    /// The ONNX shape of input 0: a constant's, or a runtime value's with the batch axis
    /// as 0 (a placeholder that [`Self::reshape_to`] checks stays first).
    fn onnx_dims(&self, n: &NodeProto) -> Result<Vec<usize>, OnnxError> {
        Ok(match self.input(n, 0)? {
            Val::Const(t) => t.dims.clone(),
            Val::Run { dims, batched, .. } => {
                let mut f = dims.clone();
                if self.batch_mode && *batched {
                    f.insert(0, 0);
                }
                f
            }
        })
    }

    /// Input 0 given the ONNX shape `out` (the same elements); for a batched runtime
    /// value, `out[0]` must be the batch axis.
    fn reshape_to(&mut self, n: &NodeProto, out: Vec<usize>) -> Result<(), OnnxError> {
        if let Some(t) = self.const_input(n, 0) {
            let mut t = t.clone();
            t.dims = out;
            self.set_const(n, t);
            return Ok(());
        }
        let (x, d, batched) = self.operand(n, 0)?;
        let per_sample = if self.batch_mode && batched {
            if out.first() != Some(&0) || out[1..].contains(&0) {
                return unsupported(format!("{} that moves the batch axis", n.op_type));
            }
            out[1..].to_vec()
        } else {
            out
        };
        let per_sample = if per_sample.is_empty() {
            vec![1]
        } else {
            per_sample
        };
        if per_sample.len() > MAX_RANK {
            return unsupported(format!(
                "{} to rank {} (the runtime holds rank 1 to {MAX_RANK} per sample)",
                n.op_type,
                per_sample.len()
            ));
        }
        if per_sample == d {
            self.vals.insert(
                n.output[0].clone(),
                Val::Run {
                    id: x,
                    dims: d,
                    batched,
                },
            );
            return Ok(());
        }
        let y = self.b.op(OpSpec::Reshape(dims(&per_sample)?), &[x]);
        self.set(n, 0, y, per_sample, batched);
        Ok(())
    }

    /// A constant filled with one value, of a constant shape.
    pub(super) fn constant_of_shape(
        &mut self,
        n: &NodeProto,
        at: &mut Attrs,
    ) -> Result<(), OnnxError> {
        let value = match at.get("value") {
            Some(a) => decode(
                a.t.as_ref()
                    .ok_or_else(|| OnnxError::malformed("ConstantOfShape value holds no tensor"))?,
                None,
            )?,
            None => OnnxTensor {
                dims: vec![1],
                data: Values::F32(vec![0.0]),
            },
        };
        let Some(shape) = self.const_input(n, 0) else {
            return unsupported("ConstantOfShape of a runtime shape");
        };
        if has_batch(shape) {
            return unsupported("ConstantOfShape of a shape with the batch size");
        }
        let d: Vec<usize> = shape
            .as_i64()
            .ok_or_else(|| OnnxError::malformed("ConstantOfShape shape is not integer"))?
            .iter()
            .map(|&x| usize::try_from(x))
            .collect::<Result<_, _>>()
            .map_err(|_| OnnxError::malformed("ConstantOfShape of a negative extent"))?;
        let total = d
            .iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x))
            .filter(|&t| t <= 1 << 24)
            .ok_or_else(|| OnnxError::unsupported("ConstantOfShape too large"))?;
        if value.numel() != 1 {
            return malformed("ConstantOfShape value is not one element");
        }
        let data = match &value.data {
            Values::I64(v) => Values::I64(vec![v[0]; total]),
            Values::F32(v) => Values::F32(vec![v[0]; total]),
        };
        self.set_const(n, OnnxTensor { dims: d, data });
        Ok(())
    }

    /// `Range(start, limit, delta)` of constants.
    pub(super) fn range(&mut self, n: &NodeProto, _: &mut Attrs) -> Result<(), OnnxError> {
        let (Some(s), Some(l), Some(d)) = (
            self.const_input(n, 0),
            self.const_input(n, 1),
            self.const_input(n, 2),
        ) else {
            return unsupported("Range of runtime values");
        };
        if [s, l, d].iter().any(|t| t.numel() != 1 || has_batch(t)) {
            return unsupported("Range of other than constant scalars");
        }
        let t = match (s.as_i64(), l.as_i64(), d.as_i64()) {
            (Some(s), Some(l), Some(d)) => {
                let (s, l, d) = (s[0], l[0], d[0]);
                if d == 0 {
                    return malformed("Range with delta 0");
                }
                let count = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
                if count > 1 << 24 {
                    return unsupported("Range too long");
                }
                let v: Vec<i64> = (0..count as i64).map(|i| s + i * d).collect();
                OnnxTensor {
                    dims: vec![v.len()],
                    data: Values::I64(v),
                }
            }
            _ => {
                let (s, l, d) = (s.to_f32()[0], l.to_f32()[0], d.to_f32()[0]);
                let count = ((l - s) / d).ceil();
                if !(count.is_finite()) || count > (1 << 24) as f32 {
                    return unsupported("Range too long");
                }
                let count = count.max(0.0) as usize;
                let v: Vec<f32> = (0..count).map(|i| s + i as f32 * d).collect();
                OnnxTensor {
                    dims: vec![v.len()],
                    data: Values::F32(v),
                }
            }
        };
        self.set_const(n, t);
        Ok(())
    }
}

/// A constant with its axes permuted: output axis `i` is input axis `p[i]`.
fn permute(t: &OnnxTensor, p: &[usize]) -> OnnxTensor {
    let r = t.dims.len();
    let mut st = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        st[i] = st[i + 1] * t.dims[i + 1];
    }
    let od: Vec<usize> = p.iter().map(|&a| t.dims[a]).collect();
    let total: usize = od.iter().product();
    let mut idx = Vec::with_capacity(total);
    let mut pos = vec![0usize; r];
    for _ in 0..total {
        idx.push((0..r).map(|i| pos[i] * st[p[i]]).sum::<usize>());
        for a in (0..r).rev() {
            pos[a] += 1;
            if pos[a] < od[a] {
                break;
            }
            pos[a] = 0;
        }
    }
    let data = match &t.data {
        Values::I64(v) => Values::I64(idx.iter().map(|&k| v[k]).collect()),
        Values::F32(v) => Values::F32(idx.iter().map(|&k| v[k]).collect()),
    };
    OnnxTensor { dims: od, data }
}

/// Reshape's target: 0 copies the input's axis (unless `allowzero`), -1 takes the rest.
pub(super) fn resolve_shape(
    input: &[usize],
    t: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OnnxError> {
    let mismatch = || malformed(format!("Reshape of {input:?} to {t:?}: dimension mismatch"));
    // Checked: a hostile target's extents (each up to 2^63) overflow a plain product.
    let Some(total) = checked_numel(input) else {
        return mismatch();
    };
    let mut out = Vec::with_capacity(t.len());
    let mut infer = None;
    for (i, &v) in t.iter().enumerate() {
        match v {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                out.push(*input.get(i).ok_or_else(|| {
                    OnnxError::malformed("Reshape copies an axis the input lacks")
                })?)
            }
            v if v > 0 => out.push(v as usize),
            _ => return malformed(format!("Reshape target {t:?}")),
        }
    }
    let Some(known) = checked_numel(&out) else {
        return mismatch();
    };
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return mismatch();
        }
        out[i] = total / known;
    } else if known != total {
        return mismatch();
    }
    Ok(out)
}

/// The product of `dims`, or `None` where it overflows.
fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// Found by the `onnx_import` fuzz target: a Reshape target whose extents multiply
    /// past `usize` panicked ("attempt to multiply with overflow") instead of erring.
    #[test]
    fn a_reshape_target_whose_product_overflows_is_an_error() {
        let huge = 1i64 << 40;
        for t in [
            vec![huge, huge],
            vec![huge, huge, -1],
            vec![-1, huge, huge],
            vec![i64::MAX, 2],
        ] {
            let e = resolve_shape(&[2, 3], &t, false).unwrap_err();
            assert!(e.to_string().contains("dimension mismatch"), "{t:?}: {e}");
        }
        // An input whose own product overflows (no real tensor has one) errs too.
        assert!(resolve_shape(&[usize::MAX, 2], &[-1], false).is_err());
        assert_eq!(resolve_shape(&[2, 3], &[3, -1], false).unwrap(), [3, 2]);
        assert_eq!(resolve_shape(&[2, 3], &[0, 3], false).unwrap(), [2, 3]);
    }
}
