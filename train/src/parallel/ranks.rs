//! What every data-parallel command does with its ranks, whatever it trains: rank 0
//! writes the outputs the user asked for, the others run the same job into a scratch
//! folder of their own (removed when they end), and under MPI a rank that fails alone
//! ends the whole job (the others would wait for it in their next all-reduce).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::Collective;
use crate::resume::Interrupted;

/// A rank's output folder: the user's for rank 0; for the others
/// `tether-train-{kind}{rank}-{pid}` under the temp dir, removed when this is dropped.
#[derive(Debug)]
pub struct RankOut {
    dir: PathBuf,
    scratch: bool,
}

impl RankOut {
    /// Rank `rank`'s folder; `kind` names the ranks in the scratch folder's name (`rank`
    /// for processes, `replica` for threads).
    pub fn new(out: &Path, rank: usize, kind: &str) -> Self {
        if rank == 0 {
            return Self {
                dir: out.to_path_buf(),
                scratch: false,
            };
        }
        let dir =
            std::env::temp_dir().join(format!("tether-train-{kind}{rank}-{}", std::process::id()));
        Self { dir, scratch: true }
    }

    /// Where this rank writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RankOut {
    fn drop(&mut self) {
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `job(out)` as this process's rank of `group` (`mpirun -np N`): with `out` on
/// rank 0, a scratch folder ([`RankOut`]) on the others, `group` the thread's group
/// ([`super::set_group`]) meanwhile. Returns rank 0's result; `None` on the others.
///
/// An interrupt stops every rank after the same step with its checkpoint written: rank 0
/// reports it ([`Interrupted`]), the others end quietly (their checkpoints are in their
/// scratch folders, gone). Any other failure ends the whole job with status 1
/// ([`Collective::abort`]) after printing it: it may be this rank's alone, and the others
/// would wait for it in their next all-reduce forever.
///
/// # Errors
/// Rank 0's [`Interrupted`].
pub fn run_as_rank<R>(
    group: Rc<dyn Collective>,
    out: &Path,
    job: impl FnOnce(&Path) -> anyhow::Result<R>,
) -> anyhow::Result<Option<R>> {
    let (rank, size) = (group.rank(), group.size());
    let dir = RankOut::new(out, rank, "rank");
    super::set_group(Some(group.clone()));
    let result = job(dir.dir());
    // The last reference but `group`: MPI is finalised when the caller drops it.
    super::set_group(None);
    drop(dir);
    match result {
        Ok(r) => Ok((rank == 0).then_some(r)),
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            if rank == 0 {
                Err(e)
            } else {
                Ok(None)
            }
        }
        Err(e) => {
            eprintln!("rank {rank} of {size}: Error: {e:?}");
            group.abort(1)
        }
    }
}
