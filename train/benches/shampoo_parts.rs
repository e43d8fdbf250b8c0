//! Where Shampoo's step time goes on LeNet-5's fc1 (800 x 500), flex backend, one core:
//! the four products of a step (factor statistics `G G^T`, `G^T G`; preconditioning
//! `R_1 G`, `G R_2`) by burn's matmul and by faer (full and lower-triangle-only `G G^T`),
//! then one whole Shampoo step of the parameter at precondition frequency 100 (no root
//! computation in the timed steps; the gradient is passed shared, so it is read with one
//! copy, as the parameter is).
//!
//! Times are the thread's CPU time (the machine is shared). Each product is reported with
//! its rate in GMAC/s (multiply-adds: a triangle counts half),
//! beside the core's f32 FMA peak measured by a loop of independent AVX-512 FMAs (where the
//! CPU has them): what the factor statistics would cost at peak is Shampoo's floor.
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

/// This thread's CPU time in seconds (`/proc/thread-self/schedstat`: time on the CPU, so
/// other processes sharing the core do not count); wall time where the file is missing.
fn cpu_now(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 * 1e-9)
}

/// Times `f` in CPU time (mean of `reps` after one call) and prints the rate of its `macs`
/// multiply-adds.
fn time<F: FnMut()>(name: &str, reps: usize, macs: f64, mut f: F) -> f64 {
    f();
    let wall = Instant::now();
    let start = cpu_now(wall);
    for _ in 0..reps {
        f();
    }
    let ms = (cpu_now(wall) - start) * 1e3 / reps as f64;
    if macs > 0.0 {
        println!("{name}: {ms:.2} ms, {:.1} GMAC/s", macs / ms * 1e-6);
    } else {
        println!("{name}: {ms:.2} ms");
    }
    ms
}

/// `iters` rounds of 12 independent 16-lane FMA chains (two FMA pipes of latency 4 or 5
/// need at least 8-10 in flight); the sum, so that nothing is optimised away.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains(iters: usize) -> f32 {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps,
    };
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc: [__m512; 12] = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in &mut acc {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut sum = _mm512_set1_ps(0.0);
    for r in acc {
        sum = _mm512_add_ps(sum, r);
    }
    _mm512_reduce_add_ps(sum)
}

/// The core's f32 FMA peak in GMAC/s (`None` without AVX-512).
fn fma_peak() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let iters = 20_000_000;
        // SAFETY: the CPU has AVX-512F (checked above).
        black_box(unsafe { fma_chains(1000) });
        let mut best = f64::INFINITY;
        let wall = Instant::now();
        for _ in 0..5 {
            let start = cpu_now(wall);
            // SAFETY: as above.
            black_box(unsafe { fma_chains(black_box(iters)) });
            best = best.min(cpu_now(wall) - start);
        }
        return Some(iters as f64 * 12.0 * 16.0 / best * 1e-9);
    }
    None
}

/// faer's product `dst (+)= lhs rhs` on the lower triangle of `dst` (`full`: the whole).
fn faer_product(
    dst: faer::MatMut<'_, f32>,
    lhs: faer::MatRef<'_, f32>,
    rhs: faer::MatRef<'_, f32>,
    lower: bool,
) {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul};
    let structure = if lower {
        BlockStructure::TriangularLower
    } else {
        BlockStructure::Rectangular
    };
    matmul(
        dst,
        structure,
        faer::Accum::Replace,
        lhs,
        BlockStructure::Rectangular,
        rhs,
        BlockStructure::Rectangular,
        1.0,
        faer::Par::Seq,
    );
}

fn main() {
    match fma_peak() {
        Some(p) => println!("f32 FMA peak (12 chains of 16 lanes): {p:.1} GMAC/s"),
        None => println!("f32 FMA peak: no AVX-512 on this CPU"),
    }
    let d = Default::default();
    let g = Tensor::<B, 2>::random([800, 500], Distribution::Normal(0.0, 1.0), &d);
    let r1 = Tensor::<B, 2>::random([800, 800], Distribution::Normal(0.0, 1.0), &d);
    let r2 = Tensor::<B, 2>::random([500, 500], Distribution::Normal(0.0, 1.0), &d);
    let (gg, ggl) = (800.0 * 800.0 * 500.0, 800.0 * 801.0 / 2.0 * 500.0);
    time("burn G G^T (800x500x800)", 20, gg, || {
        black_box(g.clone().matmul(g.clone().transpose()));
    });
    time(
        "burn G^T G (500x800x500)",
        20,
        500.0 * 500.0 * 800.0,
        || {
            black_box(g.clone().transpose().matmul(g.clone()));
        },
    );
    time("burn R1 G (800x800x500)", 20, gg, || {
        black_box(r1.clone().matmul(g.clone()));
    });
    time("burn G R2 (800x500x500)", 20, 500.0 * 500.0 * 800.0, || {
        black_box(g.clone().matmul(r2.clone()));
    });
    let gh: Vec<f32> = g.to_data().to_vec().unwrap();
    let gm = faer::MatRef::from_row_major_slice(&gh, 800, 500);
    let mut l = faer::Mat::<f32>::zeros(800, 800);
    time("faer G G^T", 20, gg, || {
        faer_product(l.as_mut(), gm, gm.transpose(), false)
    });
    time("faer G G^T lower", 20, ggl, || {
        faer_product(l.as_mut(), gm, gm.transpose(), true)
    });
    let mut r = faer::Mat::<f32>::zeros(500, 500);
    time("faer G^T G lower", 20, 500.0 * 501.0 / 2.0 * 800.0, || {
        faer_product(r.as_mut(), gm.transpose(), gm, true)
    });
    // The blocks of 128 (fc1 cut at 128: 28 blocks of up to 128 x 128).
    let b = gm.get(..128, ..128);
    let mut l128 = faer::Mat::<f32>::zeros(128, 128);
    time(
        "faer 128x128 block G G^T lower",
        200,
        128.0 * 129.0 / 2.0 * 128.0,
        || faer_product(l128.as_mut(), b, b.transpose(), true),
    );
    let r128 = faer::Mat::<f32>::from_fn(128, 128, |i, j| (i + j) as f32 * 1e-3);
    let mut y128 = faer::Mat::<f32>::zeros(128, 128);
    time("faer 128x128 block R G", 200, 128.0 * 128.0 * 128.0, || {
        faer_product(y128.as_mut(), r128.as_ref(), b, false)
    });

    // Whole steps of fc1, at the reference's factors and cut at 256 and 128, with their
    // products' multiply-adds (one triangle per factor plus the two mode products).
    for max_dim in [1024, 256, 128] {
        let args = OptimizerArgs {
            precondition_frequency: 100,
            max_preconditioner_dim: max_dim,
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
        let macs: f64 = tether_train::optim::shampoo::BlockPlan::new(&[800, 500], max_dim, true)
            .blocks
            .iter()
            .map(|b| {
                let n = b.numel() as f64;
                b.shape
                    .iter()
                    .map(|&d| n * (d as f64 + 1.0) / 2.0 + n * d as f64)
                    .sum::<f64>()
            })
            .sum();
        time(
            &format!("shampoo step fc1, factors up to {max_dim} (no root)"),
            20,
            macs,
            || {
                let (nw, s) = opt.step(1e-3, w.clone(), g.clone(), state.take());
                w = nw;
                state = s;
            },
        );
    }
}
