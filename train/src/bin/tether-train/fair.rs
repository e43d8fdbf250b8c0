//! `tether-train fair-prune`: train dense, prune by magnitude, fine-tune with every group's
//! excess accuracy gap bounded (CEAG), or with a baseline; report per group. The job is the
//! library's [`tether_train::tasks::fair_run`]; this file reads its [`FairConfig`] from the
//! flags (and `--config`) and prints what it reports.

use std::path::PathBuf;

use clap::ArgMatches;
use tether_train::device::DeviceArgs;
use tether_train::tasks::fair_run::{self, FairConfig};

#[derive(Clone, Debug, clap::Args)]
pub struct FairArgs {
    #[command(flatten)]
    settings: FairConfig,
    /// Read the settings from this TOML file: one key per flag, its name with underscores
    /// (`epsilon = 0.02`). A flag given on the command line overrides the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `matches` are the fair-prune subcommand's, for `--config` (which flags were given).
pub fn run(args: FairArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &args.settings, matches)?,
        None => args.settings,
    };
    // Checked before the device is looked for and the data read (`run` checks again).
    config.validate()?;
    // Ctrl-C, SIGTERM and SIGHUP stop the fine-tuning with a checkpoint.
    let control = tether_train::resume::RunControl::cli(true)?;
    let task = fair_run::ControlledFairTask {
        config: &config,
        control: &control,
    };
    let report = tether_train::device::run_on(args.device.device, task)??;
    let fine_tuned = &report.fine_tuned;
    println!(
        "fine-tuned ({:?}): train accuracy {:.4}, test accuracy {:.4}; max excess gap train {:+.4} ({} of {} groups over epsilon {}), test {:+.4}",
        config.method,
        fine_tuned.train_accuracy,
        fine_tuned.test_accuracy,
        fine_tuned.train_max_excess_gap,
        report.train_groups_over_epsilon,
        report.groups.len(),
        config.epsilon,
        fine_tuned.test_max_excess_gap,
    );
    println!(
        "wrote {}/{{{}}}",
        config.out.display(),
        report.files.join(", ")
    );
    Ok(())
}
