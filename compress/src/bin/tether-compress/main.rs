//! `tether-compress`: compress images into tiny SIREN weight files (COIN / L0onie), decode
//! them with `tether-deploy`, and measure rate-distortion against JPEG and published codecs.
//!
//! The flags are parsed here ([`args`]); the work is the library's
//! (`tether_compress::tasks`), one `run` per subcommand.

mod args;

use clap::Parser;
use tether_compress::coolchic::dual::RateDualConfig;
use tether_compress::error::CompressError;
use tether_compress::tasks::config::{CodecConfig, DecodeConfig, EncodeConfig, EvalConfig};
use tether_compress::tasks::{decode, encode, eval};

use args::{Cli, CodecArgs, Command, DecodeArgs, EncodeArgs, EvalArgs};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A fit stopped by a signal with its checkpoint written: the status shells give
        // SIGINT (128 + 2), and the message says how to continue.
        Err(e) if matches!(e.downcast_ref(), Some(CompressError::Interrupted(_))) => {
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
    let out = &mut std::io::stdout();
    match Cli::parse().command {
        Command::Encode(a) => {
            // Ctrl-C, SIGTERM and SIGHUP stop the fit with a checkpoint.
            let control = tether_train::resume::RunControl::cli(true)?;
            encode::run_controlled(&a.into(), out, &control).map(drop)
        }
        Command::Decode(a) => decode::run(&a.into(), out).map(drop),
        Command::Eval(a) => eval::run(&a.into(), out, true).map(drop),
    }
}

impl From<CodecArgs> for CodecConfig {
    fn from(a: CodecArgs) -> Self {
        Self {
            method: a.method,
            steps: a.steps,
            lr: a.lr,
            gate_lr: a.gate_lr,
            overparam: a.overparam,
            value_bits: a.value_bits,
            dual: a.dual,
            dual_lr: a.dual_lr,
            kp: a.kp,
            prune_fraction: a.prune_fraction,
            no_gate_noise: a.no_gate_noise,
            gate_init_drop: a.gate_init_drop,
            coolchic_lr: a.coolchic_lr,
            coolchic_soft_fraction: a.coolchic_soft_fraction,
            coolchic_round_lr: a.coolchic_round_lr,
            coolchic_learn_upsampling: a.coolchic_learn_upsampling,
            coolchic_dual: RateDualConfig {
                init: a.coolchic_dual_init,
                ki: a.coolchic_dual_ki,
                kp: a.coolchic_dual_kp,
                ..RateDualConfig::default()
            },
            seed: a.seed,
            device: a.device.device,
        }
    }
}

impl From<EncodeArgs> for EncodeConfig {
    fn from(a: EncodeArgs) -> Self {
        Self {
            image: a.image,
            output: a.output,
            bpp: a.bpp,
            downscale: a.downscale,
            decoded: a.decoded,
            log: a.log,
            strict_input: a.input.strict_input,
            checkpoint_every: a.checkpoint_every,
            resume: a.resume,
            codec: a.codec.into(),
        }
    }
}

impl From<DecodeArgs> for DecodeConfig {
    fn from(a: DecodeArgs) -> Self {
        Self {
            input: a.input,
            output: a.output,
        }
    }
}

impl From<EvalArgs> for EvalConfig {
    fn from(a: EvalArgs) -> Self {
        Self {
            dir: a.dir,
            bpp: a.bpp,
            methods: a.methods,
            downscale: a.downscale,
            limit: a.limit,
            published: a.published,
            out: a.out,
            strict_input: a.input.strict_input,
            codec: a.codec.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tether_compress::tasks::config::CodecConfig;

    use super::args::{Cli, Command};

    /// The library's defaults are the flags' defaults.
    #[test]
    fn codec_defaults_match_the_flags() {
        let cli = Cli::parse_from(["tether-compress", "encode", "x.png", "-o", "x.tc"]);
        let Command::Encode(args) = cli.command else {
            panic!("encode")
        };
        assert_eq!(CodecConfig::from(args.codec), CodecConfig::default());
    }
}
