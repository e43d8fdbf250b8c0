//! LeNet-5 in the Caffe variant used by the L0 papers (Louizos et al. 2018; Gallego-Posada
//! et al. 2022): conv 5x5 (1 -> 20), max-pool 2, conv 5x5 (20 -> 50), max-pool 2,
//! fc 800 -> 500, fc 500 -> 10, ReLU after each hidden layer. 431,080 parameters.

use burn::config::Config;
use burn::module::{Module, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Tensor, backend::Backend};

use crate::conv;
use crate::gated::{GatedNetwork, LayerGates};
use crate::l0::{
    GateMode, GateStructure, GatedConv2d, GatedConv2dConfig, GatedLinear, GatedLinearConfig,
    HardConcreteConfig,
};

/// Gated LeNet-5.
#[derive(Config, Debug)]
pub struct GatedLenet5Config {
    /// What a gate switches off (per weight, or per channel / hidden unit; the output
    /// layer is always gated per weight).
    pub structure: GateStructure,
    /// The gates' hyper-parameters.
    #[config(default = "HardConcreteConfig::new()")]
    pub gates: HardConcreteConfig,
}

impl GatedLenet5Config {
    /// Builds the network (28x28 single-channel inputs).
    pub fn init<B: Backend>(&self, device: &B::Device) -> GatedLenet5<B> {
        let conv = |i, o| {
            GatedConv2dConfig::new(i, o, 5, self.structure)
                .with_gates(self.gates.clone())
                .init(device)
        };
        let fc = |i, o, s| {
            GatedLinearConfig::new(i, o, s)
                .with_gates(self.gates.clone())
                .init(device)
        };
        GatedLenet5 {
            conv1: conv(1, 20),
            conv2: conv(20, 50),
            fc1: fc(800, 500, self.structure),
            fc2: fc(500, 10, GateStructure::Weight),
            activation: Relu::new(),
        }
    }
}

/// See the module documentation.
#[derive(Module, Debug)]
pub struct GatedLenet5<B: Backend> {
    /// First convolution.
    pub conv1: GatedConv2d<B>,
    /// Second convolution.
    pub conv2: GatedConv2d<B>,
    /// Hidden fully connected layer.
    pub fc1: GatedLinear<B>,
    /// Output layer.
    pub fc2: GatedLinear<B>,
    activation: Relu,
}

fn pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    conv::max_pool2d(x, [2, 2], [2, 2])
}

impl<B: Backend> GatedLenet5<B> {
    /// # Shapes
    /// - input `[batch, 784]` (flattened 28x28), output `[batch, 10]`
    pub fn forward(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let x = x.reshape([b, 1, 28, 28]);
        let x = pool(self.conv1.forward_relu(x, mode));
        let x = pool(self.conv2.forward_relu(x, mode));
        let x = self
            .activation
            .forward(self.fc1.forward(x.reshape([b, 800]), mode));
        self.fc2.forward(x, mode)
    }

    /// The plain LeNet-5 with the deterministic gates folded in.
    pub fn fold(&self) -> Lenet5<B> {
        Lenet5 {
            conv1: self.conv1.fold(),
            conv2: self.conv2.fold(),
            fc1: self.fc1.fold(),
            fc2: self.fc2.fold(),
            activation: Relu::new(),
        }
    }
}

impl<B: Backend> GatedNetwork<B> for GatedLenet5<B> {
    fn forward_gated(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        self.forward(x, mode)
    }
    fn layer_gates(&self) -> Vec<LayerGates<B>> {
        vec![
            self.conv1.layer_gates(),
            self.conv2.layer_gates(),
            self.fc1.layer_gates(),
            self.fc2.layer_gates(),
        ]
    }
    fn gate_ids(&self) -> Vec<ParamId> {
        vec![
            self.conv1.gates.log_alpha.id,
            self.conv2.gates.log_alpha.id,
            self.fc1.gates.log_alpha.id,
            self.fc2.gates.log_alpha.id,
        ]
    }
}

/// Plain LeNet-5 (the dense baseline of the pruning benchmark).
#[derive(Config, Debug)]
pub struct Lenet5Config {}

impl Lenet5Config {
    /// Builds the network (28x28 single-channel inputs) with burn's default initialisation,
    /// the same as the gated network's weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Lenet5<B> {
        let conv = |i, o| Conv2dConfig::new([i, o], [5, 5]).init(device);
        let fc = |i, o| LinearConfig::new(i, o).init(device);
        Lenet5 {
            conv1: conv(1, 20),
            conv2: conv(20, 50),
            fc1: fc(800, 500),
            fc2: fc(500, 10),
            activation: Relu::new(),
        }
    }
}

/// LeNet-5 without gates (the folded, deployable network).
#[derive(Module, Debug)]
pub struct Lenet5<B: Backend> {
    /// First convolution.
    pub conv1: Conv2d<B>,
    /// Second convolution.
    pub conv2: Conv2d<B>,
    /// Hidden fully connected layer.
    pub fc1: Linear<B>,
    /// Output layer.
    pub fc2: Linear<B>,
    activation: Relu,
}

impl<B: Backend> Lenet5<B> {
    /// # Shapes
    /// - input `[batch, 784]`, output `[batch, 10]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let x = x.reshape([b, 1, 28, 28]);
        let x = pool(conv::forward_relu(&self.conv1, x));
        let x = pool(conv::forward_relu(&self.conv2, x));
        let x = self
            .activation
            .forward(self.fc1.forward(x.reshape([b, 800])));
        self.fc2.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_parameter_count_and_folding() {
        let device = Default::default();
        for structure in [GateStructure::Weight, GateStructure::OutputUnit] {
            let net = GatedLenet5Config::new(structure).init::<Flex>(&device);
            let x = Tensor::<Flex, 2>::random([3, 784], Distribution::Normal(0.0, 1.0), &device);
            let y = net.forward(x.clone(), GateMode::Deterministic);
            assert_eq!(y.dims(), [3, 10]);
            let diff: f32 = (y - net.fold().forward(x)).abs().max().into_scalar();
            assert!(diff < 1e-4, "{structure:?}: {diff}");
            assert_eq!(net.fold().num_params(), 431_080);
        }
        assert_eq!(
            Lenet5Config::new().init::<Flex>(&device).num_params(),
            431_080
        );
        let net = GatedLenet5Config::new(GateStructure::Weight).init::<Flex>(&device);
        // Per weight, every weight is gated; biases are not.
        let gated: usize = net.layer_gates().iter().map(|l| l.gated).sum();
        assert_eq!(gated, 500 + 25_000 + 400_000 + 5_000);
    }
}
