//! `tether-deploy`: run, inspect and time tether models (`.tthr`, see deploy/FORMAT.md).

use std::path::{Path, PathBuf};

/// `println!` and `print!` that end the program quietly when stdout is a closed pipe
/// (`tether-deploy inspect m.tthr | head`) instead of panicking, as Unix tools do.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            exit_on_stdout_error(e);
        }
    }};
}

macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            exit_on_stdout_error(e);
        }
    }};
}

/// A closed pipe ends the program with success; any other write error is reported.
fn exit_on_stdout_error(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(1);
}
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use tether_deploy::format::TensorData;
use tether_deploy::{AlignedBytes, KernelChoice, Model, Op, Plan, PlanOptions};

#[derive(Parser)]
#[command(
    version,
    about = "Run, inspect and time tether models (.tthr); import and export ONNX"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Kernels {
    /// Sparse where the weights are sparse enough to gain (measured break-even).
    Auto,
    /// Dense everywhere.
    Dense,
    /// Sparse everywhere.
    Sparse,
}

impl From<Kernels> for KernelChoice {
    fn from(k: Kernels) -> Self {
        match k {
            Kernels::Auto => KernelChoice::Auto,
            Kernels::Dense => KernelChoice::Dense,
            Kernels::Sparse => KernelChoice::Sparse,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Layers, shapes, densities, bytes and the plan's activation memory.
    Inspect {
        /// Model file.
        model: PathBuf,
    },
    /// Runs the model on inputs and prints each prediction (argmax) and its scores.
    ///
    /// A sample whose scores hold a NaN has no prediction (printed as such, and counted
    /// wrong in the accuracy); an input sample holding NaN or an infinity is warned about
    /// (see `--reject-non-finite`). Every `--kernels` choice computes the same outputs on
    /// such inputs.
    ///
    /// A mesh model (an EMAN, see `tether-train mesh`) takes a mesh file instead (`.off`,
    /// `.obj`, `.ply`, `.gii`) and predicts a class per vertex; `--vertex-labels` (one
    /// integer per line) reports the accuracy, `--predictions` writes them.
    ///
    /// Inputs: a file of little-endian f32 (`.f32`, `.bin`) or of numbers separated by
    /// spaces, commas or newlines (anything else), one or more samples back to back; or
    /// `--idx` images (u8 IDX, e.g. MNIST's t10k-images-idx3-ubyte), normalised with
    /// `--normalize`, and optionally `--labels` to report the accuracy.
    Run {
        /// Model file.
        model: PathBuf,
        /// Input file (f32 or text).
        #[arg(required_unless_present = "idx", conflicts_with = "idx")]
        input: Option<PathBuf>,
        /// IDX image file instead of an input file.
        #[arg(long)]
        idx: Option<PathBuf>,
        /// IDX label file (with --idx): print the accuracy.
        #[arg(long, requires = "idx")]
        labels: Option<PathBuf>,
        /// Pixel normalisation of --idx images: (p / 255 - mean) / std.
        #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [0.1307, 0.3081])]
        normalize: Vec<f32>,
        /// At most this many samples.
        #[arg(long)]
        limit: Option<usize>,
        /// Kernel selection.
        #[arg(long, value_enum, default_value_t = Kernels::Auto)]
        kernels: Kernels,
        /// Print every sample's scores, not only the prediction.
        #[arg(long)]
        scores: bool,
        /// Refuse inputs holding NaN or an infinity (an error naming the first such
        /// sample) instead of warning and running them: their scores are NaN, no
        /// prediction.
        #[arg(long)]
        reject_non_finite: bool,
        /// Mesh models: a file of one label per vertex (one integer per line; a longer
        /// file, e.g. both hemispheres, is read from `--label-offset` on).
        #[arg(long)]
        vertex_labels: Option<PathBuf>,
        /// Mesh models: the first line of `--vertex-labels` to read.
        #[arg(long, default_value_t = 0)]
        label_offset: usize,
        /// Mesh models: write each vertex's predicted class here, one per line.
        #[arg(long)]
        predictions: Option<PathBuf>,
        /// Mesh models: drop vertices no face uses (refused by default).
        #[arg(long)]
        drop_isolated: bool,
        /// Mesh models: the arithmetic (f64: the network's exact value, slower; default
        /// f32).
        #[arg(long, value_enum)]
        precision: Option<MeshPrecision>,
    },
    /// Converts an ONNX model to a tether model (weights stored dense or CSR by their
    /// measured sparsity).
    #[cfg(feature = "onnx")]
    Import {
        /// ONNX model.
        model: PathBuf,
        /// Output tether model.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Converts a tether model to ONNX (opset 13, batch axis `N`).
    #[cfg(feature = "onnx")]
    Export {
        /// Tether model.
        model: PathBuf,
        /// Output ONNX model.
        #[arg(short, long)]
        output: PathBuf,
        /// Write CSR weights sparse, as ONNX Constant nodes with a sparse_value (smaller;
        /// onnxruntime reads them and onnx.checker's full check passes, tract 0.23 does not
        /// read them). By default every weight is a dense initializer.
        #[arg(long)]
        sparse_initializers: bool,
        /// No symbolic batch axis: the shapes as they are (for models imported from ONNX
        /// with static shapes).
        #[arg(long)]
        no_batch_axis: bool,
    },
    /// Latency of one inference, dense vs sparse vs auto kernels, single thread.
    Bench {
        /// Model file.
        model: PathBuf,
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        batch: Vec<usize>,
        /// Trials per batch size (each runs every kernel choice once, ~10 ms each).
        #[arg(long, default_value_t = 15)]
        trials: usize,
        /// Mesh models: the mesh to time the model on (geometry included), in f32 and
        /// in f64.
        #[arg(long)]
        mesh: Option<PathBuf>,
    },
}

/// `--precision` of a mesh model.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum MeshPrecision {
    /// Single precision (the default).
    F32,
    /// Double precision throughout.
    F64,
}

impl From<MeshPrecision> for tether_deploy::mesh::Precision {
    fn from(p: MeshPrecision) -> Self {
        match p {
            MeshPrecision::F32 => Self::F32,
            MeshPrecision::F64 => Self::F64,
        }
    }
}

/// The most a plan may allocate in this CLI: 4 GiB, the format's own bound on a tensor.
/// The library's default (256 MiB) suits embedded hosts; resnet18 at batch 32 needs about
/// 330 MB of activations and scratch.
const HOST_PLAN_BYTES: usize = if usize::BITS >= 64 {
    (4u64 << 30) as usize
} else {
    usize::MAX
};

/// Model bytes: a tether model as is, an `.onnx` file imported.
fn load(path: &Path) -> anyhow::Result<AlignedBytes> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return load_onnx(path);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        !bytes.is_empty(),
        "{} is not a tether model (empty file)",
        path.display()
    );
    Ok(AlignedBytes::from_slice(&bytes))
}

/// An ONNX file imported, whatever its name (`import` reads nothing else).
fn load_onnx(path: &Path) -> anyhow::Result<AlignedBytes> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // What the file is, when it is plainly not ONNX: said before the importer reports
    // what an empty or foreign protobuf lacks ("the model has no graph").
    ensure!(
        !bytes.is_empty(),
        "{} is not an ONNX model (empty file)",
        path.display()
    );
    ensure!(
        !bytes.starts_with(b"TTHR"),
        "{} is not an ONNX model: it is a tether model (.tthr) already",
        path.display()
    );
    #[cfg(feature = "onnx")]
    {
        // From the path, so that weights in an external data file beside it (PyTorch's
        // default export) are found.
        let model = tether_deploy::onnx::import_file(path)
            .with_context(|| format!("importing {}", path.display()))?;
        Ok(AlignedBytes::from_slice(&model))
    }
    #[cfg(not(feature = "onnx"))]
    bail!(
        "{}: this build has no ONNX support (feature onnx)",
        path.display()
    );
}

/// Writes `bytes` to `path` through a temporary file and a rename (never half a file).
/// A directory is refused before anything is written (the rename onto it used to fail
/// after `DIR.partial` was written, and left it behind), and the temporary file is
/// removed when writing or renaming fails (a full disk), so a failed run leaves nothing.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    ensure!(
        !path.is_dir(),
        "{} is a directory: give the file to write",
        path.display()
    );
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::write(&tmp, bytes)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        });
    if written.is_err() {
        // Best effort: the error being reported is the one that matters.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn parse<'a>(bytes: &'a AlignedBytes, path: &Path) -> anyhow::Result<Model<'a>> {
    Model::parse(bytes).with_context(|| format!("{} is not a valid tether model", path.display()))
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { model } => inspect(&model),
        Command::Run {
            model,
            input,
            idx,
            labels,
            normalize,
            limit,
            kernels,
            scores,
            reject_non_finite,
            vertex_labels,
            label_offset,
            predictions,
            drop_isolated,
            precision,
        } => {
            let bytes = load(&model)?;
            let m = parse(&bytes, &model)?;
            if is_mesh_model(&m) {
                ensure!(
                    labels.is_none() && limit.is_none() && !scores && !reject_non_finite,
                    "--labels, --limit, --scores and --reject-non-finite are not for mesh \
                     models (see --vertex-labels, --predictions)"
                );
                let mesh =
                    input.context("a mesh model takes a mesh file (.off, .obj, .ply, .gii)")?;
                return run_mesh(
                    m,
                    &mesh,
                    &MeshRun {
                        labels: vertex_labels.as_deref(),
                        label_offset,
                        predictions: predictions.as_deref(),
                        drop_isolated,
                        precision: precision.unwrap_or(MeshPrecision::F32).into(),
                    },
                );
            }
            ensure!(
                vertex_labels.is_none()
                    && predictions.is_none()
                    && !drop_isolated
                    && precision.is_none(),
                "--vertex-labels, --predictions, --drop-isolated and --precision are for mesh \
                 models"
            );
            // Checked here: the plan would name its own option (`batch`) instead.
            ensure!(limit != Some(0), "--limit must be at least 1 (got 0)");
            let per = m.input_shape().numel();
            let (inputs, labels) = match (&input, &idx) {
                (Some(path), _) => {
                    let x = read_input(path)?;
                    ensure!(
                        !x.is_empty() && x.len() % per == 0,
                        "{}: {} values, not a multiple of the model's {per} per sample",
                        path.display(),
                        x.len()
                    );
                    (x, None)
                }
                (None, Some(images)) => {
                    let (x, n) = read_idx_images(images, normalize[0], normalize[1])?;
                    ensure!(
                        x.len() / n == per,
                        "{}: images of {} pixels, the model takes {per} values",
                        images.display(),
                        x.len() / n
                    );
                    let labels = labels.map(|l| read_idx_labels(&l)).transpose()?;
                    if let Some(l) = &labels {
                        ensure!(l.len() == n, "{n} images but {} labels", l.len());
                    }
                    (x, labels)
                }
                (None, None) => bail!("give an input file or --idx"),
            };
            let n = (inputs.len() / per).min(limit.unwrap_or(usize::MAX));
            let source = input
                .as_ref()
                .or(idx.as_ref())
                .expect("one of them")
                .display();
            let bad = non_finite_samples(&inputs[..n * per], per);
            if let Some(&(i, at, v)) = bad.first()
                && reject_non_finite
            {
                bail!(
                    "{source}: sample {i} holds {v} at index {at} of its {per} values; \
                     --reject-non-finite refuses inputs that are not finite"
                );
            }
            for &(i, at, v) in bad.iter().take(MAX_WARNINGS) {
                eprintln!(
                    "warning: {source}: sample {i} holds {v} at index {at} of its {per} values: \
                     its scores may be NaN, then it has no prediction (--reject-non-finite makes \
                     this an error)"
                );
            }
            if bad.len() > MAX_WARNINGS {
                eprintln!(
                    "warning: {source}: {} more samples hold NaN or an infinity",
                    bad.len() - MAX_WARNINGS
                );
            }
            let batch = n.min(64);
            let opts = PlanOptions {
                batch,
                kernels: kernels.into(),
                max_bytes: HOST_PLAN_BYTES,
            };
            let mut plan = Plan::new(m, &opts)?;
            let out = plan.model().output_shape().numel();
            let mut correct = 0usize;
            let mut unpredicted = 0usize;
            let mut index = 0usize;
            for chunk in inputs[..n * per].chunks(batch * per) {
                let y = plan.run(chunk)?;
                for s in y.chunks(out) {
                    let pred = prediction(s);
                    let label = labels.as_ref().map(|l| l[index]);
                    correct += usize::from(label.is_some() && label == pred);
                    unpredicted += usize::from(pred.is_none());
                    if scores || labels.is_none() || n <= 20 {
                        match pred {
                            Some(p) => print!("sample {index}: predicted {p}"),
                            None => print!("sample {index}: no prediction (NaN in the scores)"),
                        }
                        if let Some(l) = label {
                            print!(" (label {l})");
                        }
                        if scores {
                            print!(" scores {s:?}");
                        }
                        println!();
                    }
                    index += 1;
                }
            }
            if labels.is_some() {
                print!(
                    "accuracy {:.4} ({correct} of {n}",
                    correct as f64 / n as f64
                );
                if unpredicted > 0 {
                    print!("; {unpredicted} without a prediction, counted wrong");
                }
                println!(")");
            }
            Ok(())
        }
        Command::Bench {
            model,
            batch,
            trials,
            mesh,
        } => bench(&model, &batch, trials, mesh.as_deref()),
        #[cfg(feature = "onnx")]
        Command::Import { model, output } => {
            let bytes = load_onnx(&model)?;
            let m = parse(&bytes, &model)?;
            let csr = m
                .tensors
                .iter()
                .filter(|t| matches!(t.data, TensorData::Csr(_)))
                .count();
            write_atomic(&output, &bytes)?;
            println!(
                "{} -> {}: {} ops, {} tensors ({csr} stored sparse), {} bytes, input {:?}, output {:?}",
                model.display(),
                output.display(),
                m.nodes.len(),
                m.tensors.len(),
                m.file_len,
                m.input_shape().as_slice(),
                m.output_shape().as_slice()
            );
            Ok(())
        }
        #[cfg(feature = "onnx")]
        Command::Export {
            model,
            output,
            sparse_initializers,
            no_batch_axis,
        } => {
            let bytes = load(&model)?;
            let m = parse(&bytes, &model)?;
            let onnx = tether_deploy::onnx::export_bytes(
                &m,
                &tether_deploy::onnx::ExportOptions {
                    sparse_initializers,
                    batch_axis: !no_batch_axis,
                },
            )
            .with_context(|| format!("exporting {}", model.display()))?;
            write_atomic(&output, &onnx)?;
            println!(
                "{} -> {}: {} bytes of ONNX (opset {})",
                model.display(),
                output.display(),
                onnx.len(),
                tether_deploy::onnx::EXPORT_OPSET
            );
            Ok(())
        }
    }
}

fn is_mesh_model(m: &Model<'_>) -> bool {
    m.nodes
        .iter()
        .any(|n| matches!(n.op, tether_deploy::Op::MeshFeatures(_)))
}

fn read_mesh(path: &Path, drop_isolated: bool) -> anyhow::Result<tether_deploy::mesh::Mesh> {
    tether_deploy::mesh::io::read(path, drop_isolated)
        .with_context(|| format!("reading the mesh {}", path.display()))
}

/// The options of `run` on a mesh.
struct MeshRun<'a> {
    labels: Option<&'a Path>,
    label_offset: usize,
    predictions: Option<&'a Path>,
    drop_isolated: bool,
    precision: tether_deploy::mesh::Precision,
}

/// `run` for a mesh model: one prediction per vertex.
fn run_mesh(model: Model<'_>, mesh_path: &Path, options: &MeshRun<'_>) -> anyhow::Result<()> {
    let MeshRun {
        labels,
        label_offset: offset,
        predictions,
        drop_isolated,
        precision,
    } = *options;
    let mesh = read_mesh(mesh_path, drop_isolated)?;
    let mut plan = tether_deploy::mesh::MeshPlan::new(model)?.with_precision(precision);
    let width = plan.output_width();
    let start = Instant::now();
    let y = plan.run(&mesh)?;
    let secs = start.elapsed().as_secs_f64();
    let pred: Vec<usize> = y.chunks(width).map(argmax).collect();
    let mut counts = vec![0usize; width];
    for &p in &pred {
        counts[p] += 1;
    }
    println!(
        "{}: {} vertices in {:.1} ms ({:?}, geometry included); predicted vertices per class: \
         {counts:?}",
        mesh_path.display(),
        pred.len(),
        secs * 1e3,
        precision
    );
    if let Some(path) = labels {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut want = Vec::with_capacity(pred.len());
        for (i, line) in text.lines().enumerate().skip(offset).take(pred.len()) {
            let v: f64 = line
                .trim()
                .parse()
                .with_context(|| format!("{}:{}: not a label: {line:?}", path.display(), i + 1))?;
            want.push(v);
        }
        ensure!(
            want.len() == pred.len(),
            "{}: {} labels from line {offset} on, the mesh has {} vertices",
            path.display(),
            want.len(),
            pred.len()
        );
        let correct = pred
            .iter()
            .zip(&want)
            .filter(|(p, w)| **p as f64 == **w)
            .count();
        println!(
            "accuracy {:.4} ({correct} of {} vertices)",
            correct as f64 / pred.len() as f64,
            pred.len()
        );
    }
    if let Some(path) = predictions {
        let text: String = pred.iter().map(|p| format!("{p}\n")).collect();
        write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `bench` for a mesh model: the whole run on one mesh (geometry included), in f32 and in
/// f64, the trials interleaved so both see the same machine load.
fn bench_mesh(
    model: Model<'_>,
    path: &Path,
    mesh_path: &Path,
    trials: usize,
) -> anyhow::Result<()> {
    use tether_deploy::mesh::{MeshPlan, Precision};
    let mesh = read_mesh(mesh_path, false)?;
    let mut plans = [
        MeshPlan::new(model.clone())?.with_precision(Precision::F32),
        MeshPlan::new(model)?.with_precision(Precision::F64),
    ];
    let mut times = [Vec::with_capacity(trials), Vec::with_capacity(trials)];
    for plan in &mut plans {
        plan.run(&mesh)?;
    }
    for _ in 0..trials {
        for (plan, times) in plans.iter_mut().zip(&mut times) {
            let t = Instant::now();
            plan.run(&mesh)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        "{} on {} ({} vertices), single thread, geometry included, {trials} runs each:",
        path.display(),
        mesh_path.display(),
        mesh.vertex_count(),
    );
    let mut medians = [0.0; 2];
    for ((times, name), median) in times.iter_mut().zip(["f32", "f64"]).zip(&mut medians) {
        times.sort_by(f64::total_cmp);
        *median = times[trials / 2];
        println!(
            "  {name}: median {:.1} ms per mesh (min {:.1}, max {:.1})",
            times[trials / 2],
            times[0],
            times[trials - 1]
        );
    }
    println!("  f64 / f32: {:.2}x", medians[1] / medians[0]);
    let exact = plans[1].run_f64(&mesh)?;
    let single = plans[0].run(&mesh)?;
    let largest = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = single
        .iter()
        .zip(&exact)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0f64, f64::max);
    println!(
        "  f32 vs f64 outputs: max |diff| {diff:.2e} (largest |output| {largest:.1}): the f32 \
         rounding error on this mesh"
    );
    Ok(())
}

/// Non-finite-input warnings `run` prints before summing up the rest.
const MAX_WARNINGS: usize = 10;

/// The samples of `x` (`per` values each) holding NaN or an infinity: the sample, the
/// first such value's position in it, and the value.
fn non_finite_samples(x: &[f32], per: usize) -> Vec<(usize, usize, f32)> {
    x.chunks(per)
        .enumerate()
        .filter_map(|(i, s)| {
            let at = s.iter().position(|v| !v.is_finite())?;
            Some((i, at, s[at]))
        })
        .collect()
}

/// The predicted class: the [`argmax`] of the scores, or `None` when a score is NaN. A NaN
/// score is no evidence for or against any class, and an argmax over it answers by the
/// order it happens to give NaN (`total_cmp` ranks a positive NaN above everything: an
/// all-NaN row predicted the last class, a negative NaN never wins). Infinite scores are
/// ordinary (`+inf` wins).
fn prediction(s: &[f32]) -> Option<usize> {
    if s.iter().any(|v| v.is_nan()) {
        return None;
    }
    Some(argmax(s))
}

/// The first index of the largest score, as numpy's and PyTorch's `argmax` break ties
/// (`max_by` keeps the last of equals; a pruned network often ties on all-zero scores).
fn argmax(s: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in s.iter().enumerate() {
        if v.total_cmp(&s[best]).is_gt() {
            best = i;
        }
    }
    best
}

fn read_input(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "f32" | "bin") {
        ensure!(
            bytes.len() % 4 == 0,
            "{}: {} bytes is not a whole number of f32",
            path.display(),
            bytes.len()
        );
        return Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect());
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{}: neither .f32 nor UTF-8 text", path.display()))?;
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .with_context(|| format!("{}: {t:?} is not a number", path.display()))
        })
        .collect()
}

fn read_idx(path: &Path, magic: u32) -> anyhow::Result<(Vec<u8>, Vec<usize>)> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(b.len() >= 4, "{}: too short for IDX", path.display());
    let m = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    ensure!(
        m == magic,
        "{}: IDX magic {m:#x}, expected {magic:#x}",
        path.display()
    );
    let rank = (magic & 0xff) as usize;
    ensure!(
        b.len() >= 4 + 4 * rank,
        "{}: truncated header",
        path.display()
    );
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let n: usize = dims.iter().product();
    let data = &b[4 + 4 * rank..];
    ensure!(
        data.len() == n,
        "{}: {} data bytes, the header says {n}",
        path.display(),
        data.len()
    );
    Ok((data.to_vec(), dims))
}

fn read_idx_images(path: &Path, mean: f32, std: f32) -> anyhow::Result<(Vec<f32>, usize)> {
    ensure!(std > 0.0, "--normalize: std must be > 0");
    let (data, dims) = read_idx(path, 0x0000_0803)?;
    Ok((
        data.iter()
            .map(|&p| (p as f32 / 255.0 - mean) / std)
            .collect(),
        dims[0],
    ))
}

fn read_idx_labels(path: &Path) -> anyhow::Result<Vec<usize>> {
    Ok(read_idx(path, 0x0000_0801)?
        .0
        .into_iter()
        .map(usize::from)
        .collect())
}

fn inspect(path: &Path) -> anyhow::Result<()> {
    let bytes = load(path)?;
    let model = parse(&bytes, path)?;
    println!(
        "{}: {} bytes, {} tensors, {} ops, input {:?}, output {:?}",
        path.display(),
        model.file_len,
        model.tensors.len(),
        model.nodes.len(),
        model.input_shape().as_slice(),
        model.output_shape().as_slice()
    );
    println!(
        "{:>3}  {:<10} {:<16} {:<16} {:>8} {:>9} {:>9}",
        "op", "kind", "input", "output", "density", "bytes", "storage"
    );
    let mut params = 0usize;
    let mut nonzeros = 0usize;
    for (i, node) in model.nodes.iter().enumerate() {
        let name = node.op.name();
        let weight = match node.op {
            Op::Linear { weight, .. } | Op::Conv2d { weight, .. } => Some(weight),
            _ => None,
        };
        let shape = |v: usize| format!("{:?}", model.shapes[v].as_slice());
        let (density, bytes, storage) = match weight {
            Some(w) => {
                let t = &model.tensors[w];
                let nnz = match t.data {
                    TensorData::Csr(c) => c.values().len(),
                    TensorData::F32(d) => d.iter().filter(|&&v| v != 0.0).count(),
                    TensorData::F16(d) => d.iter().filter(|&&h| h & 0x7fff != 0).count(),
                };
                params += t.dims.numel();
                nonzeros += nnz;
                let storage = match t.data {
                    TensorData::Csr(_) => "csr",
                    TensorData::F32(_) => "f32",
                    TensorData::F16(_) => "f16",
                };
                (
                    format!("{:.4}", nnz as f64 / t.dims.numel() as f64),
                    t.bytes().to_string(),
                    storage,
                )
            }
            None => ("".into(), "".into(), ""),
        };
        println!(
            "{i:>3}  {name:<10} {:<16} {:<16} {density:>8} {bytes:>9} {storage:>9}",
            shape(node.inputs[0]),
            shape(node.output)
        );
    }
    println!(
        "weights: {nonzeros} nonzero of {params} ({:.4})",
        nonzeros as f64 / params.max(1) as f64
    );
    if is_mesh_model(&model) {
        println!(
            "a mesh model (EMAN): one sample per vertex; buffers are sized per mesh \
             (run MODEL MESH, bench MODEL --mesh MESH)"
        );
        return Ok(());
    }
    for batch in [1, 32] {
        let plan = Plan::new(
            model.clone(),
            &PlanOptions {
                batch,
                max_bytes: HOST_PLAN_BYTES,
                ..Default::default()
            },
        )?;
        let sparse: Vec<String> = plan
            .layers()
            .iter()
            .map(|l| match l.batch1_layout {
                Some(layout) if batch == 1 => format!("op {} sparse ({layout})", l.op),
                Some(_) => format!("op {} sparse", l.op),
                None => format!("op {} dense", l.op),
            })
            .collect();
        println!(
            "plan, batch {batch}: activations {} bytes (arena + scratch); kernels: {}",
            plan.activation_bytes(),
            sparse.join(", ")
        );
    }
    Ok(())
}

fn bench(path: &Path, batches: &[usize], trials: usize, mesh: Option<&Path>) -> anyhow::Result<()> {
    ensure!(trials >= 1, "--trials must be at least 1");
    let bytes = load(path)?;
    let model = parse(&bytes, path)?;
    if is_mesh_model(&model) {
        let mesh = mesh.context("a mesh model is timed on a mesh: give --mesh FILE")?;
        return bench_mesh(model, path, mesh, trials);
    }
    ensure!(mesh.is_none(), "--mesh is for mesh models");
    let per = model.input_shape().numel();
    println!(
        "{}: latency per batch, single thread; {trials} trials, the kernel choices in turn \
         within each trial; times are medians, the ratio is the median of per-trial ratios \
         (so load on the machine hits both sides alike)",
        path.display()
    );
    println!(
        "{:>5}  {:>12} {:>12} {:>12}  {:>14}",
        "batch", "dense", "sparse", "auto", "dense / auto"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for &batch in batches {
        ensure!(batch >= 1, "--batch sizes must be at least 1");
        let input: Vec<f32> = (0..per * batch)
            .map(|i| ((i * 31) % 17) as f32 / 17.0)
            .collect();
        let mut plans = Vec::new();
        for k in [
            KernelChoice::Dense,
            KernelChoice::Sparse,
            KernelChoice::Auto,
        ] {
            let mut plan = Plan::new(
                model.clone(),
                &PlanOptions {
                    batch,
                    kernels: k,
                    max_bytes: HOST_PLAN_BYTES,
                },
            )?;
            // Repetitions filling ~10 ms, measured on a warm plan.
            plan.run(&input)?;
            let t = Instant::now();
            let mut reps = 0usize;
            while t.elapsed().as_secs_f64() < 0.01 {
                plan.run(&input)?;
                reps += 1;
            }
            plans.push((plan, reps));
        }
        let mut times: [Vec<f64>; 3] = Default::default();
        for _ in 0..trials {
            for ((plan, reps), out) in plans.iter_mut().zip(times.iter_mut()) {
                let t = Instant::now();
                for _ in 0..*reps {
                    std::hint::black_box(plan.run(&input).map(|y| y[0]).unwrap_or(0.0));
                }
                out.push(t.elapsed().as_secs_f64() / *reps as f64);
            }
        }
        let ratio = median(times[0].iter().zip(&times[2]).map(|(d, a)| d / a).collect());
        let [d, s, a] = times.map(median);
        println!(
            "{batch:>5}  {:>9.1} us {:>9.1} us {:>9.1} us  {:>13.2}x",
            d * 1e6,
            s * 1e6,
            a * 1e6,
            ratio
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_takes_the_first_of_equal_scores() {
        assert_eq!(super::argmax(&[0.0, 0.0, 0.0]), 0);
        assert_eq!(super::argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(super::argmax(&[-1.0, -0.5]), 1);
    }
}
