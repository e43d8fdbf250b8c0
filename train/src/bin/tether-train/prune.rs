//! `tether-train prune`: train a gated network under a density constraint. The job itself
//! is the library's [`tether_train::tasks::prune_run`]; this file turns the flags (and
//! `--config`) into its [`PruneConfig`] and prints what it reports.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use clap::ArgMatches;
use tether_train::data::mnist::{ImageSet, Split};
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::parallel::args::DistributedArgs;
use tether_train::parallel::ranks::run_as_rank;
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
    #[command(flatten)]
    distributed: DistributedArgs,
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
    args.distributed.check_devices(config.batch)?;
    let collective = args.distributed.connect()?;
    if args.distributed.devices > 1 {
        anyhow::ensure!(
            collective.is_none(),
            "--devices {} under mpirun: give one replica per process (mpirun -np N) or \
             several devices in one process, not both",
            args.distributed.devices
        );
        let control = RunControl::cli(true)?;
        let report = tether_train::tasks::prune_replicas::run_replicas(
            &config,
            args.distributed.devices,
            args.device.device,
            &control,
        )?;
        print_report(&config, &report);
        return Ok(());
    }
    let Some(group) = collective else {
        return run_job(&config, &args, None);
    };
    // Rank 0 writes --out; the others run the same job into a folder of their own,
    // removed afterwards (the same model as rank 0's).
    run_as_rank(group.clone(), &config.out, |out| {
        let config = PruneConfig {
            out: out.to_path_buf(),
            ..config.clone()
        };
        run_job(&config, &args, Some(group.clone()))
    })?;
    Ok(())
}

/// The job on this process: `collective` is its group (`None`: alone); rank 0 (or the
/// lone process) shows progress and the report.
fn run_job(
    config: &PruneConfig,
    args: &PruneArgs,
    collective: Option<std::rc::Rc<dyn tether_train::parallel::Collective>>,
) -> anyhow::Result<()> {
    let lead = collective.as_ref().is_none_or(|c| c.rank() == 0);
    // Ctrl-C, SIGTERM and SIGHUP stop the run after the step under way, with a checkpoint.
    let control = &RunControl::cli(lead)?;
    tether_train::parallel::set_group(collective.clone());
    let report = if config.is_own() {
        let task = OwnTask { config, control };
        run_on(args.device.device, task)??
    } else {
        let train = ImageSet::load(config.dataset, Split::Train)?;
        let test = ImageSet::load(config.dataset, Split::Test)?;
        let task = Task {
            config,
            train: &train,
            test: &test,
            control,
        };
        run_on(args.device.device, task)??
    };
    if lead {
        print_report(config, &report);
    }
    if std::env::var_os("TETHER_PARALLEL_STATS").is_some() {
        let who = match &collective {
            Some(c) => format!("rank {} of {}", c.rank(), c.size()),
            None => "one process".into(),
        };
        eprintln!("{who}: {}", tether_train::parallel::stats::stats());
    }
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
