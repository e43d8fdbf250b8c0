//! Time of one EMAN forward and backward pass on a cortical hemisphere (32,492 vertices;
//! `scripts/fetch-data brainspace`), on burn's flex or ndarray CPU backend: what a
//! `tether-train mesh` step costs, without the data loading and the optimizer.
//!
//! ```text
//! cargo run --release -p tether-models --example eman_timing -- [flex|ndarray] [CHANNELS] [BLOCKS]
//! ```

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use tether_deploy::mesh::io::read;
use tether_deploy::mesh::{GeometryOptions, MeshGeometry, RelTanOptions};
use tether_models::eman::{EmanGraph, EmanInput, EmanNetConfig};

fn run<B: AutodiffBackend>(name: &str, channels: usize, blocks: usize) {
    let path = std::path::Path::new("data-cache/brainspace/conte69_32k_lh.gii");
    let mesh = match read(path, false) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}: run scripts/fetch-data brainspace from the repository root");
            std::process::exit(1);
        }
    };
    let device = Default::default();
    let t = Instant::now();
    let geometry = MeshGeometry::new(&mesh, &GeometryOptions::default()).expect("a valid mesh");
    println!("geometry: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let graph = EmanGraph::<B>::new(&geometry, 2, &device);
    let input = EmanInput::RelTan(RelTanOptions::default());
    let x = input
        .features::<B>(&mesh, &geometry, &device)
        .expect("default options");
    let net = EmanNetConfig::new(1, 1, 5)
        .with_channels(channels)
        .with_blocks(blocks)
        .init::<B>(&device);
    for _ in 0..2 {
        let t = Instant::now();
        let loss = net.forward(x.clone(), &graph).sum();
        let _ = loss.clone().into_scalar();
        let forward = t.elapsed();
        let t = Instant::now();
        let _grads = loss.backward();
        println!(
            "{name}, {channels} channels, {blocks} blocks: forward {:.2} s, backward {:.2} s",
            forward.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "flex".into());
    let channels = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let blocks = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    match backend.as_str() {
        "ndarray" => run::<Autodiff<burn::backend::NdArray>>("ndarray", channels, blocks),
        _ => run::<Autodiff<burn::backend::Flex>>("flex", channels, blocks),
    }
}
