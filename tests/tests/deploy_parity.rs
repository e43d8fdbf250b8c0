//! Parity of tether-deploy with burn on pruned networks over the whole MNIST test set: a
//! LeNet-300-100 and a LeNet-5 are pruned briefly under a density constraint (a subset of
//! the training set, so the test stays fast), folded, exported to the deploy format, and
//! run by both; the logits agree within 1e-5 and the predictions are identical, with the
//! dense and the sparse kernels, at batch 1 and 64.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use tether_deploy::{AlignedBytes, KernelChoice, Model, Plan, PlanOptions};
use tether_models::gated::GatedNetwork;
use tether_models::gated_mlp::GatedMlpConfig;
use tether_models::l0::GateStructure;
use tether_models::lenet5::GatedLenet5Config;
use tether_models::to_deploy::{Storage, lenet5_to_deploy, mlp_to_deploy};
use tether_train::constrained::{
    ConstrainedOptimizer, ConstraintKind, ConstraintSet, DualOptimizer, FormulationConfig,
    MultiplierConfig, UpdateScheme,
};
use tether_train::data::batches::DeviceSet;
use tether_train::data::mnist::{ImageSet, MnistKind, Split};
use tether_train::optim::TwoGroups;
use tether_train::tasks::prune::{PruneProblem, global_density};
use tether_train::trainer::{FitOptions, fit};

type B = Autodiff<Flex>;

fn load() -> Option<(ImageSet, ImageSet)> {
    match (
        ImageSet::load(MnistKind::Mnist, Split::Train),
        ImageSet::load(MnistKind::Mnist, Split::Test),
    ) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (Err(e), _) | (_, Err(e)) => {
            assert!(
                tether_train::data::may_skip("mnist"),
                "MNIST required (TETHER_REQUIRE_DATA) but missing: {e}"
            );
            eprintln!("skipping: MNIST not found ({e}); run scripts/fetch-data mnist");
            None
        }
    }
}

/// Prunes `model` for `steps` steps towards density 0.1 (a strong multiplier so that the
/// short run really removes weights).
fn prune<M>(model: M, train: &ImageSet, steps: usize) -> M
where
    M: AutodiffModule<B> + GatedNetwork<B>,
    M::InnerModule: GatedNetwork<Flex>,
{
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let density = set
        .add(
            "density",
            ConstraintKind::Inequality,
            1,
            FormulationConfig::Lagrangian(MultiplierConfig::new(DualOptimizer::gradient_ascent(
                5.0,
            ))),
        )
        .unwrap();
    let problem = PruneProblem::new(density, vec![0.1]);
    let primal = TwoGroups::new(
        AdamConfig::new().init(),
        AdamConfig::new().init(),
        model.gate_ids(),
        // Gate learning rate 0.3: the gates start at log_alpha ~ 0 and close once below
        // -2.4, so a short run needs large gate steps.
        300.0,
    );
    let mut opt = ConstrainedOptimizer::new(primal, 1e-3, UpdateScheme::Simultaneous);
    let data = DeviceSet::<B>::new(train, Some(128 * steps), &device);
    let batches = data.epoch(128, 0, 0, true);
    fit(
        model,
        &mut opt,
        &mut set,
        &problem,
        &FitOptions::new(batches.len(), None),
        |s| batches[s].clone(),
        |_| {},
    )
    .unwrap()
}

/// Compares deploy's logits with `reference` (burn's) over `images`.
fn check(bytes: &[u8], images: &[f32], reference: &[f32], what: &str) {
    let bytes = AlignedBytes::from_slice(bytes);
    for kernels in [KernelChoice::Dense, KernelChoice::Sparse] {
        for batch in [1, 64] {
            let opts = PlanOptions {
                batch,
                kernels,
                ..Default::default()
            };
            let mut plan = Plan::new(Model::parse(&bytes).unwrap(), &opts).unwrap();
            let mut got = Vec::with_capacity(reference.len());
            for chunk in images.chunks(784 * batch) {
                got.extend_from_slice(plan.run(chunk).unwrap());
            }
            let diff = got
                .iter()
                .zip(reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-5,
                "{what} {kernels:?} batch {batch}: max |diff| {diff}"
            );
            let argmax = |s: &[f32]| {
                s.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            };
            let same = got
                .chunks(10)
                .zip(reference.chunks(10))
                .all(|(a, b)| argmax(a) == argmax(b));
            assert!(same, "{what} {kernels:?} batch {batch}: predictions differ");
        }
    }
}

#[test]
fn pruned_networks_run_identically_in_deploy_and_burn() {
    let Some((train, test)) = load() else { return };
    let device = Default::default();
    let test_set = DeviceSet::<Flex>::new(&test, None, &device);
    let batches = test_set.in_order(1000);
    let images: Vec<f32> = batches
        .iter()
        .flat_map(|b| b.images.clone().into_data().to_vec::<f32>().unwrap())
        .collect();
    let logits = |f: &dyn Fn(Tensor<Flex, 2>) -> Tensor<Flex, 2>| -> Vec<f32> {
        batches
            .iter()
            .flat_map(|b| f(b.images.clone()).into_data().to_vec::<f32>().unwrap())
            .collect()
    };

    B::seed(&device, 1);
    let mlp =
        GatedMlpConfig::new(vec![784, 300, 100, 10], GateStructure::Weight).init::<B>(&device);
    let mlp = prune(mlp, &train, 40).valid();
    let density: f32 = global_density(&mlp).1.into_scalar();
    assert!(
        density < 0.5,
        "the short prune should remove weights: {density}"
    );
    let folded = mlp.fold();
    let reference = logits(&|x| folded.forward(x));
    check(
        &mlp_to_deploy(&folded, Storage::Smallest).unwrap(),
        &images,
        &reference,
        "LeNet-300-100",
    );

    let lenet = GatedLenet5Config::new(GateStructure::Weight).init::<B>(&device);
    let lenet = prune(lenet, &train, 40).valid();
    let density: f32 = global_density(&lenet).1.into_scalar();
    assert!(
        density < 0.9,
        "the short prune should remove weights: {density}"
    );
    let folded = lenet.fold();
    let reference = logits(&|x| folded.forward(x));
    check(
        &lenet5_to_deploy(&folded, Storage::Smallest).unwrap(),
        &images,
        &reference,
        "LeNet-5",
    );
}
