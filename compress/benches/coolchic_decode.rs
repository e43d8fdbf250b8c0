//! Decode time of a full-size (768x512) Cool-chic file through `tether_deploy::coolchic`
//! on one core, split into its two stages: entropy decoding (the ARM once per latent, the
//! rANS decoder) and rendering (bilinear upsampling and the synthesis once per pixel).
//!
//! The file has the shape the encoder picks for a 768x512 image at each budget
//! (`tether_compress::coolchic::arch_for`) with pseudo-random weights and latents (a third
//! nonzero, small): decode time depends on the shapes, not on the values, except for the
//! rANS symbols' count, which is every latent either way.
//!
//! Each file is timed in the current format version (3: learned upsampling pre-filters,
//! nonzero) and in version 2 (the same content without the filters), one after the
//! other in every round, so their ratio is measured under the same load.
//!
//! Two clocks: wall time, and the thread's CPU time (`/proc/thread-self/schedstat`, ns
//! on the CPU): on a shared, loaded machine the wall time counts the time other processes
//! held the core, the CPU time is what one core spends decoding. Best of the rounds each.
//!
//! `cargo bench -p tether-compress --bench coolchic_decode [-- --rounds 5]`

use std::time::Instant;

use tether_deploy::coolchic::file::QTensor;
use tether_deploy::coolchic::file::{VERSION, encode_version};
use tether_deploy::coolchic::{Arch, CoolChic, Header, Mlp, decode, synthesis};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize);
    let (w, h) = (768, 512);
    println!(
        "| budget (bpp) | version | shape (ARM; synthesis) | MACs/pixel | file bytes | entropy decode: CPU (wall) ms | render: CPU (wall) ms | total: CPU (wall) ms, best of {rounds} |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for bpp in [0.15, 0.3, 0.6] {
        let budget = (bpp * (w * h) as f64) as usize;
        let arch = tether_compress::coolchic::arch_for(budget, w, h).expect("an arch");
        let file = random_file(w, h, &arch);
        let mut plain = file.clone();
        plain.upsampling = CoolChic::no_upsampling(&arch);
        let versions = [VERSION, 2];
        let contents = [file, plain];
        let files: Vec<Vec<u8>> = versions
            .iter()
            .zip(&contents)
            .map(|(&v, c)| encode_version(c, v).expect("encodes"))
            .collect();
        // [version][entropy, render, total] x [cpu, wall], seconds.
        let mut best = [[[f64::INFINITY; 2]; 3]; 2];
        for _ in 0..rounds {
            for ((bytes, file), best) in files.iter().zip(&contents).zip(best.iter_mut()) {
                let (c0, t) = (cpu_seconds(), Instant::now());
                let c = decode(bytes).expect("decodes");
                let (c1, t1) = (cpu_seconds(), t.elapsed().as_secs_f64());
                let rgb = synthesis::render(&c).expect("renders");
                let (c2, t2) = (cpu_seconds(), t.elapsed().as_secs_f64());
                assert_eq!(rgb.len(), w * h * 3);
                assert!(&c == file, "the decoded file is the encoded one");
                std::hint::black_box(rgb);
                for (b, v) in
                    best.iter_mut()
                        .zip([[c1 - c0, t1], [c2 - c1, t2 - t1], [c2 - c0, t2]])
                {
                    b[0] = b[0].min(v[0]);
                    b[1] = b[1].min(v[1]);
                }
            }
        }
        let ms = |b: [f64; 2]| format!("{:.0} ({:.0})", b[0] * 1e3, b[1] * 1e3);
        for ((v, bytes), best) in versions.iter().zip(&files).zip(best) {
            println!(
                "| {bpp} | {v} | {}->{:?}->2; {}->{:?}->3 | {:.0} | {} | {} | {} | {} |",
                arch.context,
                arch.arm_hidden,
                arch.levels,
                arch.synth_hidden,
                arch.macs_per_pixel(w, h),
                bytes.len(),
                ms(best[0]),
                ms(best[1]),
                ms(best[2]),
            );
        }
    }
}

/// This thread's time on a CPU so far, in seconds (`/proc/thread-self/schedstat`'s first
/// field, nanoseconds; Linux).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("read /proc/thread-self/schedstat (Linux only)");
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat's first field");
    ns as f64 * 1e-9
}

/// A file of `arch` with pseudo-random weights (Kaiming-scaled, step 2^-8) and latents.
fn random_file(w: usize, h: usize, arch: &Arch) -> CoolChic {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut tensors = |mlp: Mlp| -> Vec<QTensor> {
        mlp.layers
            .iter()
            .flat_map(|l| {
                let c = (3.0 / l.inputs as f64).sqrt();
                let weight: Vec<f32> = (0..l.weight.len())
                    .map(|_| ((2.0 * next() - 1.0) * c) as f32)
                    .collect();
                let bias: Vec<f32> = (0..l.bias.len())
                    .map(|_| ((2.0 * next() - 1.0) * 0.1) as f32)
                    .collect();
                [QTensor::quantise(&weight, 8), QTensor::quantise(&bias, 8)]
            })
            .collect()
    };
    let arm = tensors(arch.arm());
    let synthesis = tensors(arch.synthesis());
    let latents = (0..arch.levels)
        .map(|l| {
            let (r, c) = Arch::level_size(w, h, l);
            (0..r * c)
                .map(|_| {
                    let u = next();
                    if u < 0.67 {
                        0
                    } else {
                        ((next() * 7.0) as i32) - 3
                    }
                })
                .collect()
        })
        .collect();
    let filters: Vec<f32> = (0..arch.upsampling_len())
        .map(|_| ((2.0 * next() - 1.0) * 0.2) as f32)
        .collect();
    CoolChic {
        header: Header {
            width: w,
            height: h,
            arch: arch.clone(),
        },
        arm,
        synthesis,
        latents,
        upsampling: QTensor::quantise(&filters, 8),
    }
}
