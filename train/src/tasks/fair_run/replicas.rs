//! `tether-train fair-prune --devices N`: the fair-pruning job on N replica threads in one
//! process ([`crate::parallel::local`], burn-collective's local all-reduce). Replica 0
//! writes `--out` and shows progress; the others run into scratch folders of their own,
//! removed afterwards ([`RankOut`]).

use burn::tensor::backend::AutodiffBackend;

use super::{FairConfig, FairReport, run_controlled};
use crate::device::{BackendTask, DeviceKind, run_on};
use crate::parallel::local;
use crate::parallel::ranks::RankOut;
use crate::resume::RunControl;

/// Runs `config` on `devices` replicas of backend `kind`; returns replica 0's report.
///
/// # Errors
/// Too few devices of `kind`, data that cannot be read, or any replica's error (the
/// first real one: a replica that fails stops the others).
pub fn run_replicas(
    config: &FairConfig,
    devices: usize,
    kind: DeviceKind,
    control: &RunControl,
) -> anyhow::Result<FairReport> {
    let task = Replicas {
        config,
        n: devices,
        cpu: kind.is_cpu(),
        control,
    };
    run_on(kind, task)?
}

/// [`run_replicas`]'s work on the backend the user named.
struct Replicas<'a> {
    config: &'a FairConfig,
    n: usize,
    cpu: bool,
    control: &'a RunControl,
}

impl BackendTask for Replicas<'_> {
    type Output = anyhow::Result<FairReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let devices = local::replica_devices::<B>(self.n, &device, self.cpu)?;
        let mut reports = local::run_replicas::<B::InnerBackend, _, _>(&devices, |rank| {
            let out = RankOut::new(&self.config.out, rank, "replica");
            let config = FairConfig {
                out: out.dir().to_path_buf(),
                ..self.config.clone()
            };
            let control = RunControl {
                progress: rank == 0 && self.control.progress,
                interrupt: self.control.interrupt.clone(),
            };
            let report = run_controlled::<B>(&config, &devices[rank], &control);
            if std::env::var_os("TETHER_PARALLEL_STATS").is_some() {
                eprintln!(
                    "replica {rank} of {}: {}",
                    self.n,
                    crate::parallel::stats::stats()
                );
            }
            report
        })?;
        Ok(reports.swap_remove(0))
    }
}
