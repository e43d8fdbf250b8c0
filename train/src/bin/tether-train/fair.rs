//! `tether-train fair-prune`: train dense, prune by magnitude, fine-tune with every
//! group's excess accuracy gap bounded (CEAG), or with a baseline; report per group.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use tether_models::classifier::Classifier;
use tether_models::masked::MaskedMlp;
use tether_models::mlp::{Mlp, MlpConfig};
use tether_models::to_deploy::{Storage, mlp_to_deploy};
use tether_train::constrained::{
    ConstrainedOptimizer, ConstraintKind, ConstraintSet, DualOptimizer, FormulationConfig,
    MultiplierConfig, NuPiConfig, UpdateScheme,
};
use tether_train::data::adult::{self, AdultEncoder, AdultSplit};
use tether_train::data::batches::holdout;
use tether_train::data::groups::{self, Groups};
use tether_train::data::mnist::{ImageSet, MnistKind, Split};
use tether_train::device::{BackendTask, DeviceArgs, run_on};
use tether_train::io::{csv, write_atomic};
use tether_train::optim::shampoo::ShampooHealth;
use tether_train::optim::{AnyOptimizer, OptimizerArgs};
use tether_train::plot::{Panel, Series, line_chart};
use tether_train::tasks::fair::{FairProblem, GroupMetrics, GroupedSet};
use tether_train::trainer::{FitOptions, fit};

use crate::svm::Dual;

/// Datasets with groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FairDataset {
    /// UCI Adult (income > 50K), groupings race, sex, race-sex, sex-age-occupation.
    Adult,
    /// MNIST digits, grouping class.
    Mnist,
    /// Fashion-MNIST, grouping class.
    FashionMnist,
}

/// The fine-tuning objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Constrained excess accuracy gap: every group's accuracy drop at most the overall
    /// drop plus epsilon (Hashemizadeh et al., ICLR 2024).
    Ceag,
    /// Naive fine-tuning: cross-entropy only.
    Naive,
    /// Equalised loss: every group's loss equal to the overall loss (equality constraints).
    EqualLoss,
}

#[derive(Clone, Debug, clap::Args)]
pub struct FairArgs {
    /// Dataset.
    #[arg(long, value_enum, default_value_t = FairDataset::Adult)]
    dataset: FairDataset,
    /// Grouping by name: race, sex, race-sex, sex-age-occupation (adult); class (images);
    /// random-N (any). Default: race-sex for adult, class for images.
    #[arg(long)]
    groups: Option<String>,
    /// Intersections with fewer training samples than this are left unconstrained.
    #[arg(long, default_value_t = 50)]
    min_group_size: usize,
    /// Fraction of each hidden layer's weights removed by magnitude pruning, in [0, 1)
    /// (the output layer stays dense).
    #[arg(long, default_value_t = 0.9)]
    sparsity: f64,
    /// The L0 route: instead of magnitude pruning, fine-tune the model that `tether-train
    /// prune` wrote to DIR (its `model.mpk`, gates folded; same dataset and network); its
    /// zeros stay zero.
    #[arg(long, value_name = "DIR", conflicts_with = "sparsity")]
    pruned_from: Option<PathBuf>,
    /// Gradual magnitude pruning (Zhu & Gupta 2017, as in the Balancing Act reference
    /// code): this many epochs of cross-entropy training (constraints off) before the
    /// fine-tuning epochs, each starting with a magnitude pruning step on the cubic ramp
    /// s_e = s (1 - (1 - (e+1)/P)^3), so the last reaches --sparsity. 0 prunes in one shot.
    #[arg(long, default_value_t = 0, conflicts_with = "pruned_from")]
    prune_epochs: usize,
    /// Tolerance on each group's excess accuracy gap (CEAG), >= 0.
    #[arg(long, default_value_t = 0.01)]
    epsilon: f64,
    /// CEAG's multipliers aim at epsilon - margin (the result is still judged against
    /// epsilon): the replay buffer's estimates are noisier than epsilon, and iterates aimed
    /// at the bound itself end on either side of it. In [0, epsilon].
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// Fine-tuning objective.
    #[arg(long, value_enum, default_value_t = Method::Ceag)]
    method: Method,
    /// Multiplier update rule.
    #[arg(long, value_enum, default_value_t = Dual::Ga)]
    dual: Dual,
    /// Dual step size. Equalised loss wants about a tenth: its multipliers are free in
    /// sign and diverged at 0.02 on Fashion-MNIST.
    #[arg(long, default_value_t = 0.02)]
    dual_lr: f64,
    /// nuPI proportional gain.
    #[arg(long, default_value_t = 1.0)]
    kp: f64,
    /// CEAG's surrogate exactly as the paper writes it: the primal step sees sum_g
    /// lambda_g (grad L_g - grad L). By default the overall loss is detached inside the
    /// constraints (sum_g lambda_g grad L_g): with its gradient kept, the overall loss's
    /// weight turns negative once the multipliers sum past 1 and the step raises it
    /// (Adult race x sex, 90%: train accuracy 0.844 vs 0.851 detached; 0.81 with a
    /// larger dual step).
    #[arg(long)]
    keep_overall_gradient: bool,
    /// Evaluations on the training set per fine-tuning epoch, among which CEAG keeps the
    /// best iterate (0 keeps the last).
    #[arg(long, default_value_t = 4)]
    checks_per_epoch: usize,
    /// Samples per group in the replay buffer that estimates the sparse model's accuracy.
    #[arg(long, default_value_t = 256)]
    buffer: usize,
    /// Hidden widths of the MLP (adult). A 10%-dense 256-128 MLP cannot keep the dense
    /// model's accuracy on every one of 100 small groups; 1024,512 does (BENCHMARKS.md).
    #[arg(long, value_delimiter = ',', default_value = "256,128")]
    hidden: Vec<usize>,
    /// Epochs of dense training (default: 10 for adult, 5 for images).
    #[arg(long)]
    dense_epochs: Option<usize>,
    /// Fraction of the training set held out to choose the dense reference: the epoch
    /// with the lowest validation loss is kept (early stopping) instead of the last. The
    /// held-out samples take no part in pruning or fine-tuning either; every "train"
    /// figure is on the rest. 0 (the default, the paper's setting) keeps the last epoch
    /// and trains on everything. (On Adult the validation loss barely moves over 10
    /// epochs, so this does not stop the memorising of small groups; `--weight-decay`
    /// narrows it: see BENCHMARKS.md.)
    #[arg(long, default_value_t = 0.0)]
    val_fraction: f64,
    /// Epochs of fine-tuning after pruning (default: 20 for adult, 10 for images).
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate of the dense training (Adam and Shampoo with Adam grafting: 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[command(flatten)]
    optimizer: OptimizerArgs,
    /// Keep the fine-tuning learning rate constant instead of a cosine decay over epochs.
    #[arg(long)]
    constant_lr: bool,
    /// Learning rate of the fine-tuning (start of its cosine decay).
    #[arg(long, default_value_t = 5e-4)]
    ft_lr: f64,
    /// Reuse the dense model of an earlier run (its `dense.mpk`; same dataset, widths and
    /// seed) instead of training one.
    #[arg(long)]
    dense_from: Option<PathBuf>,
    /// Use only the first N training samples (quick runs, tests).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Seed of the initialisation, the batch order and random groupings.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/fair")]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
}

/// A dataset in memory: features, labels and groups of both splits.
struct Data {
    dim: usize,
    classes: usize,
    train: (Vec<f32>, Vec<i64>),
    /// Held out from `train` (`--val-fraction`) to choose the dense model.
    val: (Vec<f32>, Vec<i64>),
    test: (Vec<f32>, Vec<i64>),
    groups: Groups,
}

fn load(args: &FairArgs) -> anyhow::Result<Data> {
    let limit = |n: usize| args.train_limit.map_or(n, |l| l.min(n));
    match args.dataset {
        FairDataset::Adult => {
            let mut rows = adult::load(AdultSplit::Train)?;
            let test = adult::load(AdultSplit::Test)?;
            rows.truncate(limit(rows.len()));
            let (kept, held) = holdout(rows.len(), args.val_fraction, args.seed);
            let pick = |idx: &[usize]| idx.iter().map(|&i| rows[i].clone()).collect::<Vec<_>>();
            let (train, val) = (pick(&kept), pick(&held));
            let name = args.groups.as_deref().unwrap_or("race-sex");
            let groups = groups::adult(name, &train, &test, args.min_group_size, args.seed)?;
            let enc = AdultEncoder::fit(&train);
            let labels = |rows: &[adult::AdultRow]| -> Vec<i64> {
                rows.iter().map(|r| i64::from(r.high_income)).collect()
            };
            Ok(Data {
                dim: enc.dim(),
                classes: 2,
                train: (enc.encode(&train), labels(&train)),
                val: (enc.encode(&val), labels(&val)),
                test: (enc.encode(&test), labels(&test)),
                groups,
            })
        }
        FairDataset::Mnist | FairDataset::FashionMnist => {
            let kind = if args.dataset == FairDataset::Mnist {
                MnistKind::Mnist
            } else {
                MnistKind::FashionMnist
            };
            let train = ImageSet::load(kind, Split::Train)?;
            let test = ImageSet::load(kind, Split::Test)?;
            let (kept, held) = holdout(limit(train.len()), args.val_fraction, args.seed);
            let all: Vec<usize> = (0..test.len()).collect();
            let name = args.groups.as_deref().unwrap_or("class");
            let class = |set: &ImageSet, idx: &[usize]| -> Vec<u8> {
                idx.iter().map(|&i| set.labels[i]).collect()
            };
            let groups = groups::by_class(
                name,
                kind.name(),
                &class(&train, &kept),
                &test.labels,
                args.seed,
            )?;
            let pixels = |set: &ImageSet, idx: &[usize]| -> Vec<f32> {
                idx.iter()
                    .flat_map(|&i| &set.pixels[i * 784..(i + 1) * 784])
                    .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
                    .collect()
            };
            let labels = |set: &ImageSet, idx: &[usize]| -> Vec<i64> {
                idx.iter().map(|&i| set.labels[i] as i64).collect()
            };
            Ok(Data {
                dim: 784,
                classes: 10,
                train: (pixels(&train, &kept), labels(&train, &kept)),
                val: (pixels(&train, &held), labels(&train, &held)),
                test: (pixels(&test, &all), labels(&test, &all)),
                groups,
            })
        }
    }
}

pub fn run(args: FairArgs) -> anyhow::Result<()> {
    args.optimizer.validate()?;
    anyhow::ensure!(
        (0.0..1.0).contains(&args.sparsity),
        "--sparsity must lie in [0, 1), got {}",
        args.sparsity
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&args.val_fraction),
        "--val-fraction must lie in [0, 1), got {}",
        args.val_fraction
    );
    anyhow::ensure!(
        args.epsilon >= 0.0 && args.epsilon.is_finite(),
        "--epsilon must be finite and >= 0, got {}",
        args.epsilon
    );
    anyhow::ensure!(
        args.margin >= 0.0 && args.margin <= args.epsilon,
        "--margin must lie in [0, --epsilon], got {}",
        args.margin
    );
    anyhow::ensure!(
        args.epochs != Some(0) && args.dense_epochs != Some(0) && args.batch > 0 && args.buffer > 0,
        "--epochs, --dense-epochs, --batch and --buffer must be at least 1"
    );
    anyhow::ensure!(
        args.lr > 0.0 && args.ft_lr > 0.0,
        "--lr and --ft-lr must be > 0"
    );
    anyhow::ensure!(
        args.hidden.iter().all(|&h| h > 0),
        "--hidden widths must be at least 1"
    );
    let dual = match args.dual {
        Dual::Ga => DualOptimizer::gradient_ascent(args.dual_lr),
        Dual::Nupi => DualOptimizer::NuPi(NuPiConfig::new(args.dual_lr).with_kp(args.kp)),
    };
    dual.validate()?;
    let data = load(&args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let device = args.device.device;
    run_on(device, Task { args, dual, data })?
}

/// `epochs` epochs of [`fit`] over `train`'s shuffled batches; each step appends `[step,
/// loss, max (strict) violation, mean multiplier, max |multiplier|]` to `log`, and
/// `on_check(epochs done, model)` runs `checks` times per epoch (at evenly spaced steps,
/// the last at the epoch's end; none when `checks` is 0). `at_epoch_start(epoch, model)`
/// may change the model before each epoch (gradual pruning); `shuffle_from` offsets the
/// epochs' batch orders (so a later phase does not replay an earlier one's).
#[allow(clippy::too_many_arguments)]
fn run_epochs<B, M, O>(
    mut model: M,
    train: &GroupedSet<B>,
    a: &FairArgs,
    opt: &mut ConstrainedOptimizer<O>,
    health: Option<ShampooHealth>,
    set: &mut ConstraintSet<B>,
    problem: &FairProblem,
    epochs: usize,
    decay: bool,
    label: &str,
    log: &mut Vec<Vec<f64>>,
    checks: usize,
    shuffle_from: u64,
    mut at_epoch_start: impl FnMut(usize, M) -> M,
    mut on_check: impl FnMut(f64, &M),
) -> anyhow::Result<M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Classifier<B>,
    O: burn::optim::Optimizer<M, B>,
{
    let mut offset = 0;
    let base_lr = opt.lr();
    for epoch in 0..epochs {
        if decay {
            // Cosine over epochs: the last iterates settle.
            let t = epoch as f64 / epochs as f64;
            opt.set_lr(base_lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
        }
        model = at_epoch_start(epoch, model);
        let batches = train.epoch(a.batch, a.seed, shuffle_from + epoch as u64);
        anyhow::ensure!(!batches.is_empty(), "fewer training samples than one batch");
        let chunk = batches.len().div_ceil(checks.max(1));
        for (c, part) in batches.chunks(chunk).enumerate() {
            model = fit(
                model,
                opt,
                set,
                problem,
                &FitOptions::new(part.len(), Some(format!("{label} {}/{epochs}", epoch + 1)))
                    .with_health(health.clone()),
                |s| part[s].clone(),
                |info| {
                    let mut row = vec![(offset + info.step) as f64, info.values.loss];
                    match info.values.constraints.first() {
                        Some((_, v, strict)) => {
                            let v = strict.as_ref().unwrap_or(v);
                            row.push(v.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                            let lambda = info.set.constraints()[0]
                                .formulation()
                                .multiplier()
                                .map(|m| m.to_vec())
                                .unwrap_or_default();
                            let n = lambda.len().max(1) as f64;
                            row.push(lambda.iter().sum::<f64>() / n);
                            row.push(lambda.iter().fold(0.0, |m: f64, l| m.max(l.abs())));
                        }
                        None => row.extend([f64::NAN, 0.0, 0.0]),
                    }
                    log.push(row);
                },
            )?;
            offset += part.len();
            if checks > 0 {
                let done = (c * chunk + part.len()) as f64 / batches.len() as f64;
                on_check(epoch as f64 + done, &model);
            }
        }
    }
    Ok(model)
}

/// The `--optimizer` at learning rate `lr`, wrapped for [`fit`], with Shampoo's failure
/// handle (dense training, gradual pruning and fine-tuning each start a fresh one).
#[allow(clippy::type_complexity)]
fn primal_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    a: &FairArgs,
    lr: f64,
) -> anyhow::Result<(
    ConstrainedOptimizer<AnyOptimizer<M, B>>,
    Option<ShampooHealth>,
)> {
    let primal = a.optimizer.build()?;
    let health = primal.health();
    Ok((
        ConstrainedOptimizer::new(primal, lr, UpdateScheme::Simultaneous),
        health,
    ))
}

/// Loads the MLP record at `path` into `fresh` after checking that its layers have the
/// `widths` of this run (burn would load a record of another shape without complaint, or
/// panic on another layer count).
fn load_mlp<B: burn::tensor::backend::Backend>(
    fresh: Mlp<B>,
    widths: &[usize],
    path: &std::path::Path,
    device: &B::Device,
) -> anyhow::Result<Mlp<B>> {
    let record: <Mlp<B> as Module<B>>::Record =
        NamedMpkFileRecorder::<FullPrecisionSettings>::new()
            .load(path.to_path_buf(), device)
            .with_context(|| format!("loading {}", path.display()))?;
    let got: Vec<usize> = match record.layers.first() {
        Some(first) => std::iter::once(first.weight.dims()[0])
            .chain(record.layers.iter().map(|l| l.weight.dims()[1]))
            .collect(),
        None => Vec::new(),
    };
    anyhow::ensure!(
        got == widths,
        "{} holds a network of widths {got:?}, this run needs {widths:?} (another dataset or --hidden?)",
        path.display()
    );
    Ok(fresh.load_record(record))
}

/// Batch orders of the gradual-pruning epochs start here, so that they are none of the
/// dense or fine-tuning epochs' (those count from 0).
const PRUNING_SHUFFLE: u64 = 1 << 32;

/// An evaluated fine-tuning iterate.
struct Candidate<M> {
    feasible: bool,
    accuracy: f64,
    worst: f64,
    at: f64,
    model: M,
}

impl<M> Candidate<M> {
    /// Feasible beats infeasible; among feasible, higher training accuracy (ties: the
    /// later); among infeasible, the smaller worst gap.
    fn beats(&self, other: &Self) -> bool {
        match (self.feasible, other.feasible) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.accuracy >= other.accuracy,
            (false, false) => self.worst <= other.worst,
        }
    }
}

struct Task {
    args: FairArgs,
    dual: DualOptimizer,
    data: Data,
}

impl BackendTask for Task {
    type Output = anyhow::Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let Task { args, dual, data } = self;
        let a = &args;
        B::seed(&device, a.seed);
        let g = data.groups.len();
        let train = GroupedSet::<B>::new(
            data.train.0,
            data.dim,
            &data.train.1,
            data.groups.train.clone(),
            &device,
        );
        let test = GroupedSet::<B::InnerBackend>::new(
            data.test.0,
            data.dim,
            &data.test.1,
            data.groups.test.clone(),
            &device,
        );
        let train_eval = train.clone().inner();
        let widths = match a.dataset {
            FairDataset::Adult => [vec![data.dim], a.hidden.clone(), vec![data.classes]].concat(),
            _ => vec![784, 300, 100, 10],
        };
        println!(
            "{:?}: {} training samples, {} groups ({} samples in none), widths {widths:?}",
            a.dataset,
            train.len(),
            g,
            data.groups
                .train
                .iter()
                .filter(|&&i| i == groups::NO_GROUP)
                .count()
        );
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let fresh = MlpConfig::new(widths.clone()).init::<B>(&device);
        let dense_epochs = a.dense_epochs.unwrap_or(match a.dataset {
            FairDataset::Adult => 10,
            _ => 5,
        });
        let epochs = a.epochs.unwrap_or(match a.dataset {
            FairDataset::Adult => 20,
            _ => 10,
        });
        // 1. The dense model: the epoch with the lowest validation loss (or the last).
        let started = Instant::now();
        let val = (!data.val.1.is_empty()).then(|| {
            let n = data.val.1.len();
            GroupedSet::<B::InnerBackend>::new(
                data.val.0,
                data.dim,
                &data.val.1,
                vec![groups::NO_GROUP; n],
                &device,
            )
        });
        let mut val_losses: Vec<f64> = Vec::new();
        let mut dense_kept_epoch = dense_epochs;
        let dense: Mlp<B> = match &a.dense_from {
            Some(dir) => load_mlp(fresh, &widths, &dir.join("dense.mpk"), &device)?,
            None => {
                let mut set = ConstraintSet::<B>::new(&device);
                let (mut opt, health) = primal_optimizer(a, a.lr)?;
                let mut log = Vec::new();
                // (epoch, validation loss, model) of the best epoch so far.
                let mut kept: Option<(usize, f64, Mlp<B>)> = None;
                let last = run_epochs(
                    fresh,
                    &train,
                    a,
                    &mut opt,
                    health,
                    &mut set,
                    &FairProblem::unconstrained(),
                    dense_epochs,
                    false,
                    "dense",
                    &mut log,
                    usize::from(val.is_some()),
                    0,
                    |_, m| m,
                    |_, model: &Mlp<B>| {
                        let Some(val) = &val else { return };
                        let loss = GroupMetrics::measure(&model.valid(), val, 0, 1000).loss;
                        val_losses.push(loss);
                        if kept.as_ref().is_none_or(|(_, best, _)| loss < *best) {
                            kept = Some((val_losses.len(), loss, model.clone()));
                        }
                    },
                )?;
                match kept {
                    Some((epoch, loss, model)) => {
                        dense_kept_epoch = epoch;
                        println!(
                            "dense: kept epoch {epoch} of {dense_epochs} (validation loss {loss:.4}; by epoch: {})",
                            val_losses
                                .iter()
                                .map(|l| format!("{l:.4}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                        model
                    }
                    None => last,
                }
            }
        };
        dense
            .clone()
            .save_file(a.out.join("dense-partial"), &recorder)
            .context("saving the dense model")?;
        std::fs::rename(a.out.join("dense-partial.mpk"), a.out.join("dense.mpk"))?;
        let dense_secs = started.elapsed().as_secs_f64();
        let dense_eval = dense.valid();
        let dense_train = GroupMetrics::measure(&dense_eval, &train_eval, g, 1000);
        let dense_test = GroupMetrics::measure(&dense_eval, &test, g, 1000);
        println!(
            "dense: train accuracy {:.4}, test accuracy {:.4}",
            dense_train.accuracy, dense_test.accuracy
        );

        // 2. Pruning: by magnitude (in one shot or gradually), or the zeros of an
        //    L0-pruned model.
        let ramp = |e: usize| {
            let p = a.prune_epochs as f64;
            a.sparsity * (1.0 - (1.0 - (e as f64 + 1.0) / p).powi(3))
        };
        let masked = match &a.pruned_from {
            None if a.prune_epochs > 0 => {
                let mut set = ConstraintSet::<B>::new(&device);
                let (mut opt, health) = primal_optimizer(a, a.ft_lr)?;
                let mut log = Vec::new();
                run_epochs(
                    MaskedMlp::magnitude(dense, 0.0),
                    &train,
                    a,
                    &mut opt,
                    health,
                    &mut set,
                    &FairProblem::unconstrained(),
                    a.prune_epochs,
                    false,
                    "prune",
                    &mut log,
                    0,
                    PRUNING_SHUFFLE,
                    |e, m: MaskedMlp<B>| m.prune_to(ramp(e)),
                    |_, _| {},
                )?
            }
            None => MaskedMlp::magnitude(dense, a.sparsity),
            Some(dir) => {
                let path = dir.join("model.mpk");
                let fresh = MlpConfig::new(widths.clone()).init::<B>(&device);
                let pruned: Mlp<B> = load_mlp(fresh, &widths, &path, &device)?;
                MaskedMlp::from_zeros(pruned)
            }
        };
        let pruned_eval = masked.valid();
        let pruned_train = GroupMetrics::measure(&pruned_eval, &train_eval, g, 1000);
        let pruned_test = GroupMetrics::measure(&pruned_eval, &test, g, 1000);
        println!(
            "pruned to density {:.4} ({:.4} with the output layer): train accuracy {:.4}, test accuracy {:.4}",
            masked.density(),
            masked.total_density(),
            pruned_train.accuracy,
            pruned_test.accuracy
        );

        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);

        // 3. Fine-tuning.
        let mut set = ConstraintSet::<B>::new(&device);
        let problem = match a.method {
            Method::Naive => FairProblem::unconstrained(),
            Method::EqualLoss => {
                let id = set.add(
                    "equal-loss",
                    ConstraintKind::Equality,
                    g,
                    FormulationConfig::Lagrangian(MultiplierConfig::new(dual.clone()).indexed()),
                )?;
                FairProblem::equalized_loss(id)
            }
            Method::Ceag => {
                let id = set.add(
                    "excess-accuracy-gap",
                    ConstraintKind::Inequality,
                    g,
                    FormulationConfig::Lagrangian(MultiplierConfig::new(dual.clone()).indexed()),
                )?;
                FairProblem::excess_accuracy_gap(id, dense_train.clone(), a.epsilon, a.buffer)
                    .with_margin(a.margin)
                    .with_detached_overall(!a.keep_overall_gradient)
            }
        };
        let (mut opt, health) = primal_optimizer(a, a.ft_lr)?;
        let mut log = Vec::new();
        let started = Instant::now();
        // CEAG keeps the best iterate among `--checks-per-epoch` evaluations on the
        // training set: the last-evaluated iterate whose groups all meet the bound with
        // the best accuracy, else the one with the smallest worst gap (the best-iterate
        // rule that goes with the proxy-constraint pattern, Cotter et al. 2019). The
        // baselines keep their last iterate.
        let select = a.method == Method::Ceag;
        let mut best: Option<Candidate<MaskedMlp<B::InnerBackend>>> = None;
        let mut checks_log: Vec<Vec<f64>> = Vec::new();
        let tuned = run_epochs(
            masked,
            &train,
            a,
            &mut opt,
            health,
            &mut set,
            &problem,
            epochs,
            !a.constant_lr,
            "fine-tune",
            &mut log,
            if select { a.checks_per_epoch } else { 0 },
            0,
            |_, m| m,
            |at, model| {
                let m = model.valid();
                let metrics = GroupMetrics::measure(&m, &train_eval, g, 1000);
                let worst = dense_train
                    .excess_gaps(&metrics)
                    .into_iter()
                    .fold(f64::NEG_INFINITY, f64::max);
                checks_log.push(vec![at, metrics.accuracy, worst]);
                let candidate = Candidate {
                    feasible: worst <= a.epsilon,
                    accuracy: metrics.accuracy,
                    worst,
                    at,
                    model: m,
                };
                if best.as_ref().is_none_or(|b| candidate.beats(b)) {
                    best = Some(candidate);
                }
            },
        )?;
        let ft_secs = started.elapsed().as_secs_f64();
        let last_train = GroupMetrics::measure(&tuned.valid(), &train_eval, g, 1000);
        let last_worst = max(&dense_train.excess_gaps(&last_train));
        let (eval, selected_at) = match best {
            Some(b) => (b.model, b.at),
            None => (tuned.valid(), epochs as f64),
        };
        if select {
            println!(
                "kept the iterate at epoch {selected_at:.2} of {epochs} (last iterate: worst train gap {last_worst:+.4})"
            );
            write_atomic(
                &a.out.join("checks.csv"),
                csv(
                    &[
                        "epoch".into(),
                        "train_accuracy".into(),
                        "train_max_excess_gap".into(),
                    ],
                    &checks_log,
                )
                .as_bytes(),
            )?;
        }
        let final_train = GroupMetrics::measure(&eval, &train_eval, g, 1000);
        let final_test = GroupMetrics::measure(&eval, &test, g, 1000);
        let multipliers = set
            .constraints()
            .first()
            .and_then(|c| c.formulation().multiplier().map(|m| m.to_vec()))
            .unwrap_or_else(|| vec![0.0; g]);

        // 4. Outputs.
        let gaps = |sparse: &GroupMetrics, dense: &GroupMetrics| dense.excess_gaps(sparse);
        let (before_tr, before_te) = (
            gaps(&pruned_train, &dense_train),
            gaps(&pruned_test, &dense_test),
        );
        let (after_tr, after_te) = (
            gaps(&final_train, &dense_train),
            gaps(&final_test, &dense_test),
        );
        let buffer = problem.buffer();
        let full = (0..g).filter(|&k| buffer.is_full(k)).count();
        // The gaps as the multipliers last saw them: from the replay buffer (CEAG only).
        let buffered: Vec<f64> = match (a.method, buffer.overall_accuracy()) {
            (Method::Ceag, Some(overall)) => (0..g)
                .map(|k| {
                    buffer.group_accuracy(k).map_or(f64::NAN, |acc| {
                        (dense_train.group_accuracy[k] - acc) - (dense_train.accuracy - overall)
                    })
                })
                .collect(),
            _ => vec![f64::NAN; g],
        };
        let full_max = (0..g)
            .filter(|&k| buffer.is_full(k))
            .map(|k| buffered[k])
            .fold(f64::NEG_INFINITY, f64::max);

        let mut rows = Vec::new();
        let mut md = format!(
            "# fair-prune: {:?}, groups {}, sparsity {}, method {:?}, epsilon {}\n\n\
             | | dense | pruned | fine-tuned |\n|---|---|---|---|\n\
             | train accuracy | {:.4} | {:.4} | {:.4} |\n| test accuracy | {:.4} | {:.4} | {:.4} |\n\
             | train max excess gap | 0 | {:.4} | {:.4} |\n| test max excess gap | 0 | {:.4} | {:.4} |\n\n\
             Per group (accuracies on train / test; excess gap = group drop - overall drop; \
             constraint: gap <= {} on train):\n\n\
             | group | name | train n | test n | dense acc train | sparse acc train | gap train | gap in buffer | dense acc test | sparse acc test | gap test | multiplier |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
            a.dataset,
            a.groups.as_deref().unwrap_or("default"),
            a.sparsity,
            a.method,
            a.epsilon,
            dense_train.accuracy,
            pruned_train.accuracy,
            final_train.accuracy,
            dense_test.accuracy,
            pruned_test.accuracy,
            final_test.accuracy,
            max(&before_tr),
            max(&after_tr),
            max(&before_te),
            max(&after_te),
            a.epsilon,
        );
        for k in 0..g {
            rows.push(vec![
                k as f64,
                dense_train.group_count[k] as f64,
                dense_test.group_count[k] as f64,
                dense_train.group_accuracy[k],
                pruned_train.group_accuracy[k],
                final_train.group_accuracy[k],
                before_tr[k],
                after_tr[k],
                dense_test.group_accuracy[k],
                pruned_test.group_accuracy[k],
                final_test.group_accuracy[k],
                before_te[k],
                after_te[k],
                multipliers[k],
                buffered[k],
            ]);
            md.push_str(&format!(
                "| {k} | {} | {} | {} | {:.4} | {:.4} | {:+.4} | {:+.4} | {:.4} | {:.4} | {:+.4} | {:.4} |\n",
                data.groups.names[k],
                dense_train.group_count[k],
                dense_test.group_count[k],
                dense_train.group_accuracy[k],
                final_train.group_accuracy[k],
                after_tr[k],
                buffered[k],
                dense_test.group_accuracy[k],
                final_test.group_accuracy[k],
                after_te[k],
                multipliers[k],
            ));
        }
        let header: Vec<String> = [
            "group",
            "train_n",
            "test_n",
            "dense_train_acc",
            "pruned_train_acc",
            "sparse_train_acc",
            "pruned_train_gap",
            "sparse_train_gap",
            "dense_test_acc",
            "pruned_test_acc",
            "sparse_test_acc",
            "pruned_test_gap",
            "sparse_test_gap",
            "multiplier",
            "buffer_train_gap",
        ]
        .map(String::from)
        .to_vec();
        write_atomic(&a.out.join("groups.csv"), csv(&header, &rows).as_bytes())?;
        write_atomic(&a.out.join("report.md"), md.as_bytes())?;
        let log_header: Vec<String> = [
            "step",
            "loss",
            "max_violation",
            "mean_multiplier",
            "max_multiplier",
        ]
        .map(String::from)
        .to_vec();
        write_atomic(
            &a.out.join("metrics.csv"),
            csv(&log_header, &log).as_bytes(),
        )?;
        let series = |label: &str, v: &[f64]| Series {
            label: label.into(),
            points: v.iter().enumerate().map(|(k, &y)| (k as f64, y)).collect(),
        };
        let eps = Series {
            label: format!("epsilon {}", a.epsilon),
            points: vec![(0.0, a.epsilon), ((g.max(2) - 1) as f64, a.epsilon)],
        };
        line_chart(
            &a.out.join("gaps.png"),
            &[
                Panel {
                    title: format!("Excess accuracy gap per group, train ({:?})", a.method),
                    x_label: "group".into(),
                    y_label: "group drop - overall drop".into(),
                    series: vec![
                        series("after pruning", &before_tr),
                        series("after fine-tuning", &after_tr),
                        eps.clone(),
                    ],
                },
                Panel {
                    title: "Excess accuracy gap per group, test".into(),
                    x_label: "group".into(),
                    y_label: "group drop - overall drop".into(),
                    series: vec![
                        series("after pruning", &before_te),
                        series("after fine-tuning", &after_te),
                        eps,
                    ],
                },
            ],
        )?;
        let folded = eval.fold();
        write_atomic(
            &a.out.join("model.safetensors"),
            &tether_models::export::mlp_to_safetensors(
                &folded,
                std::collections::HashMap::from([
                    ("task".to_string(), "fair-prune".to_string()),
                    ("sparsity".to_string(), a.sparsity.to_string()),
                ]),
            )?,
        )?;
        write_atomic(
            &a.out.join("model.tthr"),
            &mlp_to_deploy(&folded, Storage::Smallest)?,
        )?;
        let steps = log.len().max(1) as f64;
        let violating = after_tr.iter().filter(|&&x| x > a.epsilon).count();
        let summary = serde_json::json!({
            "dataset": format!("{:?}", a.dataset), "groups": a.groups.clone().unwrap_or_default(),
            "group_count": g, "method": format!("{:?}", a.method), "sparsity": a.sparsity,
            "density": eval.density(), "density_all_layers": eval.total_density(),
            "pruning": if a.pruned_from.is_some() { "l0" } else if a.prune_epochs > 0 { "gradual magnitude" } else { "magnitude" },
            "prune_epochs": a.prune_epochs, "epsilon": a.epsilon, "margin": a.margin, "dual": format!("{dual:?}"),
            "buffer": a.buffer, "groups_with_full_buffer": full, "seed": a.seed,
            "optimizer": a.optimizer.optimizer,
            "epochs": epochs, "dense_epochs": dense_epochs,
            "val_fraction": a.val_fraction, "validation_samples": data.val.1.len(),
            "dense_validation_loss_by_epoch": val_losses, "dense_epoch_kept": if a.dense_from.is_some() { serde_json::Value::Null } else { serde_json::json!(dense_kept_epoch) },
            "overall_gradient_in_constraints": a.keep_overall_gradient,
            "dense": {"train_accuracy": dense_train.accuracy, "test_accuracy": dense_test.accuracy},
            "pruned": {"train_accuracy": pruned_train.accuracy, "test_accuracy": pruned_test.accuracy,
                       "train_max_excess_gap": max(&before_tr), "test_max_excess_gap": max(&before_te)},
            "final": {"train_accuracy": final_train.accuracy, "test_accuracy": final_test.accuracy,
                      "train_max_excess_gap": max(&after_tr), "test_max_excess_gap": max(&after_te),
                      "train_groups_over_epsilon": violating, "selected_at_epoch": selected_at,
                      "last_iterate_train_max_excess_gap": last_worst,
                      "buffer_max_excess_gap_full_groups": if full > 0 { serde_json::json!(full_max) } else { serde_json::Value::Null }},
            "seconds": {"dense": dense_secs, "fine_tune": ft_secs, "per_fine_tune_step": ft_secs / steps},
        });
        write_atomic(
            &a.out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        println!(
            "fine-tuned ({:?}): train accuracy {:.4}, test accuracy {:.4}; max excess gap train {:+.4} ({} of {g} groups over epsilon {}), test {:+.4}",
            a.method,
            final_train.accuracy,
            final_test.accuracy,
            max(&after_tr),
            violating,
            a.epsilon,
            max(&after_te),
        );
        println!(
            "wrote {}/{{report.md, groups.csv, metrics.csv, gaps.png, dense.mpk, model.safetensors, model.tthr, summary.json}}",
            a.out.display()
        );
        Ok(())
    }
}
