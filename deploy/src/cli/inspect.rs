//! `inspect`: a model's layers, shapes, densities and bytes, and its plan's activation
//! memory and kernels.

use std::format;
use std::io::Write;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

use super::files::{load_model, parse_model};
use super::host::host_plan_options;
use super::mesh::is_mesh_model;
use crate::format::{Op, TensorData};
use crate::plan::{KernelChoice, Plan, PlanOptions};

/// The RAM a device needs to run `model` on batches of `batch` besides the model in
/// flash: the plan a microcontroller builds ([`PlanOptions::in_place`]: activations and
/// scratch, no weight copied). What a board's `ram` and `tether-train prune --max-ram`
/// are judged by.
///
/// # Errors
/// A plan over [`HOST_PLAN_BYTES`](super::HOST_PLAN_BYTES).
pub fn device_ram(model: &crate::Model, batch: usize) -> anyhow::Result<usize> {
    let options = PlanOptions {
        max_bytes: super::HOST_PLAN_BYTES,
        ..PlanOptions::in_place(batch)
    };
    Ok(Plan::new(model.clone(), &options)?.ram_bytes())
}

/// Trials of the latency `inspect` reports.
const LATENCY_TRIALS: usize = 9;

/// Prints to `out` the model's sizes and shapes, one line per op (its input and output
/// shapes, and for a weighted op the weight's density, bytes and storage), the nonzero
/// weights, the activation memory and kernel of each layer of its plan at batch 1 and 32,
/// and the device figures at batch 1: flash (the file), RAM (the plan's allocations) and
/// latency on this host (not for a mesh model, whose buffers are sized per mesh).
///
/// # Errors
/// An unreadable or invalid model, a plan over [`HOST_PLAN_BYTES`](super::HOST_PLAN_BYTES),
/// or a write to `out` failing.
pub fn inspect(path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    inspect_for(path, None, out).map(drop)
}

/// [`inspect`], and with a `board` a line per budget it sets (flash, RAM, latency on this
/// host): used, budget, fits or not. Returns whether the model fits the board (true
/// without one).
///
/// # Errors
/// As [`inspect`]; a mesh model with a board (its figures depend on the mesh).
pub fn inspect_for(
    path: &Path,
    board: Option<&super::board::Board>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let bytes = load_model(path)?;
    let model = parse_model(&bytes, path)?;
    writeln!(
        out,
        "{}: {} bytes, {} tensors, {} ops, input {:?}, output {:?}",
        path.display(),
        model.file_len,
        model.tensors.len(),
        model.nodes.len(),
        model.input_shape().as_slice(),
        model.output_shape().as_slice()
    )?;
    if model.inputs.len() > 1 || model.outputs.len() > 1 {
        let shapes = |vs: &[usize]| {
            vs.iter()
                .map(|&v| format!("{:?}", model.shapes[v].as_slice()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            out,
            "inputs {}; outputs {}",
            shapes(&model.inputs),
            shapes(&model.outputs)
        )?;
    }
    writeln!(
        out,
        "{:>3}  {:<10} {:<16} {:<16} {:>8} {:>9} {:>9}",
        "op", "kind", "input", "output", "density", "bytes", "storage"
    )?;
    let mut params = 0usize;
    let mut nonzeros = 0usize;
    for (i, node) in model.nodes.iter().enumerate() {
        let name = node.op.name();
        let weight = match node.op {
            Op::Linear { weight, .. }
            | Op::Conv2d { weight, .. }
            | Op::ConvTranspose2d { weight, .. } => Some(weight),
            _ => None,
        };
        let shape = |v: usize| format!("{:?}", model.shapes[v].as_slice());
        let (density, bytes, storage) = match weight {
            Some(w) => {
                let t = &model.tensors[w];
                let nnz = match t.data {
                    TensorData::Csr(c) => c.values().len(),
                    TensorData::F32(d) => d.iter().filter(|&&v| v != 0.0).count(),
                    TensorData::F16(d) => d.iter().filter(|&&h| h & 0x7fff != 0).count(),
                };
                params += t.dims.numel();
                nonzeros += nnz;
                let storage = match t.data {
                    TensorData::Csr(_) => "csr",
                    TensorData::F32(_) => "f32",
                    TensorData::F16(_) => "f16",
                };
                (
                    format!("{:.4}", nnz as f64 / t.dims.numel() as f64),
                    t.bytes().to_string(),
                    storage,
                )
            }
            None => ("".into(), "".into(), ""),
        };
        writeln!(
            out,
            "{i:>3}  {name:<10} {:<16} {:<16} {density:>8} {bytes:>9} {storage:>9}",
            shape(node.inputs[0]),
            shape(node.output)
        )?;
    }
    writeln!(
        out,
        "weights: {nonzeros} nonzero of {params} ({:.4})",
        nonzeros as f64 / params.max(1) as f64
    )?;
    if is_mesh_model(&model) {
        writeln!(
            out,
            "a mesh model (EMAN): one sample per vertex; buffers are sized per mesh \
             (run MODEL MESH, bench MODEL --mesh MESH)"
        )?;
        anyhow::ensure!(
            board.is_none(),
            "--board: a mesh model's RAM and latency depend on the mesh; inspect it without one"
        );
        return Ok(true);
    }
    for batch in [1, 32] {
        let plan = Plan::new(
            model.clone(),
            &host_plan_options(batch, KernelChoice::default()),
        )?;
        let sparse: Vec<String> = plan
            .layers()
            .iter()
            .map(|l| match l.batch1_layout {
                Some(layout) if batch == 1 => format!("op {} sparse ({layout})", l.op),
                Some(_) => format!("op {} sparse", l.op),
                None => format!("op {} dense", l.op),
            })
            .collect();
        writeln!(
            out,
            "plan, batch {batch}: activations {} bytes (arena + scratch); kernels: {}",
            plan.activation_bytes(),
            sparse.join(", ")
        )?;
    }
    // The three figures a device budget is stated in (`tether-train prune --max-flash
    // --max-ram --max-latency` are judged by the same).
    let host = Plan::new(
        model.clone(),
        &host_plan_options(1, KernelChoice::default()),
    )?;
    let ram = device_ram(&model, 1)?;
    let seconds = super::bench::latency(&model, 1, LATENCY_TRIALS)?;
    writeln!(
        out,
        "device, batch 1: flash {} bytes (this file); RAM {ram} bytes (activations and \
         scratch, every weight read in place as on a microcontroller; this host's plan, with \
         its vector kernels' weight copies: {} bytes); latency {:.1} us on this host (auto \
         kernels, single thread, median of {LATENCY_TRIALS} trials)",
        model.file_len,
        host.ram_bytes(),
        seconds * 1e6
    )?;
    let Some(board) = board else {
        return Ok(true);
    };
    let (lines, fits) = board.verdict(model.file_len as u64, ram as u64, seconds);
    writeln!(
        out,
        "board {}: {}",
        board.name,
        if fits { "fits" } else { "DOES NOT FIT" }
    )?;
    for line in lines {
        writeln!(out, "  {line}")?;
    }
    Ok(fits)
}
