//! Prune LeNet-300-100 on MNIST to 10% of its weights from Rust, through the library job
//! that `tether-train prune` runs (`scripts/fetch-data mnist` first):
//!
//! ```sh
//! cargo run --release -p tether-train --example prune_lenet
//! ```

use burn::backend::{Autodiff, Flex};
use tether_train::tasks::prune_run::{Model, PruneConfig, run};

fn main() -> anyhow::Result<()> {
    let config = PruneConfig {
        model: Model::Lenet300.into(),
        target_density: Some(0.1),
        out: "out/prune-example".into(),
        // The rest as the CLI's defaults: 3 epochs of Adam, the multiplier by nuPI with
        // dual restarts, the gates' learning rate decayed once the target is met.
        ..PruneConfig::default()
    };
    // `true`: a progress bar and a line per epoch, as the CLI shows.
    let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
    for (i, layer) in report.layers.iter().enumerate() {
        println!(
            "layer {i}: kept {} of {} weights",
            layer.kept, layer.gated_params
        );
    }
    println!(
        "test accuracy {:.4} at density {:.4} (target {}); outputs in {}",
        report.test_accuracy,
        report.density,
        config.target_density.unwrap_or(1.0),
        config.out.display()
    );
    Ok(())
}
