//! An all-gather between the threads of one process: the replicas of `--devices N`
//! ([`super::local`]) exchange their parts through one buffer they share, each copying in
//! only its own part and out the whole. burn-collective 0.21, whose local all-reduce the
//! replicas sum their gradients with, has no all-gather; before this exchange the local
//! peers gathered with a zero-padded all-reduce of the whole output (every rank uploading,
//! reducing and reading back `size` times the values it owns).
//!
//! One call is a two-phase barrier under one lock: ranks arrive (the first sets the call's
//! counts, the others must give the same), copy their part in and wait until all have
//! arrived; then each copies the whole buffer out, and the last to leave opens the next
//! call. A rank that comes back for its next call while others still read the last one
//! waits at the door, so a call's buffer is never overwritten before every rank has it.
//! Copies happen under the lock: with a few replicas and buffers of a Shampoo step's
//! directions (LeNet-5: 61,706 values, about 0.25 MB) a copy is tens of microseconds
//! against a step of milliseconds.
//!
//! A replica that stops marks the exchange failed ([`Exchange::fail`]): every call waiting
//! for it, and every later call, returns [`ConstrainedError::Collective`] instead of
//! waiting forever. A call whose parts all arrived before the failure still completes:
//! its buffer is whole.

use std::sync::{Condvar, Mutex, MutexGuard};

use super::gather_offset;
use crate::constrained::ConstrainedError;

/// The shared end of an all-gather among `size` threads (see the module's doc).
#[derive(Debug)]
pub struct Exchange {
    size: usize,
    state: Mutex<Call>,
    turn: Condvar,
}

/// The call in progress.
#[derive(Debug, Default)]
struct Call {
    /// The call's counts, set by the first rank to arrive.
    counts: Vec<usize>,
    /// Every rank's part, in rank order.
    values: Vec<f32>,
    /// Ranks that copied their part in.
    arrived: usize,
    /// Ranks that copied the whole out; the call is over when all have.
    left: usize,
    /// Why the exchange can no longer complete a call, once a rank stopped.
    failed: Option<String>,
}

impl Call {
    /// Every rank has arrived: the values are whole and are being read.
    fn complete(&self, size: usize) -> bool {
        self.arrived == size
    }
}

impl Exchange {
    /// An exchange among `size` threads, ranks `0..size`.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            state: Mutex::new(Call::default()),
            turn: Condvar::new(),
        }
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, Call> {
        // A rank that panicked cannot have left the state half-changed (its copies are
        // bounds-checked before the lock), and its guard marks the exchange failed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Call>) -> MutexGuard<'a, Call> {
        self.turn.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Rank `rank`'s part of an all-gather: every rank's `mine` concatenated in rank order
    /// into `out`, as [`super::Collective::all_gather`]. Blocks until every rank has given
    /// its part.
    ///
    /// # Errors
    /// - [`ConstrainedError::InvalidConfig`]: `rank` is not below the size or the lengths
    ///   do not fit one another (nothing is exchanged and the others are not affected);
    /// - [`ConstrainedError::Collective`]: the exchange has failed ([`Self::fail`]) before
    ///   this call completed, or ranks called it with different counts (which fails it
    ///   for every rank).
    pub fn all_gather(
        &self,
        rank: usize,
        mine: &[f32],
        counts: &[usize],
        out: &mut [f32],
    ) -> Result<(), ConstrainedError> {
        let start = gather_offset(rank, self.size, mine, counts, out)?;
        let mut call = self.lock();
        // The door: the last call is still being read.
        while call.complete(self.size) && call.failed.is_none() {
            call = self.wait(call);
        }
        if let Some(why) = &call.failed {
            return Err(self.failure(rank, why));
        }
        if call.arrived == 0 {
            call.counts.clear();
            call.counts.extend_from_slice(counts);
            call.values.clear();
            call.values.resize(out.len(), 0.0);
        } else if call.counts != counts {
            let why = format!(
                "rank {rank} gathered {counts:?} values per rank, another rank {:?}",
                call.counts
            );
            let err = self.failure(rank, &why);
            call.failed = Some(why);
            self.turn.notify_all();
            return Err(err);
        }
        call.values[start..start + mine.len()].copy_from_slice(mine);
        call.arrived += 1;
        if call.complete(self.size) {
            self.turn.notify_all();
        }
        while !call.complete(self.size) {
            if let Some(why) = &call.failed {
                return Err(self.failure(rank, why));
            }
            call = self.wait(call);
        }
        out.copy_from_slice(&call.values);
        call.left += 1;
        if call.left == self.size {
            call.arrived = 0;
            call.left = 0;
            self.turn.notify_all();
        }
        Ok(())
    }

    /// Fails the call in progress and every later one, on every rank: what a rank that
    /// stops does, so that none waits for it. The first reason is kept.
    pub fn fail(&self, why: &str) {
        let mut call = self.lock();
        call.failed.get_or_insert_with(|| why.to_string());
        self.turn.notify_all();
    }

    fn failure(&self, rank: usize, why: &str) -> ConstrainedError {
        ConstrainedError::Collective(format!(
            "replica {rank} of {}: the all-gather cannot complete ({why})",
            self.size
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Rank `r`'s part of call `call` with `counts`: distinct values, so a part copied to
    /// the wrong place or from the wrong call shows.
    fn part(call: usize, r: usize, n: usize) -> Vec<f32> {
        (0..n).map(|i| (call * 1000 + r * 100 + i) as f32).collect()
    }

    fn expected(call: usize, counts: &[usize]) -> Vec<f32> {
        let parts = counts.iter().enumerate().map(|(r, &n)| part(call, r, n));
        parts.flatten().collect()
    }

    /// Runs `calls` all-gathers on `exchange`, one thread per rank, call `c` with
    /// `counts(c)`, and returns each rank's outputs.
    fn gather_on_threads(
        exchange: &Exchange,
        calls: usize,
        counts: impl Fn(usize) -> Vec<usize> + Sync,
    ) -> Vec<Vec<Result<Vec<f32>, ConstrainedError>>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..exchange.size())
                .map(|r| {
                    let counts = &counts;
                    s.spawn(move || {
                        (0..calls)
                            .map(|c| {
                                let counts = counts(c);
                                let mut out = vec![f32::NAN; counts.iter().sum()];
                                exchange
                                    .all_gather(r, &part(c, r, counts[r]), &counts, &mut out)
                                    .map(|()| out)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// Every rank gets every part, exactly, in rank order, with parts of different
    /// lengths, including empty ones.
    #[test]
    fn every_rank_gets_every_part_in_rank_order() {
        for counts in [
            vec![3, 5],
            vec![0, 4],
            vec![4, 0],
            vec![0, 0],
            vec![1, 0, 7],
            vec![2, 3, 0, 1],
        ] {
            let exchange = Exchange::new(counts.len());
            let results = gather_on_threads(&exchange, 1, |_| counts.clone());
            for (r, calls) in results.iter().enumerate() {
                let out = calls[0].as_ref().unwrap();
                assert_eq!(out, &expected(0, &counts), "rank {r} of {counts:?}");
            }
        }
    }

    /// Many calls in a row, with counts that change from call to call: a rank that
    /// comes back first waits until the others have read the last call, so no call sees
    /// another's values.
    #[test]
    fn repeated_calls_never_mix() {
        let counts = |c: usize| vec![c % 5, (c * 7) % 11, (c * 3) % 2];
        let results = gather_on_threads(&Exchange::new(3), 300, counts);
        for (r, calls) in results.iter().enumerate() {
            for (c, out) in calls.iter().enumerate() {
                assert_eq!(out.as_ref().unwrap(), &expected(c, &counts(c)), "rank {r}");
            }
        }
    }

    /// One rank alone completes at once.
    #[test]
    fn one_rank_gathers_its_own_part() {
        let exchange = Exchange::new(1);
        let mut out = vec![0.0; 3];
        exchange
            .all_gather(0, &[1.0, 2.0, 3.0], &[3], &mut out)
            .unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0]);
    }

    /// A rank that stops fails the call another rank waits in, and every later call,
    /// instead of leaving it waiting.
    #[test]
    fn a_failing_rank_fails_the_others_calls() {
        let exchange = Arc::new(Exchange::new(2));
        let waiter = {
            let exchange = Arc::clone(&exchange);
            std::thread::spawn(move || {
                let mut out = vec![0.0; 3];
                let first = exchange.all_gather(0, &[1.0], &[1, 2], &mut out);
                let later = exchange.all_gather(0, &[1.0], &[1, 2], &mut out);
                (first, later)
            })
        };
        // Let rank 0 wait in its call (the result is the same if it has not yet).
        std::thread::sleep(Duration::from_millis(50));
        exchange.fail("replica 1 stopped");
        let (first, later) = waiter.join().unwrap();
        for r in [first, later] {
            let Err(ConstrainedError::Collective(msg)) = r else {
                panic!("not a collective failure: {r:?}");
            };
            assert!(msg.contains("replica 1 stopped"), "{msg}");
        }
        let mut out = vec![0.0; 3];
        let r = exchange.all_gather(1, &[2.0, 3.0], &[1, 2], &mut out);
        assert!(matches!(r, Err(ConstrainedError::Collective(_))), "{r:?}");
    }

    /// Ranks that disagree on the counts fail the call on both (neither waits), with the
    /// counts named.
    #[test]
    fn different_counts_fail_every_rank() {
        let exchange = Exchange::new(2);
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let given: [&[usize]; 2] = [&[1, 2], &[2, 1]];
            let handles: Vec<_> = (0..2)
                .map(|r| {
                    let exchange = &exchange;
                    let counts = given[r];
                    s.spawn(move || {
                        let mut out = vec![0.0; 3];
                        exchange.all_gather(r, &vec![0.0; counts[r]], counts, &mut out)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in outcomes {
            let Err(ConstrainedError::Collective(msg)) = r else {
                panic!("not a collective failure: {r:?}");
            };
            assert!(msg.contains("[1, 2]") && msg.contains("[2, 1]"), "{msg}");
        }
    }

    /// Lengths that do not fit are refused on the calling rank, before anything is
    /// exchanged: the exchange still works for a right call afterwards.
    #[test]
    fn bad_lengths_are_refused_without_harm() {
        let exchange = Exchange::new(2);
        let mut out = vec![0.0; 3];
        for (rank, mine, counts) in [
            (2, &[1.0][..], &[1, 2][..]),
            (0, &[1.0, 2.0][..], &[1, 2][..]),
            (0, &[1.0][..], &[1][..]),
            (0, &[1.0][..], &[1, 3][..]),
        ] {
            let r = exchange.all_gather(rank, mine, counts, &mut out);
            assert!(
                matches!(r, Err(ConstrainedError::InvalidConfig(_))),
                "{r:?}"
            );
        }
        let results = gather_on_threads(&exchange, 2, |c| vec![1 + c, 2]);
        for calls in &results {
            for (c, out) in calls.iter().enumerate() {
                assert_eq!(out.as_ref().unwrap(), &expected(c, &[1 + c, 2]));
            }
        }
    }
}
