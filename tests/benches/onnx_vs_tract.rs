//! tether-deploy vs tract on the same ONNX models, single thread, batch 1 and 32.
//!
//! The models are the pruning benchmark's MNIST networks (dense and pruned to density 0.1),
//! exported to ONNX by tether-deploy; both runtimes load the same ONNX bytes (tether
//! through its importer). Each trial times both runtimes back to back (~20 ms each) and
//! the figure is the median of the per-trial ratios (the machines are shared and noisy).
//!
//! ```sh
//! cargo bench -p tether-tests --bench onnx_vs_tract              # default models
//! cargo bench -p tether-tests --bench onnx_vs_tract -- A.tthr B.onnx ...
//! ```
//! Writes out/bench/onnx_tract.{md,json}.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../tests/common/tract.rs"]
mod tract_run;

use tether_deploy::onnx::{ExportOptions, export_bytes, import_bytes};
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

const TRIALS: usize = 15;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn default_models() -> Vec<(String, PathBuf)> {
    let dir = repo().join("out/bench/prune");
    [
        ("LeNet-300-100 dense", "mnist-lenet300-dense-s0"),
        ("LeNet-300-100 pruned 90%", "mnist-lenet300-t0.1-s0"),
        (
            "LeNet-300-100 pruned 90% in 1x4 blocks",
            "mnist-lenet300-t0.1-block1x4-s0",
        ),
        ("LeNet-5 dense", "mnist-lenet5-dense-s0"),
        ("LeNet-5 pruned 90%", "mnist-lenet5-t0.1-s0"),
        (
            "LeNet-5 pruned 90% in every layer",
            "mnist-lenet5-t0.1-per-layer-s0",
        ),
    ]
    .iter()
    .map(|(n, d)| (n.to_string(), dir.join(d).join("model.tthr")))
    .collect()
}

/// ONNX bytes of a model file (a .tthr is exported first).
fn onnx_of(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nthe default models come from the pruning benchmark: \
             cargo bench -p tether-train --bench prune_table (BENCHMARKS.md)",
            path.display()
        )
    });
    if path.extension().is_some_and(|e| e == "onnx") {
        return bytes;
    }
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::parse(&aligned).expect("a valid tether model");
    export_bytes(&model, &ExportOptions::default()).expect("exportable")
}

/// Seconds per run of `f`, over a ~20 ms window after one warm-up call.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < 0.02 || n < 3 {
        f();
        n += 1;
    }
    t.elapsed().as_secs_f64() / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    model: String,
    batch: usize,
    tether_us: f64,
    tract_us: f64,
    speedup: f64,
    max_diff: f32,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let models: Vec<(String, PathBuf)> = if args.is_empty() {
        default_models()
    } else {
        args.iter().map(|a| (a.clone(), PathBuf::from(a))).collect()
    };
    let mut rows = Vec::new();
    for (name, path) in &models {
        let onnx = onnx_of(path);
        let imported = import_bytes(&onnx).expect("tether imports its export");
        let aligned = AlignedBytes::from_slice(&imported);
        for batch in [1usize, 32] {
            let model = Model::parse(&aligned).unwrap();
            let per: usize = model.input_shape().numel();
            let mut shape = vec![batch];
            shape.extend_from_slice(model.input_shape().as_slice());
            let mut plan = Plan::new(
                model,
                &PlanOptions {
                    batch,
                    ..Default::default()
                },
            )
            .unwrap();
            let tract = tract_run::runnable(&onnx, &shape);
            let x: Vec<f32> = (0..batch * per)
                .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.4)
                .collect();
            let xt = tract_run::input(&shape, &x);
            let ours = plan.run(&x).unwrap().to_vec();
            let theirs = tract_run::output(&tract, xt.clone());
            let max_diff = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let (mut ratios, mut ts, mut tt) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..TRIALS {
                let a = time(|| {
                    std::hint::black_box(plan.run(&x).unwrap()[0]);
                });
                let b = time(|| {
                    std::hint::black_box(tract_run::output(&tract, xt.clone()));
                });
                ratios.push(b / a);
                ts.push(a);
                tt.push(b);
            }
            let row = Row {
                model: name.clone(),
                batch,
                tether_us: median(ts) * 1e6,
                tract_us: median(tt) * 1e6,
                speedup: median(ratios),
                max_diff,
            };
            println!(
                "{:<28} batch {:>2}: tether {:>9.1} us, tract {:>9.1} us, tract/tether {:.2}x (max |diff| {:.1e})",
                row.model, row.batch, row.tether_us, row.tract_us, row.speedup, row.max_diff
            );
            rows.push(row);
        }
    }
    let mut md = String::from(
        "| model | batch | tether-deploy | tract | tract / tether (median of trials) | max abs diff |\n|---|---|---|---|---|---|\n",
    );
    let mut json = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} us | {:.1} us | {:.2}x | {:.1e} |",
            r.model, r.batch, r.tether_us, r.tract_us, r.speedup, r.max_diff
        );
        let _ = writeln!(
            json,
            "  {{\"model\": {:?}, \"batch\": {}, \"tether_us\": {:.2}, \"tract_us\": {:.2}, \"speedup\": {:.3}, \"max_abs_diff\": {:e}}}{}",
            r.model,
            r.batch,
            r.tether_us,
            r.tract_us,
            r.speedup,
            r.max_diff,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    json.push_str("]\n");
    let out = repo().join("out/bench");
    std::fs::create_dir_all(&out).unwrap();
    for (name, text) in [("onnx_tract.md", md), ("onnx_tract.json", json)] {
        let tmp = out.join(format!("{name}.partial"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, out.join(name)).unwrap();
    }
    println!("wrote out/bench/onnx_tract.{{md,json}}");
}
