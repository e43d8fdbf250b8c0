//! The `tether-train` binary: clear errors for bad input, and real output files.

use std::process::Command;

fn tether_train(args: &[&str], data: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-train"));
    cmd.args(args).env_remove("RUST_BACKTRACE");
    if let Some(d) = data {
        cmd.env("TETHER_DATA", d);
    }
    let out = cmd.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether MNIST is fetched; without it a test skips, unless `TETHER_REQUIRE_DATA` says so.
fn mnist_is_there() -> bool {
    use tether_train::data::mnist::{ImageSet, MnistKind, Split};
    match ImageSet::load(MnistKind::Mnist, Split::Test) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                tether_train::data::may_skip("mnist"),
                "TETHER_REQUIRE_DATA requires MNIST: {e}"
            );
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

#[test]
fn bad_flags_and_missing_data_are_clear_errors() {
    let (ok, _, err) = tether_train(&["svm", "--dual", "bogus"], None);
    assert!(
        !ok && err.contains("invalid value 'bogus' for '--dual"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["svm", "--device", "gpu"], None);
    assert!(
        !ok && err.contains("possible values: flex, ndarray, cuda"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["svm"], Some("/nonexistent-tether-data"));
    assert!(
        !ok && err.contains("run `scripts/fetch-data iris`"),
        "{err}"
    );
    if !cfg!(feature = "cuda") {
        let (ok, _, err) = tether_train(&["svm", "--device", "cuda"], None);
        assert!(
            !ok && err.contains("rebuild with `--features cuda`"),
            "{err}"
        );
    }
}

#[test]
fn svm_writes_metrics_and_plot() {
    if tether_train::data::iris::Iris::load().is_err() {
        assert!(tether_train::data::may_skip("iris"), "Iris is required");
        eprintln!("SKIPPED: Iris not fetched (scripts/fetch-data iris)");
        return;
    }
    let out = std::env::temp_dir().join(format!("tether-cli-svm-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let (ok, stdout, err) = tether_train(&["svm", "--steps", "300", "--out", &out_s], None);
    assert!(ok, "{err}");
    assert!(stdout.contains("max |alpha - alpha*|"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301, "header + one row per step");
    assert!(csv.starts_with("step,loss,max_violation,alpha_"));
    let png = std::fs::read(out.join("multipliers.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn prune_rejects_bad_input_clearly() {
    for bad in ["0", "1.5", "-0.2"] {
        let flag = format!("--target-density={bad}");
        let (ok, _, err) = tether_train(&["prune", &flag], None);
        assert!(
            !ok && err.contains("--target-density must lie in (0, 1]"),
            "{bad}: {err}"
        );
    }
    let (ok, _, err) = tether_train(&["prune", "--model", "alexnet"], None);
    assert!(
        !ok && err.contains("invalid value 'alexnet' for '--model"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["prune", "--dataset", "cifar10"], None);
    assert!(
        !ok && err.contains("possible values: mnist, fashion-mnist"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["prune", "--epochs", "3", "--finetune-epochs", "3"], None);
    assert!(
        !ok && err.contains("--finetune-epochs (3) must leave at least one"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["prune"], Some("/nonexistent-tether-data"));
    assert!(
        !ok && err.contains("run `scripts/fetch-data mnist`"),
        "{err}"
    );
}

#[test]
fn optimizer_flags_are_checked_before_any_work() {
    let (ok, _, err) = tether_train(&["prune", "--optimizer", "lbfgs"], None);
    assert!(
        !ok && err.contains("invalid value 'lbfgs' for '--optimizer"),
        "{err}"
    );
    // Checked before the data is looked for.
    let missing = Some("/nonexistent-tether-data");
    for (cmd, flags, needle) in [
        (
            "prune",
            vec!["--optimizer", "shampoo", "--precondition-frequency", "0"],
            "precondition frequency must be >= 1",
        ),
        (
            "fair-prune",
            vec!["--optimizer", "shampoo", "--shampoo-beta2", "1.5"],
            "beta2 must be in (0, 1]",
        ),
        (
            "mesh",
            vec!["--optimizer", "shampoo", "--shampoo-root", "0"],
            "root override must be >= 1",
        ),
        (
            "gang",
            vec!["--optimizer", "sgd", "--momentum", "1"],
            "--momentum must be in [0, 1)",
        ),
    ] {
        let mut args = vec![cmd];
        args.extend(flags);
        let (ok, _, err) = tether_train(&args, missing);
        assert!(!ok && err.contains(needle), "{cmd}: {err}");
    }
}

/// `--optimizer shampoo` trains: a dense LeNet-300-100 on 2048 MNIST images learns, and the
/// summary names the optimizer.
#[test]
fn prune_dense_trains_with_shampoo() {
    if !mnist_is_there() {
        return;
    }
    let out = std::env::temp_dir().join(format!("tether-cli-shampoo-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let args = [
        "prune",
        "--dense",
        "--epochs",
        "2",
        "--train-limit",
        "2048",
        "--test-limit",
        "1000",
        "--batch",
        "64",
        "--optimizer",
        "shampoo",
        "--precondition-frequency",
        "5",
        "--out",
        &out_s,
    ];
    let (ok, _, err) = tether_train(&args, None);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["optimizer"], "shampoo");
    let accuracy = summary["final"]["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85, "test accuracy {accuracy}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The main job end to end on a small MNIST subset: the density constraint is met by the
/// deterministic gates of the saved model, and every output is written.
#[test]
fn prune_meets_the_density_constraint_end_to_end() {
    if !mnist_is_there() {
        return;
    }
    let out = std::env::temp_dir().join(format!("tether-cli-prune-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let target = 0.3;
    let args = [
        "prune",
        "--epochs",
        "5",
        // The last epoch fine-tunes the weights with the gates frozen.
        "--finetune-epochs",
        "1",
        "--train-limit",
        "2048",
        "--test-limit",
        "2000",
        "--batch",
        "64",
        "--target-density",
        "0.3",
        "--dual-lr",
        "0.5",
        // 128 steps in all: the gates need a larger step than the default (tuned for the
        // default 3 full epochs) to travel to the target in time.
        "--gate-lr",
        "0.3",
        "--out",
        &out_s,
    ];
    let (ok, stdout, err) = tether_train(&args, None);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let density = summary["final"]["density"].as_f64().unwrap();
    let accuracy = summary["final"]["test_accuracy"].as_f64().unwrap();
    assert!(
        density > 0.0 && density <= target + 0.01,
        "density {density} vs target {target}\n{stdout}"
    );
    assert!(accuracy > 0.5, "test accuracy {accuracy} is near chance");
    let kept: f64 = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kept"].as_f64().unwrap())
        .sum();
    let total: f64 = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["gated_params"].as_f64().unwrap())
        .sum();
    assert!(
        (kept / total - density).abs() < 1e-4,
        "per-layer counts disagree with the density"
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 5 * (2048 / 64));
    // Frozen gates: the density after the fine-tuning epoch is the density before it.
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    let column = epochs
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "density")
        .expect("a density column");
    let density_of = |line: &str| line.split(',').nth(column).unwrap().to_string();
    let rows: Vec<&str> = epochs.lines().skip(1).collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(density_of(rows[3]), density_of(rows[4]), "{epochs}");
    assert!(
        stdout.contains("fine-tuning the pruned network"),
        "{stdout}"
    );
    // The exported weights: as many non-zero weights as the gates kept.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let nonzero: usize = (0..3)
        .map(|i| {
            let w = st.tensor(&format!("layers.{i}.weight")).unwrap();
            w.data()
                .chunks_exact(4)
                .filter(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) != 0.0)
                .count()
        })
        .sum();
    assert_eq!(
        nonzero as f64, kept,
        "non-zero exported weights vs kept parameters"
    );
    assert_eq!(st.tensor("layers.0.weight").unwrap().shape(), &[300, 784]);
    for f in ["density.png", "training.png", "model.mpk", "epochs.csv"] {
        assert!(out.join(f).metadata().unwrap().len() > 0, "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn fair_prune_rejects_bad_input_clearly() {
    let (ok, _, err) = tether_train(&["fair-prune", "--epsilon=-0.1"], None);
    assert!(
        !ok && err.contains("--epsilon must be finite and >= 0"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["fair-prune", "--margin", "0.02"], None);
    assert!(
        !ok && err.contains("--margin must lie in [0, --epsilon], got 0.02"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["fair-prune", "--weight-decay=-1"], None);
    assert!(
        !ok && err.contains("--weight-decay must be finite and >= 0"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["fair-prune", "--sparsity", "1"], None);
    assert!(
        !ok && err.contains("--sparsity must lie in [0, 1)"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["fair-prune", "--method", "fairest"], None);
    assert!(
        !ok && err.contains("possible values: ceag, naive, equal-loss"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["fair-prune"], Some("/nonexistent-tether-data"));
    assert!(
        !ok && err.contains("run `scripts/fetch-data adult`"),
        "{err}"
    );
    if tether_train::data::adult::load(tether_train::data::adult::AdultSplit::Train).is_err() {
        assert!(tether_train::data::may_skip("adult"), "Adult is required");
        eprintln!("SKIPPED: the grouping errors need Adult (scripts/fetch-data adult)");
        return;
    }
    let (ok, _, err) = tether_train(&["fair-prune", "--groups", "colour"], None);
    assert!(
        !ok && err.contains("unknown grouping \"colour\" for adult; known: race, sex"),
        "{err}"
    );
    // 100,000 random groups over 30,162 people leave most of them empty.
    let (ok, _, err) = tether_train(&["fair-prune", "--groups", "random-100000"], None);
    assert!(!ok && err.contains("has no train samples"), "{err}");
    let (ok, _, err) = tether_train(
        &[
            "fair-prune",
            "--groups",
            "sex-age-occupation",
            "--min-group-size",
            "100000",
        ],
        None,
    );
    assert!(
        !ok && err.contains("leaves no group with at least 100000 training samples"),
        "{err}"
    );
}

/// The whole pipeline on Adult (race x sex), short: after CEAG fine-tuning every group's
/// excess accuracy gap on the training set is within epsilon (0.02 here; the short naive
/// run of the same pruned model is not asked to be), the pruned layers have exactly the
/// density asked for, and every output is written.
#[test]
fn fair_prune_bounds_the_excess_gap_end_to_end() {
    if tether_train::data::adult::load(tether_train::data::adult::AdultSplit::Train).is_err() {
        assert!(tether_train::data::may_skip("adult"), "Adult is required");
        eprintln!("SKIPPED: Adult not fetched (scripts/fetch-data adult)");
        return;
    }
    let root = std::env::temp_dir().join(format!("tether-cli-fair-{}", std::process::id()));
    let run = |method: &str, dense_from: Option<&str>| -> serde_json::Value {
        let out = root.join(method);
        let out_s = out.to_string_lossy().into_owned();
        let mut args = vec![
            "fair-prune",
            "--method",
            method,
            "--dense-epochs",
            "4",
            "--epochs",
            "4",
            "--epsilon",
            "0.02",
            "--out",
            &out_s,
        ];
        if let Some(d) = dense_from {
            args.extend(["--dense-from", d]);
        }
        let (ok, stdout, err) = tether_train(&args, None);
        assert!(ok, "{err}");
        assert!(stdout.contains("max excess gap train"), "{stdout}");
        for f in [
            "report.md",
            "groups.csv",
            "metrics.csv",
            "gaps.png",
            "model.tthr",
            "model.onnx",
            "dense.tthr",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
    };
    let naive = run("naive", None);
    let dense = root.join("naive").to_string_lossy().into_owned();
    let ceag = run("ceag", Some(&dense));
    assert_eq!(naive["dense"], ceag["dense"], "the same dense model");
    // Exact up to rounding one weight per layer.
    assert!((ceag["density"].as_f64().unwrap() - 0.1).abs() < 1e-4);
    let gap = |s: &serde_json::Value| s["final"]["train_max_excess_gap"].as_f64().unwrap();
    assert!(
        gap(&ceag) <= 0.02,
        "CEAG {} (naive {})",
        gap(&ceag),
        gap(&naive)
    );
    assert_eq!(ceag["final"]["train_groups_over_epsilon"], 0);
    assert!(root.join("ceag/checks.csv").is_file());
    // A dense model of other widths is refused, not silently loaded.
    let (ok, _, err) = tether_train(
        &[
            "fair-prune",
            "--hidden",
            "64",
            "--dense-from",
            &dense,
            "--out",
            &root.join("bad").to_string_lossy(),
        ],
        None,
    );
    assert!(
        !ok && err.contains(
            "holds a network with input [103] and layers [[256, 103], [128, 256], [2, 128]]; \
             this run's has input [103] and layers [[64, 103], [2, 64]]"
        ),
        "{err}"
    );
    let groups = std::fs::read_to_string(root.join("ceag/groups.csv")).unwrap();
    assert_eq!(groups.lines().count(), 11, "header + 10 race x sex groups");
    let _ = std::fs::remove_dir_all(&root);
}

/// The early-stopped dense reference and gradual pruning: the dense model kept is the
/// epoch of lowest validation loss, the held-out samples are out of the training set, and
/// the cubic ramp ends at exactly the density asked for.
#[test]
fn fair_prune_early_stops_the_dense_model_and_prunes_gradually() {
    let (ok, _, err) = tether_train(&["fair-prune", "--val-fraction", "1"], None);
    assert!(
        !ok && err.contains("--val-fraction must lie in [0, 1)"),
        "{err}"
    );
    if tether_train::data::adult::load(tether_train::data::adult::AdultSplit::Train).is_err() {
        assert!(tether_train::data::may_skip("adult"), "Adult is required");
        eprintln!("SKIPPED: Adult not fetched (scripts/fetch-data adult)");
        return;
    }
    let out = std::env::temp_dir().join(format!("tether-cli-fair-es-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let args = [
        "fair-prune",
        "--method",
        "naive",
        "--dense-epochs",
        "3",
        "--val-fraction",
        "0.1",
        "--prune-epochs",
        "2",
        "--epochs",
        "1",
        "--out",
        &out_s,
    ];
    let (ok, stdout, err) = tether_train(&args, None);
    assert!(ok, "{err}");
    assert!(stdout.contains("27146 training samples"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["validation_samples"], 3016);
    let losses: Vec<f64> = s["dense_validation_loss_by_epoch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 3);
    let best = 1
        + (0..3)
            .min_by(|&i, &j| losses[i].total_cmp(&losses[j]))
            .unwrap();
    assert_eq!(s["dense_epoch_kept"], best);
    assert_eq!(s["pruning"], "gradual magnitude");
    assert!((s["density"].as_f64().unwrap() - 0.1).abs() < 1e-4);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn gang_rejects_bad_input_clearly() {
    let (ok, _, err) = tether_train(&["gang", "--data", "spiral"], None);
    assert!(
        !ok && err.contains("invalid value 'spiral' for '--data"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["gang", "--epsilon=-1"], None);
    assert!(!ok && err.contains("--epsilon must be"), "{err}");
    let out = std::env::temp_dir().join(format!("tether-cli-gang-bad-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let (ok, _, err) = tether_train(&["gang", "--lr", "NaN", "--out", &out_s], None);
    assert!(
        !ok && err.contains("learning rate must be positive"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["gang", "--restarts", "0", "--out", &out_s], None);
    assert!(!ok && err.contains("restarts must be at least 1"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

/// A small PNM run and a small GAN run write every output, the payoff matrix grows by one
/// row and column per iteration, and the mixtures are distributions.
#[test]
fn gang_writes_the_game_and_its_plots() {
    let out = std::env::temp_dir().join(format!("tether-cli-gang-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let small = [
        "--data",
        "ring8",
        "--iterations",
        "3",
        "--epsilon",
        "0",
        "--response-steps",
        "150",
        // The small setting's threshold below was measured with the earlier default.
        "--background",
        "0.1",
        "--restarts",
        "2",
        "--generator-hidden",
        "16",
        "--classifier-hidden",
        "16",
        "--eval-samples",
        "256",
        "--metric-samples",
        "500",
        "--exploit-steps",
        "150",
        "--quiet",
        "--out",
        &out_s,
    ];
    let (ok, stdout, err) = tether_train(&[&["gang"], &small[..]].concat(), None);
    assert!(ok, "{err}");
    assert!(stdout.contains("modes covered"), "{stdout}");
    let payoff = std::fs::read_to_string(out.join("payoff.csv")).unwrap();
    assert_eq!(
        payoff.lines().count(),
        1 + 4,
        "header + 1 initial + 3 added rows"
    );
    assert!(payoff.lines().all(|l| l.split(',').count() == 1 + 4));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 3);
    // A classifier trained against the untrained generator beats the untrained classifier.
    let first: Vec<f64> = metrics
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(first[6] > 0.05, "classifier gain {}", first[6]);
    let mix: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mixtures.json")).unwrap()).unwrap();
    for player in ["generators", "classifiers"] {
        let w: Vec<f64> = mix[player]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(w.len(), 4);
        assert!(w.iter().all(|&x| x >= 0.0) && (w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    for png in [
        "samples.png",
        "value.png",
        "samples/iter_000.png",
        "samples/iter_002.png",
    ] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }
    // Every generator with weight is saved, and only those.
    let saved = std::fs::read_dir(out.join("generators")).unwrap().count();
    let weighted = mix["generators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w.as_f64().unwrap() > 0.0)
        .count();
    assert_eq!(saved, weighted);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "pnm");
    assert_eq!(summary["modes"], 8);
    assert!(summary["exploitability"].as_f64().unwrap().is_finite());

    let (ok, _, err) = tether_train(
        &[
            &["gang", "--method", "gan", "--gan-steps", "100"],
            &small[..],
        ]
        .concat(),
        None,
    );
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "gan");
    assert_eq!(summary["gradient_steps"], 200);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn mesh_rejects_bad_input_clearly() {
    let (ok, _, err) = tether_train(&["mesh", "--input", "normals"], None);
    assert!(!ok && err.contains("invalid value 'normals'"), "{err}");
    let (ok, _, err) = tether_train(&["mesh", "--channels", "8", "--heads", "3"], None);
    assert!(
        !ok && err.contains("--heads (3) must divide --channels (8)"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["mesh", "--steps", "0"], None);
    assert!(!ok && err.contains("--steps must be at least 1"), "{err}");
    let (ok, _, err) = tether_train(&["mesh", "--reltan-powers", "0.5,NaN"], None);
    assert!(!ok && err.contains("--reltan-powers"), "{err}");
    let (ok, _, err) = tether_train(
        &["mesh", "--reltan-powers", "0.1,0.2,0.3,0.4,0.5,0.6,0.7"],
        None,
    );
    assert!(!ok && err.contains("at most 6"), "{err}");
    let empty = std::env::temp_dir().join(format!("tether-cli-mesh-nodata-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = tether_train(&["mesh"], Some(&empty.to_string_lossy()));
    assert!(
        !ok && err.contains("scripts/fetch-data brainspace"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&empty);
}

/// A few steps of EMAN on the cortex: the loss falls, every output is written, and the
/// exported deploy model computes what burn computes on the test hemisphere.
#[test]
fn mesh_trains_evaluates_and_exports() {
    use tether_train::data::cortex::{CorticalParcellation, Parcellation};
    if let Err(e) = CorticalParcellation::load(Parcellation::Mesulam) {
        assert!(
            tether_train::data::may_skip("brainspace"),
            "TETHER_REQUIRE_DATA requires brainspace: {e}"
        );
        eprintln!("SKIPPED: {e}");
        return;
    }
    let out = std::env::temp_dir().join(format!("tether-cli-mesh-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let (ok, stdout, err) = tether_train(
        &[
            "mesh",
            "--steps",
            "4",
            "--channels",
            "4",
            "--blocks",
            "0",
            "--eval-every",
            "2",
            "--transforms",
            "1",
            "--quiet",
            "--out",
            &out_s,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("transformed test"), "{stdout}");
    for f in [
        "loss.csv",
        "accuracy.csv",
        "training.png",
        "model.mpk",
        "model.tthr",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let loss = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let values: Vec<f64> = loss
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 4);
    assert!(values[3] < values[0], "the loss did not fall: {values:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["deploy_max_diff"].as_f64().unwrap() < 1e-4,
        "{summary}"
    );
    let acc = summary["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // EMAN is invariant: the transformed copy scores what the test mesh scores.
    let moved = summary["transformed_accuracy"][0].as_f64().unwrap();
    assert!((moved - acc).abs() < 1e-3, "{acc} vs {moved}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--config`: the settings come from a TOML file, a flag given on the command line wins
/// over the file, and a misspelt key is an error naming it.
#[test]
fn prune_reads_a_config_file_under_the_flags() {
    let dir = std::env::temp_dir().join(format!("tether-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "epochs = 1\ntarget_densty = 0.2\n").unwrap();
    let (ok, _, err) = tether_train(&["prune", "--config", bad.to_str().unwrap()], None);
    assert!(
        !ok && err.contains("unknown setting(s) target_densty"),
        "{err}"
    );
    // Checked like the flags, before the data is looked for.
    std::fs::write(&bad, "target_density = 1.5\n").unwrap();
    let missing = Some("/nonexistent-tether-data");
    let (ok, _, err) = tether_train(&["prune", "--config", bad.to_str().unwrap()], missing);
    assert!(
        !ok && err.contains("--target-density must lie in (0, 1]"),
        "{err}"
    );
    if !mnist_is_there() {
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    let out = dir.join("out");
    let file = dir.join("run.toml");
    std::fs::write(
        &file,
        format!(
            "dense = true\nepochs = 3\ntrain_limit = 256\ntest_limit = 200\nbatch = 64\n\
             optimizer = \"sgd\"\nlr = 0.05\nout = {:?}\n",
            out.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let (ok, _, err) = tether_train(&["prune", "--config", config, "--epochs", "1"], None);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["dense"], true, "from the file");
    assert_eq!(summary["optimizer"], "sgd", "from the file");
    assert_eq!(summary["epochs"], 1, "the flag wins over the file");
    std::fs::remove_dir_all(&dir).unwrap();
}
