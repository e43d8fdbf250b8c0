//! Thread CPU time of each depthwise kernel on the depthwise shapes of the
//! `scripts/bench-vs-ort.py` networks (mobilenet_v2 at 224x224, the MobileNet-style net at
//! 32x32; the least of `--trials` trials of about 5 ms each), to check the plan's choice
//! (`kernels::depthwise_choice::choose`) against measurement: each line ends with the
//! chosen kernel's time over the faster one's (the plan must stay within 1.10). Linux,
//! x86-64 with AVX-512F.
//!
//! ```sh
//! cargo run --release -p tether-deploy --example depthwise_modes [-- --trials 5 --shape INDEX]
//! ```

use tether_deploy::kernels::conv::{self, ConvShape, DepthwiseTaps};
use tether_deploy::kernels::depthwise_choice as depthwise;
use tether_deploy::kernels::depthwise_lanes;
use tether_deploy::kernels::implicit_conv::Act;

/// The least thread CPU time per call of `run` over `trials` trials of about 5 ms, in us.
fn time(trials: usize, run: &mut dyn FnMut()) -> f64 {
    tether_deploy::cpu_time::least_per_call_us(trials, run)
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed")
}

fn main() {
    if !tether_deploy::kernels::packed::available() {
        eprintln!("no AVX-512F on this CPU: nothing to measure");
        return;
    }
    let mut args = std::env::args().skip(1);
    let (mut trials, mut only) = (5usize, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--trials" => trials = args.next().and_then(|t| t.parse().ok()).unwrap_or(5),
            "--shape" => only = args.next().and_then(|t| t.parse::<usize>().ok()),
            _ => {
                eprintln!("usage: depthwise_modes [--trials N] [--shape INDEX]");
                std::process::exit(2);
            }
        }
    }
    // (channels, h, w, stride, batch): every 3x3 depthwise layer of mobilenet_v2 at
    // 224x224 (batch 1 and 32) and of the MobileNet-style net at 32x32 (batch 32).
    let shapes = [
        (32, 112, 112, 1, 1),
        (96, 112, 112, 2, 1),
        (144, 56, 56, 1, 1),
        (144, 56, 56, 2, 1),
        (192, 28, 28, 1, 1),
        (192, 28, 28, 2, 1),
        (384, 14, 14, 1, 1),
        (576, 14, 14, 1, 1),
        (576, 14, 14, 2, 1),
        (960, 7, 7, 1, 1),
        (96, 112, 112, 2, 4),
        (144, 56, 56, 1, 4),
        (16, 32, 32, 1, 32),
        (48, 32, 32, 2, 32),
        (72, 16, 16, 1, 32),
        (72, 16, 16, 2, 32),
        (96, 8, 8, 1, 32),
        (96, 8, 8, 2, 32),
        (192, 4, 4, 1, 32),
        (288, 4, 4, 2, 32),
        (480, 2, 2, 1, 32),
    ];
    println!("shape (c h w, stride, batch): us plane / lanes, chosen, chosen / fastest");
    let mut worst: f64 = 1.0;
    for (index, &(c, h, w, stride, n)) in shapes.iter().enumerate() {
        if only.is_some_and(|o| o != index) {
            continue;
        }
        let s = ConvShape::square(1, h, w, 3, stride, 1);
        let (oh, ow) = s.out();
        let wt: Vec<f32> = (0..c * 9)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 31) % 17) as f32 / 17.0)
            .collect();
        let weight = |ch: usize| (&wt[ch * 9..(ch + 1) * 9], 0.1f32);
        let mut y = vec![0.0f32; n * c * oh * ow];
        let taps = DepthwiseTaps::new(&s);
        let mut sc = vec![0.0f32; conv::depthwise_scratch(&s)];
        let plane = time(trials, &mut || {
            conv::depthwise(&x, n, c, &weight, &s, &taps, Act::Relu, &mut sc, &mut y)
        });
        let mut sc = vec![0.0f32; depthwise_lanes::scratch(&s)];
        let lanes = time(trials, &mut || {
            depthwise_lanes::depthwise(&x, n, c, &weight, &s, Act::Relu, &mut sc, &mut y)
        });
        let chosen = match depthwise::choose(&s) {
            depthwise::Kernel::Lanes => ("lanes", lanes),
            depthwise::Kernel::Plane => ("plane", plane),
        };
        let ratio = chosen.1 / plane.min(lanes);
        worst = worst.max(ratio);
        println!(
            "{index:2}: {c:4} {h:3} {w:3}, s{stride}, n{n:3}: {plane:9.1} {lanes:9.1}  {} {ratio:.2}",
            chosen.0
        );
    }
    println!("worst chosen / fastest: {worst:.2}");
}
