//! `run` for a classifier: samples read from a file or IDX images, run in batches, each
//! prediction printed, the accuracy against labels.

use std::io::Write;

use anyhow::{bail, ensure};

use super::config::RunConfig;
use super::host::host_plan_options;
use super::inputs::{non_finite_samples, read_idx_images, read_idx_labels, read_input};
use super::scores::prediction;
use crate::format::Model;
use crate::plan::Plan;

/// Non-finite-input warnings `run` prints before summing up the rest.
pub const MAX_WARNINGS: usize = 10;

/// Largest batch a run plans for.
const MAX_BATCH: usize = 64;

/// [`run`](super::run) for a model that is not a mesh model, parsed from
/// `config.model`.
///
/// # Errors
/// Mesh options, inputs that do not match the model, non-finite inputs under
/// `reject_non_finite`, or a write to `out` or `warnings` failing.
pub fn run_classifier(
    m: Model<'_>,
    config: &RunConfig,
    out: &mut dyn Write,
    warnings: &mut dyn Write,
) -> anyhow::Result<()> {
    ensure!(
        config.vertex_labels.is_none()
            && config.predictions.is_none()
            && !config.drop_isolated
            && config.precision.is_none(),
        "--vertex-labels, --predictions, --drop-isolated and --precision are for mesh \
         models"
    );
    let limit = config.limit;
    // Checked here: the plan would name its own option (`batch`) instead.
    ensure!(limit != Some(0), "--limit must be at least 1 (got 0)");
    let per = m.input_shape().numel();
    let (inputs, labels) = match (&config.input, &config.idx) {
        (Some(path), _) => {
            let x = read_input(path)?;
            ensure!(
                !x.is_empty() && x.len() % per == 0,
                "{}: {} values, not a multiple of the model's {per} per sample",
                path.display(),
                x.len()
            );
            (x, None)
        }
        (None, Some(images)) => {
            let [mean, std] = config.normalize;
            let (x, n) = read_idx_images(images, mean, std)?;
            ensure!(
                x.len() / n == per,
                "{}: images of {} pixels, the model takes {per} values",
                images.display(),
                x.len() / n
            );
            let labels = config.labels.as_deref().map(read_idx_labels).transpose()?;
            if let Some(l) = &labels {
                ensure!(l.len() == n, "{n} images but {} labels", l.len());
            }
            (x, labels)
        }
        (None, None) => bail!("give an input file or --idx"),
    };
    let n = (inputs.len() / per).min(limit.unwrap_or(usize::MAX));
    let source = config
        .input
        .as_ref()
        .or(config.idx.as_ref())
        .expect("one of them")
        .display();
    let bad = non_finite_samples(&inputs[..n * per], per);
    if let Some(&(i, at, v)) = bad.first()
        && config.reject_non_finite
    {
        bail!(
            "{source}: sample {i} holds {v} at index {at} of its {per} values; \
             --reject-non-finite refuses inputs that are not finite"
        );
    }
    for &(i, at, v) in bad.iter().take(MAX_WARNINGS) {
        writeln!(
            warnings,
            "warning: {source}: sample {i} holds {v} at index {at} of its {per} values: \
             its scores may be NaN, then it has no prediction (--reject-non-finite makes \
             this an error)"
        )?;
    }
    if bad.len() > MAX_WARNINGS {
        writeln!(
            warnings,
            "warning: {source}: {} more samples hold NaN or an infinity",
            bad.len() - MAX_WARNINGS
        )?;
    }
    let batch = n.min(MAX_BATCH);
    let mut plan = Plan::new(m, &host_plan_options(batch, config.kernels))?;
    let width = plan.model().output_shape().numel();
    let scores = config.scores;
    let mut correct = 0usize;
    let mut unpredicted = 0usize;
    let mut index = 0usize;
    for chunk in inputs[..n * per].chunks(batch * per) {
        let y = plan.run(chunk)?;
        for s in y.chunks(width) {
            let pred = prediction(s);
            let label = labels.as_ref().map(|l| l[index]);
            correct += usize::from(label.is_some() && label == pred);
            unpredicted += usize::from(pred.is_none());
            if scores || labels.is_none() || n <= 20 {
                match pred {
                    Some(p) => write!(out, "sample {index}: predicted {p}")?,
                    None => write!(out, "sample {index}: no prediction (NaN in the scores)")?,
                }
                if let Some(l) = label {
                    write!(out, " (label {l})")?;
                }
                if scores {
                    write!(out, " scores {s:?}")?;
                }
                writeln!(out)?;
            }
            index += 1;
        }
    }
    if labels.is_some() {
        write!(
            out,
            "accuracy {:.4} ({correct} of {n}",
            correct as f64 / n as f64
        )?;
        if unpredicted > 0 {
            write!(out, "; {unpredicted} without a prediction, counted wrong")?;
        }
        writeln!(out, ")")?;
    }
    Ok(())
}
