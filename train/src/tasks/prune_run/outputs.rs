//! Writing a run's outputs: the exported model, the burn record, the plots.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;

use super::config::{PruneConfig, Structure, TRAIN_EVAL_SAMPLES};
use super::job::Job;
use super::report::EpochResult;
use crate::io::write_atomic;
use crate::plot::{Panel, Series, line_chart};
use crate::resume::remove_checkpoint;

/// Per gated layer, whether its width moves with its gates: every layer but the last
/// (the model's output) under `--structure unit`.
pub(super) fn unit_layers(c: &PruneConfig, layers: usize) -> Vec<bool> {
    let last = layers.saturating_sub(1);
    (0..layers)
        .map(|l| c.structure == Structure::Unit && l < last)
        .collect()
}

/// `tthr` with the output units its unit gates closed removed
/// ([`tether_deploy::compact::remove_dead_channels`]); says which layers narrowed.
pub(super) fn cut_closed_units(tthr: Vec<u8>, progress: bool) -> anyhow::Result<Vec<u8>> {
    let aligned = tether_deploy::AlignedBytes::from_slice(&tthr);
    let model = tether_deploy::Model::parse(&aligned)?;
    let Some(cut) = tether_deploy::compact::remove_dead_channels(&model)? else {
        return Ok(tthr);
    };
    if progress {
        let layers: Vec<String> = cut
            .narrowed
            .iter()
            .map(|n| format!("op {}: {} -> {}", n.node, n.channels, n.kept))
            .collect();
        println!(
            "closed units cut out of the written model: {}",
            layers.join(", ")
        );
    }
    Ok(cut.bytes)
}

/// Saves a burn record as `out/model.mpk` (the recorder appends ".mpk": write under another
/// name, then rename into place).
pub(super) fn save_record<B: Backend, M: Module<B>>(
    module: M,
    recorder: &NamedMpkFileRecorder<FullPrecisionSettings>,
    out: &Path,
) -> anyhow::Result<()> {
    // The output folder appears with its first file (`check_output_dir` creates nothing).
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    module
        .save_file(out.join("model-partial"), recorder)
        .context("saving the pruned model")?;
    std::fs::rename(out.join("model-partial.mpk"), out.join("model.mpk"))?;
    Ok(())
}

/// What every method is handed to write its network: folds the gates (pruned runs), saves
/// `model.mpk` under the folder and returns the safetensors and tether-deploy bytes, given
/// the metadata for the safetensors header.
pub(super) trait Export<M>:
    FnOnce(&M, &Path, HashMap<String, String>) -> anyhow::Result<(Vec<u8>, Vec<u8>)>
{
}

impl<M, F> Export<M> for F where
    F: FnOnce(&M, &Path, HashMap<String, String>) -> anyhow::Result<(Vec<u8>, Vec<u8>)>
{
}

impl Job<'_> {
    /// The metadata written into the safetensors header.
    pub(super) fn export_meta(&self) -> HashMap<String, String> {
        let c = self.config;
        HashMap::from([
            ("model".to_string(), c.model.label()),
            (
                "dataset".to_string(),
                match &c.own.data {
                    Some(p) => p.display().to_string(),
                    None => c.dataset.name().to_string(),
                },
            ),
            ("target_density".to_string(), c.target().to_string()),
        ])
    }

    /// Writes the trained network and `summary.json`; `export` folds the gates (pruned
    /// runs), saves `model.mpk` and returns the safetensors and tether-deploy bytes.
    pub(super) fn write_model<M>(
        &self,
        eval: &M,
        export: impl Export<M>,
        summary: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let (st, tthr) = export(eval, &self.config.out, self.export_meta())?;
        self.write_outputs(&st, &tthr, summary)
    }

    /// Writes `model.safetensors`, `model.tthr` and `summary.json`.
    pub(super) fn write_outputs(
        &self,
        safetensors: &[u8],
        tthr: &[u8],
        summary: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let out = &self.config.out;
        write_atomic(&out.join("model.safetensors"), safetensors)?;
        write_atomic(&out.join("model.tthr"), tthr)?;
        write_atomic(
            &out.join("summary.json"),
            serde_json::to_string_pretty(summary)?.as_bytes(),
        )?;
        // Every output is written: nothing is left to resume.
        remove_checkpoint(out)
    }
}

/// `training.png`: the loss at every step (and its mean over each epoch) above the
/// training and test accuracy after each epoch. `rows` start `[step, loss, ...]`.
pub(super) fn training_plot(
    path: &Path,
    rows: &[Vec<f64>],
    epochs: &[EpochResult],
    steps_per_epoch: usize,
) -> anyhow::Result<()> {
    let per_epoch = steps_per_epoch.max(1);
    // Rows are the logged steps (every step, or every `--log-every`-th): grouped by epoch.
    let epoch_means: Vec<(f64, f64)> = rows
        .chunk_by(|a, b| a[0] as usize / per_epoch == b[0] as usize / per_epoch)
        .map(|chunk| {
            let mean = chunk.iter().map(|r| r[1]).sum::<f64>() / chunk.len() as f64;
            let e = chunk[0][0] as usize / per_epoch;
            (((e + 1) * per_epoch) as f64, mean)
        })
        .collect();
    let accuracy = |f: fn(&EpochResult) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|e| (e.epoch as f64, f(e))).collect()
    };
    line_chart(
        path,
        &[
            Panel {
                title: "Training loss (cross-entropy of the batch; sampled gates)".into(),
                x_label: "step".into(),
                y_label: "loss".into(),
                series: vec![
                    Series {
                        label: "each step".into(),
                        points: rows.iter().map(|r| (r[0], r[1])).collect(),
                    },
                    Series {
                        label: "mean over the epoch".into(),
                        points: epoch_means,
                    },
                ],
            },
            Panel {
                title: format!(
                    "Accuracy after each epoch (deterministic gates; train: the first {} samples)",
                    TRAIN_EVAL_SAMPLES
                ),
                x_label: "epoch".into(),
                y_label: "accuracy".into(),
                series: vec![
                    Series {
                        label: "train".into(),
                        points: accuracy(|e| e.train_accuracy),
                    },
                    Series {
                        label: "test".into(),
                        points: accuracy(|e| e.test_accuracy),
                    },
                ],
            },
        ],
    )
}
