//! A real photo through the codec: Kodak's kodim23, downscaled 8x (96x64), compressed by
//! L0onie at 0.6 bpp. Skips (with a message) where `../shared/data/kodak` is absent.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use tether_compress::codec::{EncodeOptions, Method, budget_bits, encode};
use tether_compress::fit::{FitSettings, L0onieSettings};
use tether_compress::render::decode_file;
use tether_compress::{Image, image::psnr};
use tether_train::constrained::{DualOptimizer, NuPiConfig};

fn kodak(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/kodak")
        .join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} is absent (the shared Kodak set)",
            path.display()
        );
        None
    }
}

#[test]
fn l0onie_meets_and_uses_the_budget_on_a_kodak_photo() {
    let Some(path) = kodak("kodim23.png") else {
        return;
    };
    let image = Image::load(&path).unwrap().downscale(8).unwrap();
    let target = 0.6;
    let options = EncodeOptions {
        method: Method::L0onie,
        bpp: target,
        fit: FitSettings {
            steps: 400,
            lr: 1e-3,
            progress: false,
            checkpoint: None,
        },
        l0onie: L0onieSettings {
            gate_lr: 0.05,
            dual: DualOptimizer::NuPi(NuPiConfig::new(0.05).with_kp(2.0)),
            init_drop_rate: 0.05,
            init_spread: 0.5,
            eval_every: 10,
            sample_gates: true,
            prune_fraction: 0.5,
            value_bits: 16,
        },
        overparam: 1.3,
        value_bits: 16,
        coolchic: tether_compress::coolchic::fit::CoolChicSettings {
            lr: 1e-2,
            round_lr: 0.05,
            learn_upsampling: false,
            noise_fraction: 0.8,
            temperature: (0.3, 0.1),
            kumaraswamy: (2.0, 1.0),
            dual: tether_compress::coolchic::dual::RateDualConfig::default(),
            eval_every: 10,
            weight_exponent: 8,
            search_at: 0.5,
        },
        seed: 0,
    };
    let out = encode::<Autodiff<Flex>>(&image, &options, &Default::default()).unwrap();
    // The constraint met the budget (no magnitude fallback) and used it.
    assert_eq!(out.magnitude_pruned(), 0);
    assert!(out.bytes.len() * 8 <= budget_bits(target, &image));
    assert!(out.bpp >= 0.9 * target, "{} bpp", out.bpp);
    // The decoder sees what the encoder reported, and it is the picture: far closer to
    // it than the image's own mean colour (the flat image at 13.8 dB here). The bound, +3
    // dB (half the mean colour's squared error), is set from the spread over seeds: 400
    // steps from seeds 0-17 gave 17.4-20.2 dB (mean 18.7) with the fused gates and
    // 17.4-21.0 dB (mean 19.1) with the tensor-op gates before them. The +6 dB this test
    // asked before held for only 6 of those 18 seeds, seed 0 among them.
    let decoded = decode_file(&out.bytes).unwrap();
    assert_eq!(psnr(&image, &decoded).unwrap(), out.psnr);
    let mut sum = [0u64; 3];
    for (i, &v) in image.rgb.iter().enumerate() {
        sum[i % 3] += u64::from(v);
    }
    let n = image.pixels() as u64;
    let mean = Image::new(
        image.width,
        image.height,
        sum.map(|s| (s / n) as u8).repeat(image.pixels()),
    )
    .unwrap();
    let baseline = psnr(&image, &mean).unwrap();
    assert!(
        out.psnr > baseline + 3.0,
        "{} dB vs the mean colour's {baseline}",
        out.psnr
    );
}
