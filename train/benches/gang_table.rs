//! The GANGs benchmark (issue: Generative Adversarial Network Games, acceptance table).
//!
//! For each data set (ring of 8, grid of 25) and seed, runs `tether-train gang` with
//! Parallel Nash Memory, then the standard GAN with the same number of gradient steps per
//! player (PNM's total over all its responses, halved: a GAN step moves both networks),
//! and writes `out/bench/gang_table.md` and `.json`: modes covered per seed, the fraction
//! of high-quality samples, and the exploitability measured by fresh best responses.
//!
//! Each run lives in `out/bench/gang/<name>/` (samples.png, per-iteration scatter plots,
//! payoff.csv, mixtures.json) and is skipped when its `summary.json` exists (`--fresh`
//! reruns).
//!
//! ```text
//! cargo bench -p tether-train --bench gang_table
//! ```

mod common;

use common::{SweepArgs, read_json};
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use tether_train::io::write_atomic;

#[derive(Parser, Debug)]
#[command(about = "GANGs: Parallel Nash Memory vs a standard GAN on 2D mixtures")]
struct Args {
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    seeds: Vec<u64>,
    /// Data sets.
    #[arg(long, value_delimiter = ',', default_value = "ring8,grid25")]
    data: Vec<String>,
    /// PNM iterations on the ring (the grid gets `--grid-iterations`).
    #[arg(long, default_value_t = 80)]
    ring_iterations: usize,
    /// Most PNM iterations on the grid (it needs at least one generator per mode; at 80
    /// no seed had reached a resource-bounded equilibrium, at 130-144 they all did).
    #[arg(long, default_value_t = 160)]
    grid_iterations: usize,
    /// Adam steps per best response (the CLI's default; 500 left PNM's ring generators
    /// 0.07 off their modes and the grid's classifiers too weak to see 25 modes).
    #[arg(long, default_value_t = 1000)]
    response_steps: usize,
    /// Weight of the classifiers' background term (the CLI's default); both methods get it.
    #[arg(long, default_value_t = 0.5)]
    background: f64,
    #[command(flatten)]
    sweep: SweepArgs,
}

fn run_dir(a: &Args, data: &str, method: &str, seed: u64) -> PathBuf {
    a.sweep
        .out
        .join("gang")
        .join(format!("{data}-{method}-s{seed}"))
}

fn execute(a: &Args, data: &str, method: &str, seed: u64, extra: &[String]) -> anyhow::Result<()> {
    let dir = run_dir(a, data, method, seed);
    if dir.join("summary.json").exists() && !a.sweep.fresh {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("run.log"))?;
    let (iterations, steps, background) = if data == "grid25" {
        (a.grid_iterations, a.response_steps, a.background)
    } else {
        (a.ring_iterations, a.response_steps, a.background)
    };
    let started = std::time::Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(["gang", "--data", data, "--method", method, "--quiet"])
        .args(["--iterations", &iterations.to_string()])
        .args(["--response-steps", &steps.to_string()])
        .args(["--background", &background.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .arg("--out")
        .arg(&dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "{data} {method} seed {seed} failed ({status}); see {}",
        dir.join("run.log").display()
    );
    println!(
        "{data} {method} seed {seed}: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if !a.sweep.report_only {
        for data in &a.data {
            for &seed in &a.seeds {
                execute(&a, data, "pnm", seed, &[])?;
                let pnm = read_json(&run_dir(&a, data, "pnm", seed).join("summary.json"))?;
                let steps = pnm["gradient_steps"].as_u64().unwrap_or(0) / 2;
                execute(
                    &a,
                    data,
                    "gan",
                    seed,
                    &["--gan-steps".into(), steps.max(1).to_string()],
                )?;
            }
        }
    }
    report(&a)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

fn report(a: &Args) -> anyhow::Result<()> {
    let mut md = format!(
        "Seeds {:?}; {} Adam steps per best response (4 restarts per generator response); \
         classifier background weight {} for both methods; the GAN gets PNM's gradient steps per player. Modes covered: at least 20 of 2,500 \
         samples within 3 standard deviations (PacGAN's threshold); high quality: within \
         3 standard deviations of a mode; exploitability: u_G(BR_G, s_C) - u_G(s_G, BR_C) \
         with fresh responses of twice the response budget (0 at an equilibrium).\n\n\
         PNM iterations: where each seed stopped, * at a resource-bounded equilibrium \
         (epsilon reached) rather than the iteration cap.\n\n\
         | data | method | modes covered per seed | min | high quality % | exploitability | generators used | PNM iterations | gradient steps | time (s) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        a.seeds, a.response_steps, a.background
    );
    let mut all = Vec::new();
    for data in &a.data {
        for method in ["pnm", "gan"] {
            let runs: Vec<Value> = a
                .seeds
                .iter()
                .filter_map(|&s| read_json(&run_dir(a, data, method, s).join("summary.json")).ok())
                .collect();
            if runs.is_empty() {
                continue;
            }
            let get = |k: &str| -> Vec<f64> {
                runs.iter()
                    .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
                    .collect()
            };
            let modes = get("modes_covered");
            let total = runs[0]["modes"].as_u64().unwrap_or(0);
            let (hq, hq_sd) = mean_sd(&get("high_quality"));
            let (ex, ex_sd) = mean_sd(&get("exploitability"));
            let (gens, _) = mean_sd(&get("generators"));
            let (steps, _) = mean_sd(&get("gradient_steps"));
            let (secs, _) = mean_sd(&get("seconds"));
            let min = modes.iter().copied().fold(f64::INFINITY, f64::min);
            let iterations = if method == "pnm" {
                runs.iter()
                    .map(|r| {
                        let star = if r["converged"].as_bool() == Some(true) {
                            "*"
                        } else {
                            ""
                        };
                        format!("{}{star}", r["iterations"].as_u64().unwrap_or(0))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                "-".into()
            };
            md.push_str(&format!(
                "| {data} | {method} | {} | {min}/{total} | {:.1} ± {:.1} | {ex:.3} ± {ex_sd:.3} | {gens:.1} | {iterations} | {steps:.0} | {secs:.0} |\n",
                modes
                    .iter()
                    .map(|m| format!("{m}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                100.0 * hq,
                100.0 * hq_sd,
            ));
            all.push(serde_json::json!({"data": data, "method": method, "runs": runs}));
        }
    }
    let table = a.sweep.out.join("gang_table.md");
    std::fs::create_dir_all(&a.sweep.out)?;
    write_atomic(&table, md.as_bytes())?;
    write_atomic(
        &a.sweep.out.join("gang_table.json"),
        serde_json::to_string_pretty(&all)?.as_bytes(),
    )?;
    print!("{md}");
    println!("wrote {}", table.display());
    Ok(())
}
