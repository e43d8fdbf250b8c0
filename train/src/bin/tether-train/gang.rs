//! `tether-train gang`: a GAN on a 2D mixture of Gaussians, solved as a finite zero-sum
//! game by Parallel Nash Memory, or trained as a standard GAN (the baseline). The job is
//! the library's [`tether_train::tasks::gang_run`]; this file reads its [`GangRunConfig`]
//! from the flags (and `--config`) and prints what it reports.

use std::path::PathBuf;

use clap::ArgMatches;
use tether_train::device::DeviceArgs;
use tether_train::tasks::gang_run::{self, GangRunConfig};

#[derive(Clone, Debug, clap::Args)]
pub struct GangArgs {
    #[command(flatten)]
    settings: GangRunConfig,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Read the settings from this TOML file: one key per flag, its name with underscores
    /// (`response_steps = 500`). A flag given on the command line overrides the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `matches` are the gang subcommand's, for `--config` (which flags were given).
pub fn run(args: GangArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &args.settings, matches)?,
        None => args.settings,
    };
    // Checked before the device is looked for and the data read (`run` checks again).
    config.validate()?;
    // Ctrl-C, SIGTERM and SIGHUP stop the run with a checkpoint.
    let control = tether_train::resume::RunControl::cli(!args.quiet)?;
    let task = gang_run::ControlledGangTask {
        config: &config,
        control: &control,
    };
    let report = tether_train::device::run_on(args.device.device, task)??;
    let (s, q) = (&report.summary, &report.quality);
    println!(
        "{}: {}/{} modes covered, {:.1}% high-quality samples, exploitability {:.4} \
         ({} generators, {} gradient steps, {:.1} s); wrote {}",
        s.method,
        q.modes_covered,
        q.modes,
        100.0 * q.high_quality,
        report.exploitability.total(),
        s.generators,
        s.gradient_steps,
        s.seconds,
        config.out.display()
    );
    Ok(())
}
