//! `tether-deploy`: run, inspect and time tether models (`.tthr`, see deploy/FORMAT.md).
//!
//! The flags are parsed here ([`args`]); the work is the library's
//! (`tether_deploy::cli`), one function per subcommand.

mod args;

use std::io::Write;

use clap::Parser;
use tether_deploy::cli;

use args::{Cli, Command, MeshPrecision};

/// Stdout that ends the program quietly when it is a closed pipe
/// (`tether-deploy inspect m.tthr | head`) instead of failing, as Unix tools do.
struct Stdout(std::io::Stdout);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).or_else(exit_on_stdout_error)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().or_else(exit_on_stdout_error)
    }
}

/// A closed pipe ends the program with success; any other write error is reported (an
/// interrupted write is returned, to be retried).
fn exit_on_stdout_error<T>(e: std::io::Error) -> std::io::Result<T> {
    if e.kind() == std::io::ErrorKind::Interrupted {
        return Err(e);
    }
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(1);
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let out = &mut Stdout(std::io::stdout());
    match cli.command {
        Command::Inspect { model, board } => {
            let board = board.as_deref().map(cli::board::Board::load).transpose()?;
            if !cli::inspect_for(&model, board.as_ref(), out)? {
                // A model that does not fit its board: a failure a script can test.
                out.flush()?;
                std::process::exit(3);
            }
            Ok(())
        }
        Command::Run {
            model,
            input,
            named_inputs,
            outputs,
            idx,
            labels,
            normalize,
            limit,
            kernels,
            scores,
            reject_non_finite,
            vertex_labels,
            label_offset,
            predictions,
            drop_isolated,
            precision,
        } => {
            let config = cli::RunConfig {
                model,
                input,
                idx,
                labels,
                normalize: [normalize[0], normalize[1]],
                limit,
                kernels: kernels.into(),
                scores,
                reject_non_finite,
                vertex_labels,
                label_offset,
                predictions,
                drop_isolated,
                precision: precision.map(MeshPrecision::into),
                named_inputs,
                outputs,
            };
            cli::run(&config, out, &mut std::io::stderr())
        }
        Command::Bench {
            model,
            batch,
            trials,
            mesh,
            per_node,
        } => cli::bench(
            &cli::BenchConfig {
                model,
                batches: batch,
                trials,
                mesh,
                per_node,
            },
            out,
        ),
        #[cfg(feature = "onnx")]
        Command::Import { model, output } => cli::import(&cli::ImportConfig { model, output }, out),
        #[cfg(feature = "onnx")]
        Command::Export {
            model,
            output,
            sparse_initializers,
            no_batch_axis,
        } => cli::export(
            &cli::ExportConfig {
                model,
                output,
                sparse_initializers,
                no_batch_axis,
            },
            out,
        ),
    }
}
