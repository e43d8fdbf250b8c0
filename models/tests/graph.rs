//! The trainable graph of an imported PyTorch export ([`tether_models::graph`]): its
//! forward equals tether-deploy's run of the same model and onnxruntime's output, its
//! gradients equal finite differences, and its export folds the gates exactly.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use tether_deploy::onnx::import_file;
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};
use tether_models::gated::GatedNetwork;
use tether_models::graph::{GraphNet, GraphNetConfig};
use tether_models::l0::{GateMode, GateStructure, HardConcreteConfig};

type B = Flex;
type AD = Autodiff<Flex>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tests/fixtures/torch")
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn run_deploy(bytes: &[u8], x: &[f32], batch: usize) -> Vec<f32> {
    let aligned = AlignedBytes::from_slice(bytes);
    let model = Model::parse(&aligned).unwrap();
    let mut plan = Plan::new(
        model,
        &PlanOptions {
            batch,
            ..Default::default()
        },
    )
    .unwrap();
    plan.run(x).unwrap().to_vec()
}

fn dense() -> GraphNetConfig {
    GraphNetConfig {
        structure: None,
        gates: HardConcreteConfig::new(),
    }
}

fn values<const D: usize>(t: Tensor<impl burn::tensor::backend::Backend, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// A fixture: (name, model bytes, input, batch, onnxruntime's output).
type Case = (String, Vec<u8>, Vec<f32>, usize, Vec<f32>);

/// Each fixture, both exporters.
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for model in ["mlp_norm", "residual_cnn", "signal1d", "lenet5"] {
        for variant in ["dynamo", "legacy13"] {
            let name = format!("{model}_{variant}");
            let bytes = import_file(&fixtures().join(format!("{name}.onnx"))).unwrap();
            let x = f32s(&fixtures().join(format!("{model}.in.f32")));
            let ort = f32s(&fixtures().join(format!("{name}.ort.f32")));
            let aligned = AlignedBytes::from_slice(&bytes);
            let per = Model::parse(&aligned).unwrap().input_shape().numel();
            let batch = x.len() / per;
            out.push((name, bytes, x, batch, ort));
        }
    }
    out
}

#[test]
fn the_graph_computes_what_the_runtime_and_onnxruntime_compute() {
    let device = Default::default();
    for (name, bytes, x, batch, ort) in cases() {
        let net = GraphNet::<B>::from_model_bytes(&bytes, &dense(), &device).unwrap();
        let per = x.len() / batch;
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [batch, per]), &device);
        let y = values(net.forward(xt, GateMode::Deterministic));
        let rt = run_deploy(&bytes, &x, batch);
        for ((a, r), o) in y.iter().zip(&rt).zip(&ort) {
            assert!(
                (a - r).abs() <= 1e-5 * (1.0 + r.abs()),
                "{name}: {a} vs runtime {r}"
            );
            assert!(
                (a - o).abs() <= 1e-5 * (1.0 + o.abs()),
                "{name}: {a} vs onnxruntime {o}"
            );
        }
    }
}

/// `sum(y * r)` for a fixed `r`, on the autodiff backend.
fn loss(net: &GraphNet<AD>, x: &Tensor<AD, 2>, r: &Tensor<AD, 2>) -> Tensor<AD, 1> {
    (net.forward(x.clone(), GateMode::Deterministic) * r.clone()).sum()
}

#[test]
fn every_weight_gradient_matches_central_differences() {
    let device = Default::default();
    // The 1-D signal net (conv1d, PReLU, reflect pad, pow, mean) and the residual CNN
    // (conv, depthwise conv, hard swish, clip, residual add, reduce mean, linear).
    for (name, bytes, x, batch, _) in cases()
        .into_iter()
        .filter(|c| c.0 == "signal1d_legacy13" || c.0 == "residual_cnn_dynamo")
    {
        let net = GraphNet::<AD>::from_model_bytes(&bytes, &dense(), &device).unwrap();
        let per = x.len() / batch;
        let xt = Tensor::<AD, 2>::from_data(TensorData::new(x.clone(), [batch, per]), &device);
        let n_out: usize = net.output_shape().iter().product();
        let r: Vec<f32> = (0..batch * n_out)
            .map(|i| ((i * 7) % 5) as f32 - 2.0)
            .collect();
        let rt = Tensor::<AD, 2>::from_data(TensorData::new(r, [batch, n_out]), &device);
        let grads = loss(&net, &xt, &rt).backward();
        let mut checked = 0;
        for (li, layer) in net.layers.iter().enumerate() {
            let (w, dims): (Tensor<AD, 1>, Vec<usize>) = match (&layer.linear, &layer.conv) {
                (Some(w), _) => (w.val().flatten(0, 1), w.dims().to_vec()),
                (_, Some(w)) => (w.val().flatten(0, 3), w.dims().to_vec()),
                _ => unreachable!(),
            };
            let g = match (&layer.linear, &layer.conv) {
                (Some(w), _) => values(w.grad(&grads).unwrap()),
                (_, Some(w)) => values(w.grad(&grads).unwrap()),
                _ => unreachable!(),
            };
            assert!(
                g.iter().any(|&v| v != 0.0),
                "{name}: layer {li} gets no gradient"
            );
            let w0 = values(w.inner());
            // A few weights per layer, in f64-free central differences with step 1e-2
            // (f32 rounding of the loss is ~1e-6 relative).
            for &k in &[0, w0.len() / 3, w0.len() - 1] {
                let eps = 1e-2f32;
                let at = |delta: f32| -> f64 {
                    let mut v = w0.clone();
                    v[k] += delta;
                    let mut probe = net.clone();
                    let l = &mut probe.layers[li];
                    let t = Tensor::<AD, 1>::from_data(TensorData::new(v, [w0.len()]), &device);
                    if dims.len() == 2 {
                        l.linear = Some(Param::from_tensor(t.reshape([dims[0], dims[1]])));
                    } else {
                        l.conv = Some(Param::from_tensor(
                            t.reshape([dims[0], dims[1], dims[2], dims[3]]),
                        ));
                    }
                    f64::from(loss(&probe, &xt, &rt).into_scalar())
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
                let tol = 2e-2 * (1.0 + fd.abs());
                assert!(
                    (fd - f64::from(g[k])).abs() <= tol,
                    "{name}: layer {li} weight {k}: autodiff {} vs differences {fd}",
                    g[k]
                );
                checked += 1;
            }
        }
        assert!(checked >= 6, "{name}: {checked} weights checked");
    }
}

#[test]
fn gated_export_folds_the_deterministic_gates_exactly() {
    let device = Default::default();
    for structure in [
        GateStructure::Weight,
        GateStructure::OutputUnit,
        GateStructure::Block1x4,
    ] {
        let (name, bytes, x, batch, _) = cases().swap_remove(2); // residual_cnn_dynamo
        let config = GraphNetConfig {
            structure: Some(structure),
            gates: HardConcreteConfig::new(),
        };
        let mut net = GraphNet::<B>::from_model_bytes(&bytes, &config, &device).unwrap();
        // Close every third gate, open the rest fully.
        for l in &mut net.layers {
            let g = l.gates.as_mut().unwrap();
            let n = g.len();
            let v: Vec<f32> = (0..n)
                .map(|i| if i % 3 == 0 { -20.0 } else { 20.0 })
                .collect();
            g.log_alpha = Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), &device));
        }
        let per = x.len() / batch;
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [batch, per]), &device);
        let y = values(net.forward(xt, GateMode::Deterministic));
        let active: f32 = net
            .layer_gates()
            .into_iter()
            .map(|g| g.active.into_scalar())
            .sum();
        let pruned = net.to_deploy().unwrap();
        let rt = run_deploy(&pruned, &x, batch);
        for (a, r) in y.iter().zip(&rt) {
            assert!(
                (a - r).abs() <= 1e-5 * (1.0 + r.abs()),
                "{name} {structure:?}: {a} vs {r}"
            );
        }
        // The written weights hold exactly the active gated parameters as nonzeros.
        let aligned = AlignedBytes::from_slice(&pruned);
        let m = Model::parse(&aligned).unwrap();
        let mut nonzero = 0usize;
        for node in &m.nodes {
            if let tether_deploy::Op::Linear { weight, bias }
            | tether_deploy::Op::Conv2d { weight, bias, .. } = node.op
            {
                nonzero += m.tensors[weight]
                    .to_dense()
                    .iter()
                    .filter(|&&v| v != 0.0)
                    .count();
                if structure == GateStructure::OutputUnit {
                    nonzero += bias.map_or(0, |b| {
                        m.tensors[b]
                            .to_dense()
                            .iter()
                            .filter(|&&v| v != 0.0)
                            .count()
                    });
                }
            }
        }
        assert_eq!(nonzero as f32, active, "{structure:?}");
    }
}
