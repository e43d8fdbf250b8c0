//! `inspect` states the three figures a device budget is given in: flash (the file), RAM
//! (what the plan allocates) and latency on this host.

use tether_deploy::{AlignedBytes, KernelChoice, Model, ModelBuilder, OpSpec, Plan};

#[test]
fn inspect_reports_flash_ram_and_latency_of_the_model() {
    let (i, h, o) = (64, 48, 10);
    let w1: Vec<f32> = (0..i * h)
        .map(|k| {
            if k % 10 == 0 {
                0.1 + (k % 7) as f32 * 0.01
            } else {
                0.0
            }
        })
        .collect();
    let w2: Vec<f32> = (0..h * o).map(|k| (k % 5) as f32 * 0.1 - 0.2).collect();
    let mut b = ModelBuilder::new(&[i]);
    let w1 = b.smallest(&[h, i], &w1);
    let w2 = b.dense(&[o, h], &w2);
    let x = b.input();
    let x = b.op(
        OpSpec::Linear {
            weight: w1,
            bias: None,
        },
        &[x],
    );
    let x = b.op(OpSpec::Relu, &[x]);
    let x = b.op(
        OpSpec::Linear {
            weight: w2,
            bias: None,
        },
        &[x],
    );
    let bytes = b.finish(x).unwrap();
    let path = std::env::temp_dir().join(format!("tether-inspect-{}.tthr", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();

    let mut out = Vec::new();
    tether_deploy::cli::inspect(&path, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("device, batch 1:"))
        .unwrap_or_else(|| panic!("no device line in\n{text}"));
    let number_after = |key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(number_after("flash ") as usize, bytes.len(), "{line}");
    let aligned = AlignedBytes::from_slice(&bytes);
    let plan = Plan::new(
        Model::parse(&aligned).unwrap(),
        &tether_deploy::cli::host_plan_options(1, KernelChoice::Auto),
    )
    .unwrap();
    assert_eq!(number_after("RAM ") as usize, plan.ram_bytes(), "{line}");
    assert!(plan.ram_bytes() >= plan.activation_bytes());
    let us = number_after("latency ");
    assert!(us > 0.0 && us < 1e5, "{line}");
    std::fs::remove_file(&path).unwrap();
}
