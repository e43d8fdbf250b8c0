//! Which parameters a training step actually trains.
//!
//! A parameter whose tensor is not a leaf tracked for gradients (one built by
//! `Param::map` over a computed tensor, say) gets no gradient from `backward`, so the
//! optimizer silently leaves it where it is: the network trains its other parameters and
//! nothing fails. [`params_without_gradient`] walks a module's float parameters and names
//! those that one step's gradients leave out or leave at zero; benchmarks that time
//! training steps and tests of networks built by folding check it.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// The float parameters of `module` (by path, `fc1.weight [784, 300]`) that `grads` (one
/// step's gradients, as `GradientsParams::from_grads` hands them to the optimizer) holds
/// no gradient for, or an all-zero one. Empty when every parameter trains.
pub fn params_without_gradient<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<String> {
    let mut visitor = Untrained {
        grads,
        path: Vec::new(),
        missing: Vec::new(),
    };
    module.visit(&mut visitor);
    visitor.missing
}

/// [`params_without_gradient`] for the step whose loss is `loss` (computed from `module`):
/// runs its backward pass. Empty when every parameter trains.
pub fn untrained_params<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    loss: Tensor<B, 1>,
) -> Vec<String> {
    params_without_gradient(
        module,
        &GradientsParams::from_grads(loss.backward(), module),
    )
}

/// The float parameters of `module`, counted as tensors (not elements).
pub fn float_param_tensors<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M) -> usize {
    struct Count(usize);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
            self.0 += 1;
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

struct Untrained<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    missing: Vec<String>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Untrained<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = format!("{} {:?}", self.path.join("."), param.dims());
        match self.grads.get::<B::InnerBackend, D>(param.id) {
            None => self.missing.push(format!("{name}: no gradient")),
            Some(g) => {
                let largest: f32 = g.abs().max().into_scalar().elem();
                // A NaN gradient is reported too.
                if largest == 0.0 || largest.is_nan() {
                    self.missing.push(format!(
                        "{name}: gradient zero or NaN (max |g| = {largest})"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gated_mlp::GatedMlpConfig;
    use crate::l0::{GateMode, GateStructure, HardConcreteConfig};
    use crate::lenet5::{GatedLenet5Config, Lenet5Config};
    use crate::mlp::MlpConfig;
    use crate::resnet::GatedResnetConfig;
    use crate::siren::{MaskedSiren, SirenConfig};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Int, TensorData};

    type B = Autodiff<Flex>;

    /// One step's gradients of cross-entropy (mean over `n` samples, 10 classes) of `logits`.
    fn step<M: AutodiffModule<B>>(module: &M, logits: Tensor<B, 2>) -> GradientsParams {
        let n = logits.dims()[0];
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), &logits.device());
        let loss = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, y);
        GradientsParams::from_grads(loss.backward(), module)
    }

    fn images(n: usize) -> Tensor<B, 2> {
        Tensor::random(
            [n, 784],
            Distribution::Normal(0.0, 1.0),
            &Default::default(),
        )
    }

    #[test]
    fn a_parameter_built_by_map_over_a_computed_tensor_is_reported() {
        let device = Default::default();
        let mut mlp = MlpConfig::new(vec![784, 16, 10]).init::<B>(&device);
        let g = step(&mlp, mlp.forward(images(8)));
        assert_eq!(params_without_gradient(&mlp, &g), Vec::<String>::new());
        assert_eq!(g.len(), float_param_tensors::<B, _>(&mlp));

        // What `fold()` did before: the weight a non-leaf, the bias still a leaf.
        let w = mlp.layers[0].weight.val() * 2.0;
        mlp.layers[0].weight = mlp.layers[0].weight.clone().map(|_| w);
        let g = step(&mlp, mlp.forward(images(8)));
        let missing = params_without_gradient(&mlp, &g);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].starts_with("layers.0.weight [784, 16]: no gradient"),
            "{missing:?}"
        );
    }

    #[test]
    fn folded_networks_train_every_parameter() {
        let device = Default::default();
        for structure in [
            GateStructure::Weight,
            GateStructure::OutputUnit,
            GateStructure::Block1x4,
        ] {
            let mlp = GatedMlpConfig::new(vec![784, 32, 10], structure)
                .init::<B>(&device)
                .fold();
            let g = step(&mlp, mlp.forward(images(16)));
            let missing = params_without_gradient(&mlp, &g);
            assert!(missing.is_empty(), "{structure:?} MLP: {missing:?}");
        }
        for structure in [GateStructure::Weight, GateStructure::OutputUnit] {
            let lenet = GatedLenet5Config::new(structure).init::<B>(&device).fold();
            let g = step(&lenet, lenet.forward(images(16)));
            let missing = params_without_gradient(&lenet, &g);
            assert!(missing.is_empty(), "{structure:?} LeNet-5: {missing:?}");
            assert_eq!(g.len(), float_param_tensors::<B, _>(&lenet));
            // The same parameters as a freshly built LeNet-5.
            assert_eq!(
                float_param_tensors::<B, _>(&lenet),
                float_param_tensors::<B, _>(&Lenet5Config::new().init::<B>(&device))
            );
        }
        let resnet = GatedResnetConfig::new(GateStructure::Weight)
            .init::<B>(&device)
            .fold();
        let g = step(&resnet, resnet.forward(images(4)));
        let missing = params_without_gradient(&resnet, &g);
        assert!(missing.is_empty(), "ResNet: {missing:?}");
    }

    #[test]
    fn folded_sirens_train_every_parameter() {
        let device = Default::default();
        let gated = SirenConfig::new(3, 8).init_gated::<B>(&HardConcreteConfig::new(), &device);
        let xy = Tensor::<B, 2>::random([32, 2], Distribution::Uniform(-1.0, 1.0), &device);
        let target = Tensor::<B, 2>::random([32, 3], Distribution::Uniform(-1.0, 1.0), &device);
        for siren in [gated.fold(), MaskedSiren::from_zeros(gated.fold()).fold()] {
            let loss = (siren.forward(xy.clone()) - target.clone())
                .powi_scalar(2)
                .mean();
            let g = GradientsParams::from_grads(loss.backward(), &siren);
            let missing = params_without_gradient(&siren, &g);
            assert!(missing.is_empty(), "{missing:?}");
        }
    }

    #[test]
    fn the_gated_network_itself_trains_weights_and_gates() {
        let device = Default::default();
        let net = GatedLenet5Config::new(GateStructure::Weight).init::<B>(&device);
        let logits = crate::gated::GatedNetwork::forward_gated(&net, images(16), GateMode::Sample);
        let g = step(&net, logits);
        // Cross-entropy alone reaches every weight, bias and gate location.
        let missing = params_without_gradient(&net, &g);
        assert!(missing.is_empty(), "{missing:?}");
    }
}
