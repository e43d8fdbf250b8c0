//! `tether-train fair-prune`: train dense, prune by magnitude, fine-tune with every group's
//! excess accuracy gap bounded (CEAG), or with a baseline; report per group. The job is the
//! library's [`tether_train::tasks::fair_run`]; this file reads its [`FairConfig`] from the
//! flags (and `--config`) and prints what it reports.

use std::path::PathBuf;

use clap::ArgMatches;
use tether_train::device::DeviceArgs;
use tether_train::parallel::args::DistributedArgs;
use tether_train::parallel::ranks::run_as_rank;
use tether_train::resume::RunControl;
use tether_train::tasks::fair_run::{self, FairConfig, FairReport};

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
    #[command(flatten)]
    distributed: DistributedArgs,
}

/// `matches` are the fair-prune subcommand's, for `--config` (which flags were given).
pub fn run(args: FairArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &args.settings, matches)?,
        None => args.settings,
    };
    // Checked before the device is looked for and the data read (`run` checks again).
    config.validate()?;
    args.distributed.check_devices(config.batch)?;
    let group = args.distributed.connect()?;
    let devices = args.distributed.devices;
    anyhow::ensure!(
        devices == 1 || group.is_none(),
        "--devices {devices} under mpirun: give one replica per process (mpirun -np N) or \
         several devices in one process, not both"
    );
    // Ctrl-C, SIGTERM and SIGHUP stop the fine-tuning with a checkpoint.
    let lead = group.as_ref().is_none_or(|g| g.rank() == 0);
    let control = RunControl::cli(lead)?;
    let kind = args.device.device;
    let report = if devices > 1 {
        Some(fair_run::replicas::run_replicas(
            &config, devices, kind, &control,
        )?)
    } else {
        let job = |out: &std::path::Path| -> anyhow::Result<FairReport> {
            let config = FairConfig {
                out: out.to_path_buf(),
                ..config.clone()
            };
            let task = fair_run::ControlledFairTask {
                config: &config,
                control: &control,
            };
            let report = tether_train::device::run_on(kind, task)?;
            if std::env::var_os("TETHER_PARALLEL_STATS").is_some() {
                let who = match tether_train::parallel::group() {
                    Some(g) => format!("rank {} of {}", g.rank(), g.size()),
                    None => "one process".into(),
                };
                eprintln!("{who}: {}", tether_train::parallel::stats::stats());
            }
            report
        };
        match group {
            Some(group) => run_as_rank(group, &config.out, job)?,
            None => Some(job(&config.out)?),
        }
    };
    if let Some(report) = report {
        print_report(&config, &report);
    }
    Ok(())
}

fn print_report(config: &FairConfig, report: &FairReport) {
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
}
