//! Helpers shared by the tests that run the `tether-train` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `command` (a training run) until it reports its first epoch, then interrupts it
/// as Ctrl-C does (SIGINT) and waits: it must finish its step, checkpoint and exit with
/// 130. Returns its stderr.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn interrupt_after_first_epoch(mut command: Command) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Read to the end: a closed pipe would kill the child's next print.
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    for line in stdout.lines() {
        if line.expect("utf-8 output").starts_with("epoch 1:") {
            // The shell's own `kill` (a procps binary may be absent).
            let kill = Command::new("sh")
                .args(["-c", &format!("kill -INT {}", child.id())])
                .status()
                .expect("sh runs");
            assert!(kill.success());
        }
    }
    let stopped = child.wait_with_output().expect("the run ends");
    let stderr = String::from_utf8_lossy(&stopped.stderr).into_owned();
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    stderr
}

/// A short LeNet-300-100 L0 prune: 2 epochs of 10 global batches of 64, the run the
/// data-parallel tests (MPI processes, `--devices` threads) split and compare. Short: a
/// wrong reduction shows from the first steps (gradients summed instead of averaged over
/// the 2 replicas: weights 0.195 apart relative after these 20 steps, against
/// [`WEIGHT_TOLERANCE`]; 2026-12-07), and two epochs are what a checkpoint between them
/// needs.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub const SHORT: &[&str] = &[
    "prune",
    "--epochs",
    "2",
    "--train-limit",
    "640",
    "--test-limit",
    "1000",
    "--batch",
    "64",
    "--target-density",
    "0.3",
    "--seed",
    "5",
];

/// [`SHORT`] with Shampoo, the run the data-parallel Shampoo tests compare: global
/// batches of 48 (they divide among 2 and 3 ranks) over 240 training images (2 epochs of
/// 5 global batches: a debug build's Shampoo step on LeNet-300-100 is about 0.3 s),
/// factors cut at 32 (the first layer's 784 x 300 weight is 250 blocks, so every owner's
/// directions are scattered back into a parameter), roots every 5 steps (at the first
/// step and the first after the checkpoint between the epochs: the roots of 250 blocks
/// are most of a debug build's step, 1.4 s of CPU at every 2 steps), and epsilon 1e-4: at the default 1e-12 the roots of the nearly singular early factors amplify the
/// last-bit differences of the gradients' summation order between world sizes (2
/// devices against 1: weights 0.72 apart relative after 60 steps of fair-prune, while 2
/// threads and 2 processes agree bit for bit; at 1e-4, 7.3e-7).
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn shampoo_short() -> Vec<&'static str> {
    let mut args = SHORT.to_vec();
    for (flag, value) in [("--train-limit", "240"), ("--batch", "48")] {
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
    }
    args.extend([
        "--optimizer",
        "shampoo",
        "--precondition-frequency",
        "5",
        "--max-preconditioner-dim",
        "32",
        "--shampoo-epsilon",
        "1e-4",
    ]);
    args
}

/// Data-parallel and single runs' weights agree to this, relative to the tensor's largest
/// magnitude. They differ only in summation order (the mean over 64 samples against two
/// means over 32, weighted 1/2 and summed), about 1e-7 relative per gradient; over 40 Adam
/// steps 2 replicas against 1 differed by at most 3.1e-7 (2026-12-07, flex; processes and
/// threads alike).
#[allow(dead_code)] // not every test binary that includes this module needs it
pub const WEIGHT_TOLERANCE: f32 = 1e-5;

/// `a`'s and `b`'s metrics rows (every step) to 1e-5 relative, and their epochs'
/// accuracies (counts of 1000 test images) to one flip: a data-parallel run against the
/// single one on the same global batches of [`SHORT`] (20 steps; the loss is the
/// all-reduced mean over the global batch).
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn same_metrics(a: &Path, b: &Path) {
    same_metrics_over(a, b, 20);
}

/// [`same_metrics`] for a run of `steps` steps.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn same_metrics_over(a: &Path, b: &Path, steps: usize) {
    let (x, y) = (
        csv_rows(&a.join("metrics.csv")),
        csv_rows(&b.join("metrics.csv")),
    );
    assert_eq!(x.len(), steps, "{steps} steps");
    assert_eq!(x.len(), y.len());
    for (step, (p, q)) in x.iter().zip(&y).enumerate() {
        for (u, v) in p.iter().zip(q) {
            assert!(
                (u - v).abs() <= 1e-5 * u.abs().max(1.0),
                "step {step}: {p:?} vs {q:?}"
            );
        }
    }
    let (x, y) = (
        csv_rows(&a.join("epochs.csv")),
        csv_rows(&b.join("epochs.csv")),
    );
    assert_eq!(x.len(), y.len());
    for (p, q) in x.iter().zip(&y) {
        for (u, v) in p.iter().zip(q) {
            assert!((u - v).abs() <= 1e-3 + 1e-9, "{p:?} vs {q:?}");
        }
    }
}

/// Runs `tether-train` with `args`: (success, stdout, stderr).
pub fn tether_train(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty folder `tether-{prefix}-{pid}-{name}` under the system's temp dir.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn fresh_dir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every tensor of `a`'s `model.safetensors` against `b`'s: the largest difference
/// relative to the tensor's largest magnitude, and the tensor it is in.
#[allow(dead_code)]
pub fn weight_difference(a: &Path, b: &Path) -> (f32, String) {
    let (a, b) = (
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap(),
    );
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names: Vec<String> = a.names().into_iter().map(|n| n.to_string()).collect();
    names.sort();
    let mut other: Vec<String> = b.names().into_iter().map(|n| n.to_string()).collect();
    other.sort();
    assert_eq!(names, other, "the same tensors");
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut worst = (0.0f32, String::new());
    for name in names {
        let (x, y) = (a.tensor(&name).unwrap(), b.tensor(&name).unwrap());
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.dtype(), safetensors::Dtype::F32, "{name}");
        let (x, y) = (floats(x.data()), floats(y.data()));
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let diff = x
            .iter()
            .zip(&y)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        if diff / scale >= worst.0 {
            worst = (diff / scale, name.clone());
        }
    }
    worst
}

/// Asserts that `b`'s weights equal `a`'s within [`WEIGHT_TOLERANCE`] (relative to each
/// tensor's largest magnitude), and prints the largest difference under `what`.
#[allow(dead_code)]
pub fn assert_same_weights(a: &Path, b: &Path, what: &str) {
    let (diff, name) = weight_difference(a, b);
    eprintln!("{what}: largest weight difference {diff:e} (relative, {name})");
    assert!(
        diff <= WEIGHT_TOLERANCE,
        "{what}: weights differ by {diff:e} (relative) in {name}"
    );
}

/// A CSV's numeric rows (the header dropped).
#[allow(dead_code)]
pub fn csv_rows(file: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.trim().parse().unwrap()).collect())
        .collect()
}

/// A short CEAG fair-prune on Adult (race x sex): one dense epoch and two fine-tuning
/// epochs of 20 global batches of 64, two best-iterate checks per epoch; the run the
/// data-parallel tests split and compare.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub const FAIR_SHORT: &[&str] = &[
    "fair-prune",
    "--train-limit",
    "1280",
    "--dense-epochs",
    "1",
    "--epochs",
    "2",
    "--batch",
    "64",
    "--checks-per-epoch",
    "2",
    "--seed",
    "3",
];

/// Whether Adult is in the data cache (else the test skips, unless `TETHER_REQUIRE_DATA`
/// names it: then it fails).
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn adult_ready() -> bool {
    if let Err(e) = tether_train::data::adult::load(tether_train::data::adult::AdultSplit::Test) {
        assert!(
            tether_train::data::may_skip("adult"),
            "TETHER_REQUIRE_DATA requires Adult: {e}"
        );
        eprintln!("SKIPPED: {e}");
        return false;
    }
    true
}

/// A data-parallel fair-prune run against the single one on the same global batches of
/// [`FAIR_SHORT`] (`steps` fine-tuning steps): the fine-tuning's metrics rows (every step: loss, largest violation,
/// mean and largest multiplier) to 1e-5 relative, and `groups.csv` (counts, accuracies,
/// gaps, multipliers) to 1e-5.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn same_fair_metrics(a: &Path, b: &Path, steps: usize) {
    let (x, y) = (
        csv_rows(&a.join("metrics.csv")),
        csv_rows(&b.join("metrics.csv")),
    );
    assert_eq!(x.len(), steps, "the fine-tuning's steps");
    assert_eq!(x.len(), y.len());
    for (step, (p, q)) in x.iter().zip(&y).enumerate() {
        for (u, v) in p.iter().zip(q) {
            assert!(
                (u - v).abs() <= 1e-5 * u.abs().max(1.0),
                "step {step}: {p:?} vs {q:?}"
            );
        }
    }
    // The numeric columns (the group's name is last).
    let numbers = |dir: &Path| -> Vec<Vec<f64>> {
        std::fs::read_to_string(dir.join("groups.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .take(15)
                    .map(|v| v.trim().parse().unwrap())
                    .collect()
            })
            .collect()
    };
    let (x, y) = (numbers(a), numbers(b));
    assert!(!x.is_empty());
    assert_eq!(x.len(), y.len());
    for (p, q) in x.iter().zip(&y) {
        for (u, v) in p.iter().zip(q) {
            assert!(
                (u.is_nan() && v.is_nan()) || (u - v).abs() <= 1e-5 * u.abs().max(1.0),
                "groups.csv: {p:?} vs {q:?}"
            );
        }
    }
}
