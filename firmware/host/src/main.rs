//! Writes the firmware's inputs and prints what the host predicts for them.
//!
//! ```sh
//! cd firmware/host && cargo run --release [-- N FIRST]   # defaults: N = 8, FIRST = 8
//! ```
//!
//! Reads the MNIST test set (`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`) from
//! `$TETHER_DATA/mnist`, else the repository's `data-cache/mnist` (`scripts/fetch-data
//! mnist`); takes test digits `FIRST..FIRST+N` (by default 8..16, which hold one digit this
//! model gets wrong: what the firmware is checked against is the host's prediction, not the
//! label), normalised as in training (`(p / 255 - 0.1307) / 0.3081`), and writes
//! `firmware/assets/digits.f32` (`[N, 784]` little-endian `f32`) and
//! `firmware/assets/labels.u8` (one byte per digit). Then runs
//! `firmware/assets/lenet300-mnist-64k.tthr` on them with tether-deploy built as on the
//! device (portable kernels) and prints the lines the firmware prints, so the two outputs
//! can be diffed.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

fn data_dir() -> PathBuf {
    match std::env::var_os("TETHER_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-cache"),
    }
}

/// An IDX file's dimensions and data, checked against the expected type code (0x08: u8)
/// and rank.
fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>), Box<dyn Error>> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    if bytes.len() < 4 + 4 * rank || bytes[..3] != [0, 0, 8] || bytes[3] as usize != rank {
        return Err(format!("{}: not a rank-{rank} u8 IDX file", path.display()).into());
    }
    let dims: Vec<usize> = (0..rank).map(|d| be(4 + 4 * d)).collect();
    let data = bytes[4 + 4 * rank..].to_vec();
    if data.len() != dims.iter().product::<usize>() {
        return Err(format!(
            "{}: {} data bytes for dims {dims:?}",
            path.display(),
            data.len()
        )
        .into());
    }
    Ok((dims, data))
}

/// Index of the largest logit (the first, on ties), as on the device.
fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("usage: firmware-host [N [FIRST]]: {e}"))?;
    let n = args.first().copied().unwrap_or(8);
    let first = args.get(1).copied().unwrap_or(8);

    let mnist = data_dir().join("mnist");
    let (dims, pixels) = read_idx(&mnist.join("t10k-images-idx3-ubyte"), 3)?;
    let (ldims, labels) = read_idx(&mnist.join("t10k-labels-idx1-ubyte"), 1)?;
    let per = dims[1] * dims[2];
    if ldims[0] != dims[0] || first + n > dims[0] {
        return Err(format!(
            "{} images, {} labels: cannot take {first}..{}",
            dims[0],
            ldims[0],
            first + n
        )
        .into());
    }
    let digits: Vec<f32> = pixels[first * per..(first + n) * per]
        .iter()
        .map(|&p| (p as f32 / 255.0 - MEAN) / STD)
        .collect();
    let labels = &labels[first..first + n];

    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
    let raw: Vec<u8> = digits.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(assets.join("digits.f32"), &raw)?;
    fs::write(assets.join("labels.u8"), labels)?;
    println!(
        "wrote firmware/assets/digits.f32 ({} bytes) and labels.u8: MNIST test digits {first}..{}",
        raw.len(),
        first + n
    );

    let bytes = AlignedBytes::from_slice(&fs::read(assets.join("lenet300-mnist-64k.tthr"))?);
    let model = Model::parse(&bytes)?;
    let mut plan = Plan::new(model, &PlanOptions::default())?;
    for (i, (x, &label)) in digits.chunks_exact(per).zip(labels).enumerate() {
        let logits = plan.run(x)?;
        println!("digit {i}: predicted {} label {label}", argmax(logits));
        let hex: Vec<String> = logits
            .iter()
            .map(|v| format!("{:08x}", v.to_bits()))
            .collect();
        println!("logits {i}: {}", hex.join(" "));
    }
    Ok(())
}
