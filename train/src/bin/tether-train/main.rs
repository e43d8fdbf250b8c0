//! `tether-train`: train small networks under explicit constraints.

mod config_file;
mod fair;
mod gang;
mod mesh;
mod prune;
mod svm;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tether_train::denormals::FlushDenormals;
use tether_train::device::DeviceKind;
use tether_train::resume::Interrupted;

#[derive(Parser)]
#[command(
    name = "tether-train",
    version,
    about = "Train small networks under explicit constraints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the devices compiled into this binary.
    Devices,
    /// Solve a hard-margin linear SVM on Iris as a constrained problem (one inequality per
    /// sample) and compare it with an exact QP solve.
    Svm(svm::SvmArgs),
    /// Train a gated network under a density constraint (L0 pruning with hard-concrete
    /// gates) and save the pruned model.
    Prune(prune::PruneArgs),
    /// Prune a trained network by magnitude, then fine-tune it with every group's excess
    /// accuracy gap bounded (or a baseline), and report per group.
    FairPrune(fair::FairArgs),
    /// Solve a GAN on a 2D mixture of Gaussians as a finite zero-sum game between
    /// mixtures of generators and classifiers (Parallel Nash Memory), or train the
    /// standard GAN baseline.
    Gang(gang::GangArgs),
    /// Train an equivariant mesh attention network (EMAN) to parcellate the cortex, vertex
    /// by vertex, and test it on the other hemisphere, as is and randomly rotated,
    /// translated, scaled, permuted and re-gauged (or the raw-coordinate baseline).
    Mesh(mesh::MeshArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A run stopped on request with its checkpoint written: the status shells give
        // SIGINT (128 + 2), and the message says how to continue.
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Every command, evaluations included, runs with subnormal floats flushed to zero:
    // x86 multiplies them through a microcode assist (a fair-prune run with L2 decay 1e-3
    // on the 1024-512 MLP at 95% took over 19 minutes, 3 with the flags; perf put 72% of
    // the time in the f32 GEMM kernel), and a value under 1.2e-38 carries nothing a
    // network can use. The flags are per thread; tasks run on this one.
    let _flush = FlushDenormals::new();
    // Parsed in two steps (what `Cli::parse` does) to keep the matches: `--config` needs
    // to know which flags were given on the command line.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A subcommand's own matches, for `--config` (the one parsed is always there).
    let sub = |name: &str| {
        matches
            .subcommand_matches(name)
            .expect("the parsed subcommand has matches")
    };
    // Only `prune` and `fair-prune` train data-parallel: any other command launched by
    // mpirun would run once per process, each writing the same outputs.
    if let Some(n) = tether_train::parallel::args::launched_size().filter(|&n| n > 1)
        && !matches!(
            cli.command,
            Command::Prune(_) | Command::FairPrune(_) | Command::Devices
        )
    {
        anyhow::bail!(
            "launched by mpirun with {n} processes, but only `tether-train prune` and \
             `fair-prune` train data-parallel; run this command as one process"
        );
    }
    match cli.command {
        Command::Devices => {
            for d in DeviceKind::compiled() {
                println!("{d}");
            }
            Ok(())
        }
        Command::Svm(args) => svm::run(args, sub("svm")),
        Command::Prune(args) => {
            let matches = matches
                .subcommand_matches("prune")
                .expect("the prune subcommand");
            prune::run(args, matches)
        }
        Command::FairPrune(args) => fair::run(args, sub("fair-prune")),
        Command::Gang(args) => gang::run(args, sub("gang")),
        Command::Mesh(args) => mesh::run(args, sub("mesh")),
    }
}
