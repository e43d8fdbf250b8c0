//! The table of ONNX ops the importer translates (default domain): each op's arity and
//! its lowering. The dispatcher checks a node against its entry before lowering it, so
//! no lowering reads an input that is not there (a node with too few inputs is an error
//! naming the node, not an index out of bounds), and a node with more inputs or outputs
//! than its op defines is refused instead of silently dropping them.
//!
//! To add an op: add an entry here (ONNX's arity from the operator's schema, the outputs
//! the lowering produces), write its lowering in the family module it belongs to, and run
//! the node tests (docs/onnx-conformance.md).

use std::format;
use std::string::String;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::importer::{Importer, malformed, unsupported};
use crate::onnx::error::OnnxError;

/// Any number of inputs (variadic ops).
const MANY: usize = usize::MAX;

type Lower = fn(&mut Importer, &NodeProto, &mut Attrs<'_>) -> Result<(), OnnxError>;

/// One supported op.
pub(super) struct OpInfo {
    /// ONNX op type.
    pub name: &'static str,
    /// Inputs the op's schema requires (optional inputs may be given as "").
    pub min_inputs: usize,
    /// Inputs the op's schema allows (`MANY`: variadic).
    pub max_inputs: usize,
    /// Outputs the op's schema allows.
    pub max_outputs: usize,
    /// Outputs the lowering produces (the first ones); a further output that a node names
    /// is refused as unsupported.
    pub lowered_outputs: usize,
    /// The translation into runtime ops (or a constant).
    pub lower: Lower,
}

const fn op(
    name: &'static str,
    inputs: (usize, usize),
    outputs: (usize, usize),
    lower: Lower,
) -> OpInfo {
    OpInfo {
        name,
        min_inputs: inputs.0,
        max_inputs: inputs.1,
        max_outputs: outputs.1,
        lowered_outputs: outputs.0,
        lower,
    }
}

/// A unary op with one input and one output.
const fn unary(name: &'static str, lower: Lower) -> OpInfo {
    op(name, (1, 1), (1, 1), lower)
}

/// Every op the importer translates, sorted by name. Outputs are `(lowered, schema)`.
const OPS: &[OpInfo] = &[
    unary("Abs", Importer::simple_unary),
    op("Add", (2, 2), (1, 1), Importer::arithmetic),
    op("AveragePool", (1, 1), (1, 1), Importer::pool),
    op("BatchNormalization", (5, 5), (1, 3), Importer::batch_norm),
    unary("Cast", Importer::cast),
    unary("Ceil", Importer::simple_unary),
    op("Clip", (1, 3), (1, 1), Importer::clip),
    op("Concat", (1, MANY), (1, 1), Importer::concat),
    op("Constant", (0, 0), (1, 1), Importer::constant_node),
    unary("ConstantOfShape", Importer::constant_of_shape),
    op("Conv", (2, 3), (1, 1), Importer::conv),
    op("ConvTranspose", (2, 3), (1, 1), Importer::conv_transpose),
    unary("Cos", Importer::simple_unary),
    op("Div", (2, 2), (1, 1), Importer::arithmetic),
    op("Dropout", (1, 3), (1, 2), Importer::identity),
    unary("Elu", Importer::activation),
    op("Equal", (2, 2), (1, 1), Importer::compare),
    unary("Erf", Importer::simple_unary),
    unary("Exp", Importer::simple_unary),
    unary("Flatten", Importer::flatten),
    unary("Floor", Importer::simple_unary),
    op("Gather", (2, 2), (1, 1), Importer::gather),
    unary("Gelu", Importer::activation),
    op("Gemm", (2, 3), (1, 1), Importer::gemm),
    unary("GlobalAveragePool", Importer::global_pool),
    unary("GlobalMaxPool", Importer::global_pool),
    op("Greater", (2, 2), (1, 1), Importer::compare),
    op("GreaterOrEqual", (2, 2), (1, 1), Importer::compare),
    unary("HardSigmoid", Importer::activation),
    unary("HardSwish", Importer::activation),
    unary("Identity", Importer::identity),
    op("LayerNormalization", (2, 3), (1, 3), Importer::layer_norm),
    unary("LeakyRelu", Importer::activation),
    op("Less", (2, 2), (1, 1), Importer::compare),
    op("LessOrEqual", (2, 2), (1, 1), Importer::compare),
    unary("Log", Importer::simple_unary),
    unary("LogSoftmax", Importer::softmax),
    op("MatMul", (2, 2), (1, 1), Importer::matmul),
    op("Max", (1, MANY), (1, 1), Importer::variadic_extreme),
    op("MaxPool", (1, 1), (1, 2), Importer::pool),
    op("Min", (1, MANY), (1, 1), Importer::variadic_extreme),
    op("Mul", (2, 2), (1, 1), Importer::arithmetic),
    unary("Neg", Importer::simple_unary),
    unary("Not", Importer::not),
    op("PRelu", (2, 2), (1, 1), Importer::prelu),
    op("Pad", (1, 4), (1, 1), Importer::pad),
    op("Pow", (2, 2), (1, 1), Importer::pow),
    op("Range", (3, 3), (1, 1), Importer::range),
    unary("Reciprocal", Importer::simple_unary),
    op("ReduceMax", (1, 2), (1, 1), Importer::reduce),
    op("ReduceMean", (1, 2), (1, 1), Importer::reduce),
    op("ReduceMin", (1, 2), (1, 1), Importer::reduce),
    op("ReduceSum", (1, 2), (1, 1), Importer::reduce),
    unary("Relu", Importer::activation),
    op("Reshape", (1, 2), (1, 1), Importer::reshape),
    op("Resize", (1, 4), (1, 1), Importer::resize),
    unary("Shape", Importer::shape_of),
    unary("Sigmoid", Importer::simple_unary),
    unary("Sin", Importer::simple_unary),
    op("Slice", (1, 5), (1, 1), Importer::slice),
    unary("Softmax", Importer::softmax),
    unary("Softplus", Importer::simple_unary),
    unary("Sqrt", Importer::simple_unary),
    op("Squeeze", (1, 2), (1, 1), Importer::squeeze),
    op("Sub", (2, 2), (1, 1), Importer::arithmetic),
    unary("Tanh", Importer::simple_unary),
    unary("Transpose", Importer::transpose),
    op("Unsqueeze", (1, 2), (1, 1), Importer::unsqueeze),
    op("Upsample", (1, 2), (1, 1), Importer::upsample),
    op("Where", (3, 3), (1, 1), Importer::where_),
];

/// The ONNX ops the importer translates (default domain), sorted. Their node tests'
/// results are in docs/onnx-conformance.md.
pub fn supported_ops() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|o| o.name)
}

/// Ops that exist only folded on constants: their outputs are computed at import, never
/// by the runtime (a node of one on a runtime value is refused as unsupported).
const FOLDED_ONLY: &[&str] = &[
    "Constant",
    "ConstantOfShape",
    "Gather",
    "Range",
    "Shape",
    "Slice",
];

/// The supported ops that are folded on constants only (see [`supported_ops`]).
pub fn folded_only_ops() -> impl Iterator<Item = &'static str> {
    FOLDED_ONLY.iter().copied()
}

/// Checks a node against its op's arity, then lowers it; every attribute must have been
/// read by the lowering.
pub(super) fn lower(im: &mut Importer, n: &NodeProto) -> Result<(), OnnxError> {
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return unsupported(format!("domain {:?}", n.domain));
    }
    let Some(info) = OPS.iter().find(|o| o.name == n.op_type) else {
        let names: Vec<&str> = supported_ops().collect();
        return unsupported(format!(
            "op {:?} (supported: {})",
            n.op_type,
            names.join(", ")
        ));
    };
    check_arity(info, n)?;
    let mut at = Attrs::new(n);
    (info.lower)(im, n, &mut at)?;
    at.done()
}

fn check_arity(info: &OpInfo, n: &NodeProto) -> Result<(), OnnxError> {
    let given = n.input.len();
    if n.output.len() > info.max_outputs {
        return malformed(format!(
            "{} outputs; {} has at most {}",
            n.output.len(),
            info.name,
            info.max_outputs
        ));
    }
    if given > info.max_inputs {
        return malformed(format!(
            "{} inputs; {} takes at most {}",
            given, info.name, info.max_inputs
        ));
    }
    // Required inputs must be present and named (an empty name is an omitted input).
    if let Some(i) = (0..info.min_inputs).find(|&i| n.input.get(i).is_none_or(String::is_empty)) {
        return malformed(format!(
            "{} needs {} input{}, input {i} is missing (the node has {given})",
            info.name,
            info.min_inputs,
            if info.min_inputs == 1 { "" } else { "s" },
        ));
    }
    if n.output.first().is_none_or(String::is_empty) {
        return malformed("the node names no output 0");
    }
    if let Some(k) = (info.lowered_outputs..n.output.len()).find(|&k| !n.output[k].is_empty()) {
        return unsupported(format!(
            "output {k} ({:?}) of {} (only the first {} supported)",
            n.output[k], info.name, info.lowered_outputs
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_consistent() {
        for w in OPS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for f in FOLDED_ONLY {
            assert!(OPS.iter().any(|o| o.name == *f), "{f}");
        }
        for o in OPS {
            assert!(o.min_inputs <= o.max_inputs, "{}", o.name);
            assert!(
                (1..=o.max_outputs).contains(&o.lowered_outputs),
                "{}",
                o.name
            );
        }
    }
}
