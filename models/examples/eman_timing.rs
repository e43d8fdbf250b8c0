use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use std::time::Instant;
use tether_deploy::mesh::io::read;
use tether_deploy::mesh::{GeometryOptions, MeshGeometry, RelTanOptions};
use tether_models::eman::{EmanGraph, EmanInput, EmanNetConfig};

fn run<B: AutodiffBackend>(name: &str) {
    let device = Default::default();
    let mesh = read(
        std::path::Path::new("data-cache/brainspace/conte69_32k_lh.gii"),
        false,
    )
    .unwrap();
    let geometry = MeshGeometry::new(&mesh, &GeometryOptions::default()).unwrap();
    let graph = EmanGraph::<B>::new(&geometry, 2, &device);
    let input = EmanInput::RelTan(RelTanOptions::default());
    let x = input.features::<B>(&mesh, &geometry, &device).unwrap();
    let net = EmanNetConfig::new(1, 1, 5).init::<B>(&device);
    for _ in 0..2 {
        let t = Instant::now();
        let y = net.forward(x.clone(), &graph);
        let s = y.sum();
        let _ = s.clone().into_scalar();
        let f = t.elapsed();
        let t = Instant::now();
        let _g = s.backward();
        println!("{name}: forward {f:?} backward {:?}", t.elapsed());
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    if which == "ndarray" {
        run::<Autodiff<burn::backend::NdArray>>("ndarray");
    } else {
        run::<Autodiff<burn::backend::Flex>>("flex");
    }
}
