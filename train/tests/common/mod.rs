//! Helpers shared by the tests that run the `tether-train` binary.

use std::path::PathBuf;
use std::process::Command;

/// Runs `tether-train` with `args`: (success, stdout, stderr).
pub fn tether_train(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-train"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty folder `tether-{prefix}-{pid}-{name}` under the system's temp dir.
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn fresh_dir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
