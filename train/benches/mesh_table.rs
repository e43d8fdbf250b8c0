//! The EMAN benchmark (issue: equivariant mesh attention networks, acceptance table).
//!
//! For each input (RelTan: EMAN; XYZ: the same network fed raw coordinates) and seed,
//! runs `tether-train mesh` (train on the left conte69 hemisphere, test on the mirrored
//! right one, as is and under random rotations, translations, scalings, permutations and
//! gauge changes) and writes `out/bench/mesh_table.md` and `.json`.
//!
//! Each run lives in `out/bench/mesh/<input>-s<seed>/` and is skipped when its
//! `summary.json` exists (`--fresh` reruns).
//!
//! ```text
//! cargo bench -p tether-train --bench mesh_table
//! ```

mod common;

use common::{SweepArgs, read_json};
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use tether_train::io::write_atomic;

#[derive(Parser, Debug)]
#[command(about = "EMAN vs the XYZ baseline: cortical parcellation under symmetry transformations")]
struct Args {
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// Inputs.
    #[arg(long, value_delimiter = ',', default_value = "reltan,xyz")]
    inputs: Vec<String>,
    /// Training steps (the CLI's default).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Transformed copies of the test hemisphere.
    #[arg(long, default_value_t = 4)]
    transforms: usize,
    #[command(flatten)]
    sweep: SweepArgs,
}

fn run_dir(a: &Args, input: &str, seed: u64) -> PathBuf {
    a.sweep.out.join("mesh").join(format!("{input}-s{seed}"))
}

fn execute(a: &Args, input: &str, seed: u64) -> anyhow::Result<()> {
    let dir = run_dir(a, input, seed);
    if dir.join("summary.json").exists() && !a.sweep.fresh {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("run.log"))?;
    let started = std::time::Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(["mesh", "--input", input, "--quiet"])
        .args(["--steps", &a.steps.to_string()])
        .args(["--transforms", &a.transforms.to_string()])
        .args(["--seed", &seed.to_string()])
        .arg("--out")
        .arg(&dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "{input} seed {seed} failed ({status}); see {}",
        dir.join("run.log").display()
    );
    println!(
        "{input} seed {seed}: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if !a.sweep.report_only {
        for input in &a.inputs {
            for &seed in &a.seeds {
                execute(&a, input, seed)?;
            }
        }
    }
    report(&a)
}

fn report(a: &Args) -> anyhow::Result<()> {
    let mut md = format!(
        "Mesulam parcellation (5 classes, medial wall included) of the conte69 32k surfaces: \
         train on the left hemisphere, test on the right one mirrored into the left's pose; \
         transformed: {} copies of the test hemisphere, each randomly rotated (uniform on \
         SO(3)), scaled (log-uniform in [1/4, 4]), translated (up to 100 mm per axis), its \
         vertices permuted and every tangent frame turned by a random angle. Seeds {:?}; \
         {} full-mesh Adam steps.\n\n\
         | input | train acc. | test acc. | transformed test acc. (mean; min) | drop | \
         parameters | s/step | deploy vs burn max abs diff | deploy ms / burn ms (test mesh) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        a.transforms, a.seeds, a.steps
    );
    let mut all = Vec::new();
    for input in &a.inputs {
        for &seed in &a.seeds {
            let Ok(r) = read_json(&run_dir(a, input, seed).join("summary.json")) else {
                continue;
            };
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            let moved: Vec<f64> = r["transformed_accuracy"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            let min = moved.iter().copied().fold(f64::INFINITY, f64::min);
            let name = if input == "reltan" {
                "RelTan (EMAN)"
            } else {
                "XYZ (baseline)"
            };
            md.push_str(&format!(
                "| {name}, seed {seed} | {:.4} | {:.4} | {:.4}; {min:.4} | {:+.4} | {} | {:.2} | {:.1e} | {:.0} / {:.0} |\n",
                f("train_accuracy"),
                f("test_accuracy"),
                f("transformed_mean"),
                f("transformed_mean") - f("test_accuracy"),
                r["parameters"],
                f("seconds_per_step"),
                f("deploy_max_diff"),
                f("deploy_ms"),
                f("burn_ms"),
            ));
            all.push(r);
        }
    }
    std::fs::create_dir_all(&a.sweep.out)?;
    let table = a.sweep.out.join("mesh_table.md");
    write_atomic(&table, md.as_bytes())?;
    write_atomic(
        &a.sweep.out.join("mesh_table.json"),
        serde_json::to_string_pretty(&all)?.as_bytes(),
    )?;
    print!("{md}");
    println!("wrote {}", table.display());
    Ok(())
}
