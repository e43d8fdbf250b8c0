//! `tether-train prune --devices N` and `fair-prune --devices N`: data parallel inside one
//! process (replicas on threads, burn-collective's local all-reduce,
//! `tether_train::parallel::local`), against one replica on the same global batches.
//!
//! Needs MNIST (prune) and Adult (fair-prune) in the data cache; without them the tests
//! that train skip with a message (unless `TETHER_REQUIRE_DATA` names them).

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    FAIR_SHORT, SHORT, adult_ready, assert_same_weights, fresh_dir, interrupt_after_first_epoch,
    same_fair_metrics, same_metrics, same_metrics_over, shampoo_short, tether_train,
};
use tether_train::data::may_skip;

fn mnist_ready() -> bool {
    if let Err(e) = tether_train::data::mnist::ImageSet::load(
        tether_train::data::mnist::MnistKind::Mnist,
        tether_train::data::mnist::Split::Test,
    ) {
        assert!(may_skip("mnist"), "TETHER_REQUIRE_DATA requires MNIST: {e}");
        eprintln!("SKIPPED: {e}");
        return false;
    }
    true
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(extra: &[&str]) -> String {
    let mut args = SHORT.to_vec();
    args.extend(extra);
    let (ok, stdout, stderr) = tether_train(&args);
    assert!(ok, "tether-train {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Two replicas on threads take the single replica's steps: each trains on its half of
/// every global batch of 64, the gradients are summed, and the weights, every step's
/// metrics and the epochs' accuracies come out as one replica's on the whole batch. And
/// a checkpoint of a 2-device run (stopped by SIGINT after its first epoch) resumes on
/// one device and ends where the uninterrupted single-device run does. One test, so that
/// both compare with one single-device run.
#[test]
fn two_devices_train_what_one_does_and_their_checkpoint_resumes_on_one() {
    if !mnist_ready() {
        return;
    }
    let base = fresh_dir("devices", "same");
    let (single, parallel, parts) = (
        base.join("single"),
        base.join("parallel"),
        base.join("parts"),
    );
    run(&["--out", path(&single)]);
    let stdout = run(&["--out", path(&parallel), "--devices", "2"]);
    // Replica 0 alone reports (and writes --out).
    assert_eq!(stdout.matches("wrote ").count(), 1, "{stdout}");
    assert_same_weights(&single, &parallel, "2 devices vs 1");
    same_metrics(&single, &parallel);

    let mut command = Command::new(env!("CARGO_BIN_EXE_tether-train"));
    command
        .args(SHORT)
        .args(["--out", path(&parts), "--devices", "2"]);
    interrupt_after_first_epoch(command);
    let checkpoint = parts.join("checkpoint");
    assert!(checkpoint.join("run.json").is_file());
    assert!(
        !parts.join("model.safetensors").exists(),
        "an interrupted run writes no model"
    );
    let stdout = run(&["--out", path(&parts), "--resume", path(&checkpoint)]);
    assert!(stdout.contains("resuming from"), "{stdout}");
    assert_same_weights(&single, &parts, "2 devices resumed on 1 vs 1 whole");
    same_metrics(&single, &parts);
    let _ = std::fs::remove_dir_all(&base);
}

/// No devices, more devices than samples in a batch, and a batch that does not divide
/// among them are refused by name before any data is read, with nothing written.
#[test]
fn bad_device_counts_are_clear_errors() {
    let base = fresh_dir("devices", "bad");
    let out = base.join("out");
    for (devices, batch, expected) in [
        ("0", "64", "--devices 0: give at least 1"),
        (
            "65",
            "64",
            "--devices 65 with --batch 64: each device needs at least one sample",
        ),
        (
            "3",
            "64",
            "global batch of 64 samples does not divide among 3 replicas",
        ),
    ] {
        let (ok, _, stderr) = tether_train(&[
            "prune",
            "--batch",
            batch,
            "--devices",
            devices,
            "--out",
            path(&out),
        ]);
        assert!(!ok, "--devices {devices} --batch {batch} was accepted");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "nothing written");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// `fair-prune --devices 2` takes the single replica's steps: the dense training, then
/// CEAG's fine-tuning, whose per-group statistics are the global batch's (the groups'
/// sums and counts over both halves, one replay buffer fed with the whole batch on each
/// replica), so the weights, every fine-tuning step's loss, violation and multipliers
/// and the per-group table come out as one replica's. And a checkpoint written by 2
/// replicas (stopped mid-way through the second fine-tuning epoch) resumes on one and
/// ends where the uninterrupted single run does. One test, so that both compare with one
/// single run.
#[test]
fn fair_prune_on_two_devices_trains_what_one_does_and_resumes_on_one() {
    use burn::backend::{Autodiff, Flex};
    use tether_train::device::DeviceKind;
    use tether_train::resume::{Interrupt, Interrupted, RunControl};
    use tether_train::tasks::fair_run::{FairConfig, replicas::run_replicas, run};
    if !adult_ready() {
        return;
    }
    let base = fresh_dir("devices", "fair");
    let (single, parallel, parts) = (
        base.join("single"),
        base.join("parallel"),
        base.join("parts"),
    );
    let run_fair = |extra: &[&str]| {
        let mut args = FAIR_SHORT.to_vec();
        args.extend(extra);
        let (ok, stdout, stderr) = tether_train(&args);
        assert!(ok, "tether-train {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    };
    run_fair(&["--out", path(&single)]);
    let stdout = run_fair(&["--out", path(&parallel), "--devices", "2"]);
    assert_eq!(stdout.matches("wrote ").count(), 1, "{stdout}");
    assert_same_weights(&single, &parallel, "fair-prune: 2 devices vs 1");
    same_fair_metrics(&single, &parallel, 40);

    // FAIR_SHORT's settings, through the library (to stop mid-epoch).
    let mut c = FairConfig {
        train_limit: Some(1280),
        dense_epochs: Some(1),
        epochs: Some(2),
        batch: 64,
        checks_per_epoch: 2,
        seed: 3,
        out: parts.clone(),
        ..FairConfig::default()
    };
    // The replicas share the interrupt and each counts its steps: 50 counts are 25 steps.
    let control = RunControl {
        progress: false,
        interrupt: Interrupt::after_steps(50),
    };
    let err = run_replicas(&c, 2, DeviceKind::Flex, &control).unwrap_err();
    let stop = err
        .downcast_ref::<Interrupted>()
        .unwrap_or_else(|| panic!("not an interruption: {err:?}"));
    assert_eq!(stop.position.global_step, 25, "{stop}");
    assert!(!parts.join("model.safetensors").exists());
    c.resume = Some(stop.checkpoint.clone());
    run::<Autodiff<Flex>>(&c, &Default::default(), false).unwrap();
    assert_same_weights(
        &single,
        &parts,
        "fair-prune: 2 devices resumed on 1 vs 1 whole",
    );
    same_fair_metrics(&single, &parts, 40);
    let _ = std::fs::remove_dir_all(&base);
}

/// `--optimizer shampoo` through the same engine: the gradients are reduced once per
/// step, each replica steps the Shampoo blocks it owns and the directions are
/// all-gathered, so 2 devices train what one does. At
/// `--shampoo-epsilon 1e-4`: at the default 1e-12 the inverse roots of the nearly
/// singular early factors amplify the last-bit differences of the gradient's summation
/// order (2 devices against 1: weights 0.72 apart relative after 60 steps, while 2
/// threads and 2 processes agree bit for bit; at 1e-4, 7.3e-7).
#[test]
fn fair_prune_with_shampoo_on_two_devices_trains_what_one_does() {
    if !adult_ready() {
        return;
    }
    let base = fresh_dir("devices", "fair-shampoo");
    let (single, parallel) = (base.join("single"), base.join("parallel"));
    let run_fair = |extra: &[&str]| {
        // FAIR_SHORT with one epoch of each phase, of 10 steps (Shampoo's roots are most
        // of a debug build's step).
        let mut args = FAIR_SHORT.to_vec();
        for (flag, value) in [("--epochs", "1"), ("--train-limit", "640")] {
            let at = args.iter().position(|a| *a == flag).unwrap();
            args[at + 1] = value;
        }
        args.extend([
            "--optimizer",
            "shampoo",
            "--precondition-frequency",
            "5",
            "--shampoo-epsilon",
            "1e-4",
        ]);
        args.extend(extra);
        let (ok, stdout, stderr) = tether_train(&args);
        assert!(ok, "tether-train {args:?} failed:\n{stdout}\n{stderr}");
    };
    run_fair(&["--out", path(&single)]);
    run_fair(&["--out", path(&parallel), "--devices", "2"]);
    assert_same_weights(&single, &parallel, "fair-prune, Shampoo: 2 devices vs 1");
    same_fair_metrics(&single, &parallel, 10);
    let _ = std::fs::remove_dir_all(&base);
}

/// `prune --optimizer shampoo --devices 2` with block ownership (each block's factors,
/// roots and direction computed by one replica, the directions all-gathered) trains what
/// one device does; and its checkpoint, stopped after the first epoch (every block's
/// state gathered from its owner), resumes on one device and ends where the whole
/// single-device run does.
#[test]
fn prune_with_shampoo_on_two_devices_trains_what_one_does_and_resumes_on_one() {
    if !mnist_ready() {
        return;
    }
    let base = fresh_dir("devices", "shampoo");
    let (single, parallel, parts) = (
        base.join("single"),
        base.join("parallel"),
        base.join("parts"),
    );
    // The flags as owned strings: the paths are borrowed for less than the run's args.
    let shampoo = |extra: &[&str]| -> Vec<String> {
        let all = shampoo_short().into_iter().chain(extra.iter().copied());
        all.map(String::from).collect()
    };
    let run_ok = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = tether_train(&args);
        assert!(ok, "tether-train {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    };
    run_ok(shampoo(&["--out", path(&single)]));
    run_ok(shampoo(&["--out", path(&parallel), "--devices", "2"]));
    assert_same_weights(&single, &parallel, "prune, Shampoo: 2 devices vs 1");
    same_metrics_over(&single, &parallel, 10);

    let mut command = Command::new(env!("CARGO_BIN_EXE_tether-train"));
    command.args(shampoo(&["--out", path(&parts), "--devices", "2"]));
    interrupt_after_first_epoch(command);
    let checkpoint = parts.join("checkpoint");
    assert!(checkpoint.join("run.json").is_file());
    let stdout = run_ok(shampoo(&[
        "--out",
        path(&parts),
        "--resume",
        path(&checkpoint),
    ]));
    assert!(stdout.contains("resuming from"), "{stdout}");
    assert_same_weights(
        &single,
        &parts,
        "prune, Shampoo: 2 devices resumed on 1 vs 1",
    );
    same_metrics_over(&single, &parts, 10);
    let _ = std::fs::remove_dir_all(&base);
}
