//! `tether-train mesh`: per-vertex parcellation of the cortex with an equivariant mesh
//! attention network (EMAN), fed RelTan features or raw coordinates (the baseline), and
//! evaluated on the test hemisphere as it is and under random rotations, translations,
//! scalings, vertex permutations and gauge changes. The job is the library's
//! [`tether_train::tasks::mesh_run`]; this file reads its [`MeshConfig`] from the flags
//! (and `--config`) and prints what it reports.

use std::path::PathBuf;

use clap::ArgMatches;
use tether_train::device::DeviceArgs;
use tether_train::tasks::mesh_run::{self, MeshConfig};

#[derive(Clone, Debug, clap::Args)]
pub struct MeshArgs {
    #[command(flatten)]
    settings: MeshConfig,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Read the settings from this TOML file: one key per flag, its name with underscores
    /// (`eval_every = 10`). A flag given on the command line overrides the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `matches` are the mesh subcommand's, for `--config` (which flags were given).
pub fn run(args: MeshArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => crate::config_file::load(path, &args.settings, matches)?,
        None => args.settings,
    };
    // Checked before the device is looked for and the data read (`run` checks again).
    config.validate()?;
    // Ctrl-C, SIGTERM and SIGHUP stop the run with a checkpoint.
    let control = tether_train::resume::RunControl::cli(!args.quiet)?;
    let task = mesh_run::ControlledMeshTask {
        config: &config,
        control: &control,
    };
    let report = tether_train::device::run_on(args.device.device, task)??;
    let s = &report.summary;
    println!(
        "{:?} ({} parameters, {:.2} s/step): train {:.4}, test {:.4}, \
         transformed test {:.4} (mean of {})",
        s.input,
        s.parameters,
        s.seconds_per_step,
        s.train_accuracy,
        s.test_accuracy,
        s.transformed_mean,
        config.transforms
    );
    println!(
        "tether-deploy on the test mesh: max |diff| {:.1e} from burn, \
         {:.0} ms (geometry included) vs burn's {:.0} ms",
        s.deploy_max_diff, s.deploy_ms, s.burn_ms
    );
    println!(
        "wrote {}/{{{}}}",
        config.out.display(),
        report.files.join(", ")
    );
    Ok(())
}
