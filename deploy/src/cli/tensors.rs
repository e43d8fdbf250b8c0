//! `run` on a model of several inputs or outputs (or when `--input NAME=FILE` or
//! `--outputs DIR` is given): each input read from its own file, matched by name (the
//! ONNX graph's names for an `.onnx` model, `input0`, `input1`, ... for a tether model,
//! which stores no names; the positional names work for both), every output printed or
//! written to `DIR/NAME.npy`, one row per sample.

use std::format;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use anyhow::{Context, bail, ensure};

use super::classify::MAX_WARNINGS;
use super::config::RunConfig;
use super::host::host_plan_options;
use super::inputs::{non_finite_samples, read_input};
use super::npy::{npy_bytes, read_npy, write_whole};
use crate::format::Model;
use crate::plan::Plan;

/// Largest batch a run plans for.
const MAX_BATCH: usize = 64;

/// True when `run` takes this path: named inputs or an output directory asked for, or a
/// model that has several inputs or outputs.
pub fn wants_tensors(m: &Model, config: &RunConfig) -> bool {
    !config.named_inputs.is_empty()
        || config.outputs.is_some()
        || m.inputs.len() > 1
        || m.outputs.len() > 1
}

/// The names of the model's inputs and outputs: the ONNX graph's (inputs that no
/// initializer shadows) for an `.onnx` file, else `input0`, ..., `output0`, ....
fn io_names(path: &Path, m: &Model) -> (Vec<String>, Vec<String>) {
    let positional = |stem: &str, n: usize| (0..n).map(|k| format!("{stem}{k}")).collect();
    #[cfg(feature = "onnx")]
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
        && let Ok(bytes) = std::fs::read(path)
        && let Ok(p) = <onnx_protobuf::ModelProto as protobuf::Message>::parse_from_bytes(&bytes)
        && let Some(g) = p.graph.as_ref()
    {
        let inits: std::collections::HashSet<&str> =
            g.initializer.iter().map(|t| t.name.as_str()).collect();
        let ins: Vec<String> = g
            .input
            .iter()
            .filter(|i| !inits.contains(i.name.as_str()))
            .map(|i| i.name.clone())
            .collect();
        let outs: Vec<String> = g.output.iter().map(|o| o.name.clone()).collect();
        if ins.len() == m.inputs.len() && outs.len() == m.outputs.len() {
            return (ins, outs);
        }
    }
    let _ = path;
    (
        positional("input", m.inputs.len()),
        positional("output", m.outputs.len()),
    )
}

/// The values of an input file: `.npy`, or what [`read_input`] reads.
fn read_values(path: &Path) -> anyhow::Result<Vec<f32>> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        return Ok(read_npy(path)?.0);
    }
    read_input(path)
}

/// A file name for an output: its name with anything but letters, digits, `-`, `_` and
/// `.` replaced by `_`, and `.npy`.
fn file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.npy", s.trim_start_matches('.'))
}

/// Runs `m` on the inputs `config` names and prints or writes every output.
///
/// # Errors
/// An input not given, given twice or under a name the model lacks; inputs of different
/// sample counts or not a whole number of samples; options for classifiers or mesh models;
/// an unwritable output.
pub fn run_tensors(
    m: Model<'_>,
    config: &RunConfig,
    out: &mut dyn Write,
    warnings: &mut dyn Write,
) -> anyhow::Result<()> {
    ensure!(
        config.idx.is_none() && config.labels.is_none() && !config.scores,
        "--idx, --labels and --scores are for a model of one input and one output (this \
         run names its inputs or writes its outputs)"
    );
    ensure!(
        config.limit != Some(0),
        "--limit must be at least 1 (got 0)"
    );
    let (in_names, out_names) = io_names(&config.model, &m);
    let mut feeds: Vec<Option<(Vec<f32>, PathBuf)>> = (0..m.inputs.len()).map(|_| None).collect();
    if let Some(p) = &config.input {
        ensure!(
            m.inputs.len() == 1,
            "the model has {} inputs ({}): give each as --input NAME=FILE",
            m.inputs.len(),
            in_names.join(", ")
        );
        feeds[0] = Some((read_values(p)?, p.to_path_buf()));
    }
    for (name, path) in &config.named_inputs {
        let k = in_names
            .iter()
            .position(|n| n == name)
            .or_else(|| {
                name.strip_prefix("input")
                    .and_then(|k| k.parse::<usize>().ok())
                    .filter(|&k| k < m.inputs.len())
            })
            .with_context(|| {
                format!(
                    "--input {name}=...: the model has no input {name:?} (its inputs: {})",
                    in_names.join(", ")
                )
            })?;
        ensure!(feeds[k].is_none(), "input {} given twice", in_names[k]);
        feeds[k] = Some((read_values(path)?, path.to_path_buf()));
    }
    let mut values = Vec::with_capacity(feeds.len());
    let mut samples = None;
    for (k, f) in feeds.into_iter().enumerate() {
        let per = m.shapes[m.inputs[k]].numel();
        let Some((x, path)) = f else {
            bail!(
                "input {} (per sample {:?}) is not given: --input {}=FILE",
                in_names[k],
                m.shapes[m.inputs[k]].as_slice(),
                in_names[k]
            );
        };
        ensure!(
            !x.is_empty() && x.len() % per == 0,
            "{}: {} values, not a multiple of input {}'s {per} per sample",
            path.display(),
            x.len(),
            in_names[k]
        );
        let n = x.len() / per;
        if let Some((n0, first)) = &samples {
            ensure!(
                n == *n0,
                "input {} has {n} samples, input {first} has {n0}",
                in_names[k]
            );
        } else {
            samples = Some((n, in_names[k].clone()));
        }
        let bad = non_finite_samples(&x, per);
        if let Some(&(i, at, v)) = bad.first() {
            ensure!(
                !config.reject_non_finite,
                "{}: sample {i} holds {v} at index {at} of its {per} values; \
                 --reject-non-finite refuses inputs that are not finite",
                path.display()
            );
            for &(i, at, v) in bad.iter().take(MAX_WARNINGS) {
                writeln!(
                    warnings,
                    "warning: {}: sample {i} holds {v} at index {at} of its {per} values",
                    path.display()
                )?;
            }
        }
        values.push((x, per));
    }
    let total = samples.map_or(0, |s| s.0);
    let n = total.min(config.limit.unwrap_or(usize::MAX));
    let batch = n.min(MAX_BATCH);
    let static_shapes = m.static_shapes;
    let mut plan = Plan::new(m, &host_plan_options(batch, config.kernels))?;
    let model = plan.model();
    let widths: Vec<usize> = model
        .outputs
        .iter()
        .map(|&v| model.shapes[v].numel())
        .collect();
    let shapes: Vec<Vec<usize>> = model
        .outputs
        .iter()
        .map(|&v| model.shapes[v].as_slice().to_vec())
        .collect();
    let mut results: Vec<Vec<f32>> = widths.iter().map(|w| Vec::with_capacity(w * n)).collect();
    let mut start = 0;
    while start < n {
        let count = batch.min(n - start);
        let chunk: Vec<&[f32]> = values
            .iter()
            .map(|(x, per)| &x[start * per..(start + count) * per])
            .collect();
        for (r, y) in results.iter_mut().zip(plan.run_outputs(&chunk)?) {
            r.extend_from_slice(y);
        }
        start += count;
    }
    for (k, ((r, dims), name)) in results.iter().zip(&shapes).zip(&out_names).enumerate() {
        // The batch axis in front, unless the model has none (then one sample is the
        // whole tensor).
        let mut full = Vec::with_capacity(dims.len() + 1);
        if !(static_shapes && n == 1) {
            full.push(n);
        }
        full.extend_from_slice(dims);
        match &config.outputs {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(file_name(name));
                write_whole(&path, &npy_bytes(r, &full))?;
                writeln!(
                    out,
                    "output {k} {name:?} {full:?} written to {}",
                    path.display()
                )?;
            }
            None => {
                writeln!(out, "output {k} {name:?} {full:?}")?;
                for (i, s) in r.chunks(widths[k]).enumerate() {
                    writeln!(out, "sample {i}: {s:?}")?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn output_file_names_keep_only_safe_characters() {
        assert_eq!(file_name("logits"), "logits.npy");
        assert_eq!(file_name("../x/y:z"), "_x_y_z.npy");
    }
}
