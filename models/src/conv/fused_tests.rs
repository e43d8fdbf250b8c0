//! The fused epilogues (`conv2d_relu`, `conv2d_add_relu`) and the max pooling against
//! burn's operations composed (its convolution, add, ReLU and pooling), forward and every
//! gradient, the residual's included.

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};

use super::{conv2d_add_relu, conv2d_relu, max_pool2d};
use crate::l0::{GateMode, GateStructure, GatedConv2dConfig};

type B = Autodiff<Flex>;

/// `(x dims, weight dims, stride, padding, dilation, groups)`.
type Case = ([usize; 4], [usize; 4], usize, usize, usize, usize);

/// One of each kernel: the im2col GEMM ("same", so the input gradient as a
/// convolution), strided, pointwise, depthwise on phase planes, dilated depthwise.
const CASES: [Case; 6] = [
    ([2, 5, 9, 8], [6, 5, 3, 3], 1, 1, 1, 1),
    ([2, 4, 9, 9], [8, 4, 3, 3], 2, 1, 1, 1),
    ([3, 6, 7, 5], [4, 6, 1, 1], 1, 0, 1, 1),
    ([2, 5, 8, 8], [5, 1, 3, 3], 1, 1, 1, 5),
    ([2, 4, 9, 9], [4, 1, 3, 3], 2, 1, 1, 4),
    ([1, 3, 7, 7], [3, 1, 3, 3], 1, 2, 2, 3),
];

fn random<const D: usize>(dims: [usize; D]) -> Tensor<B, D> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn max_diff<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar().max(1.0);
    (a - b).abs().max().into_scalar() / scale
}

fn assert_close<const D: usize>(what: &str, a: Tensor<Flex, D>, b: Tensor<Flex, D>) {
    let diff = max_diff(a, b);
    assert!(diff < 1e-5, "{what}: differs by {diff}");
}

#[test]
fn relu_and_residual_epilogues_match_burns_ops() {
    for (xd, wd, s, p, d, g) in CASES {
        let options = ConvOptions::new([s, s], [p, p], [d, d], g);
        for residual in [false, true] {
            let x = random(xd).require_grad();
            let w = random(wd).require_grad();
            let b = random([wd[0]]).require_grad();
            let plain = burn::tensor::module::conv2d(
                x.clone(),
                w.clone(),
                Some(b.clone()),
                options.clone(),
            );
            let r = random(plain.dims()).require_grad();
            let (ours, theirs) = if residual {
                let ours = conv2d_add_relu(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    options.clone(),
                    r.clone(),
                );
                (ours, relu(plain + r.clone()))
            } else {
                let ours = conv2d_relu(x.clone(), w.clone(), Some(b.clone()), options.clone());
                (ours, relu(plain))
            };
            let case = format!("{xd:?} {wd:?} s{s} p{p} d{d} g{g}, residual {residual}");
            assert_close(&case, ours.clone().inner(), theirs.clone().inner());
            let weights = random(ours.dims());
            let g1 = (ours * weights.clone()).sum().backward();
            let g2 = (theirs * weights).sum().backward();
            assert_close(&case, x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
            assert_close(&case, w.grad(&g1).unwrap(), w.grad(&g2).unwrap());
            assert_close(&case, b.grad(&g1).unwrap(), b.grad(&g2).unwrap());
            if residual {
                assert_close(&case, r.grad(&g1).unwrap(), r.grad(&g2).unwrap());
            }
        }
    }
}

#[test]
fn an_identity_block_sums_both_paths_into_its_input() {
    // relu(conv(x) + x): x is both the convolution's input and the residual.
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let x = random([2, 4, 6, 6]).require_grad();
    let w = random([4, 4, 3, 3]).require_grad();
    let ours = conv2d_add_relu(x.clone(), w.clone(), None, options.clone(), x.clone());
    let theirs =
        relu(burn::tensor::module::conv2d(x.clone(), w.clone(), None, options) + x.clone());
    assert_close("forward", ours.clone().inner(), theirs.clone().inner());
    let weights = random(ours.dims());
    let g1 = (ours.clone() * weights.clone() + ours).sum().backward();
    let g2 = (theirs.clone() * weights + theirs).sum().backward();
    assert_close("dx", x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
    assert_close("dw", w.grad(&g1).unwrap(), w.grad(&g2).unwrap());
}

#[test]
fn a_broadcast_residual_takes_burns_add() {
    let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    let x = random([2, 3, 5, 5]);
    let w = random([4, 3, 3, 3]);
    let r = random([1, 4, 1, 1]).require_grad();
    let ours = conv2d_add_relu(x.clone(), w.clone(), None, options.clone(), r.clone());
    let theirs = relu(burn::tensor::module::conv2d(x, w, None, options) + r.clone());
    assert_close("forward", ours.clone().inner(), theirs.clone().inner());
    let (g1, g2) = (ours.sum().backward(), theirs.sum().backward());
    assert_close("dr", r.grad(&g1).unwrap(), r.grad(&g2).unwrap());
}

#[test]
fn gated_convolutions_fuse_as_they_compute_unfused() {
    let device = Default::default();
    for structure in [GateStructure::Weight, GateStructure::OutputUnit] {
        let conv = GatedConv2dConfig::new(3, 4, 3, structure)
            .with_padding(1)
            .init::<B>(&device);
        let x = random([2, 3, 6, 6]);
        let r = random([2, 4, 6, 6]);
        let mode = GateMode::Deterministic;
        let plain = conv.forward(x.clone(), mode);
        let fused = conv.forward_relu(x.clone(), mode);
        assert_close("relu", fused.inner(), relu(plain.clone()).inner());
        let fused = conv.forward_add_relu(x, r.clone(), mode);
        assert_close("add relu", fused.inner(), relu(plain + r).inner());
    }
}

/// Max pooling by its definition, in f64.
fn pool_reference(x: &[f32], dims: [usize; 4], k: [usize; 2], s: [usize; 2]) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let (oh, ow) = ((h - k[0]) / s[0] + 1, (w - k[1]) / s[1] + 1);
    let mut y = Vec::new();
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f64::NEG_INFINITY;
                for i in 0..k[0] {
                    for j in 0..k[1] {
                        let v = x[(plane * h + oy * s[0] + i) * w + ox * s[1] + j];
                        m = m.max(f64::from(v));
                    }
                }
                y.push(m);
            }
        }
    }
    y
}

#[test]
fn max_pooling_matches_its_definition_and_burns_gradient() {
    // LeNet-5's 2x2/2, an odd size that drops a row and column, overlapping 3x3/2
    // windows, and non-square ones.
    let cases: [([usize; 4], [usize; 2], [usize; 2]); 4] = [
        ([2, 3, 8, 8], [2, 2], [2, 2]),
        ([1, 2, 7, 9], [2, 2], [2, 2]),
        ([2, 2, 9, 9], [3, 3], [2, 2]),
        ([1, 3, 6, 7], [3, 2], [1, 2]),
    ];
    for (dims, k, s) in cases {
        // ReLU'd, so that windows hold ties at zero (the gradient goes to one tap).
        let x = relu(random(dims)).detach().require_grad();
        let ours = max_pool2d(x.clone(), k, s);
        let theirs = burn::tensor::module::max_pool2d(x.clone(), k, s, [0, 0], [1, 1], false);
        let case = format!("{dims:?} {k:?} {s:?}");
        let values: Vec<f32> = x.to_data().to_vec().unwrap();
        let got: Vec<f32> = ours.to_data().to_vec().unwrap();
        let want = pool_reference(&values, dims, k, s);
        assert_eq!(got.len(), want.len(), "{case}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(f64::from(*g), *w, "{case}");
        }
        let weights = random(ours.dims());
        let g1 = (ours * weights.clone()).sum().backward();
        let g2 = (theirs * weights).sum().backward();
        assert_close(&case, x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
    }
}
