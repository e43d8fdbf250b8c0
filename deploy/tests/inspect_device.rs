//! `inspect` states the three figures a device budget is given in: flash (the file), RAM
//! (what the plan allocates) and latency on this host.

use tether_deploy::{AlignedBytes, KernelChoice, Model, ModelBuilder, OpSpec, Plan};

/// A small two-layer model, its first layer 10% dense.
fn small_model() -> Vec<u8> {
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
    b.finish(x).unwrap()
}

#[test]
fn inspect_reports_flash_ram_and_latency_of_the_model() {
    let bytes = small_model();
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
    let host = Plan::new(
        Model::parse(&aligned).unwrap(),
        &tether_deploy::cli::host_plan_options(1, KernelChoice::Auto),
    )
    .unwrap();
    // The device's RAM: the plan with no weight copied (the CSR layer run in place).
    let device = Plan::new(
        Model::parse(&aligned).unwrap(),
        &tether_deploy::PlanOptions::in_place(1),
    )
    .unwrap();
    assert_eq!(number_after("RAM ") as usize, device.ram_bytes(), "{line}");
    assert_eq!(
        device.ram_bytes(),
        device.activation_bytes(),
        "nothing copied"
    );
    assert_eq!(
        number_after("weight copies: ") as usize,
        host.ram_bytes(),
        "{line}"
    );
    assert!(host.ram_bytes() >= host.activation_bytes());
    let us = number_after("latency ");
    assert!(us > 0.0 && us < 1e5, "{line}");
    std::fs::remove_file(&path).unwrap();
}

/// `inspect --board` judges the model against each budget the board sets, and the CLI
/// exits with status 3 when one is not met.
#[test]
fn inspect_says_whether_the_model_fits_a_board() {
    let dir = std::env::temp_dir().join(format!("tether-inspect-board-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.tthr");
    let bytes = small_model();
    std::fs::write(&model, &bytes).unwrap();
    let inspect = |board: &str| {
        let path = dir.join("board.toml");
        std::fs::write(&path, board).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_tether-deploy"))
            .args(["inspect", model.to_str().unwrap(), "--board"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let roomy = inspect("name = \"roomy\"\nflash = \"1MiB\"\nram = \"1MiB\"\nlatency = \"1s\"\n");
    let text = String::from_utf8_lossy(&roomy.stdout);
    assert!(roomy.status.success(), "{text}");
    assert!(text.contains("board roomy: fits"), "{text}");
    assert_eq!(
        text.matches(": fits").count(),
        4,
        "the verdict and three budgets: {text}"
    );
    let tight = format!("name = \"tight\"\nflash = \"{}\"\n", bytes.len() - 1);
    let small = inspect(&tight);
    let text = String::from_utf8_lossy(&small.stdout);
    assert_eq!(small.status.code(), Some(3), "{text}");
    assert!(text.contains("board tight: DOES NOT FIT"), "{text}");
    assert!(
        text.contains("flash") && text.contains("DOES NOT FIT"),
        "{text}"
    );
    let bad = inspect("name = \"x\"\nflsh = \"1KiB\"\n");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown field"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A microcontroller's plan of a convolution needs its input and output and nothing else:
/// no im2col patch matrix (for LeNet-5's first layer, 25 x 576 floats: more than both).
#[test]
fn the_device_plan_of_a_convolution_holds_its_input_and_output_only() {
    let (c, k) = (20, 5);
    let w: Vec<f32> = (0..c * k * k)
        .map(|i| (i % 11) as f32 * 0.01 - 0.05)
        .collect();
    let mut b = ModelBuilder::new(&[1, 28, 28]);
    let w = b.dense(&[c, 1, k, k], &w);
    let x = b.input();
    let y = b.op(
        OpSpec::Conv2d {
            weight: w,
            bias: None,
            stride: 1,
            padding: 0,
        },
        &[x],
    );
    let bytes = b.finish(y).unwrap();
    let aligned = AlignedBytes::from_slice(&bytes);
    let device = Plan::new(
        Model::parse(&aligned).unwrap(),
        &tether_deploy::PlanOptions::in_place(1),
    )
    .unwrap();
    assert_eq!(device.ram_bytes(), 4 * (28 * 28 + c * 24 * 24));
}
