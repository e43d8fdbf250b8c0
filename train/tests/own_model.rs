//! `tether-train prune` on the user's own network (a PyTorch ONNX export) and own data:
//! the run writes a pruned model whose tether and ONNX forms predict alike, and bad
//! input is refused before any training with a message that says what is wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_deploy::onnx::import_file;
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

fn tether_train(args: &[&str]) -> (bool, String, String) {
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

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/tests/fixtures/torch")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-own-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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
