//! `tether-train prune --devices N`: the prune job on N replica threads in one process
//! ([`crate::parallel::local`], burn-collective's local all-reduce). Replica 0 writes
//! `--out` and shows progress; the others run into scratch folders of their own, removed
//! afterwards ([`RankOut`]). The built-in datasets are read once for every replica.

use burn::tensor::backend::AutodiffBackend;

use crate::data::mnist::{ImageSet, Split};
use crate::device::{BackendTask, DeviceKind, run_on};
use crate::parallel::local;
use crate::parallel::ranks::RankOut;
use crate::tasks::prune_run::{
    PruneConfig, PruneReport, RunControl, run_controlled, run_with_data_controlled,
};

/// Runs `config` on `devices` replicas of backend `kind`; returns replica 0's report.
///
/// # Errors
/// Too few devices of `kind`, data that cannot be read, or any replica's error (the
/// first real one: a replica that fails stops the others).
pub fn run_replicas(
    config: &PruneConfig,
    devices: usize,
    kind: DeviceKind,
    control: &RunControl,
) -> anyhow::Result<PruneReport> {
    let data = if config.is_own() {
        None
    } else {
        Some((
            ImageSet::load(config.dataset, Split::Train)?,
            ImageSet::load(config.dataset, Split::Test)?,
        ))
    };
    let task = Replicas {
        config,
        n: devices,
        cpu: kind.is_cpu(),
        control,
        data: data.as_ref().map(|(train, test)| (train, test)),
    };
    run_on(kind, task)?
}

/// [`run_replicas`]'s work on the backend the user named.
struct Replicas<'a> {
    config: &'a PruneConfig,
    n: usize,
    cpu: bool,
    control: &'a RunControl,
    /// The built-in datasets (`None`: each replica's job reads the user's own).
    data: Option<(&'a ImageSet, &'a ImageSet)>,
}

impl BackendTask for Replicas<'_> {
    type Output = anyhow::Result<PruneReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let devices = local::replica_devices::<B>(self.n, &device, self.cpu)?;
        let mut reports = local::run_replicas::<B::InnerBackend, _, _>(&devices, |rank| {
            let out = RankOut::new(&self.config.out, rank, "replica");
            let mut config = self.config.clone();
            config.out = out.dir().to_path_buf();
            let control = RunControl {
                progress: rank == 0,
                interrupt: self.control.interrupt.clone(),
            };
            let device = &devices[rank];
            let report = match self.data {
                Some((train, test)) => {
                    run_with_data_controlled::<B>(&config, train, test, device, &control)
                }
                None => run_controlled::<B>(&config, device, &control),
            };
            drop(out);
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
