//! Writes the first N MNIST training images as the image folder a user brings to `--data`
//! (`OUT/<digit>/<index>.png`, 28x28 grey PNGs; `scripts/fetch-data mnist` first): the
//! folders the streaming benchmark compares (BENCHMARKS.md, "Streaming data"):
//!
//! ```sh
//! cargo run --release -p tether-train --example mnist_folder -- /tmp/mnist-10k 10000
//! cargo run --release -p tether-train --example mnist_folder -- /tmp/mnist-40k 40000
//! ```
//!
//! An existing folder is refused rather than mixed with what it holds.

use anyhow::Context;
use tether_train::data::mnist::{ImageSet, MnistKind, SIDE, Split};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(out), Some(n)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: mnist_folder OUT N (the first N training images)");
    };
    let n: usize = n
        .parse()
        .with_context(|| format!("N {n:?}: expected a count"))?;
    let out = std::path::Path::new(&out);
    anyhow::ensure!(!out.exists(), "{} exists: give a new folder", out.display());
    let train =
        ImageSet::load(MnistKind::Mnist, Split::Train).context("scripts/fetch-data mnist first")?;
    anyhow::ensure!(
        n > 0 && n <= train.len(),
        "N must lie in 1..={}, got {n}",
        train.len()
    );
    // Written under a temporary name and renamed: never a half-written folder.
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let px = SIDE * SIDE;
    for i in 0..n {
        let dir = partial.join(train.labels[i].to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let img = image::GrayImage::from_raw(
            SIDE as u32,
            SIDE as u32,
            train.pixels[i * px..(i + 1) * px].to_vec(),
        )
        .context("an image of 28x28 bytes")?;
        let path = dir.join(format!("{i:05}.png"));
        img.save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::rename(&partial, out)?;
    println!("{}: {n} images in 10 class folders", out.display());
    Ok(())
}
