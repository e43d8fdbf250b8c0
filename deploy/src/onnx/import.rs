//! ONNX -> tether: decode, sort the graph, translate each node into runtime ops with the
//! shapes inferred along the way, and write the model (which `ModelBuilder::finish`
//! reloads, so an import that would not run is never returned).

use std::collections::{HashMap, HashSet};
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use onnx_protobuf::{AttributeProto, Message, ModelProto, NodeProto, ValueInfoProto};

use super::OnnxError;
use super::tensor::{OnnxTensor, Values, decode_tensor};
use crate::format::{Binary, ConvGeom, Dims, MAX_RANK, PoolGeom, Unary, broadcast, conv_out};
use crate::write::{ModelBuilder, OpSpec, ValueId};

/// The ONNX ops the importer translates (default domain). Their node tests' results are
/// in docs/onnx-conformance.md.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Cos",
    "Div",
    "Dropout",
    "Elu",
    "Exp",
    "Flatten",
    "Floor",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "Identity",
    "LeakyRelu",
    "Log",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "Reciprocal",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Sin",
    "Softmax",
    "Softplus",
    "Sqrt",
    "Sub",
    "Tanh",
    "Transpose",
];

/// Parses ONNX bytes and imports the model (see [`import`]).
pub fn import_bytes(bytes: &[u8]) -> Result<Vec<u8>, OnnxError> {
    let m = ModelProto::parse_from_bytes(bytes).map_err(|e| {
        OnnxError::malformed(format!("not an ONNX model (protobuf decoding failed: {e})"))
    })?;
    import(&m, &HashMap::new())
}

/// Imports an ONNX model as tether model bytes. `bind` fixes graph inputs to constant
/// values (by name), as if they were initializers: the conformance runner uses it for
/// node tests that feed a convolution's weights as an input.
pub fn import(m: &ModelProto, bind: &HashMap<String, OnnxTensor>) -> Result<Vec<u8>, OnnxError> {
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::malformed("the model has no graph"))?;
    let mut opset = None;
    for o in &m.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    let opset = opset.unwrap_or(if m.opset_import.is_empty() { 1 } else { 0 });
    if opset < 1 {
        return Err(OnnxError::unsupported(
            "the model imports no default-domain (ai.onnx) opset",
        ));
    }
    let mut vals: HashMap<String, Val> = HashMap::new();
    for s in &g.sparse_initializer {
        let (name, t) = decode_sparse(s).map_err(|e| with_context(e, None, opset))?;
        vals.insert(name, Val::Const(t));
    }
    for t in &g.initializer {
        let d = decode_tensor(t).map_err(|e| with_context(e, None, opset))?;
        vals.insert(t.name.clone(), Val::Const(d));
    }
    for (name, t) in bind {
        vals.insert(name.clone(), Val::Const(t.clone()));
    }
    // Runtime inputs: graph inputs that no initializer or binding shadows.
    let inputs: Vec<&ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !vals.contains_key(&i.name))
        .collect();
    if inputs.is_empty() {
        return Err(OnnxError::unsupported(
            "the graph has no runtime input (every input is an initializer)",
        ));
    }
    let shapes: Vec<Vec<Dim>> = inputs
        .iter()
        .map(|i| input_shape(i))
        .collect::<Result<_, _>>()?;
    // The batch axis: a symbolic leading dimension of the first input.
    let batch_mode = matches!(shapes[0].first(), Some(Dim::Symbolic(_)));
    let mut per_sample = Vec::new();
    for (i, s) in inputs.iter().zip(&shapes) {
        let start = usize::from(batch_mode);
        if batch_mode && !matches!(s.first(), Some(Dim::Symbolic(_))) {
            return Err(OnnxError::unsupported(format!(
                "input {:?}: the first input has a symbolic batch axis and this one does not",
                i.name
            )));
        }
        let mut dims = Vec::new();
        for (axis, d) in s.iter().enumerate().skip(start) {
            match d {
                Dim::Fixed(n) => dims.push(*n),
                Dim::Symbolic(p) => {
                    return Err(OnnxError::unsupported(format!(
                        "input {:?}: symbolic dimension {p:?} at axis {axis} (only the leading \
                         batch axis may be symbolic)",
                        i.name
                    )));
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
        }
        if dims.len() > MAX_RANK || dims.contains(&0) {
            return Err(OnnxError::unsupported(format!(
                "input {:?}: per-sample shape {dims:?} (rank 1 to {MAX_RANK}, no empty axis)",
                i.name
            )));
        }
        per_sample.push(dims);
    }
    let mut b = ModelBuilder::new(&per_sample[0]);
    let first = b.input();
    vals.insert(
        inputs[0].name.clone(),
        Val::Run {
            id: first,
            dims: per_sample[0].clone(),
            batched: true,
        },
    );
    for (i, dims) in inputs.iter().zip(&per_sample).skip(1) {
        let id = b.extra_input(dims);
        vals.insert(
            i.name.clone(),
            Val::Run {
                id,
                dims: dims.clone(),
                batched: true,
            },
        );
    }
    if g.output.len() != 1 {
        return Err(OnnxError::unsupported(format!(
            "{} graph outputs (the runtime has one)",
            g.output.len()
        )));
    }
    let order = topological_order(&g.node, &vals)?;
    let (sines, fused) = siren_sines(g, &vals);
    let mut im = Importer {
        b,
        vals,
        materialized: HashMap::new(),
        batch_mode,
        opset,
    };
    for i in order {
        let node = &g.node[i];
        let label = if node.name.is_empty() {
            format!("#{i}")
        } else {
            format!("{:?}", node.name)
        };
        if fused.contains(&i) {
            continue;
        }
        let done = match sines.get(&i) {
            Some((x, w0)) => im.sine(node, x, *w0),
            None => im.node(node),
        };
        done.map_err(|e| with_context(e, Some((label, node.op_type.clone())), opset))?;
    }
    let out = &g.output[0];
    let (id, dims, batched) = match im.vals.get(&out.name) {
        Some(Val::Run { id, dims, batched }) => (*id, dims.clone(), *batched),
        Some(Val::Const(_)) => {
            return Err(OnnxError::unsupported(format!(
                "graph output {:?} is a constant",
                out.name
            )));
        }
        None => {
            return Err(OnnxError::malformed(format!(
                "graph output {:?} is produced by no node",
                out.name
            )));
        }
    };
    if !batched {
        return Err(OnnxError::unsupported(format!(
            "graph output {:?} depends on no input",
            out.name
        )));
    }
    // A declared output shape must agree with the inferred one.
    if let Ok(declared) = input_shape(out) {
        let full = im.full_shape(&dims, batched);
        let agree = declared.len() == full.len()
            && declared
                .iter()
                .zip(&full)
                .all(|(d, &f)| !matches!(d, Dim::Fixed(n) if *n != f));
        let scalar = declared.is_empty() && dims.iter().product::<usize>() == 1;
        if !agree && !scalar && !declared.is_empty() {
            return Err(OnnxError::malformed(format!(
                "graph output {:?}: declared shape {:?} but the graph computes {full:?}",
                out.name, declared
            )));
        }
    }
    im.b.finish(id)
        .map_err(|e| OnnxError::malformed(format!("the translated model does not load: {e}")))
}

/// A `SparseTensorProto` as a dense tensor: values `[nnz]` at indices given either as
/// linear offsets `[nnz]` or coordinates `[nnz, rank]`, each checked in range.
fn decode_sparse(s: &onnx_protobuf::SparseTensorProto) -> Result<(String, OnnxTensor), OnnxError> {
    let values = decode_tensor(
        s.values
            .as_ref()
            .ok_or_else(|| OnnxError::malformed("sparse initializer without values"))?,
    )?;
    let name = s
        .values
        .as_ref()
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let idx = decode_tensor(s.indices.as_ref().ok_or_else(|| {
        OnnxError::malformed(format!("sparse initializer {name:?} without indices"))
    })?)?;
    let shape: Vec<usize> = s
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            OnnxError::malformed(format!("sparse initializer {name:?}: negative dimension"))
        })?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 28)
        .ok_or_else(|| {
            OnnxError::unsupported(format!("sparse initializer {name:?} is too large"))
        })?;
    let vals = values.to_f32();
    let ix = idx.as_i64().ok_or_else(|| {
        OnnxError::malformed(format!("sparse initializer {name:?}: float indices"))
    })?;
    let nnz = vals.len();
    let linear: Vec<i64> = if idx.dims.len() == 1 && ix.len() == nnz {
        ix.to_vec()
    } else if idx.dims == [nnz, shape.len()] {
        if ix.chunks_exact(shape.len().max(1)).any(|c| {
            c.iter()
                .zip(&shape)
                .any(|(&i, &d)| i < 0 || i as usize >= d)
        }) {
            return malformed(format!("sparse initializer {name:?}: index out of range"));
        }
        ix.chunks_exact(shape.len().max(1))
            .map(|c| {
                c.iter()
                    .zip(&shape)
                    .fold(0i64, |a, (&i, &d)| a * d as i64 + i)
            })
            .collect()
    } else {
        return malformed(format!(
            "sparse initializer {name:?}: indices of shape {:?}",
            idx.dims
        ));
    };
    let mut dense = vec![0.0f32; numel];
    for (&i, &v) in linear.iter().zip(&vals) {
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < numel)
            .ok_or_else(|| {
                OnnxError::malformed(format!(
                    "sparse initializer {name:?}: index {i} out of range"
                ))
            })?;
        dense[i] = v;
    }
    Ok((
        name,
        OnnxTensor {
            dims: shape,
            data: Values::F32(dense),
        },
    ))
}

/// SIREN layers: `Sin(Mul(x, w0))` with `w0` a scalar initializer and the product read by
/// nothing else runs as one `sin(w0 x)` op (the runtime's sine kernel; it is also how
/// export writes that op, so a SIREN round-trips to the same model). Returns the Sin nodes
/// with their `(x, w0)`, and the Mul nodes they absorb.
fn siren_sines(
    g: &onnx_protobuf::GraphProto,
    vals: &HashMap<String, Val>,
) -> (HashMap<usize, (String, f32)>, HashSet<usize>) {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &g.node {
        for i in &n.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &g.output {
        *readers.entry(o.name.as_str()).or_default() += 1;
    }
    let scalar = |name: &str| match vals.get(name) {
        Some(Val::Const(t)) if t.numel() == 1 => match &t.data {
            Values::F32(v) => Some(v[0]),
            Values::I64(_) => None,
        },
        _ => None,
    };
    let (mut sines, mut fused) = (HashMap::new(), HashSet::new());
    for (si, s) in g.node.iter().enumerate() {
        if s.op_type != "Sin" || s.input.len() != 1 || !s.attribute.is_empty() {
            continue;
        }
        let Some((mi, m)) = g
            .node
            .iter()
            .enumerate()
            .find(|(_, m)| m.output.first() == Some(&s.input[0]))
        else {
            continue;
        };
        if m.op_type != "Mul" || m.input.len() != 2 || readers.get(s.input[0].as_str()) != Some(&1)
        {
            continue;
        }
        let (x, w0) = match (scalar(&m.input[0]), scalar(&m.input[1])) {
            (None, Some(w0)) => (&m.input[0], w0),
            (Some(w0), None) => (&m.input[1], w0),
            _ => continue,
        };
        if w0.is_finite()
            && !vals
                .get(x.as_str())
                .is_some_and(|v| matches!(v, Val::Const(_)))
        {
            sines.insert(si, (x.clone(), w0));
            fused.insert(mi);
        }
    }
    (sines, fused)
}

fn with_context(mut e: OnnxError, node: Option<(String, String)>, opset: i64) -> OnnxError {
    if let Some((n, op)) = node {
        e.node.get_or_insert(n);
        e.op.get_or_insert(op);
    }
    e.opset.get_or_insert(opset);
    e
}

#[derive(Clone, Debug, PartialEq)]
enum Dim {
    Fixed(usize),
    Symbolic(String),
}

fn input_shape(i: &ValueInfoProto) -> Result<Vec<Dim>, OnnxError> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as D;
    use onnx_protobuf::type_proto::Value as T;
    let t = match i.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(t)) => t,
        _ => {
            return Err(OnnxError::unsupported(format!(
                "value {:?} is not a tensor",
                i.name
            )));
        }
    };
    let float = [1, 10, 11, 16]; // FLOAT, FLOAT16, DOUBLE, BFLOAT16
    if !float.contains(&t.elem_type) {
        return Err(OnnxError::unsupported(format!(
            "value {:?} has element type {} (the runtime computes in f32)",
            i.name, t.elem_type
        )));
    }
    let shape = t
        .shape
        .as_ref()
        .ok_or_else(|| OnnxError::unsupported(format!("value {:?} has no shape", i.name)))?;
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(D::DimValue(v)) if *v >= 0 => Ok(Dim::Fixed(*v as usize)),
            Some(D::DimValue(v)) => Err(OnnxError::malformed(format!(
                "value {:?} has a negative dimension {v}",
                i.name
            ))),
            Some(D::DimParam(p)) => Ok(Dim::Symbolic(p.clone())),
            _ => Ok(Dim::Symbolic("?".to_string())),
        })
        .collect()
}

/// Kahn's algorithm over value names: the node order, or an error naming a node on a
/// cycle or reading a value nothing defines.
fn topological_order(
    nodes: &[NodeProto],
    known: &HashMap<String, Val>,
) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o.as_str(), i).is_some() || known.contains_key(o) {
                return Err(OnnxError::malformed(format!(
                    "value {o:?} is defined more than once"
                )));
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    readers[p].push(i);
                }
                None if known.contains_key(inp) => {}
                None => {
                    return Err(OnnxError::malformed(format!(
                        "node {:?} ({}) reads {inp:?}, which no node, graph input or \
                         initializer defines (a missing initializer?)",
                        n.name, n.op_type
                    )));
                }
            }
        }
    }
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &r in readers[i].iter().rev() {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.push(r);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: HashSet<usize> = (0..nodes.len()).filter(|i| !order.contains(i)).collect();
        let n = &nodes[*stuck.iter().min().expect("non-empty")];
        return Err(OnnxError::malformed(format!(
            "the graph has a cycle: node {:?} ({}) depends on its own output",
            n.name, n.op_type
        )));
    }
    Ok(order)
}

/// A value during translation: a constant (initializer or folded), or a runtime value
/// with its per-sample shape.
#[derive(Clone, Debug)]
enum Val {
    Const(OnnxTensor),
    Run {
        id: ValueId,
        dims: Vec<usize>,
        batched: bool,
    },
}

struct Importer {
    b: ModelBuilder,
    vals: HashMap<String, Val>,
    /// Constants already added to the runtime graph as values.
    materialized: HashMap<String, (ValueId, Vec<usize>)>,
    batch_mode: bool,
    opset: i64,
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T, OnnxError> {
    Err(OnnxError::unsupported(msg))
}

fn malformed<T>(msg: impl Into<String>) -> Result<T, OnnxError> {
    Err(OnnxError::malformed(msg))
}

/// Attributes of one node, each read at most once; any left unread is an unsupported
/// attribute.
struct Attrs<'n> {
    attrs: &'n [AttributeProto],
    used: Vec<bool>,
}

impl<'n> Attrs<'n> {
    fn new(n: &'n NodeProto) -> Self {
        Self {
            attrs: &n.attribute,
            used: vec![false; n.attribute.len()],
        }
    }

    fn get(&mut self, name: &str) -> Option<&'n AttributeProto> {
        let i = self.attrs.iter().position(|a| a.name == name)?;
        self.used[i] = true;
        Some(&self.attrs[i])
    }

    fn int(&mut self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    fn float(&mut self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    fn ints(&mut self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    fn string(&mut self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// Errors on the first attribute nobody read.
    fn done(self) -> Result<(), OnnxError> {
        match self.used.iter().position(|&u| !u) {
            Some(i) => unsupported(format!("attribute {:?}", self.attrs[i].name)),
            None => Ok(()),
        }
    }
}

fn axis(a: i64, rank: usize) -> Result<usize, OnnxError> {
    let r = rank as i64;
    if a < -r || a >= r {
        return malformed(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

fn dims(d: &[usize]) -> Result<Dims, OnnxError> {
    let d = if d.is_empty() { &[1][..] } else { d };
    Dims::new(d).ok_or_else(|| {
        OnnxError::unsupported(format!(
            "shape {d:?} (the runtime holds rank 1 to {MAX_RANK}, no empty axis)"
        ))
    })
}

/// `v` (`[rows, cols]`) transposed.
fn transpose2(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    crate::kernels::sparse::transpose(v, rows, cols, &mut t);
    t
}

impl Importer {
    /// The ONNX shape of a value: the batch axis in front of a batched value's per-sample
    /// shape (1 stands for the symbolic batch).
    fn full_shape(&self, d: &[usize], batched: bool) -> Vec<usize> {
        if self.batch_mode && batched {
            let mut f = vec![1];
            f.extend_from_slice(d);
            f
        } else {
            d.to_vec()
        }
    }

    fn get(&self, n: &NodeProto, i: usize) -> Result<Option<&Val>, OnnxError> {
        match n.input.get(i).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => self
                .vals
                .get(name)
                .map(Some)
                .ok_or_else(|| OnnxError::malformed(format!("input {name:?} is undefined"))),
        }
    }

    fn input(&self, n: &NodeProto, i: usize) -> Result<&Val, OnnxError> {
        self.get(n, i)?
            .ok_or_else(|| OnnxError::malformed(format!("input {i} is missing")))
    }

    fn constant(
        &self,
        n: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<OnnxTensor>, OnnxError> {
        match self.get(n, i)? {
            None => Ok(None),
            Some(Val::Const(t)) => Ok(Some(t.clone())),
            Some(Val::Run { .. }) => unsupported(format!(
                "{what} (input {i}) must be a constant (an initializer)"
            )),
        }
    }

    /// A runtime operand: a runtime value, or a constant added to the graph once.
    fn operand(
        &mut self,
        n: &NodeProto,
        i: usize,
    ) -> Result<(ValueId, Vec<usize>, bool), OnnxError> {
        let name = n.input[i].clone();
        match self.input(n, i)?.clone() {
            Val::Run { id, dims, batched } => Ok((id, dims, batched)),
            Val::Const(t) => {
                if let Some((id, d)) = self.materialized.get(&name) {
                    return Ok((*id, d.clone(), false));
                }
                let d = dims(&t.dims)?.as_slice().to_vec();
                let tid = self.b.dense(&d, &t.to_f32());
                let id = self.b.op(OpSpec::Const(tid), &[]);
                self.materialized.insert(name, (id, d.clone()));
                Ok((id, d, false))
            }
        }
    }

    fn set(&mut self, n: &NodeProto, k: usize, id: ValueId, d: Vec<usize>, batched: bool) {
        if let Some(name) = n.output.get(k).filter(|s| !s.is_empty()) {
            self.vals.insert(
                name.clone(),
                Val::Run {
                    id,
                    dims: d,
                    batched,
                },
            );
        }
    }

    fn only_outputs(&self, n: &NodeProto, k: usize) -> Result<(), OnnxError> {
        if n.output.iter().skip(k).any(|o| !o.is_empty()) {
            return unsupported(format!("output {k} of the node (only {k} supported)"));
        }
        Ok(())
    }

    /// A per-sample axis from an ONNX axis of a value of per-sample rank `rank`.
    fn sample_axis(&self, a: i64, rank: usize, batched: bool) -> Result<usize, OnnxError> {
        if self.batch_mode && batched {
            let a = axis(a, rank + 1)?;
            if a == 0 {
                return unsupported("an op along the batch axis");
            }
            Ok(a - 1)
        } else {
            axis(a, rank)
        }
    }

    /// A fused `Sin(Mul(x, w0))` (see [`siren_sines`]).
    fn sine(&mut self, n: &NodeProto, x: &str, w0: f32) -> Result<(), OnnxError> {
        let (id, d, batched) = match self.vals.get(x) {
            Some(Val::Run { id, dims, batched }) => (*id, dims.clone(), *batched),
            _ => return malformed(format!("Sin input {x:?} is undefined")),
        };
        let y = self.b.op(OpSpec::Sine { w0 }, &[id]);
        self.set(n, 0, y, d, batched);
        Ok(())
    }

    /// A one-input, same-shape op.
    fn elementwise(&mut self, n: &NodeProto, spec: OpSpec) -> Result<(), OnnxError> {
        let (x, d, batched) = self.operand(n, 0)?;
        let y = self.b.op(spec, &[x]);
        self.set(n, 0, y, d, batched);
        Ok(())
    }

    /// A binary op with ONNX (multidirectional) broadcasting.
    fn binary(&mut self, n: &NodeProto, op: Binary) -> Result<(), OnnxError> {
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

    /// In batch mode, a constant that spans the batch axis (ONNX rank above the other
    /// operand's per-sample rank) must be 1 there; it is then reshaped to drop that axis.
    fn align(
        &mut self,
        v: ValueId,
        d: &mut Vec<usize>,
        batched: bool,
        other_batched: bool,
        other: &[usize],
    ) -> Result<ValueId, OnnxError> {
        if !self.batch_mode || batched || !other_batched || d.len() <= other.len() {
            if self.batch_mode && batched && other_batched && d.len() != other.len() {
                return unsupported(
                    "two batched operands of different ranks (their broadcast mixes the batch axis)",
                );
            }
            return Ok(v);
        }
        if d.len() == other.len() + 1 && d[0] == 1 {
            d.remove(0);
            let nd = dims(d)?;
            return Ok(self.b.op(OpSpec::Reshape(nd), &[v]));
        }
        unsupported("a constant operand that spans the batch axis")
    }

    fn node(&mut self, n: &NodeProto) -> Result<(), OnnxError> {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return unsupported(format!("domain {:?}", n.domain));
        }
        let mut at = Attrs::new(n);
        let op = n.op_type.as_str();
        let simple_unary = match op {
            "Sigmoid" => Some(Unary::Sigmoid),
            "Tanh" => Some(Unary::Tanh),
            "Exp" => Some(Unary::Exp),
            "Log" => Some(Unary::Log),
            "Sqrt" => Some(Unary::Sqrt),
            "Neg" => Some(Unary::Neg),
            "Abs" => Some(Unary::Abs),
            "Reciprocal" => Some(Unary::Reciprocal),
            "Softplus" => Some(Unary::Softplus),
            "Floor" => Some(Unary::Floor),
            "Ceil" => Some(Unary::Ceil),
            "Sin" => Some(Unary::Sin),
            "Cos" => Some(Unary::Cos),
            _ => None,
        };
        if let Some(f) = simple_unary {
            at.done()?;
            self.only_outputs(n, 1)?;
            return self.elementwise(n, OpSpec::Unary(f));
        }
        match op {
            "Relu" => {
                at.done()?;
                self.elementwise(n, OpSpec::Relu)
            }
            "LeakyRelu" => {
                let a = at.float("alpha", 0.01);
                at.done()?;
                self.elementwise(n, OpSpec::Unary(Unary::LeakyRelu(a)))
            }
            "Elu" => {
                let a = at.float("alpha", 1.0);
                at.done()?;
                self.elementwise(n, OpSpec::Unary(Unary::Elu(a)))
            }
            "HardSigmoid" => {
                let a = at.float("alpha", 0.2);
                let b = at.float("beta", 0.5);
                at.done()?;
                self.elementwise(n, OpSpec::Unary(Unary::HardSigmoid(a, b)))
            }
            "Clip" => {
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
                at.done()?;
                self.elementwise(n, OpSpec::Unary(Unary::Clip(lo, hi)))
            }
            "Identity" | "Dropout" => {
                if op == "Dropout" {
                    at.get("ratio");
                    at.get("seed");
                    if at.int("is_test", 1) == 0 {
                        return unsupported("Dropout in training mode");
                    }
                    self.only_outputs(n, 1)?;
                    if self.opset >= 12
                        && let Some(Val::Const(t)) = self.get(n, 2)?
                        && t.as_i64().is_some_and(|v| v.iter().any(|&x| x != 0))
                    {
                        return unsupported("Dropout with training_mode = true");
                    }
                }
                at.done()?;
                let v = self.input(n, 0)?.clone();
                if let Some(name) = n.output.first() {
                    self.vals.insert(name.clone(), v);
                }
                Ok(())
            }
            "Constant" => {
                let t = if let Some(a) = at.get("value") {
                    decode_tensor(a.t.as_ref().ok_or_else(|| {
                        OnnxError::malformed("Constant value attribute holds no tensor")
                    })?)?
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
                at.done()?;
                if let Some(name) = n.output.first() {
                    self.vals.insert(name.clone(), Val::Const(t));
                }
                Ok(())
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                if self.opset < 7 {
                    at.get("broadcast");
                    at.get("axis");
                    if self.opset < 7 && n.attribute.iter().any(|a| a.name == "axis") {
                        return unsupported("legacy broadcast axis");
                    }
                }
                at.done()?;
                let kind = match op {
                    "Add" => Binary::Add,
                    "Sub" => Binary::Sub,
                    "Mul" => Binary::Mul,
                    _ => Binary::Div,
                };
                self.binary(n, kind)
            }
            "MatMul" => {
                at.done()?;
                self.matmul(n)
            }
            "Gemm" => self.gemm(n, at),
            "Conv" => self.conv(n, at),
            "MaxPool" | "AveragePool" => self.pool(n, at, op == "MaxPool"),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                at.done()?;
                let (x, d, batched) = self.operand(n, 0)?;
                if self.full_shape(&d, batched).len() != 4 || d.len() < 3 {
                    return unsupported("global pooling of other than [N, C, H, W]");
                }
                let r = d.len();
                let mut g = PoolGeom::simple(1, 1);
                g.kernel = [d[r - 2], d[r - 1]];
                let spec = if op == "GlobalMaxPool" {
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
            "Softmax" => {
                let (x, d, batched) = self.operand(n, 0)?;
                let legacy = self.opset < 13;
                let a = at.int("axis", if legacy { 1 } else { -1 });
                at.done()?;
                let a = self.sample_axis(a, d.len(), batched)?;
                let end = if legacy { d.len() } else { a + 1 };
                let y = self.b.op(OpSpec::SoftmaxAxes { axis: a, end }, &[x]);
                self.set(n, 0, y, d, batched);
                Ok(())
            }
            "Flatten" => {
                let (x, d, batched) = self.operand(n, 0)?;
                let full = self.full_shape(&d, batched);
                let a = at.int("axis", 1);
                at.done()?;
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
            "Reshape" => {
                let allowzero = at.int("allowzero", 0) != 0;
                at.done()?;
                let shape = self
                    .constant(n, 1, "the target shape")?
                    .ok_or_else(|| OnnxError::malformed("Reshape without a shape"))?;
                let t = shape
                    .as_i64()
                    .ok_or_else(|| OnnxError::malformed("Reshape shape is not integer"))?
                    .to_vec();
                let (x, d, batched) = self.operand(n, 0)?;
                let nd = if self.batch_mode && batched {
                    match t.first() {
                        Some(0) | Some(-1) if !allowzero || t[0] == -1 => {
                            if t[0] == -1 && t[1..].contains(&-1) {
                                return unsupported("Reshape with -1 twice");
                            }
                            resolve_shape(&d, &t[1..], false)?
                        }
                        _ => return unsupported("Reshape that does not keep the batch axis"),
                    }
                } else {
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
            "Transpose" => {
                let (x, d, batched) = self.operand(n, 0)?;
                let full_rank = self.full_shape(&d, batched).len();
                let perm: Vec<i64> = at
                    .ints("perm")
                    .unwrap_or_else(|| (0..full_rank as i64).rev().collect());
                at.done()?;
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
            "Concat" => {
                let axis_attr = at
                    .get("axis")
                    .map(|x| x.i)
                    .ok_or_else(|| OnnxError::malformed("Concat without axis"))?;
                at.done()?;
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
            "BatchNormalization" => {
                let eps = at.float("epsilon", 1e-5);
                at.get("momentum");
                at.get("spatial");
                if at.int("training_mode", 0) != 0 {
                    return unsupported("BatchNormalization in training mode");
                }
                at.done()?;
                self.only_outputs(n, 1)?;
                let c = |i, w| self.constant(n, i, w);
                let (scale, bias, mean, var) =
                    (c(1, "scale")?, c(2, "B")?, c(3, "mean")?, c(4, "var")?);
                let (Some(scale), Some(bias), Some(mean), Some(var)) = (scale, bias, mean, var)
                else {
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
            _ => unsupported(format!(
                "op {op:?} (supported: {})",
                SUPPORTED_OPS.join(", ")
            )),
        }
    }

    fn matmul(&mut self, n: &NodeProto) -> Result<(), OnnxError> {
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

    fn gemm(&mut self, n: &NodeProto, mut at: Attrs) -> Result<(), OnnxError> {
        let alpha = at.float("alpha", 1.0);
        let beta = at.float("beta", 1.0);
        let ta = at.int("transA", 0) != 0;
        let tb = at.int("transB", 0) != 0;
        if self.opset < 7 {
            at.get("broadcast");
        }
        at.done()?;
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
    fn scale(&mut self, v: ValueId, f: f32) -> ValueId {
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

    fn conv(&mut self, n: &NodeProto, mut at: Attrs) -> Result<(), OnnxError> {
        let w = self
            .constant(n, 1, "the weight")?
            .ok_or_else(|| OnnxError::malformed("Conv without a weight"))?;
        let bias = self.constant(n, 2, "the bias")?;
        if w.dims.len() != 4 {
            return unsupported(format!(
                "Conv with a {}-D kernel (2-D only)",
                w.dims.len().saturating_sub(2)
            ));
        }
        let auto_pad = at.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let ks = at.ints("kernel_shape");
        let strides = at.ints("strides").unwrap_or_else(|| vec![1, 1]);
        let dil = at.ints("dilations").unwrap_or_else(|| vec![1, 1]);
        let pads = at.ints("pads").unwrap_or_else(|| vec![0; 4]);
        let group = at.int("group", 1);
        at.done()?;
        if let Some(ks) = &ks
            && (ks.len() != 2 || ks[0] as usize != w.dims[2] || ks[1] as usize != w.dims[3])
        {
            return malformed(format!(
                "kernel_shape {ks:?} differs from the weight {:?}",
                w.dims
            ));
        }
        let (x, d, batched) = self.operand(n, 0)?;
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
        self.set(n, 0, y, nd, batched);
        Ok(())
    }

    fn pool(&mut self, n: &NodeProto, mut at: Attrs, max: bool) -> Result<(), OnnxError> {
        self.only_outputs(n, 1)?;
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
        at.done()?;
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
}

/// ONNX `auto_pad` and `pads` to explicit padding (top, left, bottom, right).
fn resolve_pads(
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

/// Reshape's target: 0 copies the input's axis (unless `allowzero`), -1 takes the rest.
fn resolve_shape(input: &[usize], t: &[i64], allowzero: bool) -> Result<Vec<usize>, OnnxError> {
    let total: usize = input.iter().product();
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
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return malformed(format!("Reshape of {input:?} to {t:?}: dimension mismatch"));
        }
        out[i] = total / known;
    } else if known != total {
        return malformed(format!("Reshape of {input:?} to {t:?}: dimension mismatch"));
    }
    Ok(out)
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
