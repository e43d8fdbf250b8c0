//! `run` and `bench` for a mesh model (an EMAN): one prediction per vertex of a mesh file.

use std::io::Write;
use std::path::Path;
use std::string::String;
use std::time::Instant;
use std::vec::Vec;
use std::{format, vec};

use anyhow::{Context, ensure};

use super::files::write_atomic;
use super::scores::argmax;
use crate::format::{Model, Op};
use crate::mesh::{Mesh, MeshPlan, Precision};

/// True for a mesh model: one that computes its inputs from a mesh ([`Op::MeshFeatures`]).
pub fn is_mesh_model(m: &Model<'_>) -> bool {
    m.nodes.iter().any(|n| matches!(n.op, Op::MeshFeatures(_)))
}

/// A mesh file (`.off`, `.obj`, `.ply`, `.gii`), its error naming the file.
///
/// # Errors
/// An unreadable or malformed mesh, or isolated vertices without `drop_isolated`.
pub fn read_mesh(path: &Path, drop_isolated: bool) -> anyhow::Result<Mesh> {
    crate::mesh::io::read(path, drop_isolated)
        .with_context(|| format!("reading the mesh {}", path.display()))
}

/// The options of `run` on a mesh.
#[derive(Clone, Copy, Debug)]
pub struct MeshRun<'a> {
    /// A file of one label per vertex (one integer per line): report the accuracy.
    pub labels: Option<&'a Path>,
    /// The first line of `labels` to read.
    pub label_offset: usize,
    /// Write each vertex's predicted class here, one per line.
    pub predictions: Option<&'a Path>,
    /// Drop vertices no face uses (refused otherwise).
    pub drop_isolated: bool,
    /// The arithmetic.
    pub precision: Precision,
}

/// `run` for a mesh model: one prediction per vertex, the counts per class (and the
/// accuracy, and where the predictions were written) printed to `out`.
///
/// # Errors
/// A bad mesh, label file or model, or an output that cannot be written.
pub fn run_mesh(
    model: Model<'_>,
    mesh_path: &Path,
    options: &MeshRun<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let MeshRun {
        labels,
        label_offset: offset,
        predictions,
        drop_isolated,
        precision,
    } = *options;
    let mesh = read_mesh(mesh_path, drop_isolated)?;
    let mut plan = MeshPlan::new(model)?.with_precision(precision);
    let width = plan.output_width();
    let start = Instant::now();
    let y = plan.run(&mesh)?;
    let secs = start.elapsed().as_secs_f64();
    let pred: Vec<usize> = y.chunks(width).map(argmax).collect();
    let mut counts = vec![0usize; width];
    for &p in &pred {
        counts[p] += 1;
    }
    writeln!(
        out,
        "{}: {} vertices in {:.1} ms ({:?}, geometry included); predicted vertices per class: \
         {counts:?}",
        mesh_path.display(),
        pred.len(),
        secs * 1e3,
        precision
    )?;
    if let Some(path) = labels {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut want = Vec::with_capacity(pred.len());
        for (i, line) in text.lines().enumerate().skip(offset).take(pred.len()) {
            let v: f64 = line
                .trim()
                .parse()
                .with_context(|| format!("{}:{}: not a label: {line:?}", path.display(), i + 1))?;
            want.push(v);
        }
        ensure!(
            want.len() == pred.len(),
            "{}: {} labels from line {offset} on, the mesh has {} vertices",
            path.display(),
            want.len(),
            pred.len()
        );
        let correct = pred
            .iter()
            .zip(&want)
            .filter(|(p, w)| **p as f64 == **w)
            .count();
        writeln!(
            out,
            "accuracy {:.4} ({correct} of {} vertices)",
            correct as f64 / pred.len() as f64,
            pred.len()
        )?;
    }
    if let Some(path) = predictions {
        let text: String = pred.iter().map(|p| format!("{p}\n")).collect();
        write_atomic(path, text.as_bytes())?;
        writeln!(out, "wrote {}", path.display())?;
    }
    Ok(())
}

/// `bench` for a mesh model: the whole run on one mesh (geometry included), in f32 and in
/// f64, the trials interleaved so both see the same machine load; the medians, and how far
/// f32's outputs are from f64's, printed to `out`.
///
/// # Errors
/// A bad mesh or model.
pub fn bench_mesh(
    model: Model<'_>,
    path: &Path,
    mesh_path: &Path,
    trials: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mesh = read_mesh(mesh_path, false)?;
    let mut plans = [
        MeshPlan::new(model.clone())?.with_precision(Precision::F32),
        MeshPlan::new(model)?.with_precision(Precision::F64),
    ];
    let mut times = [Vec::with_capacity(trials), Vec::with_capacity(trials)];
    for plan in &mut plans {
        plan.run(&mesh)?;
    }
    for _ in 0..trials {
        for (plan, times) in plans.iter_mut().zip(&mut times) {
            let t = Instant::now();
            plan.run(&mesh)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    writeln!(
        out,
        "{} on {} ({} vertices), single thread, geometry included, {trials} runs each:",
        path.display(),
        mesh_path.display(),
        mesh.vertex_count(),
    )?;
    let mut medians = [0.0; 2];
    for ((times, name), median) in times.iter_mut().zip(["f32", "f64"]).zip(&mut medians) {
        times.sort_by(f64::total_cmp);
        *median = times[trials / 2];
        writeln!(
            out,
            "  {name}: median {:.1} ms per mesh (min {:.1}, max {:.1})",
            times[trials / 2],
            times[0],
            times[trials - 1]
        )?;
    }
    writeln!(out, "  f64 / f32: {:.2}x", medians[1] / medians[0])?;
    let exact = plans[1].run_f64(&mesh)?;
    let single = plans[0].run(&mesh)?;
    let largest = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = single
        .iter()
        .zip(&exact)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0f64, f64::max);
    writeln!(
        out,
        "  f32 vs f64 outputs: max |diff| {diff:.2e} (largest |output| {largest:.1}): the f32 \
         rounding error on this mesh"
    )?;
    Ok(())
}
