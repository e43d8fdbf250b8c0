//! Thread CPU time of one inference, single thread (the automatic kernels, or those of
//! `--kernels dense|sparse`): the least
//! over `--trials` trials of about 10 ms of CPU time each. Unlike `tether-deploy bench`
//! (wall time), the figure does not count the time the thread waits for a core, so it
//! stays meaningful on a machine loaded with other work (`scripts/bench-vs-ort.py
//! --cpu-time` compares it with onnxruntime's thread CPU time). Linux only
//! (`CLOCK_THREAD_CPUTIME_ID`).
//!
//! ```sh
//! cargo run --release -p tether-deploy --example cpu_time -- --batch 32 [--kernels dense] MODEL.onnx...
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use tether_deploy::cli::{host_plan_options, load_model, parse_model};
use tether_deploy::plan::{KernelChoice, Plan};

#[cfg(target_os = "linux")]
fn thread_cpu_seconds() -> f64 {
    tether_deploy::cpu_time::thread_seconds()
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed")
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_seconds() -> f64 {
    panic!("thread CPU time is read on Linux only")
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut batch, mut trials, mut models) = (1usize, 15usize, Vec::new());
    let mut kernels = KernelChoice::Auto;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch" => batch = args.next().context("--batch N")?.parse()?,
            "--trials" => trials = args.next().context("--trials N")?.parse()?,
            "--kernels" => {
                kernels = match args.next().as_deref() {
                    Some("auto") => KernelChoice::Auto,
                    Some("dense") => KernelChoice::Dense,
                    Some("sparse") => KernelChoice::Sparse,
                    _ => bail!("--kernels auto|dense|sparse"),
                }
            }
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => models.push(a),
        }
    }
    if models.is_empty() || batch == 0 || trials == 0 {
        bail!("usage: cpu_time [--batch N] [--trials N] [--kernels K] MODEL...");
    }
    for path in &models {
        let path = Path::new(path);
        let bytes = load_model(path)?;
        let model = parse_model(&bytes, path)?;
        let per = model.input_shape().numel();
        let input: Vec<f32> = (0..per * batch)
            .map(|i| ((i * 31) % 17) as f32 / 17.0)
            .collect();
        let mut plan = Plan::new(model, &host_plan_options(batch, kernels))?;
        plan.run(&input)?;
        let t = thread_cpu_seconds();
        let mut reps = 0usize;
        while thread_cpu_seconds() - t < 0.01 {
            plan.run(&input)?;
            reps += 1;
        }
        let mut best = f64::INFINITY;
        for _ in 0..trials {
            let t = thread_cpu_seconds();
            for _ in 0..reps {
                std::hint::black_box(plan.run(&input)?[0]);
            }
            best = best.min((thread_cpu_seconds() - t) / reps as f64);
        }
        println!("{:.1} us {}", best * 1e6, path.display());
    }
    Ok(())
}
