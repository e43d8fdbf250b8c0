//! The closed forms against Monte Carlo and finite differences, and the device path
//! against the host path.
#![allow(
    clippy::disallowed_methods,
    reason = "tests read results back to check them"
)]

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::*;

type B = Flex;

fn gates_with(log_alpha: &[f32]) -> HardConcrete<B> {
    let device = Default::default();
    let mut g = HardConcreteConfig::new().init::<B>(log_alpha.len(), &device);
    g.log_alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(log_alpha.to_vec(), [log_alpha.len()]),
        &device,
    ));
    g
}

fn host<BB: Backend>(t: Tensor<BB, 1>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

/// Expected L0 (Eq. 12) matches the frequency of non-zero samples, within 4 binomial
/// standard deviations, over a range of locations.
#[test]
fn expected_l0_matches_monte_carlo() {
    let device = Default::default();
    B::seed(&device, 7);
    let locs = [-4.0f32, -1.5, -0.3, 0.0, 0.7, 2.0];
    let n = 20_000;
    // n copies of each location.
    let tiled: Vec<f32> = (0..n).flat_map(|_| locs).collect();
    let g = gates_with(&tiled);
    let z = host(g.gates(GateMode::Sample));
    let p = host(gates_with(&locs).prob_nonzero());
    for (k, &pk) in p.iter().enumerate() {
        let hits = (0..n).filter(|i| z[i * locs.len() + k] != 0.0).count() as f64;
        let freq = hits / n as f64;
        let sd = (pk as f64 * (1.0 - pk as f64) / n as f64).sqrt();
        assert!(
            (freq - pk as f64).abs() < 4.0 * sd + 1e-4,
            "log_alpha {}: freq {freq} vs P {pk}",
            locs[k]
        );
    }
}

#[test]
fn samples_have_mass_at_exactly_zero_and_one() {
    let device = Default::default();
    B::seed(&device, 3);
    let z = host(gates_with(&vec![0.0; 10_000]).gates(GateMode::Sample));
    assert!(z.iter().all(|&v| (0.0..=1.0).contains(&v)));
    let zeros = z.iter().filter(|&&v| v == 0.0).count();
    let ones = z.iter().filter(|&&v| v == 1.0).count();
    // With log_alpha = 0, P(z = 0) = P(z = 1) = sigmoid(beta log(-gamma/zeta)) ~ 0.16.
    assert!(
        (1200..2000).contains(&zeros) && (1200..2000).contains(&ones),
        "{zeros} zeros, {ones} ones"
    );
}

#[test]
fn deterministic_gates_follow_eq_13() {
    let g = gates_with(&[-10.0, -2.5, 0.0, 2.5, 10.0]);
    let z = host(g.gates(GateMode::Deterministic));
    let want: Vec<f32> = [-10.0f64, -2.5, 0.0, 2.5, 10.0]
        .iter()
        .map(|&a| ((1.0 / (1.0 + (-a).exp())) * 1.2 - 0.1).clamp(0.0, 1.0) as f32)
        .collect();
    assert_eq!(
        z[0], 0.0,
        "a strongly negative location closes the gate exactly"
    );
    assert_eq!(z[4], 1.0, "a strongly positive location opens it exactly");
    for (a, b) in z.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{z:?} vs {want:?}");
    }
    assert_eq!(host(g.count_nonzero()), vec![3.0]); // -2.5 -> sigmoid*1.2-0.1 < 0
}

/// d E[L0] / d log_alpha from autodiff equals a central finite difference.
#[test]
fn expected_l0_gradient_matches_finite_differences() {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let locs = [-2.0f32, -0.5, 0.0, 1.0, 3.0];
    let mut g = HardConcreteConfig::new().init::<A>(locs.len(), &device);
    g.log_alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(locs.to_vec(), [locs.len()]),
        &device,
    ));
    let grads = g.expected_l0().backward();
    let analytic = host(g.log_alpha.grad(&grads).unwrap());
    let h = 1e-3f64;
    for (k, &a) in locs.iter().enumerate() {
        let f = |x: f64| {
            let shift = (2.0 / 3.0) * (0.1f64 / 1.1).ln();
            1.0 / (1.0 + (-(x - shift)).exp())
        };
        let fd = (f(a as f64 + h) - f(a as f64 - h)) / (2.0 * h);
        assert!(
            (analytic[k] as f64 - fd).abs() < 1e-4,
            "log_alpha {a}: autodiff {} vs fd {fd}",
            analytic[k]
        );
    }
}

/// Frozen gates are the deterministic gates, and pass no gradient to `log_alpha`.
#[test]
fn frozen_gates_are_deterministic_and_pass_no_gradient() {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let locs = [-3.0f32, -0.5, 0.0, 1.0, 3.0];
    let mut g = HardConcreteConfig::new().init::<A>(locs.len(), &device);
    g.log_alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(locs.to_vec(), [locs.len()]),
        &device,
    ));
    let frozen = g.gates(GateMode::Frozen);
    // Exactly the gates of the inference backend (what folding uses); the differentiable
    // deterministic gates agree up to one rounding.
    use burn::module::AutodiffModule;
    assert_eq!(
        host(frozen.clone()),
        host(g.valid().gates(GateMode::Deterministic))
    );
    let differentiable = host(g.gates(GateMode::Deterministic));
    for (a, b) in host(frozen.clone()).iter().zip(&differentiable) {
        assert!((a - b).abs() <= 1e-7, "{a} vs {b}");
    }
    let x =
        Tensor::<A, 1>::from_data(TensorData::new(vec![1.0f32; 5], [5]), &device).require_grad();
    let grads = (frozen * x.clone()).sum().backward();
    assert!(g.log_alpha.grad(&grads).is_none());
    assert!(x.grad(&grads).is_some());
    let grads = g.gates(GateMode::Deterministic).sum().backward();
    assert!(g.log_alpha.grad(&grads).is_some());
}

#[test]
#[should_panic(expected = "hard-concrete init_drop_rate must lie in (0, 1), got 1")]
fn rejects_a_drop_rate_of_one() {
    HardConcreteConfig::new()
        .with_init_drop_rate(1.0)
        .init::<B>(3, &Default::default());
}

/// The gradient of a sampled gate is `(zeta - gamma) / beta * s (1 - s)` inside the clip
/// and zero at the clip (Eqs. 9-11 differentiated by hand), where `s` is recovered from the
/// gate's value: the fused pass's derivative checked against the value it returned.
#[test]
fn sampled_gate_gradient_follows_the_chain_rule() {
    type A = Autodiff<Flex>;
    let device = Default::default();
    A::seed(&device, 11);
    let locs: Vec<f32> = (0..2000).map(|i| -4.0 + 8.0 * i as f32 / 2000.0).collect();
    let mut g = HardConcreteConfig::new().init::<A>(locs.len(), &device);
    g.log_alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(locs.clone(), [locs.len()]),
        &device,
    ));
    let z = g.gates(GateMode::Sample);
    let w: Vec<f32> = (0..locs.len()).map(|i| 1.0 + (i % 7) as f32).collect();
    let weights = Tensor::<A, 1>::from_data(TensorData::new(w.clone(), [w.len()]), &device);
    let grads = (z.clone() * weights).sum().backward();
    let grad = host(g.log_alpha.grad(&grads).unwrap());
    let z = host(z);
    let (mut inside, mut clipped) = (0, 0);
    for i in 0..locs.len() {
        let want = if z[i] > 0.0 && z[i] < 1.0 {
            inside += 1;
            let s = (z[i] as f64 + 0.1) / 1.2;
            w[i] as f64 * 1.2 / (2.0 / 3.0) * s * (1.0 - s)
        } else {
            clipped += 1;
            0.0
        };
        assert!(
            (grad[i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
            "gate {i}: z {} grad {} want {want}",
            z[i],
            grad[i]
        );
    }
    assert!(
        inside > 500 && clipped > 500,
        "{inside} inside, {clipped} clipped"
    );
}

/// The same backend seed gives the same sampled gates; the next draw differs.
#[test]
fn sampled_gates_are_reproducible_under_the_backend_seed() {
    let device = Default::default();
    let g = gates_with(&[0.0; 64]);
    B::seed(&device, 5);
    let a = host(g.gates(GateMode::Sample));
    let b = host(g.gates(GateMode::Sample));
    B::seed(&device, 5);
    assert_eq!(a, host(g.gates(GateMode::Sample)));
    assert_ne!(a, b);
}

/// d z_test / d log_alpha (Eq. 13) from autodiff equals a central finite difference, and is
/// zero where the gate is clipped.
#[test]
fn deterministic_gate_gradient_matches_finite_differences() {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let locs = [-6.0f32, -2.0, -0.5, 0.0, 1.0, 2.0, 6.0];
    let mut g = HardConcreteConfig::new().init::<A>(locs.len(), &device);
    g.log_alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(locs.to_vec(), [locs.len()]),
        &device,
    ));
    let grads = g.gates(GateMode::Deterministic).sum().backward();
    let analytic = host(g.log_alpha.grad(&grads).unwrap());
    let z = |x: f64| ((1.0 / (1.0 + (-x).exp())) * 1.2 - 0.1).clamp(0.0, 1.0);
    let h = 1e-4f64;
    for (k, &a) in locs.iter().enumerate() {
        let fd = (z(a as f64 + h) - z(a as f64 - h)) / (2.0 * h);
        assert!(
            (analytic[k] as f64 - fd).abs() < 1e-4,
            "log_alpha {a}: autodiff {} vs fd {fd}",
            analytic[k]
        );
    }
    assert_eq!(analytic[0], 0.0);
    assert_eq!(analytic[6], 0.0);
}

/// Locations spread over the range training visits, with gates clipped at both ends.
fn spread_locations(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| -6.0 + 12.0 * ((i * 7919) % n) as f32 / n as f32)
        .collect()
}

fn autodiff_gates(locs: &[f32]) -> HardConcrete<Autodiff<Flex>> {
    let device = Default::default();
    let mut g = HardConcreteConfig::new().init::<Autodiff<Flex>>(locs.len(), &device);
    g.log_alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(locs.to_vec(), [locs.len()]),
        &device,
    ));
    g
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}, entry {i}: device {x} vs host {y}"
        );
    }
}

/// Value and gradient in `log_alpha` of `sum_j w_j f_j` for the gates `f` of `g`.
fn value_and_grad(
    g: &HardConcrete<Autodiff<Flex>>,
    f: impl Fn(&HardConcrete<Autodiff<Flex>>) -> Tensor<Autodiff<Flex>, 1>,
) -> (Vec<f32>, Vec<f32>) {
    let out = f(g);
    let n = out.dims()[0];
    let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 5) as f32).collect();
    let w = Tensor::from_data(TensorData::new(w, [n]), &out.device());
    let grads = (out.clone() * w).sum().backward();
    (host(out), host(g.log_alpha.grad(&grads).unwrap()))
}

/// The device path (tensor ops) computes what the fused host loop does: the deterministic
/// gates, the expected L0 and the count, values and gradients, on the same locations.
#[test]
fn the_device_path_equals_the_host_path() {
    use crate::host::{Residency, force_residency};
    let g = autodiff_gates(&spread_locations(5000));
    let on = |r: Residency, f: &dyn Fn(&HardConcrete<Autodiff<Flex>>) -> Tensor<_, 1>| {
        let _forced = force_residency(r);
        value_and_grad(&g, f)
    };
    let deterministic = |g: &HardConcrete<_>| g.gates(GateMode::Deterministic);
    let (dv, dg) = on(Residency::Device, &deterministic);
    let (host_gates, hg) = on(Residency::Host, &deterministic);
    assert_close("deterministic gates", &dv, &host_gates, 2e-6);
    assert_close("their gradient", &dg, &hg, 2e-5);
    assert!(
        host_gates.contains(&0.0) && host_gates.contains(&1.0),
        "clipped at both ends"
    );

    let expected = |g: &HardConcrete<_>| g.expected_l0();
    let (dv, dg) = on(Residency::Device, &expected);
    let (hv, hg) = on(Residency::Host, &expected);
    assert_close("expected L0", &dv, &hv, 1e-5);
    assert_close("its gradient", &dg, &hg, 2e-5);

    let counts = |r: Residency| {
        let _forced = force_residency(r);
        let layer = g.layer_gates(3);
        (
            host(g.count_nonzero()),
            host(layer.active),
            host(layer.expected),
        )
    };
    let (device_count, device_active, device_expected) = counts(Residency::Device);
    let (host_count, host_active, host_expected) = counts(Residency::Host);
    assert_eq!(device_count, host_count);
    assert_eq!(device_active, host_active);
    assert_eq!(device_active, vec![3.0 * device_count[0]]);
    assert_close(
        "layer's expected count",
        &device_expected,
        &host_expected,
        1e-5,
    );

    // Frozen: the deterministic values, no gradient to the locations.
    let _forced = force_residency(Residency::Device);
    let frozen = g.gates(GateMode::Frozen);
    assert_close("frozen gates", &host(frozen.clone()), &host_gates, 2e-6);
    assert!(g.log_alpha.grad(&frozen.sum().backward()).is_none());
}

/// Given the host path's noise, the device path's sampled gates and their gradients are
/// the host path's (Eqs. 9-11 in tensor ops against the fused loop).
#[test]
fn device_sampling_equals_the_fused_loop_on_the_same_noise() {
    let locs = spread_locations(4000);
    let g = autodiff_gates(&locs);
    let seed = 0x5eed_1234_abcd;
    let locations = TensorData::new(locs.clone(), [locs.len()]);
    let fused = super::fused::sample(&locations, &g.params(), seed);
    let host_z = fused.value.into_vec::<f32>().unwrap();
    let host_dz = fused.derivative.into_vec::<f32>().unwrap();
    let device = Default::default();
    let noise = Tensor::from_data(
        TensorData::new(super::fused::noise_of(seed, locs.len()), [locs.len()]),
        &device,
    );
    let z = super::device::sample_with_noise(g.log_alpha.val(), noise, &g.params());
    let grads = z.clone().sum().backward();
    let dz = host(g.log_alpha.grad(&grads).unwrap());
    let z = host(z);
    assert_close("sampled gates", &z, &host_z, 2e-6);
    assert_close("their gradient", &dz, &host_dz, 2e-5);
    let clipped = host_z.iter().filter(|&&v| v == 0.0 || v == 1.0).count();
    assert!(clipped > 500 && clipped < 3500, "{clipped} clipped");
}

/// The device path's own noise (the backend's generator) gives gates with P(z != 0) of
/// Eq. 12, reproducibly under the backend seed, with no host read.
#[test]
fn device_sampling_follows_eq_12_without_host_reads() {
    use crate::host::{ReadCounter, Residency, force_residency};
    let _forced = force_residency(Residency::Device);
    let device = Default::default();
    let locs = [-2.0f32, 0.0, 1.5];
    let n = 20_000;
    let tiled: Vec<f32> = (0..n).flat_map(|_| locs).collect();
    let g = gates_with(&tiled);
    B::seed(&device, 21);
    let counter = ReadCounter::start();
    let sampled = g.gates(GateMode::Sample);
    let _ = (g.expected_l0(), g.count_nonzero(), g.layer_gates(2));
    assert_eq!(counter.reads(), 0, "the device path reads nothing back");
    let z = host(sampled);
    B::seed(&device, 21);
    assert_eq!(z, host(g.gates(GateMode::Sample)), "reproducible");
    let p = host(gates_with(&locs).prob_nonzero());
    for (k, &pk) in p.iter().enumerate() {
        let hits = (0..n).filter(|i| z[i * locs.len() + k] != 0.0).count() as f64;
        let freq = hits / n as f64;
        let sd = (pk as f64 * (1.0 - pk as f64) / n as f64).sqrt();
        assert!(
            (freq - pk as f64).abs() < 4.0 * sd + 1e-4,
            "log_alpha {}: freq {freq} vs P {pk}",
            locs[k]
        );
    }
    assert!(z.iter().all(|v| (0.0..=1.0).contains(v)));
}
