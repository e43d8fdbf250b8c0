//! Each rank's share of the global batches. The single-process run takes its batches of
//! `B` from an epoch's shuffled order; with `N` ranks, rank `r` takes the `r`-th
//! contiguous `B / N` samples of each of those same batches, so the ranks together see
//! exactly the single-process batches, step by step, in the same order.

use thiserror::Error;

/// Why a global batch cannot be split.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShardError {
    /// The ranks would get shards of different sizes.
    #[error(
        "the global batch of {batch} samples does not divide among {ranks} replicas \
         (processes or --devices; give a --batch that is a multiple of their count)"
    )]
    Indivisible {
        /// The global batch.
        batch: usize,
        /// The process count.
        ranks: usize,
    },
    /// A rank outside the group.
    #[error("rank {rank} of a group of {ranks}")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// The process count.
        ranks: usize,
    },
}

/// The per-rank batch size of a global batch of `batch` over `ranks` processes.
///
/// # Errors
/// [`ShardError::Indivisible`]: `batch` is not a positive multiple of `ranks`.
pub fn local_batch(batch: usize, ranks: usize) -> Result<usize, ShardError> {
    if ranks == 0 || batch == 0 || !batch.is_multiple_of(ranks) {
        return Err(ShardError::Indivisible { batch, ranks });
    }
    Ok(batch / ranks)
}

/// Rank `rank`'s samples of the full global batches of `order` (a trailing partial batch
/// is dropped, as the single-process run drops it), in order: batch `k` of the result,
/// taken in chunks of [`local_batch`], is this rank's shard of global batch `k`.
///
/// # Errors
/// As [`local_batch`], and a rank outside `0..ranks`.
pub fn shard_order(
    order: &[usize],
    batch: usize,
    rank: usize,
    ranks: usize,
) -> Result<Vec<usize>, ShardError> {
    let local = local_batch(batch, ranks)?;
    if rank >= ranks {
        return Err(ShardError::NoSuchRank { rank, ranks });
    }
    Ok(order
        .chunks_exact(batch)
        .flat_map(|global| &global[rank * local..(rank + 1) * local])
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranks' shards, interleaved batch by batch, are the single-process batches.
    #[test]
    fn the_shards_of_each_batch_make_the_global_batch() {
        let order: Vec<usize> = (0..23).map(|i| (i * 7) % 23).collect();
        let (batch, ranks) = (6, 3);
        let shards: Vec<Vec<usize>> = (0..ranks)
            .map(|r| shard_order(&order, batch, r, ranks).unwrap())
            .collect();
        let local = batch / ranks;
        let mut rebuilt = Vec::new();
        for k in 0..order.len() / batch {
            for shard in &shards {
                rebuilt.extend_from_slice(&shard[k * local..(k + 1) * local]);
            }
        }
        assert_eq!(rebuilt, order[..18]);
        assert!(shards.iter().all(|s| s.len() == 6));
    }

    #[test]
    fn an_indivisible_batch_and_a_bad_rank_are_errors() {
        assert_eq!(
            local_batch(10, 3),
            Err(ShardError::Indivisible {
                batch: 10,
                ranks: 3
            })
        );
        assert!(local_batch(10, 0).is_err());
        assert!(shard_order(&[0, 1, 2, 3], 2, 2, 2).is_err());
        let msg = local_batch(10, 3).unwrap_err().to_string();
        assert!(msg.contains("does not divide among 3 replicas"), "{msg}");
    }
}
