//! Writes UCI Adult as the numeric table a user brings to `--data`: the one-hot encoded
//! features (named `column=value`, pandas' `get_dummies` naming with `=`), the label
//! `income` and the text columns `race` and `sex` (`scripts/fetch-data adult` first):
//!
//! ```sh
//! cargo run --release -p tether-train --example adult_csv -- out/adult-csv
//! tether-train fair-prune --model train/tests/fixtures/adult_mlp.onnx \
//!     --data out/adult-csv/adult.csv --test-data out/adult-csv/adult_test.csv \
//!     --label-column income --group-column race,sex
//! ```
//!
//! The encoder (standardised numeric columns, one-hot categories) is fitted on the
//! training rows only, as a user's preprocessing should be.

use anyhow::Context;
use tether_train::data::adult::{AdultEncoder, AdultSplit, load};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "out/adult-csv".into());
    let dir = std::path::Path::new(&dir);
    let train = load(AdultSplit::Train).context("scripts/fetch-data adult first")?;
    let test = load(AdultSplit::Test)?;
    let enc = AdultEncoder::fit(&train);
    for (rows, name) in [(&train, "adult.csv"), (&test, "adult_test.csv")] {
        let path = dir.join(name);
        tether_train::io::write_atomic(&path, enc.to_csv(rows).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{}: {} rows, {} features",
            path.display(),
            rows.len(),
            enc.dim()
        );
    }
    Ok(())
}
