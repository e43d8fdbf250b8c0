//! The `tether-train` binary: clear errors for bad input, and real output files.

use std::process::Command;

fn tether_train(args: &[&str], data: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-train"));
    cmd.args(args).env_remove("RUST_BACKTRACE");
    if let Some(d) = data {
        cmd.env("TETHER_DATA", d);
    }
    let out = cmd.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_missing_data_are_clear_errors() {
    let (ok, _, err) = tether_train(&["svm", "--dual", "bogus"], None);
    assert!(
        !ok && err.contains("invalid value 'bogus' for '--dual"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["svm", "--device", "gpu"], None);
    assert!(
        !ok && err.contains("possible values: flex, ndarray, cuda"),
        "{err}"
    );
    let (ok, _, err) = tether_train(&["svm"], Some("/nonexistent-tether-data"));
    assert!(
        !ok && err.contains("run `scripts/fetch-data iris`"),
        "{err}"
    );
    if !cfg!(feature = "cuda") {
        let (ok, _, err) = tether_train(&["svm", "--device", "cuda"], None);
        assert!(
            !ok && err.contains("rebuild with `--features cuda`"),
            "{err}"
        );
    }
}

#[test]
fn svm_writes_metrics_and_plot() {
    if tether_train::data::iris::Iris::load().is_err() {
        assert!(tether_train::data::may_skip("iris"), "Iris is required");
        eprintln!("SKIPPED: Iris not fetched (scripts/fetch-data iris)");
        return;
    }
    let out = std::env::temp_dir().join(format!("tether-cli-svm-{}", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let (ok, stdout, err) = tether_train(&["svm", "--steps", "300", "--out", &out_s], None);
    assert!(ok, "{err}");
    assert!(stdout.contains("max |alpha - alpha*|"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301, "header + one row per step");
    assert!(csv.starts_with("step,loss,max_violation,alpha_"));
    let png = std::fs::read(out.join("multipliers.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_dir_all(&out).unwrap();
}
