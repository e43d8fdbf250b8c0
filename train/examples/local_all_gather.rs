//! The local peers' all-gather (`--devices N`, `tether_train::parallel::exchange`) against
//! the zero-padded all-reduce it replaced (`Collective::all_gather`'s default: each rank's
//! part placed in a zero-filled buffer of the whole length, summed through
//! burn-collective's local all-reduce), on replicas on threads of one process.
//!
//! Each round times `--calls` all-gathers of each kind, alternating, on every replica:
//! wall time per call and the replica thread's CPU time per call, and checks that both
//! give every rank the exact concatenation. The parts default to a Shampoo step's
//! directions on LeNet-5 (`--model lenet5`: 431,080 parameters) over 2 ranks as
//! ownership splits them (conv2's `[1000, 25]` block on one rank, fc1 and the rest on the
//! other), a failure flag after each.
//!
//! ```sh
//! cargo run --release -p tether-train --example local_all_gather -- --ranks 2 --rounds 5
//! ```

use std::rc::Rc;
use std::time::Instant;

use anyhow::Context;
use burn::backend::Flex;
use clap::Parser;
use tether_train::constrained::ConstrainedError;
use tether_train::parallel::{Collective, group, local::run_replicas};

#[derive(Parser)]
struct Args {
    /// Replicas (threads).
    #[arg(long, default_value_t = 2)]
    ranks: usize,
    /// Values each rank gives, comma-separated, one per rank (default: LeNet-5's split
    /// over 2 ranks, else an even split of its 431,080 values).
    #[arg(long, value_delimiter = ',')]
    counts: Option<Vec<usize>>,
    /// Rounds (each times both kinds).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Calls of each kind in a round.
    #[arg(long, default_value_t = 200)]
    calls: usize,
}

/// A peer whose all-gather is the trait's default: the zero-padded all-reduce.
#[derive(Debug)]
struct Padded(Rc<dyn Collective>);

impl Collective for Padded {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), ConstrainedError> {
        self.0.all_reduce_sum(buf)
    }
    fn abort(&self, code: i32) -> ! {
        self.0.abort(code)
    }
}

/// (wall s, thread CPU s) of `calls` all-gathers through `peer`, checking each output.
fn time(
    peer: &dyn Collective,
    counts: &[usize],
    calls: usize,
    expected: &[f32],
) -> anyhow::Result<(f64, f64)> {
    let rank = peer.rank();
    let start: usize = counts[..rank].iter().sum();
    let mine = &expected[start..start + counts[rank]];
    let mut out = vec![0.0f32; expected.len()];
    let cpu = tether_deploy::cpu_time::thread_seconds().context("thread CPU time")?;
    let wall = Instant::now();
    for _ in 0..calls {
        peer.all_gather(mine, counts, &mut out)?;
        anyhow::ensure!(out == expected, "rank {rank}: a wrong all-gather");
    }
    let wall = wall.elapsed().as_secs_f64();
    let cpu = tether_deploy::cpu_time::thread_seconds().context("thread CPU time")? - cpu;
    Ok((wall, cpu))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counts = match args.counts {
        Some(c) => c,
        None if args.ranks == 2 => vec![25_001, 406_081],
        None => vec![431_080 / args.ranks + 1; args.ranks],
    };
    anyhow::ensure!(
        counts.len() == args.ranks,
        "{} counts for {} ranks",
        counts.len(),
        args.ranks
    );
    // Distinct values, none zero, so a misplaced or missing part shows.
    let expected: Vec<f32> = (0..counts.iter().sum::<usize>())
        .map(|i| 1.0 + i as f32 * 0.5)
        .collect();
    let devices = vec![Default::default(); args.ranks];
    println!("round\tkind\tcalls\tms_per_call_wall\tms_per_call_cpu (mean of the ranks)");
    for round in 1..=args.rounds {
        let per_rank = run_replicas::<Flex, _, _>(&devices, |_| {
            let peer = group().context("a replica's group")?;
            let padded = Padded(Rc::clone(&peer));
            // A first call of each, untimed: burn-collective's set-up.
            time(&*peer, &counts, 1, &expected)?;
            time(&padded, &counts, 1, &expected)?;
            // Alternate which kind goes first from round to round.
            Ok(if round % 2 == 1 {
                let exchange = time(&*peer, &counts, args.calls, &expected)?;
                [exchange, time(&padded, &counts, args.calls, &expected)?]
            } else {
                let padded = time(&padded, &counts, args.calls, &expected)?;
                [time(&*peer, &counts, args.calls, &expected)?, padded]
            })
        })?;
        for (k, kind) in ["exchange", "padded all-reduce"].iter().enumerate() {
            let n = per_rank.len() as f64 * args.calls as f64;
            let wall: f64 = per_rank.iter().map(|r| r[k].0).sum::<f64>() / n;
            let cpu: f64 = per_rank.iter().map(|r| r[k].1).sum::<f64>() / n;
            println!(
                "{round}\t{kind}\t{}\t{:.4}\t{:.4}",
                args.calls,
                wall * 1e3,
                cpu * 1e3
            );
        }
    }
    Ok(())
}
