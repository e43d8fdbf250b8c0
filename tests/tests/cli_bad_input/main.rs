//! The command lines on bad input (issue 30), run as a user runs them: each mistake ends
//! with a known exit status (1 for an error the program reports, 2 for a flag clap
//! refuses) and a message naming what is wrong and the file or flag at fault, never a
//! panic, and leaves no output or `.partial` file behind.
//!
//! - [`deploy`]: `tether-deploy` (damaged models, inputs that do not fit, NaN and
//!   infinities with every kernel choice, ONNX import).
//! - [`compress`]: `tether-compress` (images the codec cannot code exactly, rates at or
//!   above the raw size, files that are not images or not compressed files).
//!
//! The binaries are other packages' (`CARGO_BIN_EXE_*` names only this one's), so
//! [`bin`] builds them once per run with the cargo running the tests, into the same
//! target folder and profile: a stale binary is never tested.

mod compress;
mod deploy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The folder the binaries are in, `target/<profile>`, once they are built.
fn build_bins() -> PathBuf {
    // This test runs as target/<profile>/deps/cli_bad_input-<hash>.
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("the target folder");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--bins",
            "-p",
            "tether-deploy",
            "-p",
            "tether-compress",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
        None => panic!("no profile folder in {}", exe.display()),
    }
    let out = cmd.output().expect("run cargo to build the CLIs");
    assert!(
        out.status.success(),
        "building tether-deploy and tether-compress failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir
}

/// The binary `name` (`tether-deploy`, `tether-compress`), built for this run.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let path = DIR
        .get_or_init(build_bins)
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// What a run of a CLI gave.
pub struct Outcome {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `name` with `args` (no backtraces in the messages); fails the test on a panic.
pub fn run(name: &str, args: &[&str]) -> Outcome {
    let out = Command::new(bin(name))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    let outcome = Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !outcome.stderr.contains("panicked"),
        "{name} {args:?} panicked: {}",
        outcome.stderr
    );
    outcome
}

/// Asserts `name` with `args` exits with `code` and a message on stderr holding every one
/// of `want`; returns the message.
pub fn fails_with(name: &str, args: &[&str], code: i32, want: &[&str]) -> String {
    let out = run(name, args);
    assert_eq!(out.code, Some(code), "{name} {args:?}: {}", out.stderr);
    for w in want {
        assert!(
            out.stderr.contains(w),
            "{name} {args:?}: {w:?} not in {:?}",
            out.stderr
        );
    }
    out.stderr
}

/// A fresh, empty folder per test (tests run in parallel).
pub fn tmp(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tether-cli-bad-input-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a `&str` (the temporary folders' are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The names in `dir`, sorted: what a failed command left there.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
