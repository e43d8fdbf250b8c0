//! `import` and `export`: ONNX to a tether model and back (feature `onnx`).

use std::format;
use std::io::Write;

use anyhow::Context;

use super::config::{ExportConfig, ImportConfig};
use super::files::{load_model, load_onnx, parse_model, write_atomic};
use crate::format::TensorData;
use crate::onnx::{EXPORT_OPSET, ExportOptions, export_bytes};

/// Imports `config.model` (ONNX) and writes the tether model to `config.output`; prints
/// what was written to `out`.
///
/// # Errors
/// An unreadable or refused ONNX model, or an output that cannot be written.
pub fn import(config: &ImportConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let ImportConfig { model, output } = config;
    let bytes = load_onnx(model)?;
    let m = parse_model(&bytes, model)?;
    let csr = m
        .tensors
        .iter()
        .filter(|t| matches!(t.data, TensorData::Csr(_)))
        .count();
    write_atomic(output, &bytes)?;
    writeln!(
        out,
        "{} -> {}: {} ops, {} tensors ({csr} stored sparse), {} bytes, input {:?}, output {:?}",
        model.display(),
        output.display(),
        m.nodes.len(),
        m.tensors.len(),
        m.file_len,
        m.input_shape().as_slice(),
        m.output_shape().as_slice()
    )?;
    Ok(())
}

/// Exports `config.model` to ONNX (opset [`EXPORT_OPSET`]) at `config.output`; prints
/// what was written to `out`.
///
/// # Errors
/// An unreadable or invalid model, one the exporter cannot write, or an output that
/// cannot be written.
pub fn export(config: &ExportConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let ExportConfig {
        model,
        output,
        sparse_initializers,
        no_batch_axis,
    } = config;
    let bytes = load_model(model)?;
    let m = parse_model(&bytes, model)?;
    let onnx = export_bytes(
        &m,
        &ExportOptions {
            sparse_initializers: *sparse_initializers,
            batch_axis: !no_batch_axis,
        },
    )
    .with_context(|| format!("exporting {}", model.display()))?;
    write_atomic(output, &onnx)?;
    writeln!(
        out,
        "{} -> {}: {} bytes of ONNX (opset {})",
        model.display(),
        output.display(),
        onnx.len(),
        EXPORT_OPSET
    )?;
    Ok(())
}
