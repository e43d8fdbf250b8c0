//! Cost of L0 gates: a training step of the gated network (sampled hard-concrete gates,
//! cross-entropy plus the expected-density term, backward, Adam) relative to the same
//! network without gates (cross-entropy, backward, Adam). LeNet-300-100 and LeNet-5,
//! batch 128, flex backend; interleaved rounds, ratio of medians. An epoch is a fixed
//! number of such steps, so the step ratio is the epoch-time ratio. Then the gate
//! computations alone, for LeNet-300-100's 266,200 gates: where the extra time goes.
//!
//! Writes `out/bench/gate_overhead.json`.
//!
//! Run: `cargo bench -p tether-train --bench gate_overhead`

use std::path::Path;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use tether_models::gated::GatedNetwork;
use tether_models::gated_mlp::GatedMlpConfig;
use tether_models::l0::{GateMode, GateStructure, HardConcreteConfig};
use tether_models::lenet5::GatedLenet5Config;
use tether_train::io::write_atomic;
use tether_train::tasks::metrics::cross_entropy;
use tether_train::tasks::prune::global_density;

type B = Autodiff<Flex>;

const BATCH: usize = 128;
const ROUNDS: usize = 9;
const STEPS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `STEPS` steps of `step` per round.
fn time(step: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..STEPS {
        step();
    }
    start.elapsed().as_secs_f64() / STEPS as f64
}

fn gated_step<M: AutodiffModule<B> + GatedNetwork<B>>(
    model: M,
    opt: &mut impl Optimizer<M, B>,
    x: &Tensor<B, 2>,
    y: &Tensor<B, 1, Int>,
) -> M {
    let loss = cross_entropy(model.forward_gated(x.clone(), GateMode::Sample), y.clone())
        + global_density(&model).0.mul_scalar(0.1);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    opt.step(1e-3, model, grads)
}

/// Median step times `(gated, ungated)` of a gated network and its folded plain twin,
/// measured in interleaved rounds.
fn compare<M, P>(
    mut gated: M,
    fold: impl Fn(&M) -> P,
    forward: impl Fn(&P, Tensor<B, 2>) -> Tensor<B, 2>,
    x: &Tensor<B, 2>,
    y: &Tensor<B, 1, Int>,
) -> (f64, f64)
where
    M: AutodiffModule<B> + GatedNetwork<B>,
    P: AutodiffModule<B>,
{
    let mut plain = fold(&gated);
    let mut g_opt = AdamConfig::new().init::<B, M>();
    let mut p_opt = AdamConfig::new().init::<B, P>();
    let (mut tg, mut tp) = (vec![], vec![]);
    for round in 0..=ROUNDS {
        let a = time(&mut || gated = gated_step(gated.clone(), &mut g_opt, x, y));
        let b = time(&mut || {
            let loss = cross_entropy(forward(&plain, x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &plain);
            plain = p_opt.step(1e-3, plain.clone(), grads);
        });
        if round > 0 {
            // round 0 warms caches and allocators
            tg.push(a);
            tp.push(b);
        }
    }
    (median(tg), median(tp))
}

fn main() -> anyhow::Result<()> {
    let device = Default::default();
    let x = Tensor::<B, 2>::random([BATCH, 784], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);

    let mut results = serde_json::Map::new();
    println!("| network | ungated step ms | gated step ms | gated / ungated |");
    println!("|---|---|---|---|");

    let nets: [(&str, (f64, f64)); 2] = [
        (
            "lenet300",
            compare(
                GatedMlpConfig::new(vec![784, 300, 100, 10], GateStructure::Weight)
                    .init::<B>(&device),
                |g| g.fold(),
                |p, x| p.forward(x),
                &x,
                &y,
            ),
        ),
        (
            "lenet5",
            compare(
                GatedLenet5Config::new(GateStructure::Weight).init::<B>(&device),
                |g| g.fold(),
                |p, x| p.forward(x),
                &x,
                &y,
            ),
        ),
    ];
    for (name, (g, p)) in nets {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            p * 1e3,
            g * 1e3,
            g / p
        );
        results.insert(
            name.into(),
            serde_json::json!({"ungated_s": p, "gated_s": g, "ratio": g / p}),
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
        let ms = median((0..ROUNDS).map(|_| time(f)).collect()) * 1e3;
        println!("| {name} | {ms:.2} |");
        breakdown.insert(name.into(), ms.into());
    }
    results.insert("gate_parts_ms".into(), breakdown.into());
    results.insert("batch".into(), BATCH.into());
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/bench/gate_overhead.json");
    write_atomic(&out, serde_json::to_string_pretty(&results)?.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}
