//! `mpirun -np 2 tether-train prune` (and `fair-prune`): data parallel across processes
//! over MPI (`tether_train::parallel`), against the single-process run on the same global
//! batch.
//!
//! Needs `mpirun` (Debian: `openmpi-bin`) and MNIST (Adult for fair-prune) in the data
//! cache. Where either is
//! missing the tests skip with a message, unless `TETHER_REQUIRE_MPI=1` (CI sets it once
//! it has installed OpenMPI) or `TETHER_REQUIRE_DATA` names mnist: then they fail.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    FAIR_SHORT, SHORT, adult_ready, assert_same_weights, fresh_dir, interrupt_after_first_epoch,
    same_fair_metrics, same_metrics, same_metrics_over, shampoo_short, tether_train,
};
use tether_train::data::may_skip;

/// Whether the tests can run here: `mpirun` present and MNIST fetched, else why not (and
/// a panic where the environment requires them).
fn ready() -> bool {
    let required = std::env::var("TETHER_REQUIRE_MPI").is_ok_and(|v| v.trim() == "1");
    let mpirun = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !mpirun.is_ok_and(|s| s.success()) {
        assert!(
            !required,
            "TETHER_REQUIRE_MPI=1 but mpirun cannot be run (Debian: apt-get install \
             openmpi-bin libopenmpi-dev)"
        );
        eprintln!("SKIPPED: no mpirun on PATH (Debian: apt-get install openmpi-bin)");
        return false;
    }
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

/// `mpirun -np <ranks> tether-train <args>`, able to run as root (CI containers) and with
/// more processes than cores.
fn mpirun(ranks: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_tether-train"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("RUST_BACKTRACE");
    cmd
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().expect("the command starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The 2-process run takes the single process's steps: each rank trains on its half of
/// every global batch of 64, the gradients are all-reduced, and the weights, every
/// step's metrics (loss, violation, multiplier, density) and the epochs' accuracies come
/// out as one process's on the whole batch, to float tolerance. And a checkpoint holds
/// the global position and nothing of the process count: one process's run, stopped by
/// SIGINT after its first epoch, resumed by `mpirun -np 2`, ends where the uninterrupted
/// single process does (to the same tolerance). One test, so that both compare with one
/// single-process run.
#[test]
fn two_processes_train_what_one_does_and_resume_a_single_process_checkpoint() {
    if !ready() {
        return;
    }
    let base = fresh_dir("mpi", "same");
    let (single, parallel, parts) = (
        base.join("single"),
        base.join("parallel"),
        base.join("parts"),
    );
    let mut args = SHORT.to_vec();
    args.extend(["--out", path(&single), "--distributed", "off"]);
    let (ok, _, stderr) = tether_train(&args);
    assert!(ok, "the single-process run failed: {stderr}");
    let mut args = SHORT.to_vec();
    args.extend(["--out", path(&parallel)]);
    let stdout = run_ok(mpirun(2, &args), "mpirun -np 2");
    // Rank 0 alone reports (and writes --out).
    assert_eq!(stdout.matches("wrote ").count(), 1, "{stdout}");
    assert_same_weights(&single, &parallel, "2 processes vs 1");
    same_metrics(&single, &parallel);

    let mut command = Command::new(env!("CARGO_BIN_EXE_tether-train"));
    command
        .args(SHORT)
        .args(["--out", path(&parts), "--distributed", "off"]);
    interrupt_after_first_epoch(command);
    let checkpoint = parts.join("checkpoint");
    assert!(checkpoint.join("run.json").is_file());
    let mut args = SHORT.to_vec();
    args.extend(["--out", path(&parts), "--resume", path(&checkpoint)]);
    let stdout = run_ok(mpirun(2, &args), "the resumed mpirun -np 2");
    assert!(stdout.contains("resuming from"), "{stdout}");
    assert_same_weights(&single, &parts, "resumed on 2 processes vs 1 whole");
    same_metrics(&single, &parts);
    let _ = std::fs::remove_dir_all(&base);
}

/// `mpirun -np 2 tether-train fair-prune` takes the single process's steps: CEAG's
/// per-group statistics are the global batch's on both ranks (groups and correctness
/// gathered, sums over the global counts), so the weights, the fine-tuning's metrics and
/// the per-group table equal one process's to float tolerance.
#[test]
fn fair_prune_on_two_processes_trains_what_one_does_on_the_global_batch() {
    if !ready() || !adult_ready() {
        return;
    }
    let base = fresh_dir("mpi", "fair");
    let (single, parallel) = (base.join("single"), base.join("parallel"));
    let mut args = FAIR_SHORT.to_vec();
    args.extend(["--out", path(&single), "--distributed", "off"]);
    let (ok, _, stderr) = tether_train(&args);
    assert!(ok, "the single-process run failed: {stderr}");
    let mut args = FAIR_SHORT.to_vec();
    args.extend(["--out", path(&parallel)]);
    let stdout = run_ok(mpirun(2, &args), "mpirun -np 2 fair-prune");
    assert_eq!(stdout.matches("wrote ").count(), 1, "{stdout}");
    assert_same_weights(&single, &parallel, "fair-prune: 2 processes vs 1");
    same_fair_metrics(&single, &parallel, 40);
    let _ = std::fs::remove_dir_all(&base);
}

/// `mpirun -np 2 tether-train prune --optimizer shampoo` with block ownership (each
/// block's factors, roots and direction computed by one process, the directions
/// all-gathered with `MPI_Allgatherv`) takes the single process's steps
/// ([`common::shampoo_short`]: factors cut at 32, roots every 5 steps, epsilon 1e-4, a
/// global batch of 48). On 3 processes (blocks owned three ways, parts of three lengths
/// in every all-gather) the owning ranks write the replicating ranks' weights byte for
/// byte (`--shampoo-replicate`: every rank computes every block). Against one process, 3
/// ranks measured 3.1e-5 relative (2026-12-07; 2 ranks 2.4e-6, Adam on 3 ranks 5.1e-7):
/// the roots amplify the gradients' summation order over three shards past
/// [`common::WEIGHT_TOLERANCE`], so 3 ranks are held to the replicated run instead.
#[test]
fn shampoo_ownership_on_two_and_three_processes_trains_what_replication_and_one_process_do() {
    if !ready() {
        return;
    }
    let base = fresh_dir("mpi", "shampoo");
    let run = |ranks: usize, dir: &Path, extra: &[&str]| {
        let mut args = shampoo_short();
        args.extend(["--out", path(dir)]);
        args.extend(extra);
        let what = format!("mpirun -np {ranks} {args:?}");
        let stdout = run_ok(mpirun(ranks, &args), &what);
        assert_eq!(stdout.matches("wrote ").count(), 1, "{stdout}");
    };
    let (single, parallel) = (base.join("single"), base.join("parallel"));
    let mut args = shampoo_short();
    args.extend(["--out", path(&single), "--distributed", "off"]);
    let (ok, _, stderr) = tether_train(&args);
    assert!(ok, "the single-process run failed: {stderr}");
    run(2, &parallel, &[]);
    assert_same_weights(&single, &parallel, "prune, Shampoo: 2 processes vs 1");
    same_metrics_over(&single, &parallel, 10);

    let (owned, replicated) = (base.join("owned-3"), base.join("replicated-3"));
    run(3, &owned, &[]);
    run(3, &replicated, &["--shampoo-replicate"]);
    let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(
        read(&owned) == read(&replicated),
        "3 owning processes wrote other weights than 3 replicating ones"
    );
    let (diff, name) = common::weight_difference(&single, &owned);
    eprintln!("prune, Shampoo: 3 processes vs 1: largest weight difference {diff:e} ({name})");
    let _ = std::fs::remove_dir_all(&base);
}

/// A global batch that does not divide among the processes is refused, by name.
#[test]
fn an_indivisible_global_batch_is_a_clear_error() {
    if !ready() {
        return;
    }
    let out = fresh_dir("mpi", "indivisible").join("out");
    let mut args = SHORT.to_vec();
    let at = args.iter().position(|a| *a == "--batch").unwrap();
    args[at + 1] = "63";
    args.extend(["--out", path(&out)]);
    let done = mpirun(2, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!done.status.success());
    assert!(
        stderr.contains("global batch of 63 samples does not divide among 2 replicas"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

/// The `tether-train` processes `mpirun` started (its children), with their ranks.
fn ranks_of(mpirun: u32) -> Vec<(u32, usize)> {
    let mut ranks = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the fields after the last ')'.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let ppid: Option<u32> = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid != Some(mpirun) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let rank = env
            .split(|&b| b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK="))
            .and_then(|r| r.parse().ok());
        if let Some(rank) = rank {
            ranks.push((pid, rank));
        }
    }
    ranks
}

/// Files under `dir`, recursively (relative paths).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Rank 1 killed (SIGKILL) after the first epoch's checkpoint: the job ends non-zero
/// within seconds instead of rank 0 waiting in its all-reduce, and `--out` holds the
/// complete checkpoint and nothing else (no model, summary or half-written `.tmp`).
#[test]
fn a_killed_rank_ends_the_job_with_nothing_half_written() {
    if !ready() {
        return;
    }
    let out = fresh_dir("mpi", "killed").join("out");
    // Long enough that the kill lands mid-run: 50 epochs of 10 steps, a checkpoint after
    // each epoch (the first comes after 10 steps).
    let args = [
        "prune",
        "--epochs",
        "50",
        "--train-limit",
        "640",
        "--test-limit",
        "200",
        "--batch",
        "64",
        "--target-density",
        "0.3",
        "--checkpoint-every",
        "1",
        "--out",
        path(&out),
    ];
    let mut job = mpirun(2, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoint = out.join("checkpoint");
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(
            job.try_wait().unwrap().is_none(),
            "the job ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint after 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ranks = ranks_of(job.id());
    let &(victim, _) = ranks
        .iter()
        .find(|(_, r)| *r == 1)
        .unwrap_or_else(|| panic!("rank 1 among mpirun's children: {ranks:?}"));
    // The shell's own `kill` (a procps binary may be absent).
    let status = Command::new("sh")
        .args(["-c", &format!("kill -9 {victim}")])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    let ended = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            let _ = job.kill();
            panic!("the job still runs 30 s after rank 1 was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "the job ended {:.2} s after the kill: {ended}",
        killed.elapsed().as_secs_f64()
    );
    assert!(!ended.success(), "a job with a killed rank must fail");
    let files = files_under(&out);
    assert!(
        files.iter().all(|f| f.starts_with("checkpoint")),
        "only the checkpoint: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f.to_string_lossy().ends_with(".tmp")),
        "nothing half-written: {files:?}"
    );
    // The checkpoint is whole: a resume reads it (and is refused only for its settings).
    let resumed = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(["prune", "--epochs", "1", "--resume", path(&checkpoint)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success());
    assert!(stderr.contains("epochs"), "{stderr}");
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
    // The killed rank's scratch `--out` (ranks above 0 write there and remove it when
    // they end, which a SIGKILL prevents).
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("tether-train-rank1-{victim}")));
}
