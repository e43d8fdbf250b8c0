//! Cost of L0 gates: a training step of the gated network (sampled hard-concrete gates,
//! cross-entropy plus the expected-density term, backward, Adam) relative to the same
//! network without gates (cross-entropy, backward, Adam). LeNet-300-100 and LeNet-5,
//! batch 128, flex backend; 15 interleaved rounds (40 steps of each LeNet-300-100 network
//! a round, 5 of each LeNet-5), ratio of medians and the median of the per-round ratios. An epoch is a fixed number of such steps, so the step ratio is the
//! epoch-time ratio. Then the gate computations alone, for LeNet-300-100's 266,200 gates:
//! where the extra time goes.
//!
//! The ungated network is built fresh (`common/gate_nets.rs`), and before timing, one step
//! of each network must give every one of its parameters a non-zero gradient. Before
//! 2026-12-06 the ungated step ran on `gated.fold()`, whose weights were then not leaves
//! and got no gradient: only its biases trained, and the ratios came out about twice as
//! high as they are.
//!
//! Writes `out/bench/gate_overhead.json`.
//!
//! Run: `cargo bench -p tether-train --bench gate_overhead`

#[path = "common/gate_nets.rs"]
mod gate_nets;

use std::path::Path;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use gate_nets::{assert_trains_every_parameter, gated_loss, plain_loss};
use tether_models::gated::GatedNetwork;
use tether_models::l0::{GateMode, HardConcreteConfig};
use tether_train::io::write_atomic;

type B = Autodiff<Flex>;

const BATCH: usize = 128;
const ROUNDS: usize = 15;
/// Steps per round of the gate computations.
const STEPS: usize = 5;
/// Steps per round of each network: a round of either is at least about 0.1 s here, so
/// that a scheduler hiccup on a shared machine is a small part of it.
const STEPS_LENET300: usize = 40;
const STEPS_LENET5: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per step of `steps` steps of `step`.
fn time(steps: usize, step: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..steps {
        step();
    }
    start.elapsed().as_secs_f64() / steps as f64
}

/// Median step times `(gated, ungated)` and the median per-round ratio, of a gated network
/// and its ungated twin, measured in interleaved rounds. Checks first that one step of each
/// trains every parameter, and that the twin has the folded gated network's parameters.
fn compare<M, P>(
    name: &str,
    (mut gated, mut plain): (M, P),
    steps: usize,
    fold: impl Fn(&M) -> P,
    forward: impl Fn(&P, Tensor<B, 2>) -> Tensor<B, 2>,
    x: &Tensor<B, 2>,
    y: &Tensor<B, 1, Int>,
) -> (f64, f64, f64)
where
    M: AutodiffModule<B> + GatedNetwork<B>,
    P: AutodiffModule<B>,
{
    assert_eq!(
        plain.num_params(),
        fold(&gated).num_params(),
        "{name}: the ungated twin differs from the gated network"
    );
    assert_trains_every_parameter(
        &format!("{name}, gated"),
        &gated,
        gated_loss(&gated, x.clone(), y.clone()),
    );
    assert_trains_every_parameter(
        &format!("{name}, ungated"),
        &plain,
        plain_loss(forward(&plain, x.clone()), y.clone()),
    );
    let mut g_opt = AdamConfig::new().init::<B, M>();
    let mut p_opt = AdamConfig::new().init::<B, P>();
    let (mut tg, mut tp) = (vec![], vec![]);
    for round in 0..=ROUNDS {
        let a = time(steps, &mut || {
            let loss = gated_loss(&gated, x.clone(), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &gated);
            gated = g_opt.step(1e-3, gated.clone(), grads);
        });
        let b = time(steps, &mut || {
            let loss = plain_loss(forward(&plain, x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &plain);
            plain = p_opt.step(1e-3, plain.clone(), grads);
        });
        if round > 0 {
            // round 0 warms caches and allocators
            tg.push(a);
            tp.push(b);
        }
    }
    let ratios = tg.iter().zip(&tp).map(|(g, p)| g / p).collect();
    (median(tg), median(tp), median(ratios))
}

fn main() -> anyhow::Result<()> {
    let device = Default::default();
    let x = Tensor::<B, 2>::random([BATCH, 784], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);

    let mut results = serde_json::Map::new();
    println!(
        "| network | ungated step ms | gated step ms | gated / ungated | median round ratio |"
    );
    println!("|---|---|---|---|---|");

    let nets = [
        (
            "lenet300",
            compare(
                "LeNet-300-100",
                gate_nets::lenet300::<B>(&device),
                STEPS_LENET300,
                |g| g.fold(),
                |p, x| p.forward(x),
                &x,
                &y,
            ),
        ),
        (
            "lenet5",
            compare(
                "LeNet-5",
                gate_nets::lenet5::<B>(&device),
                STEPS_LENET5,
                |g| g.fold(),
                |p, x| p.forward(x),
                &x,
                &y,
            ),
        ),
    ];
    for (name, (g, p, r)) in nets {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {r:.2} |",
            p * 1e3,
            g * 1e3,
            g / p
        );
        results.insert(
            name.into(),
            serde_json::json!({"ungated_s": p, "gated_s": g, "ratio": g / p, "median_round_ratio": r}),
        );
    }

    // Where the gated step's extra time goes: the gate computations alone, for as many
    // gates as LeNet-300-100 has (one per weight).
    let gates = 266_200;
    let hc = HardConcreteConfig::new().init::<B>(gates, &device);
    let parts: [(&str, &mut dyn FnMut()); 3] = [
        (
            "sampled gates (noise included), forward + backward",
            &mut || {
                let g = hc.gates(GateMode::Sample).sum().backward();
                let _ = hc.log_alpha.grad(&g);
            },
        ),
        ("expected L0, forward + backward", &mut || {
            let g = hc.expected_l0().backward();
            let _ = hc.log_alpha.grad(&g);
        }),
        ("deterministic count (strict density)", &mut || {
            let _ = hc.count_nonzero().into_data();
        }),
    ];
    println!("\n| {gates} gates | ms |\n|---|---|");
    let mut breakdown = serde_json::Map::new();
    for (name, f) in parts {
        f();
        let ms = median((0..ROUNDS).map(|_| time(STEPS, f)).collect()) * 1e3;
        println!("| {name} | {ms:.2} |");
        breakdown.insert(name.into(), ms.into());
    }
    results.insert("gate_parts_ms".into(), breakdown.into());
    results.insert("batch".into(), BATCH.into());
    results.insert("rounds".into(), ROUNDS.into());
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/bench/gate_overhead.json");
    write_atomic(&out, serde_json::to_string_pretty(&results)?.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}
