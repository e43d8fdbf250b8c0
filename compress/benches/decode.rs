//! Decode time of a full-size (768x512) Kodak image through `tether-deploy` on one core:
//! COIN's 0.3 bpp network (10x28, dense) and an L0onie-shaped one (10x40 at the density
//! that fits the same budget, sparse), each file decoded end to end (parse, validate,
//! plan, evaluate every pixel, round to 8 bits).
//!
//! `cargo bench -p tether-compress --bench decode [-- --rounds 5]`

use std::time::Instant;

use tether_compress::format::CompressedImage;
use tether_compress::render::decode_file;
use tether_compress::weights::{Architecture, LayerWeights, SirenWeights};

/// A SIREN-initialised network with a fraction `density` of its weights kept (a fixed
/// pseudo-random pattern): decode time depends on the shape and the sparsity, not on
/// the values.
fn network(arch: Architecture, density: f64) -> SirenWeights {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let layers = arch
        .layer_dims()
        .into_iter()
        .enumerate()
        .map(|(k, (i, o))| {
            let c = if k == 0 {
                1.0 / i as f64
            } else {
                (6.0 / i as f64).sqrt() / 30.0
            };
            LayerWeights {
                d_in: i,
                d_out: o,
                weight: (0..i * o)
                    .map(|_| {
                        let keep = k == 0 || next() < density;
                        let v = (2.0 * next() - 1.0) * c;
                        if keep { v as f32 } else { 0.0 }
                    })
                    .collect(),
                bias: (0..o).map(|_| ((2.0 * next() - 1.0) * c) as f32).collect(),
            }
        })
        .collect();
    SirenWeights { arch, layers }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize);
    let (w, h) = (768, 512);
    let cases = [
        ("COIN 10x28 dense", Architecture::new(10, 28), 1.0),
        (
            "L0onie 10x40 at density 0.45",
            Architecture::new(10, 40),
            0.45,
        ),
        (
            "L0onie 10x64 at density 0.2",
            Architecture::new(10, 64),
            0.2,
        ),
        (
            "L0onie 10x96 at density 0.1",
            Architecture::new(10, 96),
            0.1,
        ),
    ];
    println!(
        "| network | file bytes | bpp | decode (ms, best of {rounds}) | Mpixel/s | all dense (ms) | all sparse (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let time = |weights: &SirenWeights, sparse_density: f64| -> f64 {
        let bytes = weights.to_deploy_with(sparse_density).expect("model");
        let model = tether_deploy::Model::parse(&bytes).expect("parses");
        let mut plan = tether_deploy::Plan::new(
            model,
            &tether_deploy::PlanOptions {
                batch: 4096,
                ..Default::default()
            },
        )
        .expect("plans");
        let coords = tether_compress::grid::coordinates(w, h, 0..h);
        let mut best = f64::INFINITY;
        for _ in 0..rounds {
            let t = Instant::now();
            for chunk in coords.chunks(4096 * 2) {
                std::hint::black_box(plan.run(chunk).expect("runs"));
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    };
    for (name, arch, density) in cases {
        let bytes = CompressedImage {
            width: w,
            height: h,
            value_bits: 16,
            weights: network(arch, density).rounded_to_f16(),
        }
        .encode()
        .expect("encodes");
        let mut best = f64::INFINITY;
        for _ in 0..rounds {
            let t = Instant::now();
            let img = decode_file(&bytes).expect("decodes");
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!((img.width, img.height), (w, h));
        }
        let weights = network(arch, density).rounded_to_f16();
        println!(
            "| {name} | {} | {:.3} | {:.0} | {:.2} | {:.0} | {:.0} |",
            bytes.len(),
            CompressedImage::bpp(bytes.len(), w * h),
            best * 1e3,
            (w * h) as f64 / best / 1e6,
            time(&weights, 0.0) * 1e3,
            time(&weights, 1.0) * 1e3,
        );
    }
}
