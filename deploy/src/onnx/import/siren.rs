//! SIREN layers: `Sin(Mul(x, w0))` runs as the runtime's one `sin(w0 x)` op.

use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;

use onnx_protobuf::NodeProto;

use super::importer::{Importer, Val, malformed};
use crate::onnx::error::OnnxError;
use crate::onnx::tensor::Values;
use crate::write::OpSpec;

/// SIREN layers: `Sin(Mul(x, w0))` with `w0` a scalar initializer and the product read by
/// nothing else runs as one `sin(w0 x)` op (the runtime's sine kernel; it is also how
/// export writes that op, so a SIREN round-trips to the same model). Returns the Sin nodes
/// with their `(x, w0)`, and the Mul nodes they absorb.
pub(super) fn siren_sines(
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

impl Importer {
    /// A fused `Sin(Mul(x, w0))` (see [`siren_sines`]).
    pub(super) fn sine(&mut self, n: &NodeProto, x: &str, w0: f32) -> Result<(), OnnxError> {
        let (id, d, batched) = match self.vals.get(x) {
            Some(Val::Run { id, dims, batched }) => (*id, dims.clone(), *batched),
            _ => return malformed(format!("Sin input {x:?} is undefined")),
        };
        let y = self.b.op(OpSpec::Sine { w0 }, &[id]);
        self.set(n, 0, y, d, batched);
        Ok(())
    }
}
