//! The trainable graph of an imported PyTorch export ([`tether_models::graph`]): its
//! forward equals tether-deploy's run of the same model and onnxruntime's output, its
//! gradients equal finite differences, and its export folds the gates exactly.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::tensor::{Tensor, TensorData};
use tether_deploy::onnx::import_file;
use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};
use tether_models::gated::GatedNetwork;
use tether_models::graph::{GraphNet, GraphNetConfig, NormSites};
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
        let layers: Vec<_> = m
            .nodes
            .iter()
            .filter_map(|node| match node.op {
                tether_deploy::Op::Linear { weight, bias }
                | tether_deploy::Op::Conv2d { weight, bias, .. } => Some((weight, bias)),
                _ => None,
            })
            .collect();
        // Per-unit gates leave the scores' layer whole: it is gated per weight.
        let last = net.layers.last().unwrap();
        let last_weights: usize = m.tensors[layers.last().unwrap().0]
            .dims
            .as_slice()
            .iter()
            .product();
        if structure == GateStructure::OutputUnit {
            assert_eq!(last.gates.as_ref().unwrap().len(), last_weights);
        }
        for (i, &(weight, bias)) in layers.iter().enumerate() {
            {
                nonzero += m.tensors[weight]
                    .to_dense()
                    .iter()
                    .filter(|&&v| v != 0.0)
                    .count();
                if structure == GateStructure::OutputUnit && i + 1 < layers.len() {
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

/// A deterministic batch of `batch` inputs of `per` values in [-1.5, 1.5).
fn probe_batch<BK: burn::tensor::backend::Backend>(
    batch: usize,
    per: usize,
    seed: u64,
    device: &BK::Device,
) -> Tensor<BK, 2> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..batch * per)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 3.0 - 1.5
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [batch, per]), device)
}

fn assert_close(name: &str, what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{name}, {what}: value {i}: {x} vs {y}"
        );
    }
}

/// The importer's folded BatchNorms become trainable BatchNorms that (1) start equal to
/// the imported net in evaluation, (2) normalise by the batch in training, equal to the
/// folded net on the calibration batch itself and not on another, (3) fold back exactly
/// into the exported constants after their parameters and running statistics moved,
/// and (4) whose gamma and beta gradients equal central differences.
#[test]
fn batch_norms_train_and_fold_back_exactly() {
    // PyTorch's default export folded the residual CNN's two BatchNorms into their
    // convolutions: they come back after them.
    let (name, bytes, ..) = cases().swap_remove(2);
    assert_eq!(name, "residual_cnn_dynamo");
    check_batch_norms(&name, &bytes, [0, 2]);
    // An export that keeps its six BatchNormalization nodes (bias-free convolutions):
    // the importer's Mul/Add pairs become BatchNorms again.
    let path = fixtures().join("../../../../train/tests/fixtures/mnist_resnet_bn.onnx");
    check_batch_norms("mnist_resnet_bn", &import_file(&path).unwrap(), [6, 6]);
}

/// [`batch_norms_train_and_fold_back_exactly`] on one model, whose graph has `sites`
/// BatchNorm sites (imported, and with one after every bare convolution).
fn check_batch_norms(name: &str, bytes: &[u8], sites: [usize; 2]) {
    let name = name.to_string();
    let device = Default::default();
    let frozen = GraphNet::<AD>::from_model_bytes(bytes, &dense(), &device).unwrap();
    assert_eq!(
        frozen.batch_norm_sites(NormSites::Imported),
        sites[0],
        "{name}"
    );
    assert_eq!(
        frozen.batch_norm_sites(NormSites::AfterConvs),
        sites[1],
        "{name}"
    );
    let per: usize = frozen.input_shape().iter().product();
    let calib = probe_batch::<AD>(16, per, 1, &device);
    let other = probe_batch::<AD>(16, per, 2, &device) * 0.5 + 0.3;
    let net = frozen
        .clone()
        .train_batch_norms(calib.clone(), 0.1, NormSites::AfterConvs);
    assert_eq!(net.norms.len(), sites[1]);

    // (1) Evaluation (the inner backend: running statistics) equals the folded net.
    let folded = values(
        frozen
            .valid()
            .forward(other.clone().inner(), GateMode::Deterministic),
    );
    let eval = values(
        net.valid()
            .forward(other.clone().inner(), GateMode::Deterministic),
    );
    assert_close(&name, "evaluation after calibration", &eval, &folded, 1e-4);

    // (2) Training mode on the calibration batch is the folded net; on another batch it is
    // not (its own statistics are used).
    let on_calib = values(net.forward(calib.clone(), GateMode::Deterministic));
    let folded_calib = values(frozen.forward(calib.clone(), GateMode::Deterministic));
    assert_close(
        &name,
        "training mode, calibration batch",
        &on_calib,
        &folded_calib,
        1e-4,
    );
    let on_other = values(net.forward(other.clone(), GateMode::Deterministic));
    let gap = on_other
        .iter()
        .zip(&folded)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        gap > 1e-2,
        "{name}: training mode ignores the batch (gap {gap})"
    );

    // (3) Move gamma, beta and the running statistics, then export: the deploy runtime
    // computes what the evaluation net computes.
    let mut moved = net.clone();
    for (k, bn) in moved.norms.iter_mut().enumerate() {
        let c = bn.gamma.dims()[0];
        let g: Vec<f32> = (0..c).map(|i| 0.5 + 0.1 * ((i + k) % 7) as f32).collect();
        let b: Vec<f32> = (0..c)
            .map(|i| 0.2 * ((i * 3 + k) % 5) as f32 - 0.4)
            .collect();
        bn.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(g, [c]), &device));
        bn.beta = Param::from_tensor(Tensor::from_data(TensorData::new(b, [c]), &device));
    }
    for seed in 3..6 {
        drop(moved.forward(
            probe_batch::<AD>(8, per, seed, &device),
            GateMode::Deterministic,
        ));
    }
    let eval = moved.valid();
    let y = values(eval.forward(other.clone().inner(), GateMode::Deterministic));
    let x_host = values(other.clone().inner());
    let rt = run_deploy(&eval.to_deploy().unwrap(), &x_host, 16);
    assert_close(&name, "export after training", &rt, &y, 1e-5);
    let before = run_deploy(bytes, &x_host, 16);
    assert!(
        rt.iter().zip(&before).any(|(a, b)| (a - b).abs() > 1e-3),
        "{name}: the export ignores the trained BatchNorms"
    );

    // (4) d loss / d gamma and d beta in training mode against central differences.
    let n_out: usize = net.output_shape().iter().product();
    let r: Vec<f32> = (0..16 * n_out)
        .map(|i| ((i * 7) % 5) as f32 - 2.0)
        .collect();
    let rt = Tensor::<AD, 2>::from_data(TensorData::new(r, [16, n_out]), &device);
    let grads = loss(&net, &other, &rt).backward();
    for s in [0, sites[1] - 1] {
        for beta in [false, true] {
            let p = if beta {
                &net.norms[s].beta
            } else {
                &net.norms[s].gamma
            };
            let g = values(p.grad(&grads).unwrap());
            let v0 = values(p.val().inner());
            for k in [0, v0.len() - 1] {
                let eps = 1e-2f32;
                let at = |delta: f32| -> f64 {
                    let mut v = v0.clone();
                    v[k] += delta;
                    let mut probe = net.clone();
                    let t = Param::from_tensor(Tensor::from_data(
                        TensorData::new(v, [v0.len()]),
                        &device,
                    ));
                    if beta {
                        probe.norms[s].beta = t;
                    } else {
                        probe.norms[s].gamma = t;
                    }
                    f64::from(loss(&probe, &other, &rt).into_scalar())
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
                assert!(
                    (fd - f64::from(g[k])).abs() <= 2e-2 * (1.0 + fd.abs()),
                    "{name}: norm {s} {} {k}: autodiff {} vs differences {fd}",
                    if beta { "beta" } else { "gamma" },
                    g[k]
                );
            }
        }
    }
}
