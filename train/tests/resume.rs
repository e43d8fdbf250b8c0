//! Interrupted pruning runs resumed from their checkpoints end bit for bit where the
//! uninterrupted run ends: through the library (stopped at known steps, once and twice,
//! for L0 with a fine-tuning epoch and for the gradual magnitude baseline), and through
//! the binary (a real SIGINT, then `--resume`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::backend::{Autodiff, Flex};
use tether_train::data::mnist::{ImageSet, MnistKind, Split};
use tether_train::resume::{Interrupt, Interrupted};
use tether_train::tasks::prune_run::{
    Method, PruneConfig, RunControl, run_with_data, run_with_data_controlled,
};

type B = Autodiff<Flex>;

/// The backend's random generator is one per process: runs in parallel test threads
/// would draw from each other's streams. The library's runs here take turns.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn mnist() -> Option<(ImageSet, ImageSet)> {
    match (
        ImageSet::load(MnistKind::Mnist, Split::Train),
        ImageSet::load(MnistKind::Mnist, Split::Test),
    ) {
        (Ok(train), Ok(test)) => Some((train, test)),
        (Err(e), _) | (_, Err(e)) => {
            assert!(
                tether_train::data::may_skip("mnist"),
                "TETHER_REQUIRE_DATA requires MNIST: {e}"
            );
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The files a resumed run must reproduce byte for byte.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    [
        "model.safetensors",
        "model.tthr",
        "metrics.csv",
        "epochs.csv",
    ]
    .iter()
    .map(|f| {
        let bytes =
            std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
        (f.to_string(), bytes)
    })
    .collect()
}

fn assert_same_outputs(a: &Path, b: &Path) {
    for ((name, x), (_, y)) in outputs(a).into_iter().zip(outputs(b)) {
        assert!(
            x == y,
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A short run: 8 steps per epoch, 3 epochs.
fn config(method: Method, out: &Path) -> PruneConfig {
    PruneConfig {
        method,
        epochs: 3,
        train_limit: Some(1024),
        test_limit: Some(500),
        gate_lr: 0.3,
        out: out.to_path_buf(),
        ..PruneConfig::default()
    }
}

/// Runs `config` until `interrupt` stops it, expecting it to stop at `global_step`.
fn run_until(
    config: &PruneConfig,
    data: &(ImageSet, ImageSet),
    steps: usize,
    global_step: usize,
) -> PathBuf {
    let control = RunControl {
        progress: false,
        interrupt: Interrupt::after_steps(steps),
    };
    let err =
        run_with_data_controlled::<B>(config, &data.0, &data.1, &Default::default(), &control)
            .expect_err("the interrupt stops the run");
    let stop = err
        .downcast_ref::<Interrupted>()
        .unwrap_or_else(|| panic!("not an interruption: {err:?}"));
    assert_eq!(stop.position.global_step, global_step, "{stop}");
    assert!(stop.to_string().contains("--resume"), "{stop}");
    assert!(stop.checkpoint.join("run.json").is_file());
    stop.checkpoint.clone()
}

#[test]
fn an_l0_run_stopped_twice_and_resumed_ends_bit_for_bit_where_the_whole_run_ends() {
    let Some(data) = mnist() else { return };
    let _turn = turn();
    let whole = out_dir("l0-whole");
    let parts = out_dir("l0-parts");
    // The last epoch fine-tunes with the gates frozen: the second stop falls inside it.
    let mut c = config(Method::L0, &whole);
    c.finetune_epochs = 1;
    run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false).unwrap();
    assert!(
        !whole.join("checkpoint").exists(),
        "a finished run removes its checkpoint"
    );

    c.out = parts.clone();
    // Stopped mid-epoch 1 (step 5 of 8), then again mid-epoch 3 (step 19 = 3 of epoch 3).
    let first = run_until(&c, &data, 5, 5);
    c.resume = Some(first);
    let second = run_until(&c, &data, 14, 19);
    c.resume = Some(second);
    run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false).unwrap();
    assert_same_outputs(&whole, &parts);
    assert!(!parts.join("checkpoint").exists());
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}

#[test]
fn a_gradual_magnitude_run_resumed_from_an_epoch_checkpoint_keeps_its_masks() {
    let Some(data) = mnist() else { return };
    let _turn = turn();
    let whole = out_dir("gmp-whole");
    let parts = out_dir("gmp-parts");
    let mut c = config(Method::Gmp, &whole);
    c.target_density = Some(0.2);
    run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false).unwrap();
    // Stopped at the end of epoch 2, after the masks have been cut several times.
    c.out = parts.clone();
    let checkpoint = run_until(&c, &data, 16, 16);
    // `--resume` also takes the run's output folder.
    c.resume = Some(parts.clone());
    assert_eq!(checkpoint, parts.join("checkpoint"));
    run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false).unwrap();
    assert_same_outputs(&whole, &parts);
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}

#[test]
fn a_resume_with_other_settings_or_without_a_checkpoint_is_refused_before_training() {
    let Some(data) = mnist() else { return };
    let _turn = turn();
    let parts = out_dir("mismatch");
    let mut c = config(Method::L0, &parts);
    let checkpoint = run_until(&c, &data, 3, 3);
    c.resume = Some(checkpoint.clone());
    c.lr = 0.01;
    c.epochs = 4;
    let err = run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("epochs: 3 then, 4 now"), "{err}");
    assert!(err.contains("lr: 0.001 then, 0.01 now"), "{err}");

    let empty = out_dir("no-checkpoint");
    std::fs::create_dir_all(&empty).unwrap();
    let mut c = config(Method::L0, &parts);
    c.resume = Some(empty.clone());
    let err = run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint there"), "{err}");

    std::fs::write(checkpoint.join("run.json"), b"{\"format\": 1").unwrap();
    c.resume = Some(checkpoint);
    let err = run_with_data::<B>(&c, &data.0, &data.1, &Default::default(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt checkpoint"), "{err}");
    std::fs::remove_dir_all(&parts).ok();
    std::fs::remove_dir_all(&empty).ok();
}

/// `tether-train prune` with the short run's flags, writing to `out`.
fn prune_command(out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-train"));
    cmd.args([
        "prune",
        "--epochs",
        "3",
        "--train-limit",
        "4096",
        "--test-limit",
        "500",
        "--gate-lr",
        "0.3",
        "--checkpoint-every",
        "never",
        "--out",
    ])
    .arg(out)
    .env_remove("RUST_BACKTRACE");
    cmd
}

#[test]
fn the_cli_checkpoints_on_sigint_and_resumes_to_the_same_model() {
    if mnist().is_none() {
        return;
    }
    let whole = out_dir("cli-whole");
    let parts = out_dir("cli-parts");
    let done = prune_command(&whole).output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    // SIGINT once the first epoch is reported: the run finishes its step, checkpoints
    // (even with periodic checkpoints off) and exits with 130.
    let mut child = prune_command(&parts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read to the end: a closed pipe would kill the child's next print.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().starts_with("epoch 1:") {
            // The shell's own `kill` (a procps binary may be absent).
            let kill = Command::new("sh")
                .args(["-c", &format!("kill -INT {}", child.id())])
                .status()
                .unwrap();
            assert!(kill.success());
        }
    }
    let stopped = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(parts.join("checkpoint/run.json").is_file());
    assert!(!parts.join("model.safetensors").exists());

    let resumed = prune_command(&parts)
        .arg("--resume")
        .arg(parts.join("checkpoint"))
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("resuming from"));
    assert_same_outputs(&whole, &parts);
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}

#[test]
fn a_latency_budgets_cost_model_travels_in_the_checkpoint() {
    let Some(data) = mnist() else { return };
    let _turn = turn();
    let parts = out_dir("latency");
    let mut c = config(Method::L0, &parts);
    c.max_latency = Some("1s".parse().unwrap());
    let checkpoint = run_until(&c, &data, 2, 2);
    // The timings are the interrupted run's: a resumed run must not time again (its
    // constraint would be another function of the gates).
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoint.join("run.json")).unwrap()).unwrap();
    let layers = run["task"]["latency"]["layers"]
        .as_array()
        .expect("a latency model");
    assert_eq!(layers.len(), 3, "one curve per gated layer");
    std::fs::remove_dir_all(&parts).ok();
}

#[test]
fn a_fair_prune_run_stopped_in_its_fine_tuning_twice_ends_bit_for_bit_where_the_whole_run_ends() {
    use tether_train::tasks::fair_run::{FairConfig, FairDataset, run, run_controlled};
    if mnist().is_none() {
        return;
    }
    let _turn = turn();
    let whole = out_dir("fair-whole");
    let parts = out_dir("fair-parts");
    // CEAG with its best-iterate checks (2 per epoch), early stopping on a held-out part,
    // 8 fine-tuning steps per epoch.
    let mut c = FairConfig {
        dataset: FairDataset::Mnist,
        groups: Some("random-3".into()),
        train_limit: Some(1200),
        val_fraction: 0.1,
        dense_epochs: Some(1),
        epochs: Some(3),
        checks_per_epoch: 2,
        sparsity: 0.8,
        seed: 4,
        out: whole.clone(),
        ..FairConfig::default()
    };
    let report = run::<B>(&c, &Default::default(), false).unwrap();
    assert!(!whole.join("checkpoint").exists());
    c.out = parts.clone();
    let mut stop_after = |steps: usize, global_step: usize| {
        let control = RunControl {
            progress: false,
            interrupt: Interrupt::after_steps(steps),
        };
        let err = run_controlled::<B>(&c, &Default::default(), &control).unwrap_err();
        let stop = err
            .downcast_ref::<Interrupted>()
            .unwrap_or_else(|| panic!("not an interruption: {err:?}"));
        assert_eq!(stop.position.global_step, global_step, "{stop}");
        c.resume = Some(stop.checkpoint.clone());
    };
    // Mid-epoch 1 after its first check (step 6 of 8), then mid-epoch 3 (step 19).
    stop_after(6, 6);
    stop_after(13, 19);
    run::<B>(&c, &Default::default(), false).unwrap();
    assert!(!parts.join("checkpoint").exists());
    for f in [
        "model.safetensors",
        "model.tthr",
        "metrics.csv",
        "checks.csv",
        "groups.csv",
        "epochs.csv",
    ] {
        assert!(report.files.contains(&f), "{f} is an output");
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap();
        assert!(read(&whole) == read(&parts), "{f} differs");
    }
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}

#[test]
fn a_mesh_run_stopped_between_checkpoints_ends_bit_for_bit_where_the_whole_run_ends() {
    use tether_train::data::cortex::{CorticalParcellation, Parcellation};
    use tether_train::tasks::mesh_run::{MeshConfig, run, run_controlled};
    if let Err(e) = CorticalParcellation::load(Parcellation::Mesulam) {
        assert!(
            tether_train::data::may_skip("brainspace"),
            "TETHER_REQUIRE_DATA requires brainspace: {e}"
        );
        eprintln!("SKIPPED: {e}");
        return;
    }
    let _turn = turn();
    let whole = out_dir("mesh-whole");
    let parts = out_dir("mesh-parts");
    // A small EMAN, 5 steps, evaluated every 2, checkpointed every 2, no transformed copies.
    let mut c = MeshConfig {
        channels: 4,
        order: 1,
        heads: 1,
        steps: 5,
        eval_every: 2,
        checkpoint_every: 2,
        transforms: 0,
        out: whole.clone(),
        ..MeshConfig::default()
    };
    run::<B>(&c, &Default::default(), false).unwrap();
    assert!(!whole.join("checkpoint").exists());
    c.out = parts.clone();
    // Stopped at step 3: the checkpoint of step 2 is replaced by the interrupt's at 3.
    let control = RunControl {
        progress: false,
        interrupt: Interrupt::after_steps(3),
    };
    let err = run_controlled::<B>(&c, &Default::default(), &control).unwrap_err();
    let stop = err
        .downcast_ref::<Interrupted>()
        .unwrap_or_else(|| panic!("not an interruption: {err:?}"));
    assert_eq!(stop.position.global_step, 3, "{stop}");
    assert!(
        stop.to_string().contains("interrupted after step 3"),
        "{stop}"
    );
    c.resume = Some(stop.checkpoint.clone());
    run::<B>(&c, &Default::default(), false).unwrap();
    for f in ["model.tthr", "loss.csv", "accuracy.csv"] {
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap();
        assert!(read(&whole) == read(&parts), "{f} differs");
    }
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}

/// A small GANG run: `method` on the ring, tiny networks.
fn gang_config(
    method: tether_train::tasks::gang_run::GangMethod,
    out: &Path,
) -> tether_train::tasks::gang_run::GangRunConfig {
    tether_train::tasks::gang_run::GangRunConfig {
        method,
        iterations: Some(4),
        gan_steps: Some(120),
        epsilon: 0.0,
        response_steps: 30,
        restarts: 2,
        generator_hidden: vec![16],
        classifier_hidden: vec![16],
        eval_samples: 256,
        metric_samples: 500,
        exploit_steps: Some(30),
        seed: 5,
        out: out.to_path_buf(),
        ..Default::default()
    }
}

fn gang_resumes_to_the_same_outputs(
    method: tether_train::tasks::gang_run::GangMethod,
    stop_after: usize,
    at: usize,
    files: &[&str],
) {
    use tether_train::tasks::gang_run::{run, run_controlled};
    let _turn = turn();
    let name = format!("gang-{method:?}");
    let whole = out_dir(&format!("{name}-whole"));
    let parts = out_dir(&format!("{name}-parts"));
    let mut c = gang_config(method, &whole);
    run::<B>(&c, &Default::default(), false).unwrap();
    assert!(!whole.join("checkpoint").exists());
    c.out = parts.clone();
    let control = RunControl {
        progress: false,
        interrupt: Interrupt::after_steps(stop_after),
    };
    let err = run_controlled::<B>(&c, &Default::default(), &control).unwrap_err();
    let stop = err
        .downcast_ref::<Interrupted>()
        .unwrap_or_else(|| panic!("not an interruption: {err:?}"));
    assert_eq!(stop.position.global_step, at, "{stop}");
    c.resume = Some(stop.checkpoint.clone());
    run::<B>(&c, &Default::default(), false).unwrap();
    assert!(!parts.join("checkpoint").exists());
    for f in files {
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap();
        assert!(read(&whole) == read(&parts), "{method:?}: {f} differs");
    }
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}

#[test]
fn a_pnm_run_stopped_after_two_iterations_ends_where_the_whole_run_ends() {
    gang_resumes_to_the_same_outputs(
        tether_train::tasks::gang_run::GangMethod::Pnm,
        2,
        2,
        &["metrics.csv", "payoff.csv", "mixtures.json"],
    );
}

#[test]
fn a_gan_run_stopped_between_snapshots_ends_where_the_whole_run_ends() {
    // 120 steps, a snapshot every 6: stopped at step 50.
    gang_resumes_to_the_same_outputs(
        tether_train::tasks::gang_run::GangMethod::Gan,
        50,
        50,
        &["metrics.csv"],
    );
}
