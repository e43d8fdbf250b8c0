//! Solve the GAN on a ring of 8 Gaussians as a finite zero-sum game between mixtures of
//! generators and classifiers (Parallel Nash Memory), from Rust, through the library job
//! that `tether-train gang` runs (no data to fetch):
//!
//! ```sh
//! cargo run --release -p tether-train --example gang_ring
//! ```

use burn::backend::{Autodiff, Flex};
use tether_train::tasks::gang_run::{GangMethod, GangRunConfig, MixtureKind, run};

fn main() -> anyhow::Result<()> {
    let config = GangRunConfig {
        data: MixtureKind::Ring8,
        method: GangMethod::Pnm,
        // A short run: 20 iterations of 500-step best responses.
        iterations: Some(20),
        response_steps: 500,
        out: "out/gang-example".into(),
        ..GangRunConfig::default()
    };
    let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
    let s = &report.summary;
    println!(
        "{}/{} modes covered by {} generators, exploitability {:.4} (0 at an equilibrium); \
         outputs in {}",
        s.modes_covered,
        s.modes,
        s.generators,
        s.exploitability,
        config.out.display()
    );
    Ok(())
}
