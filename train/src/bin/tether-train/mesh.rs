//! `tether-train mesh`: per-vertex parcellation of the cortex with an equivariant mesh
//! attention network (EMAN), fed RelTan features or raw coordinates (the baseline), and
//! evaluated on the test hemisphere as it is and under random rotations, translations,
//! scalings, vertex permutations and gauge changes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tether_deploy::mesh::{MeshPlan, RelTanOptions};
use tether_deploy::{AlignedBytes, Model};
use tether_models::eman::export::to_deploy;
use tether_models::eman::{EmanInput, EmanNetConfig};
use tether_train::constrained::{ConstrainedOptimizer, ConstraintSet, UpdateScheme};
use tether_train::data::cortex::{CorticalParcellation, LabelledMesh, Parcellation};
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::io::{csv, write_atomic};
use tether_train::optim::OptimizerArgs;
use tether_train::plot::{Panel, Series, line_chart};
use tether_train::tasks::mesh::{MeshSegmentation, PreparedMesh, RandomTransform, accuracy};
use tether_train::trainer::{FitOptions, fit};

/// What the network is fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// Relative tangential features: EMAN, equivariant to all five symmetries.
    Reltan,
    /// Raw vertex coordinates: the same network, not invariant to rotation, translation
    /// or scale.
    Xyz,
}

#[derive(Clone, Debug, clap::Args)]
pub struct MeshArgs {
    /// The labels to learn.
    #[arg(long, value_enum, default_value_t = Parcellation::Mesulam)]
    parcellation: Parcellation,
    /// The network's input.
    #[arg(long, value_enum, default_value_t = Input::Reltan)]
    input: Input,
    /// RelTan's relative powers (one order-1 input feature each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.7")]
    reltan_powers: Vec<f64>,
    /// Hidden channels.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Largest rotation order of the hidden features.
    #[arg(long, default_value_t = 2)]
    order: usize,
    /// Residual blocks (two attention layers each).
    #[arg(long, default_value_t = 1)]
    blocks: usize,
    /// Attention heads per layer.
    #[arg(long, default_value_t = 2)]
    heads: usize,
    /// Training steps (each over every vertex of the training hemisphere).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    #[command(flatten)]
    optimizer: OptimizerArgs,
    /// Evaluate on the test hemisphere every this many steps (0: only at the end).
    #[arg(long, default_value_t = 25)]
    eval_every: usize,
    /// Randomly transformed copies of the test hemisphere.
    #[arg(long, default_value_t = 4)]
    transforms: usize,
    /// Largest translation per axis of a transformed copy (mm).
    #[arg(long, default_value_t = 100.0)]
    translation: f64,
    /// Random seed (initialisation and transformations).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/mesh")]
    out: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// What a run found, as written to `summary.json` (the benchmark reads it back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub parcellation: Parcellation,
    pub input: Input,
    pub seed: u64,
    pub steps: usize,
    pub parameters: usize,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub transformed_accuracy: Vec<f64>,
    pub transformed_mean: f64,
    pub seconds_per_step: f64,
    /// Largest |difference| between tether-deploy's and burn's outputs on the test mesh.
    pub deploy_max_diff: f64,
    /// tether-deploy on the test mesh, geometry included (ms, single thread).
    pub deploy_ms: f64,
    /// burn's forward on the test mesh, geometry precomputed (ms).
    pub burn_ms: f64,
}

pub fn run(args: MeshArgs) -> anyhow::Result<()> {
    args.optimizer.validate()?;
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(
        args.channels > 0 && args.heads > 0 && args.channels.is_multiple_of(args.heads),
        "--heads ({}) must divide --channels ({})",
        args.heads,
        args.channels
    );
    anyhow::ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be a positive number"
    );
    anyhow::ensure!(
        !args.reltan_powers.is_empty() && args.reltan_powers.iter().all(|r| r.is_finite()),
        "--reltan-powers must be finite numbers"
    );
    anyhow::ensure!(
        args.reltan_powers.len() <= tether_deploy::format::MAX_RELTAN_POWERS,
        "--reltan-powers: at most {} (what the deploy format carries)",
        tether_deploy::format::MAX_RELTAN_POWERS
    );
    anyhow::ensure!(
        args.translation.is_finite() && args.translation >= 0.0,
        "--translation must be a finite number >= 0"
    );
    let data = CorticalParcellation::load(args.parcellation)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let device = args.device.device;
    run_on(device, Task { args, data })?
}

fn prepare<Bk: Backend>(
    m: &LabelledMesh,
    input: &EmanInput,
    order: usize,
    device: &Bk::Device,
) -> anyhow::Result<PreparedMesh<Bk>> {
    PreparedMesh::new(&m.mesh, &m.labels, input, None, order, device)
        .with_context(|| format!("preparing the {}", m.name))
}

struct Task {
    args: MeshArgs,
    data: CorticalParcellation,
}

impl BackendTask for Task {
    type Output = anyhow::Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let Task { args, data } = self;
        B::seed(&device, args.seed);
        let input = match args.input {
            // Rounded to f32, as the deploy format stores them: burn and the exported
            // model then compute from identical inputs.
            Input::Reltan => EmanInput::RelTan(RelTanOptions {
                powers: args
                    .reltan_powers
                    .iter()
                    .map(|&p| f64::from(p as f32))
                    .collect(),
                ..Default::default()
            }),
            Input::Xyz => EmanInput::xyz_fitted(&data.train.mesh),
        };
        let config = EmanNetConfig::new(input.channels(), input.order(), data.classes)
            .with_channels(args.channels)
            .with_order(args.order)
            .with_blocks(args.blocks)
            .with_heads(args.heads);
        let net = config.init::<B>(&device);
        let parameters = net.num_params();

        // The training mesh on the autodiff backend; the evaluation meshes on its inner one.
        let train = prepare::<B>(&data.train, &input, args.order, &device)?;
        let train_eval = prepare::<B::InnerBackend>(&data.train, &input, args.order, &device)?;
        let test = prepare::<B::InnerBackend>(&data.test, &input, args.order, &device)?;

        let mut set = ConstraintSet::<B>::new(&device);
        let primal = args.optimizer.build()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, args.lr, UpdateScheme::Simultaneous);
        let problem = MeshSegmentation { mesh: train };
        let progress = (!args.quiet).then(|| format!("mesh {:?}", args.input).to_lowercase());
        let options = FitOptions::new(args.steps, progress).with_health(health);
        let mut losses = Vec::new();
        let mut evals: Vec<Vec<f64>> = Vec::new();
        let start = Instant::now();
        let net = fit(
            net,
            &mut opt,
            &mut set,
            &problem,
            &options,
            |_| (),
            |info| {
                losses.push(vec![info.step as f64, info.values.loss]);
                if args.eval_every > 0 && info.step % args.eval_every == 0 {
                    let valid = info.model.valid();
                    evals.push(vec![
                        info.step as f64,
                        accuracy(&valid, &train_eval),
                        accuracy(&valid, &test),
                    ]);
                }
            },
        )?;
        let seconds_per_step = start.elapsed().as_secs_f64() / args.steps as f64;
        let net = net.valid();
        let train_accuracy = accuracy(&net, &train_eval);
        let test_accuracy = accuracy(&net, &test);
        evals.push(vec![args.steps as f64, train_accuracy, test_accuracy]);

        let bar = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(args.transforms as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("transformed copies [{bar:30}] {pos}/{len}")
                .expect("valid template"),
        );
        let mut transformed_accuracy = Vec::new();
        for k in 0..args.transforms {
            let t = RandomTransform::sample(
                data.test.mesh.vertex_count(),
                args.translation,
                args.seed.wrapping_mul(1000) + k as u64,
            );
            let (mesh, labels) = t.apply(&data.test.mesh, &data.test.labels)?;
            let moved =
                PreparedMesh::new(&mesh, &labels, &input, Some(t.gauge), args.order, &device)?;
            transformed_accuracy.push(accuracy(&net, &moved));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let transformed_mean = if transformed_accuracy.is_empty() {
            f64::NAN
        } else {
            transformed_accuracy.iter().sum::<f64>() / transformed_accuracy.len() as f64
        };

        let out = &args.out;
        write_atomic(
            &out.join("loss.csv"),
            csv(&["step".into(), "loss".into()], &losses).as_bytes(),
        )?;
        write_atomic(
            &out.join("accuracy.csv"),
            csv(
                &[
                    "step".into(),
                    "train_accuracy".into(),
                    "test_accuracy".into(),
                ],
                &evals,
            )
            .as_bytes(),
        )?;
        let series = |label: &str, col: usize, rows: &[Vec<f64>]| Series {
            label: label.into(),
            points: rows.iter().map(|r| (r[0], r[col])).collect(),
        };
        line_chart(
            &out.join("training.png"),
            &[
                Panel {
                    title: "training loss (cross-entropy over all vertices)".into(),
                    x_label: "step".into(),
                    y_label: "loss".into(),
                    series: vec![series("train", 1, &losses)],
                },
                Panel {
                    title: "accuracy".into(),
                    x_label: "step".into(),
                    y_label: "fraction of vertices".into(),
                    series: vec![
                        series("train (left)", 1, &evals),
                        series("test (right, mirrored)", 2, &evals),
                    ],
                },
            ],
        )?;
        // Written under a partial name, renamed when complete.
        net.clone()
            .save_file(
                out.join("model-partial"),
                &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            )
            .context("saving the model")?;
        std::fs::rename(out.join("model-partial.mpk"), out.join("model.mpk"))?;
        write_atomic(&out.join("config.json"), config.to_string().as_bytes())?;
        // The deploy model, checked against burn on the test hemisphere.
        let bytes = to_deploy(&net, &input).context("exporting to the deploy format")?;
        write_atomic(&out.join("model.tthr"), &bytes)?;
        let aligned = AlignedBytes::from_slice(&bytes);
        let mut plan = MeshPlan::new(Model::parse(&aligned)?)?;
        let t = Instant::now();
        let deployed = plan.run(&data.test.mesh)?.to_vec();
        let deploy_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let reference: Vec<f32> = net
            .forward(test.features.clone(), &test.graph)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let burn_ms = t.elapsed().as_secs_f64() * 1e3;
        let deploy_max_diff = deployed
            .iter()
            .zip(&reference)
            .map(|(a, b)| f64::from((a - b).abs()))
            .fold(0.0, f64::max);
        // Both sides compute in f32, in different orders: their difference grows with the
        // outputs' magnitude (about 1e-5 of it through a few layers; an f64 reference and
        // both sides' own errors: the eman_parity example). A bug is off by far more.
        let magnitude = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        anyhow::ensure!(
            deployed.len() == reference.len() && deploy_max_diff < 1e-3 * f64::from(magnitude),
            "tether-deploy disagrees with burn on the test mesh (max |diff| {deploy_max_diff:e} \
             for outputs up to {magnitude})"
        );
        let summary = Summary {
            parcellation: args.parcellation,
            input: args.input,
            seed: args.seed,
            steps: args.steps,
            parameters,
            train_accuracy,
            test_accuracy,
            transformed_accuracy,
            transformed_mean,
            seconds_per_step,
            deploy_max_diff,
            deploy_ms,
            burn_ms,
        };
        write_atomic(
            &out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        println!(
            "{:?} ({parameters} parameters, {:.2} s/step): train {:.4}, test {:.4}, \
             transformed test {:.4} (mean of {})",
            args.input,
            seconds_per_step,
            train_accuracy,
            test_accuracy,
            transformed_mean,
            args.transforms
        );
        println!(
            "tether-deploy on the test mesh: max |diff| {deploy_max_diff:.1e} from burn, \
             {deploy_ms:.0} ms (geometry included) vs burn's {burn_ms:.0} ms"
        );
        println!(
            "wrote {}/{{loss.csv, accuracy.csv, training.png, model.mpk, model.tthr, config.json, summary.json}}",
            out.display()
        );
        Ok(())
    }
}
