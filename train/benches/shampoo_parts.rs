//! Where Shampoo's step time goes on LeNet-5's fc1 (800 x 500), flex backend, one core:
//! the four products of a step (factor statistics `G G^T`, `G^T G`; preconditioning
//! `R_1 G`, `G R_2`) by burn's matmul and by faer (full and lower-triangle-only `G G^T`),
//! then one whole Shampoo step of the parameter at precondition frequency 100 (no root
//! computation in the timed steps; the gradient is passed shared, so it is read with one
//! copy, as the parameter is).
//!
//! Run: `cargo bench -p tether-train --bench shampoo_parts`

use std::hint::black_box;
use std::time::Instant;

use burn::backend::Flex;
use burn::optim::SimpleOptimizer;
use burn::tensor::{Distribution, Tensor};
use tether_train::optim::OptimizerArgs;
use tether_train::optim::OptimizerKind;

type B = Flex;

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{name}: {ms:.2} ms");
    ms
}

fn main() {
    let d = Default::default();
    let g = Tensor::<B, 2>::random([800, 500], Distribution::Normal(0.0, 1.0), &d);
    let r1 = Tensor::<B, 2>::random([800, 800], Distribution::Normal(0.0, 1.0), &d);
    let r2 = Tensor::<B, 2>::random([500, 500], Distribution::Normal(0.0, 1.0), &d);
    time("burn G G^T (800x500x800)", 20, || {
        black_box(g.clone().matmul(g.clone().transpose()));
    });
    time("burn G^T G (500x800x500)", 20, || {
        black_box(g.clone().transpose().matmul(g.clone()));
    });
    time("burn R1 G (800x800x500)", 20, || {
        black_box(r1.clone().matmul(g.clone()));
    });
    time("burn G R2 (800x500x500)", 20, || {
        black_box(g.clone().matmul(r2.clone()));
    });
    let gh: Vec<f32> = g.to_data().to_vec().unwrap();
    let gm = faer::MatRef::from_row_major_slice(&gh, 800, 500);
    let mut l = faer::Mat::<f32>::zeros(800, 800);
    time("faer G G^T", 20, || {
        faer::linalg::matmul::matmul(
            l.as_mut(),
            faer::Accum::Replace,
            gm,
            gm.transpose(),
            1.0,
            faer::Par::Seq,
        );
    });
    time("faer G G^T lower", 20, || {
        faer::linalg::matmul::triangular::matmul(
            l.as_mut(),
            faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
            faer::Accum::Replace,
            gm,
            faer::linalg::matmul::triangular::BlockStructure::Rectangular,
            gm.transpose(),
            faer::linalg::matmul::triangular::BlockStructure::Rectangular,
            1.0,
            faer::Par::Seq,
        );
    });

    let args = OptimizerArgs {
        precondition_frequency: 100,
        max_preconditioner_dim: 1024,
        ..OptimizerArgs::default().with_kind(OptimizerKind::Shampoo)
    };
    let opt = args.shampoo_config().build().unwrap();
    let mut state = None;
    let mut w = Tensor::<B, 2>::random([800, 500], Distribution::Normal(0.0, 0.1), &d);
    for _ in 0..101 {
        let (nw, s) = opt.step(1e-3, w.clone(), g.clone(), state.take());
        w = nw;
        state = s;
    }
    time("shampoo step fc1 (no root)", 20, || {
        let (nw, s) = opt.step(1e-3, w.clone(), g.clone(), state.take());
        w = nw;
        state = s;
    });
}
