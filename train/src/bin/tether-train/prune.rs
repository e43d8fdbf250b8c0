//! `tether-train prune`: train a gated network under a density constraint. The job itself
//! is the library's [`tether_train::tasks::prune_run`]; this file turns the flags (and
//! `--config`) into its [`PruneConfig`] and prints what it reports.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::ArgMatches;
use tether_train::data::mnist::{ImageSet, Split};
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::tasks::prune_run::{
    PruneConfig, PruneReport, RunControl, run_controlled, run_with_data_controlled,
};

#[derive(Clone, Debug, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    settings: PruneConfig,
    /// Read the settings from this TOML file: one key per flag, its name with underscores
    /// (`target_density = 0.2`). A flag given on the command line overrides the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `matches` are the prune subcommand's, for `--config` (which flags were given).
pub fn run(args: PruneArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &args.settings, matches)?,
        None => args.settings.clone(),
    };
    // Every setting and the output folder are checked before the data is read.
    let config = config.with_board()?;
    config.validate()?;
    tether_train::io::check_output_dir(&config.out, "--out")?;
    // Ctrl-C, SIGTERM and SIGHUP stop the run after the step under way, with a checkpoint.
    let control = RunControl::cli(true)?;
    if config.is_own() {
        let task = OwnTask {
            config: &config,
            control: &control,
        };
        let report = run_on(args.device.device, task)??;
        print_report(&config, &report);
        return Ok(());
    }
    let train = ImageSet::load(config.dataset, Split::Train)?;
    let test = ImageSet::load(config.dataset, Split::Test)?;
    let task = Task {
        config: &config,
        train: &train,
        test: &test,
        control: &control,
    };
    let report = run_on(args.device.device, task)??;
    print_report(&config, &report);
    Ok(())
}

fn print_report(config: &PruneConfig, report: &PruneReport) {
    for l in report.summary["layers"].as_array().into_iter().flatten() {
        println!(
            "layer {}: kept {} of {} ({:.4})",
            l["layer"],
            l["kept"],
            l["gated_params"],
            l["density"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "wrote {}/{{{}}}",
        config.out.display(),
        report.files.join(", ")
    );
}

/// The own-model / own-data job: the library loads the data itself.
struct OwnTask<'a> {
    config: &'a PruneConfig,
    control: &'a RunControl,
}

impl BackendTask for OwnTask<'_> {
    type Output = anyhow::Result<PruneReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_controlled::<B>(self.config, &device, self.control)
    }
}

struct Task<'a> {
    config: &'a PruneConfig,
    train: &'a ImageSet,
    test: &'a ImageSet,
    control: &'a RunControl,
}

impl BackendTask for Task<'_> {
    type Output = anyhow::Result<PruneReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_with_data_controlled::<B>(self.config, self.train, self.test, &device, self.control)
    }
}
