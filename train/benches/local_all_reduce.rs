//! The cost of one all-reduce between `--devices` replicas (`parallel::local::LocalPeer`:
//! host buffer -> flex tensor -> burn-collective's local all-reduce -> host), apart from
//! the waiting a training step adds: 2 replica threads sum a buffer the size of
//! LeNet-300-100's gradient buffer (532,810 floats: 266,610 weights and biases, one gate
//! location per weight, and the presence flags' 6 are left out) `--calls` times, then a
//! buffer of one float (the interrupt flag's all-reduce: the hand-offs alone); the sums
//! are checked exact. Prints the mean time inside the call for each size.
//!
//! Run: `cargo bench -p tether-train --bench local_all_reduce`

use std::time::Instant;

use burn::backend::Flex;
use tether_train::parallel::local::run_replicas;

const FLOATS: usize = 532_810;

fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .map_or(Ok(200), |c| c.parse())?;
    for floats in [FLOATS, 1] {
        measure(floats, calls)?;
    }
    Ok(())
}

fn measure(floats: usize, calls: usize) -> anyhow::Result<()> {
    let devices = vec![Default::default(); 2];
    let times = run_replicas::<Flex, _, _>(&devices, |rank| {
        let group = tether_train::parallel::group().expect("a replica's group");
        let mut buf = vec![0f32; floats];
        // Warm-up (the collective's server thread, the first allocations).
        group.all_reduce_sum(&mut buf)?;
        let mut inside = std::time::Duration::ZERO;
        for call in 0..calls {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = (rank + 1) as f32 * (i % 7 + call % 3) as f32);
            let start = Instant::now();
            group.all_reduce_sum(&mut buf)?;
            inside += start.elapsed();
            // 1x + 2x of the same small integers: exact in f32.
            let want = |i: usize| 3.0 * (i % 7 + call % 3) as f32;
            anyhow::ensure!(
                buf.iter().enumerate().all(|(i, &v)| v == want(i)),
                "inexact sum"
            );
        }
        Ok(inside)
    })?;
    for (rank, t) in times.iter().enumerate() {
        println!(
            "replica {rank}: {calls} all-reduces of {floats} floats, {:.3} ms a call (the \
             other replica's lag in filling its buffer included)",
            1e3 * t.as_secs_f64() / calls as f64
        );
    }
    Ok(())
}
