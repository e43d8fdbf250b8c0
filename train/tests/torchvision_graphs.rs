//! torchvision's `resnet18()` and `mobilenet_v2()`, as PyTorch's default exporter writes
//! them, import as trainable graphs and take one constrained pruning step (issue 25).
//!
//! The fixtures are the graphs alone (`tests/fixtures/torchvision/make.py` made them):
//! the weights, 45 MB and 14 MB, are not shipped. Each test writes the external data file
//! the graph references, seeded He-uniform values (Kaiming He et al. 2015: bound
//! `sqrt(6 / fan_in)`, so activations stay finite through 20 or 52 convolutions), beside a
//! copy of the graph, and imports that as a user's export would be imported.
//!
//! The step is the pruning job's: the net built with per-weight hard-concrete gates and
//! trainable BatchNorms after every convolution (where the export folded them), the
//! global L0 density constraint under a Lagrangian multiplier with the job's default dual
//! optimizer, the job's primal optimizer (the weights' optimizer, Adam for the gate
//! locations), one simultaneous step of [`ConstrainedOptimizer::roll`] on a batch of two
//! random images.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, ParamId};
use burn::optim::{AdamConfig, GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData, backend::AutodiffBackend, backend::Backend};
use tether_deploy::onnx::{BatchAxis, ImportOptions, import_file_with};
use tether_models::graph::{GraphNet, GraphNetConfig, NormSites};
use tether_models::l0::{GateStructure, HardConcreteConfig};
use tether_train::constrained::{
    ConstrainedOptimizer, ConstraintKind, ConstraintSet, FormulationConfig, MultiplierConfig,
    UpdateScheme,
};
use tether_train::data::batches::Batch;
use tether_train::optim::TwoGroups;
use tether_train::tasks::prune::PruneProblem;
use tether_train::tasks::prune_run::PruneConfig;

type B = Autodiff<Flex>;
type Inner = Flex;

/// The density the step is constrained to; the gates start at density 1.
const TARGET: f64 = 0.5;
/// Images per batch.
const BATCH: usize = 2;
/// ImageNet's classes: the networks' output size.
const CLASSES: usize = 1000;

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded stream with no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// One external initializer of a fixture graph, from `NAME.tsv`.
struct Initializer {
    name: String,
    offset: usize,
    length: usize,
    dims: Vec<usize>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision")
}

fn manifest(name: &str) -> Vec<Initializer> {
    let path = fixtures().join(format!("{name}.tsv"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{}: bad row {l:?}", path.display());
            Initializer {
                name: f[0].to_string(),
                offset: f[1].parse().expect("an offset"),
                length: f[2].parse().expect("a length"),
                dims: f[3].split('x').map(|d| d.parse().expect("a dim")).collect(),
            }
        })
        .collect()
}

/// A copy of fixture `name`'s graph in `dir` with its external data file written: the
/// weights (rank 2 and 4) He-uniform over their fan-in, the biases uniform in
/// `[-0.1, 0.1]`. Returns the graph's path.
fn materialise(name: &str, dir: &Path, seed: u64) -> PathBuf {
    let inits = manifest(name);
    let total: usize = inits.iter().map(|t| t.length).sum();
    let mut data = vec![0u8; total];
    let mut rng = Rng(seed);
    let mut end = 0;
    for t in &inits {
        // make.py checked the layout; a manifest out of step with it fails here or in
        // the import's length check, with the tensor's name.
        assert_eq!(t.offset, end, "{}: not contiguous", t.name);
        assert_eq!(t.length, 4 * t.dims.iter().product::<usize>(), "{}", t.name);
        end += t.length;
        let bound = if t.dims.len() >= 2 {
            (6.0 / t.dims[1..].iter().product::<usize>() as f32).sqrt()
        } else {
            0.1
        };
        for chunk in data[t.offset..end].chunks_exact_mut(4) {
            chunk.copy_from_slice(&(bound * rng.symmetric()).to_le_bytes());
        }
    }
    let graph = dir.join(format!("{name}.onnx"));
    std::fs::copy(fixtures().join(format!("{name}.onnx")), &graph).expect("copy the graph");
    std::fs::write(dir.join(format!("{name}.onnx.data")), &data).expect("write the weights");
    graph
}

/// `n` random images `[n, 3 * 224 * 224]` (standard normal, as normalised pixels).
fn images(n: usize, rng: &mut Rng) -> Tensor<B, 2> {
    let len = 3 * 224 * 224;
    let x: Vec<f32> = (0..n * len).map(|_| rng.normal()).collect();
    Tensor::from_data(TensorData::new(x, [n, len]), &Default::default())
}

/// A parameter the step must train.
#[derive(Clone, Debug)]
struct Watched {
    label: String,
    id: ParamId,
    rank: usize,
}

/// What the primal optimizer received for one watched parameter.
#[derive(Clone, Debug)]
struct GradSeen {
    label: String,
    /// `None`: no gradient at all.
    abs_sum: Option<f64>,
    finite: bool,
}

/// The primal optimizer with the gradients it is handed recorded first: exactly what the
/// constrained step applied.
#[derive(Clone)]
struct Inspect<O> {
    inner: O,
    watched: Vec<Watched>,
    seen: Arc<Mutex<Vec<GradSeen>>>,
}

impl<M, BB, O> Optimizer<M, BB> for Inspect<O>
where
    M: AutodiffModule<BB>,
    BB: AutodiffBackend,
    O: Optimizer<M, BB>,
{
    type Record = O::Record;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        let mut seen = self.seen.lock().expect("not poisoned");
        for w in &self.watched {
            let values: Option<Vec<f32>> = match w.rank {
                1 => grads
                    .get::<BB::InnerBackend, 1>(w.id)
                    .map(|g| g.into_data()),
                2 => grads
                    .get::<BB::InnerBackend, 2>(w.id)
                    .map(|g| g.into_data()),
                4 => grads
                    .get::<BB::InnerBackend, 4>(w.id)
                    .map(|g| g.into_data()),
                r => unreachable!("rank {r}"),
            }
            .map(|d| d.to_vec().expect("f32 gradients"));
            seen.push(GradSeen {
                label: w.label.clone(),
                abs_sum: values
                    .as_ref()
                    .map(|v| v.iter().map(|x| f64::from(x.abs())).sum()),
                finite: values.is_none_or(|v| v.iter().all(|x| x.is_finite())),
            });
        }
        drop(seen);
        self.inner.step(lr, module, grads)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        self.inner.step_multi(lr, module, grads)
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.inner = self.inner.load_record(record);
        self
    }
}

/// Every Linear and Conv weight, gate location and BatchNorm gamma and beta of `net`,
/// with its values (flattened).
fn trained_params(net: &GraphNet<B>) -> Vec<(Watched, Tensor<Inner, 1>)> {
    let mut out = Vec::new();
    let mut push = |label: String, id: ParamId, rank: usize, v: Tensor<Inner, 1>| {
        out.push((Watched { label, id, rank }, v));
    };
    for (k, l) in net.layers.iter().enumerate() {
        if let Some(w) = &l.linear {
            push(
                format!("layer {k} linear weight"),
                w.id,
                2,
                w.val().inner().flatten(0, 1),
            );
        }
        if let Some(w) = &l.conv {
            push(
                format!("layer {k} conv weight"),
                w.id,
                4,
                w.val().inner().flatten(0, 3),
            );
        }
        let g = l.gates.as_ref().expect("every layer is gated");
        push(
            format!("layer {k} gate locations"),
            g.log_alpha.id,
            1,
            g.log_alpha.val().inner(),
        );
    }
    for (k, bn) in net.norms.iter().enumerate() {
        push(
            format!("norm {k} gamma"),
            bn.gamma.id,
            1,
            bn.gamma.val().inner(),
        );
        push(
            format!("norm {k} beta"),
            bn.beta.id,
            1,
            bn.beta.val().inner(),
        );
    }
    out
}

/// Imports fixture `name`, builds it as the pruning job does and takes one constrained
/// step; `layers` and `norms` are the network's Linear/Conv layers and BatchNorms.
fn one_constrained_step(name: &str, layers: usize, norms: usize) {
    let start = std::time::Instant::now();
    let _ftz = tether_train::denormals::FlushDenormals::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let graph = materialise(name, dir.path(), 0x7e7e_0025);
    let bytes = import_file_with(
        &graph,
        &ImportOptions {
            batch_axis: BatchAxis::Leading,
        },
    )
    .unwrap_or_else(|e| panic!("{name} imports: {e}"));
    let imported = start.elapsed();

    // The job's defaults (`tether-train prune`'s flags), as `prune_run` uses them.
    let c = PruneConfig::default();
    let device = Default::default();
    // The gates' initial locations and samples, as the job seeds them.
    B::seed(&device, c.seed);
    let config = GraphNetConfig {
        structure: Some(GateStructure::Weight),
        gates: HardConcreteConfig::new().with_init_spread(c.gate_init_spread),
    };
    let net = GraphNet::<B>::from_model_bytes(&bytes, &config, &device)
        .unwrap_or_else(|e| panic!("{name} builds as a trainable graph: {e}"));
    assert_eq!(net.input_shape(), [3, 224, 224], "{name}");
    assert_eq!(net.output_shape(), [CLASSES], "{name}");
    assert_eq!(net.layers.len(), layers, "{name}: Linear and Conv layers");
    // The export folded every BatchNorm into its convolution: one site per convolution.
    assert_eq!(net.batch_norm_sites(NormSites::AfterConvs), norms, "{name}");
    let mut rng = Rng(25);
    let net = net.train_batch_norms(images(BATCH, &mut rng), 0.1, NormSites::AfterConvs);
    assert_eq!(net.norms.len(), norms, "{name}: trained BatchNorms");
    let built = start.elapsed();

    let mut set = ConstraintSet::<B>::new(&device);
    let multiplier =
        MultiplierConfig::new(c.dual_optimizer()).with_restart_on_feasible(!c.no_dual_restarts);
    let density = set
        .add(
            "density",
            ConstraintKind::Inequality,
            1,
            FormulationConfig::Lagrangian(multiplier),
        )
        .expect("a new constraint");
    let problem = PruneProblem::new(density, vec![TARGET]);
    let before = trained_params(&net);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let weights = c
        .optimizer
        .build::<B, GraphNet<B>>()
        .expect("the default optimizer");
    let primal = TwoGroups::new(
        weights,
        AdamConfig::new()
            .with_beta_1(c.gate_momentum as f32)
            .init::<B, GraphNet<B>>(),
        tether_models::gated::GatedNetwork::gate_ids(&net),
        c.gate_lr / c.lr,
    );
    let mut opt = ConstrainedOptimizer::new(
        Inspect {
            inner: primal,
            watched: before.iter().map(|(w, _)| w.clone()).collect(),
            seen: seen.clone(),
        },
        c.lr,
        UpdateScheme::Simultaneous,
    );
    let labels: Vec<i64> = (0..BATCH)
        .map(|_| (rng.next_u64() % CLASSES as u64) as i64)
        .collect();
    let batch = Batch {
        images: images(BATCH, &mut rng),
        labels: Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), &device),
    };
    let out = opt
        .roll(net, &mut set, &problem, &batch)
        .unwrap_or_else(|e| panic!("{name}: the step is refused: {e}"));
    let stepped = start.elapsed();

    assert!(
        out.values.loss.is_finite(),
        "{name}: loss {}",
        out.values.loss
    );
    // The deterministic gates start mostly open (their locations spread as the job
    // spreads them): the true density is above the target, so the multiplier must move.
    let (_, _, strict) = &out.values.constraints[0];
    let initial = strict.as_ref().expect("a strict violation")[0] + TARGET;
    assert!(
        initial > TARGET && initial <= 1.0,
        "{name}: initial true density {initial}"
    );
    let lambda = set
        .get(density)
        .unwrap()
        .formulation()
        .multiplier()
        .expect("a Lagrangian multiplier")
        .to_vec()[0];
    assert!(
        lambda > 0.0,
        "{name}: the multiplier stayed at {lambda} with the density above its target"
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), before.len(), "{name}: one primal step");
    for g in &seen {
        let sum = g
            .abs_sum
            .unwrap_or_else(|| panic!("{name}: {} has no gradient", g.label));
        assert!(g.finite, "{name}: {}'s gradient is not finite", g.label);
        assert!(sum > 0.0, "{name}: {}'s gradient is zero", g.label);
    }
    let after = trained_params(&out.model);
    assert_eq!(after.len(), before.len());
    for ((w, old), (_, new)) in before.iter().zip(after) {
        let moved: f32 = (new - old.clone()).abs().max().into_scalar();
        assert!(moved > 0.0, "{name}: {} did not change", w.label);
        assert!(moved.is_finite(), "{name}: {} is not finite", w.label);
    }
    eprintln!(
        "{name}: imported in {:.1} s, built and calibrated by {:.1} s, stepped by {:.1} s \
         (loss {:.3}, density {initial:.4}, multiplier {lambda:.4}, {} parameters checked)",
        imported.as_secs_f64(),
        built.as_secs_f64(),
        stepped.as_secs_f64(),
        out.values.loss,
        seen.len()
    );
}

#[test]
fn resnet18_takes_one_constrained_step() {
    // 20 convolutions (17 3x3 or 7x7, 3 downsampling 1x1) and the fully connected head.
    one_constrained_step("resnet18", 21, 20);
}

#[test]
fn mobilenet_v2_takes_one_constrained_step() {
    // 52 convolutions (17 of them depthwise) and the classifier.
    one_constrained_step("mobilenet_v2", 53, 52);
}
