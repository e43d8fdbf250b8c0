//! The CPU convolution against burn's (forward and every gradient, over strides, padding,
//! dilation, groups, depthwise, with and without bias) and against central finite
//! differences.

use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor, TensorData};

use super::{Geometry, conv2d};

type B = Autodiff<Flex>;

/// `(x dims, weight dims, stride, padding, dilation, groups, bias)`.
type Case = ([usize; 4], [usize; 4], usize, usize, usize, usize, bool);

const CASES: [Case; 18] = [
    ([3, 1, 12, 12], [4, 1, 5, 5], 1, 0, 1, 1, true), // LeNet-5's first layer, small
    ([2, 5, 9, 8], [6, 5, 3, 3], 1, 1, 1, 1, true),   // "same" 3x3
    ([2, 4, 9, 9], [8, 4, 3, 3], 2, 1, 1, 1, false),  // strided
    ([2, 6, 7, 7], [4, 6, 1, 1], 2, 0, 1, 1, true),   // 1x1 strided shortcut
    ([1, 3, 10, 11], [2, 3, 3, 2], 1, 2, 2, 1, true), // dilated, non-square kernel
    ([2, 6, 8, 8], [6, 2, 3, 3], 1, 1, 1, 3, true),   // grouped
    ([2, 5, 8, 8], [5, 1, 3, 3], 1, 1, 1, 5, true),   // depthwise
    ([2, 4, 9, 9], [4, 1, 3, 3], 2, 1, 1, 4, false),  // depthwise strided
    ([1, 3, 7, 7], [3, 1, 3, 3], 1, 2, 2, 3, true),   // depthwise dilated
    ([2, 4, 6, 6], [8, 2, 3, 3], 1, 0, 1, 2, true),   // grouped, two outputs per group
    ([2, 6, 7, 5], [4, 6, 1, 1], 1, 0, 1, 1, true),   // 1x1 pointwise, per-sample GEMMs
    ([5, 6, 3, 3], [7, 6, 1, 1], 1, 0, 1, 1, false),  // pointwise, odd batch
    ([2, 3, 6, 7], [4, 3, 5, 5], 1, 2, 1, 1, false),  // "same" 5x5
    ([1, 2, 9, 7], [3, 2, 3, 3], 1, 2, 2, 1, true),   // "same" dilated 3x3
    ([2, 2, 2, 3], [3, 2, 5, 5], 1, 2, 1, 1, true),   // "same" 5x5 wider than the image
    ([2, 3, 8, 8], [3, 1, 3, 3], 2, 0, 1, 3, true),   // depthwise strided, unpadded
    ([1, 2, 10, 9], [2, 1, 5, 5], 3, 2, 1, 2, false), // depthwise 5x5, stride 3
    ([2, 3, 28, 28], [4, 3, 3, 3], 1, 1, 1, 1, true), // "same" 3x3 at 28x28: implicit GEMM
];

fn random<const D: usize>(dims: [usize; D]) -> Tensor<B, D> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn options(case: &Case) -> ConvOptions<2> {
    let (_, _, s, p, d, g, _) = *case;
    ConvOptions::new([s, s], [p, p], [d, d], g)
}

fn max_diff<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar().max(1.0);
    (a - b).abs().max().into_scalar() / scale
}

#[test]
fn matches_burn_forward_and_every_gradient() {
    for case in CASES {
        let (xd, wd, .., bias) = case;
        let x = random(xd).require_grad();
        let w = random(wd).require_grad();
        let b = bias.then(|| random([wd[0]]).require_grad());
        let ours = conv2d(x.clone(), w.clone(), b.clone(), options(&case));
        let theirs = burn::tensor::module::conv2d(x.clone(), w.clone(), b.clone(), options(&case));
        assert_eq!(ours.dims(), theirs.dims(), "{case:?}");
        let r = random(ours.dims());
        let diff = max_diff(ours.clone().inner(), theirs.clone().inner());
        assert!(diff < 1e-5, "{case:?}: forward differs by {diff}");
        let g_ours = (ours * r.clone()).sum().backward();
        let g_theirs = (theirs * r).sum().backward();
        let dx = max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
        let dw = max_diff(w.grad(&g_ours).unwrap(), w.grad(&g_theirs).unwrap());
        assert!(dx < 1e-5, "{case:?}: input gradient differs by {dx}");
        assert!(dw < 1e-5, "{case:?}: weight gradient differs by {dw}");
        if let Some(b) = b {
            let db = max_diff(b.grad(&g_ours).unwrap(), b.grad(&g_theirs).unwrap());
            assert!(db < 1e-5, "{case:?}: bias gradient differs by {db}");
        }
    }
}

#[test]
fn batches_larger_than_one_chunk_match_burn() {
    // 64 samples of a 20-channel 5x5 conv on 12x12: several im2col chunks.
    let case: Case = ([64, 20, 12, 12], [50, 20, 5, 5], 1, 0, 1, 1, true);
    let x = random(case.0).require_grad();
    let w = random(case.1).require_grad();
    let ours = conv2d(x.clone(), w.clone(), None, options(&case));
    let theirs = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options(&case));
    let r = random(ours.dims());
    let (g1, g2) = (
        (ours * r.clone()).sum().backward(),
        (theirs * r).sum().backward(),
    );
    let dw = max_diff(w.grad(&g1).unwrap(), w.grad(&g2).unwrap());
    let dx = max_diff(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
    assert!(dw < 1e-5 && dx < 1e-5, "dw {dw}, dx {dx}");
}

#[test]
fn gradients_match_central_finite_differences() {
    // The loss sum(r * conv(x, w) + r * b) is linear in each of x, w, b, so a central
    // difference with a large step is exact up to f32 rounding. CASES[1] and CASES[5]
    // ("same", stride 1, plain and grouped) take the input gradient as a convolution.
    for case in [
        CASES[1], CASES[2], CASES[4], CASES[5], CASES[7], CASES[9], CASES[17],
    ] {
        let (xd, wd, ..) = case;
        let x = random(xd).require_grad();
        let w = random(wd).require_grad();
        let b = random([wd[0]]).require_grad();
        let loss = |x: Tensor<B, 4>, w: Tensor<B, 4>, b: Tensor<B, 1>| {
            let y = conv2d(x, w, Some(b), options(&case));
            let n = y.dims().iter().product::<usize>();
            let r: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
            let r = Tensor::<B, 4>::from_data(TensorData::new(r, y.dims()), &Default::default());
            (y * r).sum()
        };
        let grads = loss(x.clone(), w.clone(), b.clone()).backward();
        let check = |name: &str, t: &Tensor<B, 4>, grad: Tensor<Flex, 4>, which: usize| {
            let values: Vec<f32> = t.to_data().to_vec().unwrap();
            let grad: Vec<f32> = grad.into_data().to_vec().unwrap();
            for i in (0..values.len()).step_by(values.len() / 7 + 1) {
                let eps = 0.5;
                let shifted = |d: f32| {
                    let mut v = values.clone();
                    v[i] += d;
                    let t = Tensor::<B, 4>::from_data(
                        TensorData::new(v, t.dims()),
                        &Default::default(),
                    );
                    let (xx, ww) = if which == 0 {
                        (t, w.clone())
                    } else {
                        (x.clone(), t)
                    };
                    loss(xx, ww, b.clone()).into_scalar()
                };
                let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
                assert!(
                    (fd - grad[i]).abs() < 2e-3 * (1.0 + fd.abs()),
                    "{case:?}: d loss / d {name}[{i}] = {} but the central difference is {fd}",
                    grad[i]
                );
            }
        };
        check("x", &x, x.grad(&grads).unwrap(), 0);
        check("w", &w, w.grad(&grads).unwrap(), 1);
    }
}

#[test]
fn an_input_without_gradient_trains_the_weights_alone() {
    let case = CASES[1];
    let x = random(case.0);
    let w = random(case.1).require_grad();
    let y = conv2d(x.clone(), w.clone(), None, options(&case));
    let reference = burn::tensor::module::conv2d(x, w.clone(), None, options(&case));
    let (g1, g2) = (y.sum().backward(), reference.sum().backward());
    let dw = max_diff(w.grad(&g1).unwrap(), w.grad(&g2).unwrap());
    assert!(dw < 1e-5, "{dw}");
}

#[test]
fn asymmetric_padding_matches_burns_module() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    // Top 1, left 0, bottom 2, right 1 (as an ONNX import may pad).
    let conv = Conv2dConfig::new([3, 4], [4, 4])
        .with_padding(PaddingConfig2d::Explicit(1, 0, 2, 1))
        .init::<B>(&Default::default());
    let x = random([2, 3, 9, 9]).require_grad();
    let ours = super::forward(&conv, x.clone());
    let theirs = conv.forward(x.clone());
    assert_eq!(ours.dims(), [2, 4, 9, 7]);
    let diff = max_diff(ours.clone().inner(), theirs.clone().inner());
    assert!(diff < 1e-5, "{diff}");
    let (g1, g2) = (ours.sum().backward(), theirs.sum().backward());
    let dx = max_diff(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
    assert!(dx < 1e-5, "{dx}");
}

#[test]
fn invalid_geometries_are_errors() {
    let o = |s, p, d, g| ConvOptions::new([s, s], [p, p], [d, d], g);
    assert!(Geometry::new([1, 3, 8, 8], [4, 3, 3, 3], &o(1, 0, 1, 1)).is_ok());
    assert!(Geometry::new([1, 3, 8, 8], [4, 3, 9, 9], &o(1, 0, 1, 1)).is_err());
    assert!(Geometry::new([1, 3, 8, 8], [4, 2, 3, 3], &o(1, 0, 1, 1)).is_err());
    assert!(Geometry::new([1, 4, 8, 8], [3, 2, 3, 3], &o(1, 0, 1, 2)).is_err());
    let g = Geometry::new([2, 4, 9, 9], [8, 4, 3, 3], &o(2, 1, 1, 1)).unwrap();
    assert_eq!((g.oh, g.ow), (5, 5));
    let g = Geometry::new([1, 3, 10, 11], [2, 3, 3, 2], &o(1, 2, 2, 1)).unwrap();
    assert_eq!((g.oh, g.ow), (10, 13));
}
