//! `tether-train prune` with device budgets and the magnitude baselines, end to end
//! through the binary: budgets met by the file as written, bad budgets refused before
//! training.

use std::path::Path;

mod common;
use common::tether_train;

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

fn out_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tether-budget-{name}-{}", std::process::id()))
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn bad_budgets_are_refused_with_the_flag_named() {
    for (args, says) in [
        (&["--max-flash", "64 parsecs"][..], "unknown size unit"),
        (&["--max-flash", "0.5B"], "whole number of bytes"),
        (&["--dense", "--max-flash", "64KiB"], "--max-flash"),
        (&["--target-density", "1"], "--target-density 1"),
        (
            &["--max-flash", "64KiB", "--fixed-penalty", "0.1"],
            "--fixed-penalty",
        ),
        (&["--method", "gmp", "--per-layer"], "--per-layer"),
        (
            &["--method", "magnitude", "--epochs", "1"],
            "at least 2 epochs",
        ),
        (&["--method", "lottery"], "lottery"),
        (&["--max-latency", "5"], "a time needs a unit"),
        (&["--max-latency", "0ms"], "--max-latency must be above 0"),
        (
            &["--max-latency", "1ms", "--latency-batch", "0"],
            "--latency-batch",
        ),
    ] {
        let mut all = vec!["prune"];
        all.extend_from_slice(args);
        let (ok, _, err) = tether_train(&all);
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_flash_budget_below_the_fixed_cost_is_refused_before_training_naming_the_minimum() {
    if !mnist_is_there() {
        return;
    }
    let out = out_dir("tiny");
    for method in ["l0", "gmp"] {
        let (ok, stdout, err) = tether_train(&[
            "prune",
            "--method",
            method,
            "--max-flash",
            "1KiB",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!ok, "{stdout}");
        // LeNet-300-100: tables, 410 biases and 413 row pointers come to about 3.8 KiB.
        assert!(
            err.contains("--max-flash 1.00 KiB (1024 B): this network cannot be written in under"),
            "{err}"
        );
        assert!(!stdout.contains("epoch 1"), "it trained first: {stdout}");
    }
}

/// L0 gates under a flash budget alone (no density target): the written file takes at
/// most the budget and uses at least 95% of it, as the summary reports and the file on
/// disk says; the magnitude baseline under the same budget meets it too.
#[test]
fn prune_meets_a_flash_budget_with_the_file_as_written() {
    if !mnist_is_there() {
        return;
    }
    let budget = 160 * 1024;
    for (method, extra) in [("l0", &["--gate-lr", "0.3"][..]), ("gmp", &[][..])] {
        let out = out_dir(method);
        let mut args = vec![
            "prune",
            "--method",
            method,
            "--max-flash",
            "160KiB",
            "--epochs",
            "4",
            "--train-limit",
            "4096",
            "--test-limit",
            "1000",
            "--batch",
            "64",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, stdout, err) = tether_train(&args);
        assert!(ok, "{method}: {err}");
        assert_flash_budget_used(&out, budget, &stdout);
        let s = summary(&out);
        assert!(
            s["final"]["test_accuracy"].as_f64().unwrap() > 0.5,
            "{method}: near chance\n{stdout}"
        );
        // The written model loads and runs in the deploy runtime.
        let bytes = std::fs::read(out.join("model.tthr")).unwrap();
        let aligned = tether_deploy::AlignedBytes::from_slice(&bytes);
        tether_deploy::Model::parse(&aligned).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// Under unit gates the closed units are cut out of the written file with their readers'
/// columns: the flash budget is steered on the size measured on the narrowed network, which
/// is the written file's byte for byte.
#[test]
fn prune_by_units_meets_a_flash_budget_with_the_cut_file() {
    if !mnist_is_there() {
        return;
    }
    let budget = 64 * 1024;
    let out = out_dir("unit-flash");
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--structure",
        "unit",
        "--max-flash",
        "64KiB",
        "--epochs",
        "4",
        "--train-limit",
        "4096",
        "--test-limit",
        "1000",
        "--batch",
        "64",
        "--gate-lr",
        "0.3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("closed units cut out"), "{stdout}");
    assert_flash_budget_used(&out, budget, &stdout);
    std::fs::remove_dir_all(&out).unwrap();
}

/// The run in `out` wrote a `model.tthr` of at most `budget` bytes and at least 95% of it,
/// and its summary reports it met, with the size model's prediction exact.
fn assert_flash_budget_used(out: &Path, budget: usize, stdout: &str) {
    let written = std::fs::metadata(out.join("model.tthr")).unwrap().len() as usize;
    assert!(written <= budget, "{written} > {budget}\n{stdout}");
    assert!(
        written as f64 >= 0.95 * budget as f64,
        "{written} leaves more than 5% of {budget} unused\n{stdout}"
    );
    let b = &summary(out)["budgets"][0];
    assert_eq!(b["name"], "flash");
    assert_eq!(b["budget"].as_f64().unwrap() as usize, budget);
    assert_eq!(b["achieved"].as_f64().unwrap() as usize, written);
    // The size model the constraint steered is exact.
    assert_eq!(b["predicted"].as_f64().unwrap() as usize, written);
    assert_eq!(b["met"], true);
}

/// Both magnitude baselines land exactly on the density target, and their exported
/// weights have exactly that many non-zeros.
#[test]
fn the_magnitude_baselines_prune_to_exactly_the_target() {
    if !mnist_is_there() {
        return;
    }
    for method in ["magnitude", "gmp"] {
        let out = out_dir(method);
        let (ok, stdout, err) = tether_train(&[
            "prune",
            "--method",
            method,
            "--target-density",
            "0.2",
            "--epochs",
            "2",
            "--train-limit",
            "2048",
            "--test-limit",
            "1000",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{method}: {err}");
        let s = summary(&out);
        assert_eq!(s["method"], method);
        let total = 784 * 300 + 300 * 100 + 100 * 10;
        let kept: f64 = s["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["kept"].as_f64().unwrap())
            .sum();
        assert_eq!(kept as usize, (0.2 * total as f64).round() as usize);
        assert!(
            s["final"]["test_accuracy"].as_f64().unwrap() > 0.5,
            "{stdout}"
        );
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
        assert_eq!(nonzero as f64, kept, "{method}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// gmp's cuts and the L0 ramp act on every step, whether `--log-every` reads it or not:
/// the same run logged every step and every 5th writes the same model. (Before, the
/// schedules ran in the logging callback, which unread steps skipped: gmp missed cuts.)
#[test]
fn schedules_act_on_every_step_whatever_is_logged() {
    if !mnist_is_there() {
        return;
    }
    let run = |method: &str, every: &str| {
        let out = out_dir(&format!("every-{method}-{every}"));
        let mut args = vec![
            "prune",
            "--method",
            method,
            "--target-density",
            "0.2",
            "--epochs",
            "3",
            "--train-limit",
            "1024",
            "--test-limit",
            "200",
            "--batch",
            "64",
            "--log-every",
            every,
            "--out",
            out.to_str().unwrap(),
        ];
        if method == "l0" {
            // The gates' decay starts at the first logged step the constraint is met, by
            // design; a constant rate leaves logging no say.
            args.extend([
                "--warmup-epochs",
                "1",
                "--ramp-epochs",
                "1",
                "--constant-gate-lr",
            ]);
        }
        let (ok, stdout, err) = tether_train(&args);
        assert!(ok, "{method} --log-every {every}: {err}");
        let tthr = std::fs::read(out.join("model.tthr")).unwrap();
        let s = summary(&out);
        std::fs::remove_dir_all(&out).unwrap();
        (tthr, s, stdout)
    };
    for method in ["gmp", "l0"] {
        let (every_step, s1, _) = run(method, "1");
        let (every_fifth, s5, stdout) = run(method, "5");
        assert!(
            every_step == every_fifth,
            "{method}: logging changed the model ({} vs {} bytes)\n{stdout}",
            every_step.len(),
            every_fifth.len()
        );
        assert_eq!(s1["final"], s5["final"], "{method}");
        if method == "gmp" {
            let d = s5["final"]["density"].as_f64().unwrap();
            assert!((d - 0.2).abs() < 1e-4, "gmp ended at density {d}");
        }
    }
}

#[test]
fn a_latency_budget_below_the_fastest_the_network_can_run_is_refused_naming_it() {
    if !mnist_is_there() {
        return;
    }
    let out = out_dir("latency-tiny");
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--max-latency",
        "1ns",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}");
    assert!(
        err.contains("--max-latency 0.0 us: this network takes at least"),
        "{err}"
    );
    assert!(!stdout.contains("epoch 1"), "it trained first: {stdout}");
}

/// A latency budget: the kernels are timed before training, the written model is timed at
/// the end, and both figures are reported. (How close to a tight budget the timing lands
/// depends on the machine's load, which a shared CI runner does not bound: that is a
/// benchmark's figure, BENCHMARKS.md, "Device budgets".)
#[test]
fn a_latency_budget_is_measured_and_reported_on_the_written_model() {
    if !mnist_is_there() {
        return;
    }
    let out = out_dir("latency");
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--max-latency",
        "1s",
        "--epochs",
        "1",
        "--train-limit",
        "512",
        "--test-limit",
        "200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let s = summary(&out);
    let b = &s["budgets"][0];
    assert_eq!(b["name"], "latency");
    assert_eq!(b["budget"].as_f64().unwrap(), 1.0);
    let achieved = b["achieved"].as_f64().unwrap();
    let predicted = b["predicted"].as_f64().unwrap();
    assert!(achieved > 0.0 && achieved < 1.0, "{achieved}\n{stdout}");
    assert!(predicted > 0.0 && predicted < 1.0, "{predicted}");
    assert_eq!(b["met"], true);
    assert!(stdout.contains("timing the deploy kernels"), "{stdout}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// A quick fair-prune run on 1,000 MNIST images (one dense, one fine-tuning epoch).
const FAIR_QUICK: [&str; 9] = [
    "fair-prune",
    "--dataset",
    "mnist",
    "--train-limit",
    "1000",
    "--dense-epochs",
    "1",
    "--epochs",
    "1",
];

#[test]
fn fair_prune_fits_a_flash_budget_and_refuses_one_below_the_fixed_cost() {
    if !mnist_is_there() {
        return;
    }
    let out = out_dir("fair-flash");
    let base = [FAIR_QUICK.as_slice(), &["--sparsity", "0"]].concat();
    // Below the output layer, biases and row pointers: refused before training.
    let mut args = base.clone();
    args.extend(["--max-flash", "1KiB", "--out", out.to_str().unwrap()]);
    let (ok, _, err) = tether_train(&args);
    assert!(!ok);
    assert!(err.contains("cannot be written in under"), "{err}");
    assert!(!out.join("dense.tthr").exists(), "refused before training");
    // A RAM budget the network's activations do not fit: magnitude pruning cannot
    // narrow them, so it is refused before training too.
    let mut args = base.clone();
    args.extend(["--max-ram", "1KiB", "--out", out.to_str().unwrap()]);
    let (ok, _, err) = tether_train(&args);
    assert!(!ok);
    assert!(
        err.contains("needs 4.23 KiB (4336 B) of RAM at batch 1 whatever its weights"),
        "{err}"
    );
    assert!(!out.join("dense.tthr").exists(), "refused before training");

    let mut args = base.clone();
    args.extend([
        "--max-flash",
        "64KiB",
        "--max-ram",
        "8KiB",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (ok, stdout, err) = tether_train(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("flash budget 64.00 KiB"), "{stdout}");
    let s = summary(&out);
    let b = &s["budgets"][0];
    let (budget, achieved) = (
        b["budget"].as_f64().unwrap(),
        b["achieved"].as_f64().unwrap(),
    );
    let written = std::fs::metadata(out.join("model.tthr")).unwrap().len() as f64;
    assert_eq!(achieved, written, "judged on the file as written");
    assert!(
        written <= budget && written >= 0.95 * budget,
        "{written} of {budget}"
    );
    assert_eq!(b["met"], true);
    assert!(s["sparsity"].as_f64().unwrap() > 0.5, "{s}");
    let ram = &s["budgets"][1];
    assert_eq!(ram["name"], "ram");
    assert_eq!(ram["achieved"].as_f64().unwrap(), 4336.0, "{s}");
    assert_eq!(ram["met"], true);
    std::fs::remove_dir_all(&out).ok();
}

/// `fair-prune --max-latency`: a budget below what the network's other ops take is refused
/// before training; a loose one keeps the sparsity asked for and is timed on the written
/// model, with flash too (both budgets reported, the larger sparsity wins).
#[test]
fn fair_prune_takes_a_latency_budget_beside_the_flash_one() {
    if !mnist_is_there() {
        return;
    }
    let out = out_dir("fair-latency");
    let base = [FAIR_QUICK.as_slice(), &["--sparsity", "0.5"]].concat();
    let mut args = base.clone();
    args.extend(["--max-latency", "1ns", "--out", out.to_str().unwrap()]);
    let (ok, _, err) = tether_train(&args);
    assert!(!ok && err.contains("takes at least"), "{err}");
    assert!(!out.exists(), "refused before training");

    let mut args = base.clone();
    args.extend([
        "--max-latency",
        "1s",
        "--max-flash",
        "64KiB",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (ok, stdout, err) = tether_train(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("latency budget 1.000 s"), "{stdout}");
    let s = summary(&out);
    let names: Vec<&str> = s["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flash", "latency"]);
    let l = &s["budgets"][1];
    let (achieved, predicted) = (
        l["achieved"].as_f64().unwrap(),
        l["predicted"].as_f64().unwrap(),
    );
    assert!(achieved > 0.0 && achieved < 1.0, "{achieved}");
    assert!(predicted > 0.0 && predicted < 1.0, "{predicted}");
    assert_eq!(l["met"], true);
    // The flash budget needs more than 0.5 (LeNet-300-100 at 0.5 is about 500 KiB): its
    // sparsity is the run's.
    assert!(s["sparsity"].as_f64().unwrap() > 0.9, "{s}");
    assert_eq!(s["budgets"][0]["met"], true);
    std::fs::remove_dir_all(&out).ok();
}

/// A board file gives prune its flash budget (gmp: quick and exact) and has the written
/// model's RAM reported against the board's, as `tether-deploy inspect --board` judges it.
#[test]
fn a_board_file_sets_the_flash_budget_and_reports_ram() {
    if !mnist_is_there() {
        return;
    }
    let out = out_dir("board");
    std::fs::create_dir_all(&out).unwrap();
    let board = out.join("board.toml");
    std::fs::write(
        &board,
        "name = \"test board\"\nflash = \"160KiB\"\nram = \"1MiB\"\nclock = \"64MHz\"\n",
    )
    .unwrap();
    let run = out.join("run");
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--method",
        "gmp",
        "--board",
        board.to_str().unwrap(),
        "--epochs",
        "2",
        "--train-limit",
        "2048",
        "--test-limit",
        "500",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let s = summary(&run);
    let budgets = s["budgets"].as_array().unwrap();
    let flash = budgets.iter().find(|b| b["name"] == "flash").unwrap();
    assert_eq!(
        flash["budget"].as_f64().unwrap() as usize,
        160 * 1024,
        "{stdout}"
    );
    assert_eq!(flash["met"], true);
    // The board's RAM is a budget too; the unpruned network already fits 1 MiB.
    let ram = budgets.iter().find(|b| b["name"] == "ram").unwrap();
    let bytes = std::fs::read(run.join("model.tthr")).unwrap();
    let aligned = tether_deploy::AlignedBytes::from_slice(&bytes);
    let model = tether_deploy::Model::parse(&aligned).unwrap();
    assert_eq!(
        ram["achieved"].as_f64().unwrap() as usize,
        tether_deploy::cli::device_ram(&model, 1).unwrap()
    );
    assert_eq!(ram["met"], true);
    // A misspelt key is an error before training, naming the file.
    std::fs::write(&board, "name = \"x\"\nflsh = \"1KiB\"\n").unwrap();
    let (ok, _, err) = tether_train(&["prune", "--board", board.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("unknown field `flsh`") && err.contains("board.toml"),
        "{err}"
    );
    std::fs::remove_dir_all(&out).ok();
}

/// `--max-ram` with unit gates: the written model (its closed units cut out) runs in the
/// budget as a microcontroller plans it, using it, with the accuracy the run reports; a
/// budget below the least the network can take, or one that unstructured pruning cannot
/// reach, is refused before training with the figure named.
#[test]
fn prune_meets_a_ram_budget_by_cutting_out_closed_units() {
    if !mnist_is_there() {
        return;
    }
    // LeNet-300-100 at batch 1 needs 4336 bytes unpruned (the 784 inputs and the 300
    // first hidden units live at once) and 3140 with one unit per layer.
    let budget = 3600;
    let out = out_dir("ram");
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--structure",
        "unit",
        "--max-ram",
        "3600B",
        "--epochs",
        "4",
        "--train-limit",
        "4096",
        "--test-limit",
        "1000",
        "--batch",
        "64",
        "--gate-lr",
        "0.3",
        "--dual-lr",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let s = summary(&out);
    let b = s["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "ram")
        .unwrap_or_else(|| panic!("no RAM budget in the summary\n{stdout}"))
        .clone();
    let bytes = std::fs::read(out.join("model.tthr")).unwrap();
    let aligned = tether_deploy::AlignedBytes::from_slice(&bytes);
    let model = tether_deploy::Model::parse(&aligned).unwrap();
    let ram = tether_deploy::cli::device_ram(&model, 1).unwrap();
    assert_eq!(b["achieved"].as_f64().unwrap() as usize, ram);
    assert_eq!(b["predicted"].as_f64().unwrap() as usize, ram, "{stdout}");
    assert!(ram <= budget, "{ram} > {budget}\n{stdout}");
    assert!(
        ram as f64 >= 0.95 * budget as f64,
        "{ram} leaves more than 5% of {budget} unused\n{stdout}"
    );
    assert_eq!(b["met"], true);
    // Closed units are gone from the file: the first layer is narrower than 300.
    let first = model.tensors[0].dims.as_slice()[0];
    assert!(
        first < 300 && ram >= 4 * (784 + first),
        "{first} units, {ram} bytes"
    );
    // The narrowed model computes what the trained network did: its accuracy on the
    // same 1,000 test images is the one the run reports (up to argmax ties between the
    // two float summation orders).
    use tether_train::data::mnist::{ImageSet, MnistKind, Split};
    let test = ImageSet::load(MnistKind::Mnist, Split::Test).unwrap();
    let [mean, std] = tether_deploy::cli::MNIST_NORMALIZE;
    let mut plan =
        tether_deploy::Plan::new(model, &tether_deploy::PlanOptions::in_place(1)).unwrap();
    let correct = (0..1000)
        .filter(|&i| {
            let x: Vec<f32> = test.pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|&p| (p as f32 / 255.0 - mean) / std)
                .collect();
            let y = plan.run(&x).unwrap();
            tether_deploy::cli::argmax(y) == test.labels[i] as usize
        })
        .count();
    let reported = s["final"]["test_accuracy"].as_f64().unwrap();
    assert!(reported > 0.8, "{stdout}");
    assert!(
        (correct as f64 / 1000.0 - reported).abs() <= 0.002,
        "the written model: {correct} of 1000; the run: {reported}"
    );
    std::fs::remove_dir_all(&out).ok();

    for (args, want) in [
        (
            &["--structure", "unit", "--max-ram", "3KiB"][..],
            "needs at least 3.07 KiB (3140 B) of RAM at batch 1",
        ),
        (
            &["--max-ram", "4000B"][..],
            "prune whole units with --structure unit",
        ),
        (
            &["--method", "gmp", "--max-ram", "4000B"][..],
            "--method gmp prunes single weights",
        ),
    ] {
        let mut all = vec!["prune", "--epochs", "2", "--train-limit", "256"];
        all.extend_from_slice(args);
        let (ok, _, err) = tether_train(&all);
        assert!(!ok, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("epoch 1"), "refused before training: {err}");
    }
}
