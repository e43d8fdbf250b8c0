//! The networks whose training steps the benchmarks time train every parameter: one step
//! gives each a non-zero gradient. `gate_overhead` once timed its ungated step on a folded
//! network whose weights got no gradient (only the biases trained), which made the gates
//! look about twice as costly as they are.

#[path = "../benches/common/conv_nets.rs"]
mod conv_nets;
#[path = "../benches/common/gate_nets.rs"]
mod gate_nets;

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use gate_nets::{assert_trains_every_parameter, gated_loss, plain_loss};
use tether_models::l0::GateStructure;
use tether_models::lenet5::Lenet5Config;
use tether_models::masked::MaskedMlp;
use tether_models::mlp::MlpConfig;
use tether_models::resnet::{GatedResnetConfig, ResnetConfig};

type B = Autodiff<Flex>;

/// A small batch of images and labels (the benches use 128; any batch reaches every
/// parameter).
fn batch() -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
    let device = Default::default();
    let x = Tensor::random([16, 784], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..16).map(|i| i % 10).collect();
    (x, Tensor::from_data(TensorData::new(labels, [16]), &device))
}

#[test]
fn gate_overhead_times_networks_that_train_every_parameter() {
    let device = Default::default();
    let (x, y) = batch();

    let (gated, plain) = gate_nets::lenet300::<B>(&device);
    assert_eq!(plain.num_params(), gated.fold().num_params());
    assert_eq!(plain.num_params(), 266_610);
    assert_trains_every_parameter(
        "LeNet-300-100, gated",
        &gated,
        gated_loss(&gated, x.clone(), y.clone()),
    );
    assert_trains_every_parameter(
        "LeNet-300-100, ungated",
        &plain,
        plain_loss(plain.forward(x.clone()), y.clone()),
    );

    let (gated, plain) = gate_nets::lenet5::<B>(&device);
    assert_eq!(plain.num_params(), gated.fold().num_params());
    assert_trains_every_parameter(
        "LeNet-5, gated",
        &gated,
        gated_loss(&gated, x.clone(), y.clone()),
    );
    assert_trains_every_parameter(
        "LeNet-5, ungated",
        &plain,
        plain_loss(plain.forward(x.clone()), y.clone()),
    );
    // The folded network (the bench's old twin) trains every parameter too since `fold`
    // returns leaves.
    let folded = gated.fold();
    assert_trains_every_parameter("LeNet-5, folded", &folded, plain_loss(folded.forward(x), y));
}

#[test]
fn the_other_step_benches_time_networks_that_train_every_parameter() {
    let device = Default::default();
    let (x, y) = batch();
    // constrained_overhead: LeNet-300-100.
    let mlp = MlpConfig::new(gate_nets::LENET300.to_vec()).init::<B>(&device);
    assert_trains_every_parameter(
        "constrained_overhead's MLP",
        &mlp,
        plain_loss(mlp.forward(x.clone()), y.clone()),
    );
    // shampoo_step, shampoo_table, shampoo_parallel: LeNet-5.
    let lenet = Lenet5Config::new().init::<B>(&device);
    assert_trains_every_parameter(
        "shampoo_step's LeNet-5",
        &lenet,
        plain_loss(lenet.forward(x.clone()), y.clone()),
    );
    // fair_scale: a 90%-pruned 103-256-128-2 MLP (its masks are constants, not parameters).
    let masked = MaskedMlp::magnitude(
        MlpConfig::new(vec![103, 256, 128, 2]).init::<B>(&device),
        0.9,
    );
    let rows = Tensor::random([16, 103], Distribution::Normal(0.0, 1.0), &device);
    assert_trains_every_parameter(
        "fair_scale's masked MLP",
        &masked,
        plain_loss(masked.forward(rows), y.remainder_scalar(2)),
    );
}

#[test]
fn train_vs_torch_times_networks_that_train_every_parameter() {
    // examples/train_vs_torch.rs: LeNet-5 (above), the small ResNet and the MobileNet-style
    // network, gated and ungated, through tether's convolution (conv::conv2d).
    let device = Default::default();
    let (x, y) = batch();
    let gated = GatedResnetConfig::new(GateStructure::Weight).init::<B>(&device);
    assert_trains_every_parameter(
        "ResNet, gated",
        &gated,
        gated_loss(&gated, x.clone(), y.clone()),
    );
    let plain = ResnetConfig::new().init::<B>(&device);
    assert_trains_every_parameter(
        "ResNet, ungated",
        &plain,
        plain_loss(plain.forward(x.clone()), y.clone()),
    );
    let gated = conv_nets::GatedMobileNet::<B>::new(&device);
    assert_trains_every_parameter(
        "MobileNet, gated",
        &gated,
        gated_loss(&gated, x.clone(), y.clone()),
    );
    let plain = conv_nets::GatedMobileNet::<B>::ungated(&device);
    assert_eq!(plain.num_params(), gated.num_params() - gate_count(&gated));
    assert_trains_every_parameter(
        "MobileNet, ungated",
        &plain,
        plain_loss(plain.forward(x), y),
    );
}

/// The gate locations of a gated network (one per gated weight).
fn gate_count<M: tether_models::gated::GatedNetwork<B>>(net: &M) -> usize {
    net.layer_gates().iter().map(|l| l.gated).sum()
}
