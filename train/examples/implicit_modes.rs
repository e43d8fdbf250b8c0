//! The implicit-GEMM convolution's modes (tether-deploy's `implicit_conv`) on the
//! training shapes at batch 128 (and 64, one thread's half at 2 threads): the small
//! ResNet's and LeNet-5's layers, thread CPU time per call (the least of 3 trials of about
//! 5 ms), beside the mode deploy's cycle model picks. It chose the mode
//! `tether_models::conv`'s `implicit.rs` runs in training (the planes); deploy's
//! `examples/conv_modes.rs` does the same on inference shapes. Linux, x86-64 with
//! AVX-512F.
//!
//! ```sh
//! cargo run --release -p tether-train --features flex-rayon --example implicit_modes
//! ```

use tether_deploy::kernels::conv::ConvShape;
use tether_deploy::kernels::implicit_conv::{self, Act, Mode};
use tether_deploy::kernels::winograd;

fn thread_cpu_seconds() -> f64 {
    tether_deploy::cpu_time::thread_seconds()
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed")
}

/// The least thread CPU time per call of `run` over `trials` trials of about 5 ms, in us.
fn time(trials: usize, run: &mut dyn FnMut()) -> f64 {
    run();
    let t = thread_cpu_seconds();
    let mut reps = 0;
    while thread_cpu_seconds() - t < 0.005 {
        run();
        reps += 1;
    }
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let t = thread_cpu_seconds();
        for _ in 0..reps {
            run();
        }
        best = best.min((thread_cpu_seconds() - t) / reps as f64);
    }
    best * 1e6
}

fn main() {
    if !implicit_conv::available() {
        eprintln!("no AVX-512F on this CPU: nothing to measure");
        return;
    }
    let trials = 3;
    let shapes = [
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
    println!(
        "shape (c h w -> m, k, stride, batch): us per mode (Planes / Patches / Channels / Winograd), chosen"
    );
    for &(c, h, w, m, k, stride, pad, n) in &shapes {
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
