//! The classical baselines alone (JPEG, WebP, and AVIF with `--features avif`) on a folder
//! of images, as `eval` computes them: each codec's curve averaged over the images at
//! equal quality, then its PSNR interpolated at the given rates ("n/a" where the curve
//! has no point, e.g. JPEG below its header cost). Also each codec's encode time.
//!
//! ```sh
//! cargo run --release -p tether-compress --features avif --example classic_curves -- \
//!     ../shared/data/kodak 4 0.07,0.15,0.3,0.6
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use tether_compress::classic;
use tether_compress::image::Image;
use tether_compress::rd::Curve;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: classic_curves FOLDER DOWNSCALE BPP[,BPP...]";
    let folder = PathBuf::from(args.next().context(usage)?);
    let downscale: usize = args.next().context(usage)?.parse()?;
    let rates: Vec<f64> = args
        .next()
        .context(usage)?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .with_context(|| format!("cannot read {}", folder.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "png"));
    paths.sort();
    let images: Vec<Image> = paths
        .iter()
        .map(|p| Ok(Image::load(p)?.downscale(downscale)?))
        .collect::<anyhow::Result<_>>()?;
    println!("{} images, downscaled {downscale}x", images.len());
    print!("| codec | encode + decode per image |");
    for r in &rates {
        print!(" PSNR at {r} bpp |");
    }
    println!();
    println!("|---|---|{}", "---|".repeat(rates.len()));
    for codec in classic::all() {
        let qualities = codec.curve_qualities();
        let started = Instant::now();
        let points = classic::curve(codec.as_ref(), &images, &qualities)?;
        let per_image = started.elapsed().as_secs_f64() / (images.len() * qualities.len()) as f64;
        let curve = Curve::new(codec.name(), points);
        print!("| {} | {:.1} ms |", codec.name(), per_image * 1e3);
        for &r in &rates {
            match curve.interpolate_psnr(r) {
                Some(p) => print!(" {p:.2} |"),
                None => print!(" n/a |"),
            }
        }
        println!();
    }
    Ok(())
}
