//! An output path that cannot take the outputs fails before any work, naming the path.

use std::process::Command;

#[test]
fn every_command_checks_its_output_folder_before_reading_data_or_training() {
    for command in ["prune", "fair-prune", "gang", "mesh", "svm"] {
        refuses_a_file_as_out(command);
    }
}

fn refuses_a_file_as_out(command: &str) {
    let file =
        std::env::temp_dir().join(format!("tether-out-file-{command}-{}", std::process::id()));
    std::fs::write(&file, b"not a folder").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args([command, "--out", file.to_str().unwrap()])
        // No data needed: the check comes before the data is read.
        .env("TETHER_DATA", "/nonexistent-tether-data")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{command}: {err}");
    assert!(
        err.contains(&format!(
            "--out {}: is a file, not a folder",
            file.display()
        )),
        "{command}: {err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
    std::fs::remove_file(&file).unwrap();
}
