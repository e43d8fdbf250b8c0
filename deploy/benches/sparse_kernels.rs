//! Sparse vs dense kernels, single thread, ratios in one run.
//!
//! For each weight shape (LeNet-300-100's 300x784 and 100x300, LeNet-5's convolutions as
//! GEMM and its 500x800 layer, a 1024x1024 layer), batch 1 and 32, and unstructured
//! sparsity 50/70/80/90/95%: the time of the dense kernel (the `gemm` crate, whose best
//! instruction set is picked at run time) over the time of the runtime's sparse kernel (at
//! batch 1 the SELL-8 gather kernel where AVX2 runs, else CSR spmv; transpose +
//! register-blocked spmm at batch 32, the transpose counted).
//! Convolutions multiply the weight `[oc, c*k*k]` by one sample's patch matrix `[c*k*k,
//! oh*ow]` (im2col, the same for both, is not timed); "batch 32" runs 32 samples.
//!
//! Writes `out/bench/sparse_kernels.{md,json}`.
//!
//! ```text
//! cargo bench -p tether-deploy --bench sparse_kernels
//! ```

use std::hint::black_box;
use std::time::Instant;

use tether_deploy::format::Csr;
use tether_deploy::kernels::{block, dense, sell as sparse_sell, sparse};

const SPARSITIES: [f64; 5] = [0.5, 0.7, 0.8, 0.9, 0.95];
const BATCHES: [usize; 2] = [1, 32];

/// A weight shape: `rows x cols`, times `[cols, n]` per sample for convolutions.
struct Shape {
    name: &'static str,
    rows: usize,
    cols: usize,
    /// Patch columns per sample for a convolution; `None` for a linear layer.
    conv_positions: Option<usize>,
}

const SHAPES: [Shape; 6] = [
    Shape {
        name: "LeNet-300-100 fc1 300x784",
        rows: 300,
        cols: 784,
        conv_positions: None,
    },
    Shape {
        name: "LeNet-300-100 fc2 100x300",
        rows: 100,
        cols: 300,
        conv_positions: None,
    },
    Shape {
        name: "LeNet-5 conv1 20x25 (576 positions)",
        rows: 20,
        cols: 25,
        conv_positions: Some(576),
    },
    Shape {
        name: "LeNet-5 conv2 50x500 (64 positions)",
        rows: 50,
        cols: 500,
        conv_positions: Some(64),
    },
    Shape {
        name: "LeNet-5 fc1 500x800",
        rows: 500,
        cols: 800,
        conv_positions: None,
    },
    Shape {
        name: "1024x1024",
        rows: 1024,
        cols: 1024,
        conv_positions: None,
    },
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct OwnedCsr {
    rows: usize,
    cols: usize,
    ptr: Vec<u32>,
    idx: Vec<u16>,
    vals: Vec<f32>,
}

impl OwnedCsr {
    fn view(&self) -> Csr<'_> {
        Csr::new(self.rows, self.cols, &self.ptr, &self.idx, &self.vals).expect("valid CSR")
    }
}

/// Random weights `[rows, cols]` (dense and CSR) whose nonzeros come in aligned runs of
/// `block` consecutive columns of a row, each run kept with probability `1 - sparsity`:
/// `block` 1 is unstructured sparsity, 4 what 1x4 structured gates leave.
fn random_weights(
    rows: usize,
    cols: usize,
    sparsity: f64,
    block: usize,
    rng: &mut Rng,
) -> (Vec<f32>, OwnedCsr) {
    let mut dense = vec![0.0f32; rows * cols];
    let (mut ptr, mut idx, mut vals) = (vec![0u32], Vec::new(), Vec::new());
    for r in 0..rows {
        for b in 0..cols / block {
            if rng.next() as f64 >= sparsity {
                for c in b * block..(b + 1) * block {
                    let v = rng.next() - 0.5;
                    dense[r * cols + c] = v;
                    idx.push(c as u16);
                    vals.push(v);
                }
            }
        }
        ptr.push(vals.len() as u32);
    }
    (
        dense,
        OwnedCsr {
            rows,
            cols,
            ptr,
            idx,
            vals,
        },
    )
}

/// The sparsity where the ratios cross 1 (linear interpolation), as a table cell.
fn break_even(ratios: &[f64]) -> String {
    let mut even = if ratios[0] >= 1.0 {
        format!("<= {:.0}%", SPARSITIES[0] * 100.0)
    } else {
        "> 95%".into()
    };
    for i in 1..ratios.len() {
        if ratios[i - 1] < 1.0 && ratios[i] >= 1.0 {
            let f = (1.0 - ratios[i - 1]) / (ratios[i] - ratios[i - 1]);
            let s = SPARSITIES[i - 1] + f * (SPARSITIES[i] - SPARSITIES[i - 1]);
            even = format!("{:.0}%", s * 100.0);
        }
    }
    even
}

/// Seconds per call of `dense` and `sparse` and their ratio: 9 alternating trials of a
/// count calibrated to ~10 ms each, so that load on a shared machine hits both alike; the
/// ratio is the median of the per-trial ratios, the times are medians.
fn compare(mut dense: impl FnMut(), mut sparse: impl FnMut()) -> (f64, f64, f64) {
    let calibrate = |f: &mut dyn FnMut()| {
        f();
        let mut reps = 1usize;
        loop {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            if t.elapsed().as_secs_f64() > 0.01 || reps > 1 << 20 {
                return reps;
            }
            reps *= 2;
        }
    };
    let (rd, rs) = (calibrate(&mut dense), calibrate(&mut sparse));
    let run = |f: &mut dyn FnMut(), reps: usize| {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() / reps as f64
    };
    let mut d = Vec::new();
    let mut s = Vec::new();
    let mut r = Vec::new();
    for _ in 0..9 {
        let td = run(&mut dense, rd);
        let ts = run(&mut sparse, rs);
        d.push(td);
        s.push(ts);
        r.push(td / ts);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(d), median(s), median(r))
}

fn isa() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = Vec::new();
        if std::is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
        if std::is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if std::is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        format!("x86-64 with {}", f.join("+"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

fn main() -> std::io::Result<()> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut md = format!(
        "Dense: the `gemm` crate ({}; instruction set picked at run time); sparse: tether's \
         kernels (batch 1: SELL-8 gathers; batches: CSR register-blocked spmm; AVX2+FMA or \
         AVX-512 picked at run time). Single thread. Cell: dense time / sparse time \
         (> 1: sparse faster); in brackets the sparse time per call.\n\n\
         | shape | batch | {} | break-even sparsity |\n|---|---|{}---|\n",
        isa(),
        SPARSITIES.map(|s| format!("{:.0}%", s * 100.0)).join(" | "),
        "---|".repeat(SPARSITIES.len()),
    );
    let mut json = Vec::new();
    for shape in &SHAPES {
        for &batch in &BATCHES {
            let n = shape.conv_positions.unwrap_or(batch);
            let reps = if shape.conv_positions.is_some() {
                batch
            } else {
                1
            };
            let x: Vec<f32> = (0..shape.cols * n).map(|_| rng.next() - 0.5).collect();
            let bias: Vec<f32> = (0..shape.rows).map(|_| rng.next()).collect();
            let mut y = vec![0.0f32; shape.rows * n];
            let mut y2 = vec![0.0f32; shape.rows * n];
            let mut t = vec![0.0f32; shape.cols * n];
            let mut cells = Vec::new();
            let mut ratios = Vec::new();
            for &s in &SPARSITIES {
                let (w, csr) = random_weights(shape.rows, shape.cols, s, 1, &mut rng);
                let a = csr.view();
                let sell = sparse_sell::Sell8::from_csr(&a);
                let (dense_t, sparse_t, ratio) = compare(
                    || {
                        for _ in 0..reps {
                            if shape.conv_positions.is_some() {
                                dense::matmul_rows(
                                    &w,
                                    Some(&bias),
                                    &x,
                                    shape.rows,
                                    shape.cols,
                                    n,
                                    &mut y,
                                );
                            } else {
                                dense::linear(
                                    &w,
                                    Some(&bias),
                                    &x,
                                    n,
                                    shape.rows,
                                    shape.cols,
                                    &mut y,
                                );
                            }
                            black_box(&mut y);
                        }
                    },
                    || {
                        for _ in 0..reps {
                            if shape.conv_positions.is_some() {
                                sparse::spmm(&a, Some(&bias), &x, n, &mut y2, n, 1);
                            } else if n == 1 && sparse_sell::available() {
                                sparse_sell::spmv(&sell, Some(&bias), &x, &mut y2);
                            } else if n == 1 {
                                sparse::spmv(&a, Some(&bias), &x, &mut y2);
                            } else {
                                sparse::transpose(&x, n, shape.cols, &mut t);
                                sparse::spmm(&a, Some(&bias), &t, n, &mut y2, 1, shape.rows);
                            }
                            black_box(&mut y2);
                        }
                    },
                );
                ratios.push(ratio);
                cells.push(format!("{ratio:.2}x ({:.1} us)", sparse_t * 1e6));
                json.push(format!(
                    "{{\"shape\": \"{}\", \"batch\": {batch}, \"sparsity\": {s}, \"dense_s\": {dense_t:e}, \"sparse_s\": {sparse_t:e}, \"ratio\": {ratio}}}",
                    shape.name
                ));
            }
            let even = break_even(&ratios);
            let line = format!(
                "| {} | {batch} | {} | {even} |\n",
                shape.name,
                cells.join(" | ")
            );
            print!("{line}");
            md.push_str(&line);
        }
    }
    // Batch 1 with sparsity in whole 1x4 blocks: the block kernel (what the plan picks
    // for such weights) and, for comparison, the unstructured kernel on the same weights.
    md.push_str(&format!(
        "\n1x4 block sparsity (whole aligned blocks of 4 weights in a row kept or removed). \
         Batch 1 cell: dense time / 1x4-block kernel time, then dense time / SELL-8 time on \
         the same weights; batch 32: dense time / the batch kernel's time (transpose + \
         register-blocked spmm, the transpose counted).\n\n| shape | batch | {} | \
         break-even (blocks) |\n|---|---|{}---|\n",
        SPARSITIES.map(|s| format!("{:.0}%", s * 100.0)).join(" | "),
        "---|".repeat(SPARSITIES.len()),
    ));
    for shape in SHAPES.iter().filter(|s| s.conv_positions.is_none()) {
        let x: Vec<f32> = (0..shape.cols).map(|_| rng.next() - 0.5).collect();
        let bias: Vec<f32> = (0..shape.rows).map(|_| rng.next()).collect();
        let mut y = vec![0.0f32; shape.rows];
        let mut y2 = vec![0.0f32; shape.rows];
        let mut cells = Vec::new();
        let mut ratios = Vec::new();
        for &s in &SPARSITIES {
            let (w, csr) = random_weights(shape.rows, shape.cols, s, block::BLOCK, &mut rng);
            let a = csr.view();
            let blocks = block::Block4::from_csr(&a).expect("columns a multiple of 4");
            let sell = sparse_sell::Sell8::from_csr(&a);
            let mut dense_call = || {
                dense::linear(&w, Some(&bias), &x, 1, shape.rows, shape.cols, &mut y);
                black_box(&mut y);
            };
            let (_, block_t, ratio) = compare(&mut dense_call, || {
                block::spmv(&blocks, Some(&bias), &x, &mut y2);
                black_box(&mut y2);
            });
            let (_, _, sell_ratio) = compare(&mut dense_call, || {
                sparse_sell::spmv(&sell, Some(&bias), &x, &mut y2);
                black_box(&mut y2);
            });
            ratios.push(ratio);
            cells.push(format!(
                "{ratio:.2}x ({:.1} us); {sell_ratio:.2}x",
                block_t * 1e6
            ));
            json.push(format!(
                "{{\"shape\": \"{}\", \"batch\": 1, \"block_sparsity\": {s}, \"block_s\": {block_t:e}, \"ratio\": {ratio}, \"sell_ratio\": {sell_ratio}}}",
                shape.name
            ));
        }
        let line = format!(
            "| {} | 1 | {} | {} |\n",
            shape.name,
            cells.join(" | "),
            break_even(&ratios)
        );
        print!("{line}");
        md.push_str(&line);
        // Batch 32 on block-pruned weights: the CSR batch kernel (blocks are ordinary
        // nonzeros to it).
        let n = 32;
        let xb: Vec<f32> = (0..shape.cols * n).map(|_| rng.next() - 0.5).collect();
        let mut yb = vec![0.0f32; shape.rows * n];
        let mut yb2 = vec![0.0f32; shape.rows * n];
        let mut t = vec![0.0f32; shape.cols * n];
        let mut cells = Vec::new();
        let mut ratios = Vec::new();
        for &s in &SPARSITIES {
            let (w, csr) = random_weights(shape.rows, shape.cols, s, block::BLOCK, &mut rng);
            let a = csr.view();
            let (_, sparse_t, ratio) = compare(
                || {
                    dense::linear(&w, Some(&bias), &xb, n, shape.rows, shape.cols, &mut yb);
                    black_box(&mut yb);
                },
                || {
                    sparse::transpose(&xb, n, shape.cols, &mut t);
                    sparse::spmm(&a, Some(&bias), &t, n, &mut yb2, 1, shape.rows);
                    black_box(&mut yb2);
                },
            );
            ratios.push(ratio);
            cells.push(format!("{ratio:.2}x ({:.1} us)", sparse_t * 1e6));
            json.push(format!(
                "{{\"shape\": \"{}\", \"batch\": {n}, \"block_sparsity\": {s}, \"sparse_s\": {sparse_t:e}, \"ratio\": {ratio}}}",
                shape.name
            ));
        }
        let line = format!(
            "| {} | {n} | {} | {} |\n",
            shape.name,
            cells.join(" | "),
            break_even(&ratios)
        );
        print!("{line}");
        md.push_str(&line);
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/bench");
    std::fs::create_dir_all(&out)?;
    for (name, body) in [
        ("sparse_kernels.md", md.clone()),
        (
            "sparse_kernels.json",
            format!("[\n{}\n]\n", json.join(",\n")),
        ),
    ] {
        let tmp = out.join(format!("{name}.tmp"));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, out.join(name))?;
    }
    println!("\n{md}\nwrote {}/sparse_kernels.{{md,json}}", out.display());
    Ok(())
}
