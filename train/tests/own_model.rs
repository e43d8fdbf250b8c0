//! `tether-train prune` on the user's own network (a PyTorch ONNX export) and own data:
//! the run writes a pruned model whose tether and ONNX forms predict alike, and bad
//! input is refused before any training with a message that says what is wrong.

use std::path::{Path, PathBuf};

use tether_deploy::onnx::import_file;
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

mod common;
use common::tether_train;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/tests/fixtures/torch")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tmp(name: &str) -> PathBuf {
    common::fresh_dir("own", name)
}

/// MNIST's test IDX pair (10k images), as a user's own IDX data; `None` (skipped) when
/// MNIST is not fetched, unless `TETHER_REQUIRE_DATA` requires it.
fn mnist_idx() -> Option<PathBuf> {
    let p = tether_train::data::data_dir().join("mnist/t10k-images-idx3-ubyte");
    if p.exists() {
        return Some(p);
    }
    assert!(
        tether_train::data::may_skip("mnist"),
        "TETHER_REQUIRE_DATA requires MNIST"
    );
    eprintln!("SKIPPED: MNIST is not fetched (scripts/fetch-data mnist)");
    None
}

fn run_model(bytes: &[u8], x: &[f32], batch: usize) -> Vec<f32> {
    let aligned = AlignedBytes::from_slice(bytes);
    let model = Model::parse(&aligned).unwrap();
    let mut plan = Plan::new(
        model,
        &PlanOptions {
            batch,
            ..Default::default()
        },
    )
    .unwrap();
    plan.run(x).unwrap().to_vec()
}

#[test]
fn an_onnx_lenet5_prunes_on_idx_data_and_exports_tthr_and_onnx_alike() {
    let Some(idx) = mnist_idx() else { return };
    let out = tmp("lenet5");
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--model",
        &fixture("lenet5_dynamo.onnx"),
        "--data",
        idx.to_str().unwrap(),
        "--holdout",
        "0.1",
        "--train-limit",
        "1024",
        "--test-limit",
        "200",
        "--epochs",
        "2",
        "--gate-lr",
        "0.3",
        "--target-density",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("model.onnx"), "{stdout}");
    // The pruned tether model and its ONNX export compute the same scores.
    let tthr = std::fs::read(out.join("model.tthr")).unwrap();
    let back = import_file(&out.join("model.onnx")).unwrap();
    let x: Vec<f32> = (0..4 * 784)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let (a, b) = (run_model(&tthr, &x, 4), run_model(&back, &x, 4));
    assert_eq!(a.len(), 40);
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() <= 1e-5 * (1.0 + v.abs()), "{u} vs {v}");
    }
    // The summary's density is the written model's: its gated weights' nonzeros.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let aligned = AlignedBytes::from_slice(&tthr);
    let m = Model::parse(&aligned).unwrap();
    let (mut nonzero, mut total) = (0usize, 0usize);
    for node in &m.nodes {
        if let tether_deploy::Op::Linear { weight, .. } | tether_deploy::Op::Conv2d { weight, .. } =
            node.op
        {
            let w = m.tensors[weight].to_dense();
            nonzero += w.iter().filter(|&&v| v != 0.0).count();
            total += w.len();
        }
    }
    // (The run counts in f32 on the device: equal to f32 precision.)
    let density = summary["final"]["density"].as_f64().unwrap();
    assert!(
        (density - nonzero as f64 / total as f64).abs() < 1e-6,
        "summary {density} vs model {nonzero}/{total}"
    );
    for f in [
        "model.safetensors",
        "model.mpk",
        "metrics.csv",
        "epochs.csv",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn own_model_and_data_mismatches_are_refused_before_training() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    // A CSV of 16 features in 12 classes for a network with 16 inputs and 10 outputs.
    let csv = out.join("twelve.csv");
    let mut text = String::from("label");
    for k in 0..16 {
        text.push_str(&format!(",f{k}"));
    }
    text.push('\n');
    for i in 0..48 {
        text.push_str(&format!("c{}", i % 12));
        for k in 0..16 {
            text.push_str(&format!(",{}", (i * 16 + k) % 7));
        }
        text.push('\n');
    }
    std::fs::write(&csv, text).unwrap();
    let mlp = fixture("mlp_norm_dynamo.onnx");
    let (ok, _, err) = tether_train(&[
        "prune",
        "--model",
        &mlp,
        "--data",
        csv.to_str().unwrap(),
        "--label-column",
        "label",
        "--out",
        o,
    ]);
    assert!(
        !ok && err.contains("12 classes but the network outputs 10"),
        "{err}"
    );
    // A normalisation that is none of the forms, or statistics of another length.
    for (how, says) in [
        ("imagenet", "MEANS/STDS"),
        ("0.5,0.5/0.2", "2 means but 1 deviations"),
    ] {
        let (ok, _, err) = tether_train(&[
            "prune",
            "--model",
            &mlp,
            "--data",
            csv.to_str().unwrap(),
            "--label-column",
            "label",
            "--normalize",
            how,
            "--out",
            o,
        ]);
        assert!(
            !ok && err.contains("--normalize") && err.contains(says),
            "{err}"
        );
    }
    let (ok, _, err) = tether_train(&[
        "prune",
        "--model",
        &mlp,
        "--data",
        csv.to_str().unwrap(),
        "--label-column",
        "label",
        "--normalize",
        "1,2,3/1,1,1",
        "--out",
        o,
    ]);
    assert!(
        !ok && err.contains('3'),
        "three channel statistics for 16 features: {err}"
    );
    // Samples of the wrong shape for the network.
    let lenet = fixture("lenet5_dynamo.onnx");
    let (ok, _, err) = tether_train(&[
        "prune",
        "--model",
        &lenet,
        "--data",
        csv.to_str().unwrap(),
        "--label-column",
        "label",
        "--out",
        o,
    ]);
    assert!(!ok && err.contains("[1, 28, 28]"), "{err}");
    // A missing network, a file that is not a network, a missing label column.
    let (ok, _, err) = tether_train(&["prune", "--model", "/nonexistent/net.onnx", "--out", o]);
    assert!(!ok && err.contains("/nonexistent/net.onnx"), "{err}");
    let (ok, _, err) = tether_train(&["prune", "--model", "net.pt", "--out", o]);
    assert!(!ok && err.contains("neither a built-in network"), "{err}");
    let (ok, _, err) = tether_train(&[
        "prune",
        "--model",
        &mlp,
        "--data",
        csv.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(!ok && err.to_lowercase().contains("label"), "{err}");
    // The same table without its header row (columns named by position) trains the
    // network when its 10 classes fit the 10 outputs.
    let headerless = out.join("ten.csv");
    let rows: String = (0..40)
        .map(|i| {
            let mut r = format!("{}", i % 10);
            for k in 0..16 {
                r.push_str(&format!(",{}", (i * 16 + k) % 7));
            }
            r + "\n"
        })
        .collect();
    std::fs::write(&headerless, rows).unwrap();
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--model",
        &mlp,
        "--data",
        headerless.to_str().unwrap(),
        "--no-header",
        "--label-column",
        "0",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--out",
        out.join("run").to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("model.onnx"), "{err}");
    // MNIST for a network that does not take 28x28 images.
    let (ok, _, err) = tether_train(&["prune", "--model", &mlp, "--out", o]);
    assert!(!ok && err.contains("28x28"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

fn own_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The fixtures a user would bring (PyTorch's default export, weights in `.onnx.data`)
/// become trainable graphs whose forward pass is onnxruntime's, and whose import runs in
/// tether-deploy alike: the MLP for a one-hot table, and the small ResNet whose
/// BatchNorms and residual adds the importer folds.
#[test]
fn the_own_model_fixtures_train_as_graphs_that_compute_what_onnxruntime_computes() {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};
    use tether_models::graph::{GraphNet, GraphNetConfig};
    use tether_models::l0::{GateMode, HardConcreteConfig};
    for (name, per_sample) in [
        ("adult_mlp", 103),
        ("mnist_resnet", 784),
        ("mnist_resnet_trained", 784),
        ("mnist_resnet_bn", 784),
    ] {
        let bytes = tether_deploy::onnx::import_file_with(
            &own_fixture(&format!("{name}.onnx")),
            &tether_deploy::onnx::ImportOptions {
                batch_axis: tether_deploy::onnx::BatchAxis::Leading,
            },
        )
        .unwrap();
        let x = f32s(&own_fixture(&format!("{name}.in.f32")));
        let want = f32s(&own_fixture(&format!("{name}.ort.f32")));
        assert_eq!(x.len(), 2 * per_sample);
        let config = GraphNetConfig {
            structure: None,
            gates: HardConcreteConfig::new(),
        };
        let device = Default::default();
        let net = GraphNet::<Flex>::from_model_bytes(&bytes, &config, &device).unwrap();
        let input =
            Tensor::<Flex, 2>::from_data(TensorData::new(x.clone(), [2, per_sample]), &device);
        let got: Vec<f32> = net
            .forward(input, GateMode::Deterministic)
            .into_data()
            .into_vec()
            .unwrap();
        let deployed = run_model(&bytes, &x, 2);
        assert_eq!(got.len(), want.len(), "{name}");
        for ((g, d), w) in got.iter().zip(&deployed).zip(&want) {
            let tol = 1e-5 * (1.0 + w.abs());
            assert!((g - w).abs() <= tol, "{name}: graph {g} vs onnxruntime {w}");
            assert!(
                (d - w).abs() <= tol,
                "{name}: deploy {d} vs onnxruntime {w}"
            );
        }
    }
}

/// Writes UCI Adult as a user's table would be (`AdultEncoder::to_csv`: the one-hot
/// features, the label `income`, the groups as text); returns (train, test) paths.
fn adult_csv(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    use tether_train::data::adult::{AdultEncoder, AdultSplit, load};
    let Ok(train) = load(AdultSplit::Train) else {
        assert!(tether_train::data::may_skip("adult"), "Adult is required");
        eprintln!("SKIPPED: Adult not fetched (scripts/fetch-data adult)");
        return None;
    };
    let test = load(AdultSplit::Test).unwrap();
    let enc = AdultEncoder::fit(&train);
    let (a, b) = (dir.join("adult.csv"), dir.join("adult_test.csv"));
    std::fs::write(&a, enc.to_csv(&train)).unwrap();
    std::fs::write(&b, enc.to_csv(&test)).unwrap();
    Some((a, b))
}

/// `fair-prune` on the user's network (a PyTorch export) and the user's CSV, groups named
/// by a column: pruned to the sparsity asked for, every group reported, and the written
/// models (tthr and ONNX) predict alike.
#[test]
fn fair_prune_takes_an_onnx_model_and_a_csv_with_a_group_column() {
    let out = tmp("fair-own");
    let Some((train, test)) = adult_csv(&out) else {
        return;
    };
    let run = out.join("run");
    let (ok, stdout, err) = tether_train(&[
        "fair-prune",
        "--model",
        own_fixture("adult_mlp.onnx").to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--test-data",
        test.to_str().unwrap(),
        "--label-column",
        "income",
        "--group-column",
        "race,sex",
        "--train-limit",
        "8000",
        "--dense-epochs",
        "2",
        "--epochs",
        "2",
        "--sparsity",
        "0.8",
        "--epsilon",
        "0.03",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("adult_mlp.onnx (3 Linear/Conv layers)"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    // The two hidden layers pruned to exactly 80% (103x128 and 128x64 weights).
    let kept = (13184.0 - (0.8f64 * 13184.0).round()) + (8192.0 - (0.8f64 * 8192.0).round());
    let density = summary["density"].as_f64().unwrap();
    assert!((density - kept / 21376.0).abs() < 1e-6, "{density}");
    // Race x sex groups with at least 50 of the first 8,000 training samples: Asian-Pac-
    // Islander, Black and White, each by sex, named in the table.
    let groups = std::fs::read_to_string(run.join("groups.csv")).unwrap();
    assert_eq!(groups.lines().count(), 7, "{groups}");
    assert!(
        groups.contains("White/Male") && groups.contains("Black/Female"),
        "{groups}"
    );
    let accuracy = summary["final"]["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.78, "test accuracy {accuracy}");
    // The written model holds the pruned weights' zeros, and its ONNX form computes alike.
    let tthr = std::fs::read(run.join("model.tthr")).unwrap();
    let back = import_file(&run.join("model.onnx")).unwrap();
    let x = f32s(&own_fixture("adult_mlp.in.f32"));
    let (a, b) = (run_model(&tthr, &x, 2), run_model(&back, &x, 2));
    assert_eq!(a.len(), 4);
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() <= 1e-5 * (1.0 + v.abs()), "{u} vs {v}");
    }
    let aligned = AlignedBytes::from_slice(&tthr);
    let m = Model::parse(&aligned).unwrap();
    let zeros: usize = m
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            tether_deploy::Op::Linear { weight, .. } => Some(
                m.tensors[weight]
                    .to_dense()
                    .iter()
                    .filter(|&&v| v == 0.0)
                    .count(),
            ),
            _ => None,
        })
        .sum();
    assert!(zeros >= 21376 - kept as usize, "{zeros} zeros");
    // Refused before training, each with a message that names what is wrong: the run on
    // the same table with `extra` flags.
    let bad = out.join("bad");
    let refused = |extra: &[&str]| -> String {
        let mut args = vec![
            "fair-prune",
            "--data",
            train.to_str().unwrap(),
            "--label-column",
            "income",
            "--out",
            bad.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = tether_train(&args);
        assert!(!ok, "{extra:?} ran");
        err
    };
    let (mlp, resnet) = (
        own_fixture("adult_mlp.onnx"),
        own_fixture("mnist_resnet.onnx"),
    );
    // A group column that is not in the table is named.
    let err = refused(&[
        "--model",
        mlp.to_str().unwrap(),
        "--group-column",
        "gender",
        "--ignore-columns",
        "race,sex",
    ]);
    assert!(err.contains("gender"), "{err}");
    // A table without groups is told what to give.
    let err = refused(&["--ignore-columns", "race,sex"]);
    assert!(err.contains("--group-column"), "{err}");
    // A network that does not take the table's 103 features.
    let err = refused(&[
        "--model",
        resnet.to_str().unwrap(),
        "--group-column",
        "race,sex",
    ]);
    assert!(
        err.contains("[103]") && err.contains("[1, 28, 28]"),
        "{err}"
    );
    assert!(
        !out.join("bad").exists(),
        "nothing written for refused runs"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// scikit-learn's 8x8 digits as the user's headerless CSV (`scripts/fetch-data digits`) and
/// a 64-32-10 MLP exported by PyTorch: L0 pruning meets density 0.1 within 0.01 and keeps
/// most of the accuracy (BENCHMARKS.md has the 200-epoch run beside the dense one).
#[test]
fn an_onnx_mlp_prunes_on_a_headerless_csv_to_the_target_density() {
    let csv = tether_train::data::data_dir().join("digits/digits.csv.gz");
    if !csv.exists() {
        assert!(
            tether_train::data::may_skip("digits"),
            "TETHER_REQUIRE_DATA requires digits"
        );
        eprintln!("SKIPPED: digits is not fetched (scripts/fetch-data digits)");
        return;
    }
    let out = tmp("digits");
    let (ok, _, err) = tether_train(&[
        "prune",
        "--model",
        &fixture("digits_mlp_dynamo.onnx"),
        "--data",
        csv.to_str().unwrap(),
        "--no-header",
        "--label-column",
        "64",
        "--holdout",
        "0.2",
        "--batch",
        "64",
        "--epochs",
        "100",
        "--gate-lr",
        "0.3",
        "--dual-lr",
        "0.5",
        "--target-density",
        "0.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let density = summary["final"]["density"].as_f64().unwrap();
    assert!((density - 0.1).abs() <= 0.01, "density {density}");
    let accuracy = summary["final"]["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "held-out accuracy {accuracy}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The Mul/Add constants of a model's folded BatchNorms, in graph order.
fn norm_constants(bytes: &[u8]) -> Vec<Vec<f32>> {
    let aligned = AlignedBytes::from_slice(bytes);
    let m = Model::parse(&aligned).unwrap();
    m.nodes
        .iter()
        .filter_map(|n| match n.op {
            tether_deploy::Op::Const { tensor } => Some(m.tensors[tensor].to_dense()),
            _ => None,
        })
        .collect()
}

/// A ResNet exported with its BatchNormalization nodes: pruned with `--batch-norm train`
/// its BatchNorms train and fold back into the written model, whose predictions on the
/// test images give the accuracy the run reports; with `--batch-norm frozen` they are
/// written exactly as imported.
#[test]
fn an_onnx_resnet_prunes_with_its_batch_norms_trained_and_folded_back() {
    let Some(idx) = mnist_idx() else { return };
    let model = own_fixture("mnist_resnet_bn.onnx");
    let imported = norm_constants(&import_file(&model).unwrap());
    assert_eq!(
        imported.len(),
        12,
        "six BatchNorms, a scale and a shift each"
    );
    let labels = std::fs::read(idx.with_file_name("t10k-labels-idx1-ubyte")).unwrap();
    let pixels = std::fs::read(&idx).unwrap();
    let n = 128;
    let x: Vec<f32> = pixels[16..16 + n * 784]
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - 0.1307) / 0.3081)
        .collect();
    for mode in ["train", "frozen"] {
        let out = tmp(&format!("resnet-bn-{mode}"));
        let (ok, _, err) = tether_train(&[
            "prune",
            "--model",
            model.to_str().unwrap(),
            "--data",
            idx.to_str().unwrap(),
            "--test-data",
            idx.to_str().unwrap(),
            "--normalize",
            "0.1307/0.3081",
            "--train-limit",
            "512",
            "--test-limit",
            &n.to_string(),
            "--batch",
            "64",
            "--epochs",
            "1",
            "--gate-lr",
            "0.3",
            "--target-density",
            "0.5",
            "--batch-norm",
            mode,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{mode}: {err}");
        let tthr = std::fs::read(out.join("model.tthr")).unwrap();
        let written = norm_constants(&tthr);
        assert_eq!(
            written.len(),
            imported.len(),
            "{mode}: the graph keeps its ops"
        );
        let moved = written
            .iter()
            .flatten()
            .zip(imported.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if mode == "train" {
            assert!(
                moved > 1e-3,
                "the BatchNorms did not train (max change {moved})"
            );
        } else {
            assert_eq!(moved, 0.0, "frozen BatchNorms changed");
        }
        // The written model predicts what the run evaluated.
        let scores = run_model(&tthr, &x, n);
        let correct = scores
            .chunks(10)
            .zip(&labels[8..8 + n])
            .filter(|(s, l)| {
                let best = (0..10).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
                best == usize::from(**l)
            })
            .count();
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        let reported = summary["final"]["test_accuracy"].as_f64().unwrap();
        let ours = correct as f64 / n as f64;
        assert!(
            (reported - ours).abs() <= 1.0 / n as f64 + 1e-9,
            "{mode}: the run reports {reported}, the written model scores {ours}"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}
