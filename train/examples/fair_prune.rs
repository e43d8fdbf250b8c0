//! Prune an MLP on Adult to 10% of its hidden weights and fine-tune it with every race x
//! sex group's excess accuracy gap bounded by 0.02 (CEAG), from Rust, through the library
//! job that `tether-train fair-prune` runs (`scripts/fetch-data adult` first):
//!
//! ```sh
//! cargo run --release -p tether-train --example fair_prune
//! ```

use burn::backend::{Autodiff, Flex};
use tether_train::tasks::fair_run::{FairConfig, FairMethod, run};

fn main() -> anyhow::Result<()> {
    let config = FairConfig {
        method: FairMethod::Ceag,
        sparsity: 0.9,
        epsilon: 0.02,
        groups: Some("race-sex".into()),
        out: "out/fair-example".into(),
        // The rest as the CLI's defaults: a 256-128 MLP trained dense for 10 epochs,
        // pruned by magnitude, fine-tuned for 20 with the multipliers by gradient ascent.
        ..FairConfig::default()
    };
    // `true`: progress bars and a line per phase, as the CLI shows.
    let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
    for g in &report.groups {
        println!(
            "{:>28}: accuracy {:.4} -> {:.4}, excess gap {:+.4}",
            g.name, g.train_accuracy[0], g.train_accuracy[2], g.train_gap[1]
        );
    }
    println!(
        "test accuracy {:.4} (dense {:.4}), {} groups over epsilon; outputs in {}",
        report.fine_tuned.test_accuracy,
        report.dense.1,
        report.train_groups_over_epsilon,
        config.out.display()
    );
    Ok(())
}
