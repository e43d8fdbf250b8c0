//! `run`: a model on inputs (a classifier on samples, a mesh model on a mesh), each
//! prediction printed.

use std::io::Write;

use anyhow::{Context, ensure};

use super::classify::run_classifier;
use super::config::RunConfig;
use super::files::{load_model, parse_model};
use super::mesh::{MeshRun, is_mesh_model, run_mesh};
use super::tensors::{run_tensors, wants_tensors};
use crate::mesh::Precision;

/// Runs `config.model` on its inputs and prints each prediction to `out` (every one when
/// there are no labels, 20 samples or fewer, or `scores`), and the accuracy when there are
/// labels. Inputs that are not finite are warned about on `warnings`. A mesh model runs on
/// the mesh file given as the input instead, one prediction per vertex.
///
/// # Errors
/// Options that do not fit the model (mesh options for a classifier and the reverse), an
/// unreadable or invalid model, inputs that do not match it, non-finite inputs under
/// `reject_non_finite`, or a write to `out` or `warnings` failing.
pub fn run(
    config: &RunConfig,
    out: &mut dyn Write,
    warnings: &mut dyn Write,
) -> anyhow::Result<()> {
    let bytes = load_model(&config.model)?;
    let m = parse_model(&bytes, &config.model)?;
    if is_mesh_model(&m) {
        ensure!(
            config.labels.is_none()
                && config.limit.is_none()
                && !config.scores
                && !config.reject_non_finite,
            "--labels, --limit, --scores and --reject-non-finite are not for mesh \
             models (see --vertex-labels, --predictions)"
        );
        let mesh = config
            .input
            .as_deref()
            .context("a mesh model takes a mesh file (.off, .obj, .ply, .gii)")?;
        return run_mesh(
            m,
            mesh,
            &MeshRun {
                labels: config.vertex_labels.as_deref(),
                label_offset: config.label_offset,
                predictions: config.predictions.as_deref(),
                drop_isolated: config.drop_isolated,
                precision: config.precision.unwrap_or(Precision::F32),
            },
            out,
        );
    }
    if wants_tensors(&m, config) {
        return run_tensors(m, config, out, warnings);
    }
    run_classifier(m, config, out, warnings)
}
