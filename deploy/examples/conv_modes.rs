//! Thread CPU time of the implicit AVX-512 convolution in each mode on the convolution
//! shapes of the `scripts/bench-vs-ort.py` networks (the least of `--trials` trials of
//! about 5 ms each), to check `implicit_conv::mode`'s choice against measurement. Linux,
//! x86-64 with AVX-512F.
//!
//! With `--sparse`, the same shapes pruned at random to several densities: the sparse
//! direct kernel (`sparse_conv`) against the dense mode the cycle count picks, and the
//! plan's choice between them (the fewer estimated cycles) against the faster measured:
//! each line ends with the chosen kernel's time over the faster one's (the plan must stay
//! within 1.10).
//!
//! With `--training`, the training shapes instead (the small ResNet's and LeNet-5's layers
//! at batch 128 and 64), where `tether_models::conv` runs the planes mode.
//!
//! ```sh
//! cargo run --release -p tether-deploy --example conv_modes [-- --trials 5 --shape INDEX --sparse --training]
//! ```

use tether_deploy::format::Csr;
use tether_deploy::kernels::conv::ConvShape;
use tether_deploy::kernels::implicit_conv::{self, Act, Mode};
use tether_deploy::kernels::{sparse, sparse_conv, winograd};

/// The least thread CPU time per call of `run` over `trials` trials of about 5 ms, in us.
fn time(trials: usize, run: &mut dyn FnMut()) -> f64 {
    tether_deploy::cpu_time::least_per_call_us(trials, run)
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed")
}

fn main() {
    if !implicit_conv::available() {
        eprintln!("no AVX-512F on this CPU: nothing to measure");
        return;
    }
    let mut args = std::env::args().skip(1);
    let (mut trials, mut only, mut sparse_only, mut training) = (5usize, None, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sparse" => sparse_only = true,
            "--training" => training = true,
            "--trials" => trials = args.next().and_then(|t| t.parse().ok()).unwrap_or(5),
            "--shape" => only = args.next().and_then(|t| t.parse::<usize>().ok()),
            _ => {
                eprintln!("usage: conv_modes [--trials N] [--shape INDEX] [--sparse] [--training]");
                std::process::exit(2);
            }
        }
    }
    // (c, h, w, m, k, stride, pad, batch)
    let inference = [
        (16, 32, 32, 16, 3, 1, 1, 1),
        (16, 32, 32, 32, 3, 2, 1, 1),
        (32, 16, 16, 32, 3, 1, 1, 1),
        (32, 16, 16, 64, 3, 2, 1, 1),
        (64, 8, 8, 64, 3, 1, 1, 1),
        (16, 32, 32, 16, 3, 1, 1, 32),
        (32, 16, 16, 32, 3, 1, 1, 32),
        (64, 8, 8, 64, 3, 1, 1, 32),
        (64, 56, 56, 64, 3, 1, 1, 1),
        (128, 28, 28, 128, 3, 1, 1, 1),
        (256, 14, 14, 256, 3, 1, 1, 1),
        (512, 7, 7, 512, 3, 1, 1, 1),
        (128, 28, 28, 256, 3, 2, 1, 1),
        (16, 112, 112, 96, 1, 1, 0, 1),
        (96, 56, 56, 24, 1, 1, 0, 1),
        (160, 7, 7, 960, 1, 1, 0, 1),
        (320, 7, 7, 1280, 1, 1, 0, 1),
        (8, 32, 32, 48, 1, 1, 0, 32),
        (48, 16, 16, 8, 1, 1, 0, 32),
        (160, 2, 2, 1280, 1, 1, 0, 32),
        (64, 56, 56, 128, 1, 2, 0, 1),
        (160, 2, 2, 960, 1, 1, 0, 1),
        (480, 2, 2, 80, 1, 1, 0, 1),
        (80, 2, 2, 480, 1, 1, 0, 1),
        (16, 16, 16, 96, 1, 1, 0, 1),
        (48, 4, 4, 288, 1, 1, 0, 1),
        // The small ResNet's stem (3 input channels: the Winograd transforms' share is
        // largest) and resnet18's 3x3 layers at batch 32.
        (3, 32, 32, 16, 3, 1, 1, 1),
        (3, 32, 32, 16, 3, 1, 1, 32),
        (64, 56, 56, 64, 3, 1, 1, 32),
        (512, 7, 7, 512, 3, 1, 1, 32),
        // The small ResNet's 1x1 stride-2 skips, batch 1 and 32.
        (16, 32, 32, 32, 1, 2, 0, 1),
        (32, 16, 16, 64, 1, 2, 0, 1),
        (16, 32, 32, 32, 1, 2, 0, 32),
        (32, 16, 16, 64, 1, 2, 0, 32),
        // mobilenet_v2's 1x1 layers with few outputs on large planes, batch 32.
        (96, 56, 56, 24, 1, 1, 0, 32),
        (32, 112, 112, 16, 1, 1, 0, 32),
        (144, 56, 56, 24, 1, 1, 0, 32),
    ];
    // The training shapes (`--training`): the small ResNet's and LeNet-5's layers at batch
    // 128, and at 64 (one thread's half on two), where `tether_models::conv`'s
    // `implicit.rs` runs this kernel in training.
    let training_shapes = [
        (1, 28, 28, 16, 3, 1, 1, 128),
        (16, 28, 28, 16, 3, 1, 1, 128),
        (16, 28, 28, 32, 3, 2, 1, 128),
        (32, 14, 14, 32, 3, 1, 1, 128),
        (32, 14, 14, 64, 3, 2, 1, 128),
        (64, 7, 7, 64, 3, 1, 1, 128),
        (16, 28, 28, 32, 1, 2, 0, 128),
        (32, 14, 14, 64, 1, 2, 0, 128),
        (1, 28, 28, 6, 5, 1, 2, 128),
        (6, 14, 14, 16, 5, 1, 0, 128),
        (16, 28, 28, 16, 3, 1, 1, 64),
        (32, 14, 14, 32, 3, 1, 1, 64),
        (64, 7, 7, 64, 3, 1, 1, 64),
    ];
    let shapes: &[Shape] = if training {
        &training_shapes
    } else {
        &inference
    };
    if sparse_only {
        sparse_lines(shapes, trials, only);
        return;
    }
    println!(
        "shape (c h w -> m, k, stride, batch): us per mode (Planes / Patches / Channels / Winograd), chosen"
    );
    for (index, &(c, h, w, m, k, stride, pad, n)) in shapes.iter().enumerate() {
        if only.is_some_and(|o| o != index) {
            continue;
        }
        let s = ConvShape::square(c, h, w, k, stride, pad);
        let (oh, ow) = s.out();
        let kk = s.patch();
        let wt: Vec<f32> = (0..m * kk)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 31) % 17) as f32 / 17.0)
            .collect();
        let bias = vec![0.1f32; m];
        let mut y = vec![0.0f32; n * m * oh * ow];
        let mut line = format!("{c:4} {h:3} {w:3} -> {m:4}, {k}x{k}, s{stride}, n{n:3}:");
        for mode in [Mode::Planes, Mode::Patches, Mode::Channels] {
            let packed = implicit_conv::pack(&wt, m, kk, mode);
            let mut sc = vec![0.0f32; implicit_conv::scratch(&s, mode, n)];
            let mut run = || {
                implicit_conv::conv(
                    &packed,
                    m,
                    Some(&bias),
                    Act::Relu,
                    None,
                    &x,
                    n,
                    &s,
                    mode,
                    &mut sc,
                    &mut y,
                )
            };
            if mode == Mode::Planes && k * k == 1 {
                line += &format!(" {:>9}", "-");
                continue;
            }
            line += &format!(" {:9.1}", time(trials, &mut run));
        }
        if winograd::applies(&s) {
            let packed = winograd::pack(&wt, m, c);
            let mut sc = vec![0.0f32; winograd::scratch(&s, n)];
            let mut run = || {
                winograd::conv(
                    &packed,
                    m,
                    Some(&bias),
                    Act::Relu,
                    None,
                    &x,
                    n,
                    &s,
                    &mut sc,
                    &mut y,
                )
            };
            line += &format!(" {:9.1}", time(trials, &mut run));
        } else {
            line += &format!(" {:>9}", "-");
        }
        line += &format!("  {:?}", implicit_conv::mode(&s, m, n));
        println!("{line}");
    }
}

/// Shapes as `main` lists them: (c, h, w, m, k, stride, pad, batch).
type Shape = (usize, usize, usize, usize, usize, usize, usize, usize);

/// The sparse lines: per shape and density, the dense kernel the cycle count picks and
/// the sparse direct kernel, timed; the plan's choice (fewer estimated cycles) and its time
/// over the faster one's.
fn sparse_lines(shapes: &[Shape], trials: usize, only: Option<usize>) {
    println!(
        "shape (c h w -> m, k, stride, batch) density: us dense (mode) / sparse, estimated cycles dense / sparse, chosen, chosen / fastest"
    );
    let mut worst: f64 = 1.0;
    for (index, &(c, h, w, m, k, stride, pad, n)) in shapes.iter().enumerate() {
        if only.is_some_and(|o| o != index) {
            continue;
        }
        let s = ConvShape::square(c, h, w, k, stride, pad);
        let (oh, ow) = s.out();
        let kk = s.patch();
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 31) % 17) as f32 / 17.0)
            .collect();
        let bias = vec![0.1f32; m];
        let mut y = vec![0.0f32; n * m * oh * ow];
        let (mode, dense_cycles) = implicit_conv::mode_cycles(&s, m, n);
        for density in [0.05, 0.1, 0.2, 0.35] {
            // Kept where a hash of the position falls under the density.
            let wt: Vec<f32> = (0..m * kk)
                .map(|i| {
                    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                    if (h as f64) < density * (1u64 << 24) as f64 {
                        ((i * 7) % 13) as f32 / 13.0 - 0.45
                    } else {
                        0.0
                    }
                })
                .collect();
            let packed = implicit_conv::pack(&wt, m, kk, mode);
            let mut sc = vec![0.0f32; implicit_conv::scratch(&s, mode, n)];
            let dense_us = time(trials, &mut || {
                implicit_conv::conv(
                    &packed,
                    m,
                    Some(&bias),
                    Act::Relu,
                    None,
                    &x,
                    n,
                    &s,
                    mode,
                    &mut sc,
                    &mut y,
                )
            });
            let (rp, ci, vals) = sparse::csr_from_dense(m, kk, &wt);
            let a = Csr::new(m, kk, &rp, &ci, &vals).expect("a valid CSR");
            let d = sparse_conv::SparseConv::new(&a, &s, n).expect("the sparse kernel runs");
            let mut sc = vec![0.0f32; d.scratch()];
            let sparse_us = time(trials, &mut || {
                sparse_conv::conv(
                    &a,
                    &d,
                    Some(&bias),
                    Act::Relu,
                    None,
                    &x,
                    n,
                    &s,
                    &mut sc,
                    &mut y,
                )
            });
            let sparse_cycles = sparse_conv::cycles(&s, m, vals.len(), n);
            let sparse_chosen = sparse_cycles < dense_cycles;
            let chosen = if sparse_chosen { sparse_us } else { dense_us };
            let ratio = chosen / dense_us.min(sparse_us);
            worst = worst.max(ratio);
            println!(
                "{c:4} {h:3} {w:3} -> {m:4}, {k}x{k}, s{stride}, n{n:3} {density:.2}: {dense_us:9.1} ({mode:?}) {sparse_us:9.1}, {:.3e} {:.3e}, {} {ratio:.2}",
                dense_cycles,
                sparse_cycles,
                if sparse_chosen { "sparse" } else { "dense" },
            );
        }
    }
    println!("worst chosen / fastest: {worst:.2}");
}
