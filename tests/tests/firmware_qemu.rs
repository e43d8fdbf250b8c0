//! The Cortex-M4 firmware (`firmware/`) under QEMU agrees with the host: it is built for
//! `thumbv7em-none-eabihf`, booted on QEMU's `mps2-an386` machine, and the digit it
//! predicts for each embedded MNIST test image must be the one tether-deploy predicts on
//! the host for the same model and inputs (`firmware/assets/`); its logits must match the
//! host's to float rounding (the host may run other kernels: gemm, AVX2).
//!
//! Needs `qemu-system-arm` (Debian: `apt-get install qemu-system-arm`) on `PATH`; without
//! it the test says so and passes, unless `TETHER_REQUIRE_QEMU=1`, when it fails. The
//! firmware's dependencies come from crates.io (locked by `firmware/Cargo.lock`); it builds
//! into `firmware/target`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_deploy::{AlignedBytes, Model, Plan, PlanOptions};

const QEMU: &str = "qemu-system-arm";
const TARGET: &str = "thumbv7em-none-eabihf";
const QEMU_TIMEOUT: Duration = Duration::from_secs(60);

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

/// Whether QEMU is there; `false` (with a message) lets the test skip, unless required.
fn qemu_available() -> bool {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var("TETHER_REQUIRE_QEMU").is_ok_and(|v| v == "1");
    match (found, required) {
        (true, _) => true,
        (false, true) => panic!("TETHER_REQUIRE_QEMU=1 but `{QEMU}` is not on PATH"),
        (false, false) => {
            eprintln!(
                "SKIPPED: `{QEMU}` is not on PATH (apt-get install qemu-system-arm; \
                 TETHER_REQUIRE_QEMU=1 makes this a failure)"
            );
            false
        }
    }
}

/// Held from building the firmware to booting it: every feature set builds into the same
/// `firmware/target/.../tether-firmware`, and tests run in parallel threads, so without it
/// one test could boot the ELF another test's build has just written (seen: the LeNet-5
/// check booting the Cool-chic image).
static FIRMWARE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the firmware with `features`, boots it, and returns its output and the build
/// and run times.
fn build_and_run(features: &[&str]) -> (String, Duration, Duration) {
    let _only_one = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let elf = build_firmware(features);
    let built = start.elapsed();
    let out = run_qemu(&elf);
    (out, built, start.elapsed() - built)
}

/// Builds the firmware (release) with `features` and returns its ELF.
fn build_firmware(features: &[&str]) -> PathBuf {
    let dir = firmware_dir();
    let target_dir = dir.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(features.iter().flat_map(|f| ["--features", f]))
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build would break the bare-metal one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run cargo to build the firmware");
    assert!(status.success(), "building the firmware failed: {status}");
    target_dir.join(TARGET).join("release/tether-firmware")
}

/// Boots `elf` in QEMU; returns its output (semihosting) once it exits with success.
fn run_qemu(elf: &Path) -> String {
    let mut child = Command::new(QEMU)
        .args(["-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic"])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status;
        }
        if start.elapsed() > QEMU_TIMEOUT {
            child.kill().ok();
            child.wait().ok();
            panic!("qemu ran past {QEMU_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().unwrap().expect("read qemu's output");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(
        status.success(),
        "the firmware exited with {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Index of the largest logit (the first, on ties), the firmware's rule.
fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// One digit's result as the firmware printed it.
#[derive(Debug, Default)]
struct Device {
    predicted: Option<usize>,
    label: Option<u8>,
    logits: Option<Vec<f32>>,
}

/// Parses `digit I: predicted P label L` and `logits I: <f32 bits in hex>...`.
fn parse(out: &str, n: usize) -> Vec<Device> {
    let mut digits: Vec<Device> = (0..n).map(|_| Device::default()).collect();
    let index = |s: &str| -> usize {
        let i: usize = s.trim_end_matches(':').parse().expect("digit index");
        assert!(i < n, "digit index {i} out of range in {out}");
        i
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["digit", i, "predicted", p, "label", l] => {
                let d = &mut digits[index(i)];
                d.predicted = Some(p.parse().expect("predicted digit"));
                d.label = Some(l.parse().expect("label"));
            }
            ["logits", i, hex @ ..] => {
                let v = hex
                    .iter()
                    .map(|h| f32::from_bits(u32::from_str_radix(h, 16).expect("hex f32")))
                    .collect();
                digits[index(i)].logits = Some(v);
            }
            _ => {}
        }
    }
    digits
}

#[test]
fn firmware_under_qemu_predicts_as_the_host() {
    if !qemu_available() {
        return;
    }
    check_firmware("lenet300-mnist-64k.tthr", &[]);
}

/// The LeNet-5 pruned by whole channels for the same board: its convolutions run the
/// portable patch-free kernel, and the device's activation memory is the RAM the pruning
/// budgeted (the plan a microcontroller builds, as `tether-deploy inspect` reports it).
#[test]
fn a_convolutional_network_under_qemu_predicts_as_the_host_in_the_ram_predicted() {
    if !qemu_available() {
        return;
    }
    check_firmware("lenet5-mnist-board.tthr", &["lenet5"]);
}

/// Builds the firmware embedding `model` (chosen by `features`), runs it, and checks its
/// predictions, logits and activation memory against the host's.
fn check_firmware(model: &str, features: &[&str]) {
    let assets = firmware_dir().join("assets");
    let model_bytes = std::fs::read(assets.join(model)).unwrap();
    let raw = std::fs::read(assets.join("digits.f32")).unwrap();
    let labels = std::fs::read(assets.join("labels.u8")).unwrap();
    let inputs: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();

    // The host's answers, from the same runtime.
    let bytes = AlignedBytes::from_slice(&model_bytes);
    let mut plan = Plan::new(Model::parse(&bytes).unwrap(), &PlanOptions::default()).unwrap();
    let per = plan.model().input_shape().numel();
    assert_eq!(inputs.len(), per * labels.len(), "digits.f32 vs labels.u8");
    let host: Vec<Vec<f32>> = inputs
        .chunks_exact(per)
        .map(|x| plan.run(x).unwrap().to_vec())
        .collect();
    let predicted_ram = Plan::new(Model::parse(&bytes).unwrap(), &PlanOptions::in_place(1))
        .unwrap()
        .ram_bytes();

    let (out, built, ran) = build_and_run(features);
    eprintln!("firmware built in {built:.1?}, ran in {ran:.1?}; its output:\n{out}");

    let device = parse(&out, labels.len());
    let summary = out
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line in\n{out}"));
    let activation: usize = summary
        .split("activation bytes ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no activation bytes in {summary}"));
    assert_eq!(
        activation, predicted_ram,
        "{model}: device vs predicted RAM"
    );
    let mut bit_exact = 0;
    for (i, ((d, h), &label)) in device.iter().zip(&host).zip(&labels).enumerate() {
        let (Some(predicted), Some(dev_label), Some(logits)) =
            (d.predicted, d.label, d.logits.as_ref())
        else {
            panic!("digit {i} missing from the firmware's output:\n{out}");
        };
        assert_eq!(dev_label, label, "digit {i}: label");
        assert_eq!(predicted, argmax(h), "digit {i}: device vs host prediction");
        assert_eq!(predicted, argmax(logits), "digit {i}: printed prediction");
        assert_eq!(logits.len(), h.len(), "digit {i}: logits");
        for (k, (&a, &b)) in logits.iter().zip(h).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "digit {i}, logit {k}: device {a} vs host {b}"
            );
        }
        bit_exact += logits.iter().zip(h).filter(|(a, b)| a == b).count();
    }
    eprintln!(
        "{} digits agree; {bit_exact} of {} logits bit for bit",
        labels.len(),
        host.iter().map(Vec::len).sum::<usize>()
    );
}

/// The device decodes the embedded Cool-chic file (`firmware/assets/kodim23-96x64.cc`,
/// issue 27, format version 3 with learned upsampling filters) to exactly the pixels the host decodes from it: the decoder is
/// float-deterministic (the same `f32` operations in the same order; the host's run in
/// AVX2 lanes, the Cortex-M4F's in scalar FPU code), so every byte must agree.
#[test]
fn a_coolchic_file_decodes_on_the_device_to_the_hosts_pixels() {
    if !qemu_available() {
        return;
    }
    let file = std::fs::read(firmware_dir().join("assets/kodim23-96x64.cc")).unwrap();
    let (w, h, host) = tether_deploy::coolchic::synthesis::decode_image(&file).unwrap();
    // The asset is of the current version, with learned upsampling filters, so the
    // device runs the pre-filter too.
    let model = tether_deploy::coolchic::decode(&file).unwrap();
    assert_eq!(file[2], tether_deploy::coolchic::file::VERSION);
    assert!(
        model.upsampling.codes.iter().any(|&c| c != 0),
        "the asset's upsampling filters are all zero"
    );

    let (out, built, ran) = build_and_run(&["coolchic"]);
    eprintln!(
        "firmware built in {built:.1?}, ran in {ran:.1?}; its first line: {}",
        out.lines().next().unwrap_or("")
    );

    let header = out
        .lines()
        .find(|l| l.contains("Cool-chic file"))
        .unwrap_or_else(|| panic!("no header line in\n{out}"));
    assert!(
        header.contains(&format!("image {w} {h},")),
        "device vs host image size: {header}"
    );
    let mut rows: Vec<Option<Vec<u8>>> = vec![None; h];
    for line in out.lines() {
        let Some((y, hex)) = line
            .strip_prefix("row ")
            .and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        let y: usize = y.parse().expect("row index");
        assert!(y < h, "row {y} out of range");
        let bytes = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex byte"))
            .collect();
        rows[y] = Some(bytes);
    }
    let mut differ = 0;
    for (y, (row, want)) in rows.iter().zip(host.chunks_exact(3 * w)).enumerate() {
        let row = row
            .as_ref()
            .unwrap_or_else(|| panic!("row {y} missing from the firmware's output"));
        assert_eq!(row.len(), 3 * w, "row {y}: length");
        differ += row.iter().zip(want).filter(|(a, b)| a != b).count();
    }
    assert_eq!(differ, 0, "{differ} of {} bytes differ", host.len());
    assert!(out.contains("summary:"), "no summary line in\n{out}");
}
