//! The command-line flags (and config-file keys) that read the user's own data, shared by
//! `tether-train prune` and `fair-prune` (each flattens [`OwnDataArgs`] into its config):
//! one definition of each flag, its check and its reading.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{LoadOptions, Loading, Normalize, PrepareOptions, parse_image_size};

/// Where the user's data is and how to read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct OwnDataArgs {
    /// Your own training data instead of --dataset: an image folder (one subfolder per
    /// class, PNG/JPEG), a CSV (--label-column; every other column a numeric feature),
    /// NPY/NPZ arrays (x and y) or IDX files.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Test data for --data; without it --holdout of --data is held out.
    #[arg(long, value_name = "PATH", requires = "data")]
    pub test_data: Option<PathBuf>,
    /// Without --test-data: the fraction of --data held out as the test set (the same
    /// fraction of every class).
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Image folders: resize every image to HxW (e.g. 32x32).
    #[arg(long, value_name = "HxW")]
    pub image_size: Option<String>,
    /// CSV data: the column holding the labels.
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// CSV data without a header row: columns are named by position, from 0
    /// (`--label-column 64` is the 65th).
    #[arg(long)]
    pub no_header: bool,
    /// CSV data: columns to leave out (ids, free text), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAMES", requires = "data")]
    pub ignore_columns: Vec<String>,
    /// How --data is normalised: auto (the training split's statistics per channel for
    /// images, per column for tables), none, global, channel, feature, or the statistics
    /// the network was trained with, MEANS/STDS (e.g. 0.485,0.456,0.406/0.229,0.224,0.225
    /// for torchvision's pretrained networks, on values in [0, 1]).
    #[arg(long, value_name = "HOW", default_value = "auto", requires = "data")]
    pub normalize: String,
    /// Image folders: keep the decoded images in memory (memory), decode them from their
    /// files for every batch on a prefetch thread (stream: memory stays bounded whatever
    /// the folder's size), or choose by size (auto: in memory up to 8 MiB decoded).
    #[arg(long, value_enum, default_value = "auto", requires = "data")]
    pub loading: Loading,
}

impl Default for OwnDataArgs {
    /// The flags' defaults (one source: the `#[arg]` attributes above).
    fn default() -> Self {
        crate::tasks::flag_defaults()
    }
}

impl OwnDataArgs {
    /// Checks the flags without reading any data: ranges, forms, and that the paths exist.
    ///
    /// # Errors
    /// The first flag out of its range or form, naming it.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.holdout > 0.0 && self.holdout < 1.0,
            "--holdout must lie in (0, 1), got {}",
            self.holdout
        );
        anyhow::ensure!(
            self.test_data.is_none() || self.data.is_some(),
            "--test-data needs --data (the training data)"
        );
        if let Some(size) = &self.image_size {
            parse_image_size(size).map_err(|e| anyhow::anyhow!("--image-size {size:?}: {e}"))?;
        }
        self.normalization()?;
        for (flag, path) in [("--data", &self.data), ("--test-data", &self.test_data)] {
            if let Some(p) = path {
                anyhow::ensure!(p.exists(), "{flag} {}: no such file or folder", p.display());
            }
        }
        Ok(())
    }

    /// `--normalize` read.
    ///
    /// # Errors
    /// None of its forms.
    pub fn normalization(&self) -> anyhow::Result<Normalize> {
        self.normalize
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--normalize: {e}"))
    }

    /// How to read the files.
    ///
    /// # Errors
    /// A malformed `--image-size`.
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            image_size: match &self.image_size {
                Some(s) => Some(parse_image_size(s).map_err(|e| anyhow::anyhow!(e))?),
                None => None,
            },
            label_column: self.label_column.clone(),
            ignore_columns: self.ignore_columns.clone(),
            header: !self.no_header,
            ..Default::default()
        })
    }

    /// How to split and normalise, for a network taking `input_shape` per sample.
    ///
    /// # Errors
    /// A malformed `--normalize`.
    pub fn prepare_options(
        &self,
        seed: u64,
        input_shape: Option<Vec<usize>>,
    ) -> anyhow::Result<PrepareOptions> {
        Ok(PrepareOptions {
            normalize: self.normalization()?,
            holdout: self.holdout,
            seed,
            input_shape,
            ..Default::default()
        })
    }
}
