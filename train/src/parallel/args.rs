//! `--distributed` and `--devices`: how a command finds its process group (or starts its
//! replicas on threads, [`super::local`]). `mpirun` tells its processes
//! the group's size in the environment (OpenMPI: `OMPI_COMM_WORLD_SIZE`; MPICH's Hydra:
//! `PMI_SIZE`), so `mpirun -np 4 tether-train prune ...` needs no flag.

use std::rc::Rc;

use super::Collective;

/// Where the process group comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Distributed {
    /// MPI when launched by `mpirun` (OMPI_COMM_WORLD_SIZE or PMI_SIZE set, above 1),
    /// else one process.
    #[default]
    Auto,
    /// MPI (`mpirun -np N`); needs a build with the `mpi` feature.
    Mpi,
    /// One process, whatever launched it.
    Off,
}

/// The flag, for commands to flatten into their arguments.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DistributedArgs {
    /// Data-parallel training across processes: `mpi` splits each global batch
    /// (--batch) across the `mpirun -np N` processes and all-reduces the gradients
    /// once per step; rank 0 alone writes outputs. `auto` (the default) is `mpi` when
    /// launched by mpirun (OMPI_COMM_WORLD_SIZE or PMI_SIZE in the environment). Needs a
    /// build with `--features mpi`.
    #[arg(long, value_enum, default_value_t = Distributed::Auto)]
    pub distributed: Distributed,
    /// Data-parallel training inside this process: N replicas of the model, each on a
    /// thread with its own device (cuda/wgpu: devices 0..N; flex/ndarray: the CPU, one
    /// core per replica), each computing B/N samples of every global batch (--batch);
    /// their gradients are summed by burn-collective's local all-reduce once per step,
    /// so the run takes the single replica's steps. Replica 0 writes the outputs; its
    /// checkpoints resume on any N. Not with mpirun (one replica per process there).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub devices: usize,
}

/// The process count `mpirun` announced in the environment, if any.
pub fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}

impl DistributedArgs {
    /// Checks `--devices` against the global batch before any data is read.
    ///
    /// # Errors
    /// `--devices 0`, more devices than samples in a batch, or a batch that does not
    /// divide among them.
    pub fn check_devices(&self, batch: usize) -> anyhow::Result<()> {
        let n = self.devices;
        anyhow::ensure!(n > 0, "--devices 0: give at least 1");
        anyhow::ensure!(
            n <= batch,
            "--devices {n} with --batch {batch}: each device needs at least one sample of \
             every global batch"
        );
        super::shard::local_batch(batch, n)?;
        Ok(())
    }

    /// The process group: `None` for one process.
    ///
    /// # Errors
    /// MPI asked for (or `mpirun` detected with several processes) in a build without the
    /// `mpi` feature; MPI failing to initialise.
    pub fn connect(&self) -> anyhow::Result<Option<Rc<dyn Collective>>> {
        let launched = launched_size();
        match self.distributed {
            Distributed::Off => return Ok(None),
            Distributed::Auto if launched.is_none_or(|n| n <= 1) => return Ok(None),
            Distributed::Auto | Distributed::Mpi => {}
        }
        connect_mpi(launched)
    }
}

#[cfg(feature = "mpi")]
fn connect_mpi(_launched: Option<usize>) -> anyhow::Result<Option<Rc<dyn Collective>>> {
    let mpi = super::mpi::Mpi::init()?;
    if mpi.size() == 1 {
        // A group of one: nothing to reduce (MPI is finalised when `mpi` drops).
        return Ok(None);
    }
    Ok(Some(Rc::new(mpi)))
}

#[cfg(not(feature = "mpi"))]
fn connect_mpi(launched: Option<usize>) -> anyhow::Result<Option<Rc<dyn Collective>>> {
    let how = match launched {
        Some(n) => format!("launched by mpirun with {n} processes, "),
        None => "--distributed mpi: ".to_string(),
    };
    anyhow::bail!(
        "{how}but this tether-train was built without MPI (each process would train \
         alone): build it with `cargo build --release -p tether-train --features mpi`, or \
         give --distributed off"
    )
}
