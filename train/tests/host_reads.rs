//! Host reads per training step (issue 34): a `prune` run of LeNet-300-100 with the
//! device path forced on flex (the gates as tensor ops, as on a GPU) reads back to the
//! host only on the steps it logs, and there only what logging asks for: the step's
//! values (loss and violations, one read) and each logged multiplier (one read each).
//! Every read of the training code goes through `tether_models::host::read`, which counts
//! it (clippy's `disallowed-methods` rejects the others in the library).

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use tether_models::host::{Residency, force_residency, record_steps};
use tether_train::data::may_skip;
use tether_train::data::mnist::{ImageSet, MnistKind, Split};
use tether_train::tasks::prune_run::{PruneConfig, run};

type B = Autodiff<Flex>;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-reads-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `epochs` epochs of `steps` batches of 64 (target density 0.3), each step's host reads.
fn reads_per_step(residency: Residency, log_every: usize, steps: usize, epochs: usize) -> Vec<u64> {
    let out = out_dir(&format!("{residency:?}-{log_every}"));
    let config = PruneConfig {
        target_density: Some(0.3),
        epochs,
        train_limit: Some(64 * steps),
        test_limit: Some(100),
        batch: 64,
        log_every,
        seed: 5,
        out: out.clone(),
        ..PruneConfig::default()
    };
    let _forced = force_residency(residency);
    let recording = record_steps();
    let report = run::<B>(&config, &Default::default(), false).unwrap();
    let reads = recording.take();
    assert!(report.density.is_finite() && report.test_accuracy.is_finite());
    let _ = std::fs::remove_dir_all(out);
    reads
}

#[test]
fn a_prune_step_reads_back_only_what_logging_asks() {
    if let Err(e) = ImageSet::load(MnistKind::Mnist, Split::Test) {
        assert!(may_skip("mnist"), "TETHER_REQUIRE_DATA requires MNIST: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (steps, epochs, log_every) = (10, 2, 4);
    let reads = reads_per_step(Residency::Device, log_every, steps, epochs);
    eprintln!("device path, --log-every {log_every}: reads per step {reads:?}");
    assert_eq!(reads.len(), steps * epochs, "every step recorded");
    // One global density constraint: the values and its multiplier, on a logged step.
    let logging = 2;
    for (s, &r) in reads.iter().enumerate() {
        // Logged: every 4th global step, and each epoch's last (read before the model
        // is evaluated and checkpointed).
        let logged = s % log_every == 0 || (s + 1) % steps == 0;
        let want = if logged { logging } else { 0 };
        assert_eq!(
            r, want,
            "step {s} (logged: {logged}) made {r} host reads: {reads:?}"
        );
    }

    // Every step logged: every step reads what logging asks and no more.
    let every = reads_per_step(Residency::Device, 1, steps, 1);
    eprintln!("device path, --log-every 1: reads per step {every:?}");
    assert_eq!(every, vec![logging; steps]);

    // The host path (the CPU backends' default) reads the gate locations per gated layer
    // (its noise seed comes from the thread's generator, `tether_models::l0::noise`, no
    // read): reads that are memory copies on a CPU, counted all the same.
    let host = reads_per_step(Residency::Host, log_every, steps, 1);
    eprintln!("host path, --log-every {log_every}: reads per step {host:?}");
    assert!(host.iter().all(|&r| r > 0), "{host:?}");
}
