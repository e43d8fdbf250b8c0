//! ONNX -> tether: decode, sort the graph, translate each node into runtime ops with the
//! shapes inferred along the way, and write the model (which `ModelBuilder::finish`
//! reloads, so an import that would not run is never returned).
//!
//! One concept per module: [`ops`] is the table of supported ops (arity, lowering),
//! checked before any lowering runs; [`attrs`] reads attributes so that an unread one is
//! an error; [`fold`] evaluates constant subgraphs (shape arithmetic) on the host, with
//! the symbolic batch size as a marked value; the op families lower in [`elementwise`],
//! [`linear`], [`conv`], [`shape`] and [`norm`]; [`external`] reads tensors kept in a data
//! file beside the model (PyTorch's default export).

mod attrs;
mod conv;
mod conv_transpose;
mod elementwise;
mod external;
mod fold;
mod importer;
mod linear;
mod norm;
mod ops;
mod resize;
mod shape;
mod siren;
mod sparse;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use onnx_protobuf::{Message, ModelProto, NodeProto, ValueInfoProto};

use super::error::OnnxError;
use super::tensor::OnnxTensor;
use crate::format::MAX_RANK;
use crate::write::ModelBuilder;
pub use external::ExternalData;
use importer::{Importer, Val, decode};
pub use ops::{folded_only_ops, supported_ops};
use siren::siren_sines;
use sparse::decode_sparse;

/// Parses ONNX bytes and imports the model (see [`import`]). A model whose tensors live
/// in an external data file needs [`import_file`], which knows where to look.
pub fn import_bytes(bytes: &[u8]) -> Result<Vec<u8>, OnnxError> {
    import_with(&parse(bytes)?, &HashMap::new(), None)
}

/// Reads an ONNX file and imports it; tensors stored outside it (`data_location =
/// EXTERNAL`, as `torch.onnx.export` writes weights into `model.onnx.data`) are read from
/// files in the model's directory.
pub fn import_file(path: &Path) -> Result<Vec<u8>, OnnxError> {
    import_file_with(path, &ImportOptions::default())
}

/// Which axis of the graph's inputs is the batch axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchAxis {
    /// A symbolic leading dimension (`N`, as `dynamic_axes` writes it) is the batch axis;
    /// a graph with static shapes is one sample.
    #[default]
    Symbolic,
    /// The leading axis is the batch axis even when it is fixed (PyTorch's default export
    /// fixes it at the example's batch size): training and batched inference need one.
    /// Reshape targets that name that fixed size in front keep the batch axis.
    Leading,
}

/// How to import.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// The batch axis.
    pub batch_axis: BatchAxis,
}

/// [`import_file`] with options.
pub fn import_file_with(path: &Path, options: &ImportOptions) -> Result<Vec<u8>, OnnxError> {
    let bytes = std::fs::read(path)
        .map_err(|e| OnnxError::malformed(format!("cannot read {}: {e}", path.display())))?;
    if bytes.is_empty() {
        return Err(OnnxError::malformed(format!(
            "{} is empty, not an ONNX model",
            path.display()
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    import_impl(
        &parse(&bytes)?,
        &HashMap::new(),
        Some(ExternalData::new(dir)),
        options,
    )
}

fn parse(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    ModelProto::parse_from_bytes(bytes).map_err(|e| {
        OnnxError::malformed(format!("not an ONNX model (protobuf decoding failed: {e})"))
    })
}

/// Imports an ONNX model as tether model bytes. `bind` fixes graph inputs to constant
/// values (by name), as if they were initializers: the conformance runner uses it for
/// node tests that feed a convolution's weights as an input.
pub fn import(m: &ModelProto, bind: &HashMap<String, OnnxTensor>) -> Result<Vec<u8>, OnnxError> {
    import_with(m, bind, None)
}

/// [`import`] with external tensor data read through `ext` (`None`: such tensors are an
/// error that says how to import them).
pub fn import_with(
    m: &ModelProto,
    bind: &HashMap<String, OnnxTensor>,
    ext: Option<ExternalData>,
) -> Result<Vec<u8>, OnnxError> {
    import_impl(m, bind, ext, &ImportOptions::default())
}

fn import_impl(
    m: &ModelProto,
    bind: &HashMap<String, OnnxTensor>,
    mut ext: Option<ExternalData>,
    options: &ImportOptions,
) -> Result<Vec<u8>, OnnxError> {
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
        let (name, t) = decode_sparse(s, ext.as_mut()).map_err(|e| with_context(e, None, opset))?;
        vals.insert(name, Val::Const(t));
    }
    for t in &g.initializer {
        let d = decode(t, ext.as_mut()).map_err(|e| with_context(e, None, opset))?;
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
    // The batch axis: a symbolic leading dimension of the first input (or its leading
    // axis whatever it is, when asked).
    let leading = options.batch_axis == BatchAxis::Leading && shapes.iter().all(|s| s.len() >= 2);
    let batch_mode = leading || matches!(shapes[0].first(), Some(Dim::Symbolic(_)));
    let batch_hint = match shapes[0].first() {
        Some(Dim::Fixed(n)) if leading => Some(*n),
        _ => None,
    };
    let mut per_sample = Vec::new();
    for (i, s) in inputs.iter().zip(&shapes) {
        let start = usize::from(batch_mode);
        if batch_mode && !leading && !matches!(s.first(), Some(Dim::Symbolic(_))) {
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
        // The format stores extents, and counts a sample's values, in 32 bits.
        if let Some(&d) = dims.iter().find(|&&d| u32::try_from(d).is_err()) {
            return Err(OnnxError::unsupported(format!(
                "input {:?} has a dimension of {d}, too large: the tether format holds \
                 dimensions up to {}",
                i.name,
                u32::MAX
            )));
        }
        let values = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        if values.is_none_or(|v| v > u64::from(u32::MAX)) {
            return Err(OnnxError::unsupported(format!(
                "input {:?} has {} values per sample, too large: the tether format holds up \
                 to {}",
                i.name,
                values.map_or("more than 2^64".into(), |v| v.to_string()),
                u32::MAX
            )));
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
    if !batch_mode {
        b.set_static_shapes();
    }
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
    if g.output.is_empty() {
        return Err(OnnxError::malformed("the graph has no output"));
    }
    let order = topological_order(&g.node, &vals)?;
    let (sines, fused) = siren_sines(g, &vals);
    let mut im = Importer {
        b,
        vals,
        materialized: HashMap::new(),
        batch_mode,
        batch_hint,
        opset,
        ext,
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
            None => ops::lower(&mut im, node),
        };
        done.map_err(|e| with_context(e, Some((label, node.op_type.clone())), opset))?;
    }
    let mut outs = Vec::with_capacity(g.output.len());
    for out in &g.output {
        outs.push(graph_output(&im, out)?);
    }
    for &extra in &outs[1..] {
        im.b.extra_output(extra);
    }
    let id = outs[0];
    im.b.finish(id)
        .map_err(|e| OnnxError::malformed(format!("the translated model does not load: {e}")))
}
/// The runtime value of graph output `out`, checked: computed from an input, of the shape
/// the graph declares.
fn graph_output(im: &Importer, out: &ValueInfoProto) -> Result<crate::write::ValueId, OnnxError> {
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
            && declared.iter().zip(&full).enumerate().all(|(k, (d, &f))| {
                (k == 0 && im.batch_mode && batched) || !matches!(d, Dim::Fixed(n) if *n != f)
            });
        let scalar = declared.is_empty() && dims.iter().product::<usize>() == 1;
        if !agree && !scalar && !declared.is_empty() {
            return Err(OnnxError::malformed(format!(
                "graph output {:?}: declared shape {:?} but the graph computes {full:?}",
                out.name, declared
            )));
        }
    }
    Ok(id)
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
    // FLOAT, FLOAT16, DOUBLE, BFLOAT16, and BOOL (held as 0 and 1, as the runtime's
    // comparisons give them).
    let float = [1, 10, 11, 16, 9];
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
