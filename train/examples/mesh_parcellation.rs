//! Train an equivariant mesh attention network (EMAN) to parcellate the cortex and test
//! it on the other hemisphere, as is and randomly moved, from Rust, through the library job
//! that `tether-train mesh` runs (`scripts/fetch-data brainspace` first):
//!
//! ```sh
//! cargo run --release -p tether-train --example mesh_parcellation
//! ```

use burn::backend::{Autodiff, Flex};
use tether_train::tasks::mesh_run::{MeshConfig, MeshInput, run};

fn main() -> anyhow::Result<()> {
    let config = MeshConfig {
        input: MeshInput::Reltan,
        steps: 100,
        out: "out/mesh-example".into(),
        // The rest as the CLI's defaults: Mesulam's 5 classes, 8 channels up to rotation
        // order 2, one residual block, Adam at 1e-2, 4 transformed copies of the test mesh.
        ..MeshConfig::default()
    };
    let report = run::<Autodiff<Flex>>(&config, &Default::default(), true)?;
    let s = &report.summary;
    println!(
        "test accuracy {:.4}, on the transformed copies {:.4} (EMAN is invariant); \
         tether-deploy within {:.1e} of burn; outputs in {}",
        s.test_accuracy,
        s.transformed_mean,
        s.deploy_max_diff,
        config.out.display()
    );
    Ok(())
}
