//! `tether-train svm`: the hard-margin linear SVM on Iris by constrained gradient
//! descent-ascent, against an exact QP solve. The job is the library's
//! [`tether_train::tasks::svm_run`]; this file reads its [`SvmConfig`] from the flags (and
//! `--config`) and prints what it reports.

use std::path::PathBuf;

use clap::ArgMatches;
use tether_train::device::DeviceArgs;
use tether_train::tasks::svm_run::{self, SvmConfig};

#[derive(Clone, Debug, clap::Args)]
pub struct SvmArgs {
    #[command(flatten)]
    settings: SvmConfig,
    /// Read the settings from this TOML file: one key per flag, its name with underscores
    /// (`dual_lr = 0.05`). A flag given on the command line overrides the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `matches` are the svm subcommand's, for `--config` (which flags were given).
pub fn run(args: SvmArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &args.settings, matches)?,
        None => args.settings,
    };
    // Checked before the device is looked for and the data read (`run` checks again).
    config.validate()?;
    let report = svm_run::run_on(args.device.device, &config, true)?;
    let six = |v: &[f64]| v.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>();
    println!("w, b       {:?}", six(&report.wb));
    println!("exact QP   {:?}", six(&report.exact.x));
    println!(
        "max |w - w*| = {:.2e}, max |alpha - alpha*| = {:.2e} ({} support vectors)",
        report.max_weight_error,
        report.max_alpha_error,
        report.support.len()
    );
    println!(
        "wrote {} and {}",
        config.out.join("metrics.csv").display(),
        config.out.join("multipliers.png").display()
    );
    Ok(())
}
