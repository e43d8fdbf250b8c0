//! Each command whose job moved into the library (`fair-prune`, `gang`, `mesh`, `svm`),
//! run once through the library API and once through the CLI with the same settings,
//! writes the same outputs: `summary.json` less its wall-clock fields, the CSVs and the
//! deploy model. A short fixed-seed run each; the CLI side also reads a `--config` file
//! under its flags (gang).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use burn::backend::{Autodiff, Flex};
use serde_json::Value;
use tether_train::data::may_skip;

type B = Autodiff<Flex>;

/// Library runs draw from burn's process-wide RNG after seeding it: one at a time, or a
/// parallel test's draws would land between the seed and this run's.
static RNG: Mutex<()> = Mutex::new(());

fn tether_train(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "tether-train {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh folder for one side of one test.
fn folder(test: &str, side: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tether-task-runs-{test}-{}/{side}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `summary.json` with the fields that measure time removed.
fn summary(dir: &Path, wall_clock: &[&str]) -> Value {
    let path = dir.join("summary.json");
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    for key in wall_clock {
        v.as_object_mut().unwrap().remove(*key);
    }
    v
}

/// The two runs wrote identical summaries (less `wall_clock`) and identical `files`.
fn assert_same_outputs(lib: &Path, cli: &Path, wall_clock: &[&str], files: &[&str]) {
    assert_eq!(summary(lib, wall_clock), summary(cli, wall_clock));
    for f in files {
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(read(lib) == read(cli), "{f} differs");
    }
    let _ = std::fs::remove_dir_all(lib.parent().unwrap());
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fair_prune_through_the_library_is_the_cli() {
    use tether_train::tasks::fair_run::{FairConfig, FairDataset, run};
    if let Err(e) = tether_train::data::mnist::ImageSet::load(
        tether_train::data::mnist::MnistKind::Mnist,
        tether_train::data::mnist::Split::Test,
    ) {
        assert!(may_skip("mnist"), "TETHER_REQUIRE_DATA requires MNIST: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (lib, cli) = (folder("fair", "lib"), folder("fair", "cli"));
    // CEAG with its best-iterate checks, a held-out part for the dense model's early
    // stopping, and random groups.
    let config = FairConfig {
        dataset: FairDataset::Mnist,
        groups: Some("random-3".into()),
        train_limit: Some(600),
        val_fraction: 0.1,
        dense_epochs: Some(2),
        epochs: Some(1),
        checks_per_epoch: 2,
        sparsity: 0.8,
        seed: 4,
        out: lib.clone(),
        ..FairConfig::default()
    };
    let report = {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        run::<B>(&config, &Default::default(), false).unwrap()
    };
    tether_train(&[
        "fair-prune",
        "--dataset",
        "mnist",
        "--groups",
        "random-3",
        "--train-limit",
        "600",
        "--val-fraction",
        "0.1",
        "--dense-epochs",
        "2",
        "--epochs",
        "1",
        "--checks-per-epoch",
        "2",
        "--sparsity",
        "0.8",
        "--seed",
        "4",
        "--out",
        path(&cli),
    ]);
    assert_eq!(report.groups.len(), 3);
    assert!(report.files.contains(&"checks.csv"));
    // Every file the report lists is there, the training curves among them.
    assert!(report.files.contains(&"training.png"));
    for f in &report.files {
        assert!(lib.join(f).is_file(), "{f} is listed but not written");
    }
    assert_eq!(
        report.summary["final"]["test_accuracy"],
        summary(&cli, &[])["final"]["test_accuracy"]
    );
    assert_same_outputs(
        &lib,
        &cli,
        &["seconds"],
        &[
            "groups.csv",
            "metrics.csv",
            "checks.csv",
            "report.md",
            "model.tthr",
        ],
    );
}

#[test]
fn gang_through_the_library_is_the_cli_with_a_config_file() {
    use tether_train::tasks::gang_run::{GangRunConfig, run};
    let (lib, cli) = (folder("gang", "lib"), folder("gang", "cli"));
    let config = GangRunConfig {
        iterations: Some(2),
        epsilon: 0.0,
        response_steps: 40,
        restarts: 2,
        generator_hidden: vec![16],
        classifier_hidden: vec![16],
        eval_samples: 256,
        metric_samples: 500,
        exploit_steps: Some(40),
        seed: 5,
        out: lib.clone(),
        ..GangRunConfig::default()
    };
    let report = {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        run::<B>(&config, &Default::default(), false).unwrap()
    };
    // The same settings from a file, but for the seed, which the flag overrides.
    std::fs::create_dir_all(&cli).unwrap();
    let file = cli.join("run.toml");
    std::fs::write(
        &file,
        "iterations = 2\nepsilon = 0.0\nresponse_steps = 40\nrestarts = 2\n\
         generator_hidden = [16]\nclassifier_hidden = [16]\neval_samples = 256\n\
         metric_samples = 500\nexploit_steps = 40\nseed = 1\n",
    )
    .unwrap();
    tether_train(&[
        "gang",
        "--config",
        path(&file),
        "--seed",
        "5",
        "--quiet",
        "--out",
        path(&cli),
    ]);
    assert_eq!(report.summary.method, "pnm");
    assert_eq!(report.summary.iterations, 2);
    assert_same_outputs(
        &lib,
        &cli,
        &["seconds"],
        &["metrics.csv", "payoff.csv", "mixtures.json"],
    );
}

#[test]
fn mesh_through_the_library_is_the_cli() {
    use tether_train::data::cortex::{CorticalParcellation, Parcellation};
    use tether_train::tasks::mesh_run::{MeshConfig, run};
    if let Err(e) = CorticalParcellation::load(Parcellation::Mesulam) {
        assert!(
            may_skip("brainspace"),
            "TETHER_REQUIRE_DATA requires brainspace: {e}"
        );
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (lib, cli) = (folder("mesh", "lib"), folder("mesh", "cli"));
    let config = MeshConfig {
        steps: 3,
        channels: 4,
        blocks: 0,
        eval_every: 2,
        transforms: 1,
        seed: 2,
        out: lib.clone(),
        ..MeshConfig::default()
    };
    let report = {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        run::<B>(&config, &Default::default(), false).unwrap()
    };
    tether_train(&[
        "mesh",
        "--steps",
        "3",
        "--channels",
        "4",
        "--blocks",
        "0",
        "--eval-every",
        "2",
        "--transforms",
        "1",
        "--seed",
        "2",
        "--quiet",
        "--out",
        path(&cli),
    ]);
    assert_eq!(report.summary.transformed_accuracy.len(), 1);
    assert_same_outputs(
        &lib,
        &cli,
        &["seconds_per_step", "deploy_ms", "burn_ms"],
        &["loss.csv", "accuracy.csv", "config.json", "model.tthr"],
    );
}

/// The SVM writes no summary: its trace is compared instead.
#[test]
fn svm_through_the_library_is_the_cli() {
    use tether_train::tasks::prune_run::DualUpdate;
    use tether_train::tasks::svm_run::{Scheme, SvmConfig, run};
    if let Err(e) = tether_train::data::iris::Iris::load() {
        assert!(may_skip("iris"), "TETHER_REQUIRE_DATA requires Iris: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (lib, cli) = (folder("svm", "lib"), folder("svm", "cli"));
    // Alternating updates on the augmented Lagrangian, the multipliers by gradient ascent.
    let config = SvmConfig {
        dual: DualUpdate::Ga,
        dual_lr: 0.05,
        augmented: Some(0.5),
        scheme: Scheme::PrimalDual,
        steps: 200,
        out: lib.clone(),
        ..SvmConfig::default()
    };
    let report = {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        run::<B>(&config, &Default::default(), false).unwrap()
    };
    tether_train(&[
        "svm",
        "--dual",
        "ga",
        "--dual-lr",
        "0.05",
        "--augmented",
        "0.5",
        "--scheme",
        "primal-dual",
        "--steps",
        "200",
        "--out",
        path(&cli),
    ]);
    assert_eq!(report.support.len(), 4);
    let read = |d: &Path| std::fs::read(d.join("metrics.csv")).unwrap();
    assert!(read(&lib) == read(&cli), "metrics.csv differs");
    assert_eq!(read(&lib).iter().filter(|&&b| b == b'\n').count(), 201);
    let _ = std::fs::remove_dir_all(lib.parent().unwrap());
}

/// `prune` through the library (as `train/examples/prune_lenet.rs` does, shortened) and
/// through the CLI: the same summary, metrics and deploy model; with a flash budget and the
/// gmp baseline too, so the budgets' reporting goes through both.
#[test]
fn prune_through_the_library_is_the_cli() {
    use tether_train::tasks::budget::units::Bytes;
    use tether_train::tasks::prune_run::{Method, PruneConfig, run};
    if let Err(e) = tether_train::data::mnist::ImageSet::load(
        tether_train::data::mnist::MnistKind::Mnist,
        tether_train::data::mnist::Split::Test,
    ) {
        assert!(may_skip("mnist"), "TETHER_REQUIRE_DATA requires MNIST: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    for (name, method, flash) in [
        ("prune-l0", Method::L0, None),
        ("prune-gmp", Method::Gmp, Some(200 * 1024)),
    ] {
        let (lib, cli) = (folder(name, "lib"), folder(name, "cli"));
        let config = PruneConfig {
            method,
            target_density: flash.is_none().then_some(0.3),
            max_flash: flash.map(Bytes),
            epochs: 2,
            train_limit: Some(1024),
            test_limit: Some(500),
            batch: 64,
            gate_lr: 0.3,
            seed: 3,
            out: lib.clone(),
            ..PruneConfig::default()
        };
        {
            let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
            run::<B>(&config, &Default::default(), false).unwrap();
        }
        let method_name = config.method_name();
        let mut args = vec![
            "prune",
            "--method",
            method_name,
            "--epochs",
            "2",
            "--train-limit",
            "1024",
            "--test-limit",
            "500",
            "--batch",
            "64",
            "--gate-lr",
            "0.3",
            "--seed",
            "3",
            "--out",
            path(&cli),
        ];
        let flash_arg = flash.map(|b| format!("{b}B"));
        match &flash_arg {
            Some(b) => args.extend(["--max-flash", b.as_str()]),
            None => args.extend(["--target-density", "0.3"]),
        }
        tether_train(&args);
        assert_same_outputs(
            &lib,
            &cli,
            &[],
            &["metrics.csv", "epochs.csv", "model.tthr"],
        );
    }
}
