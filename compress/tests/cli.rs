//! The `tether-compress` binary as a user runs it: round trips, eval's help and its early
//! check of `--published`. Bad input (clear errors, never a panic, never a half-written
//! output) is `cli_bad_input.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tether_compress::Image;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tether-compress"))
}

fn tmp(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tether-compress-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (status.success(), text)
}

fn small_png(dir: &Path) -> PathBuf {
    let (w, h) = (32, 24);
    let rgb = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [(x * 8) as u8, (y * 10) as u8, ((x + y) * 4) as u8]
        })
        .collect();
    let path = dir.join("small.png");
    Image::new(w, h, rgb).unwrap().save_png(&path).unwrap();
    path
}

#[test]
fn help_lists_the_commands() {
    let (ok, text) = run(bin().arg("--help"));
    assert!(ok);
    for cmd in ["encode", "decode", "eval"] {
        assert!(text.contains(cmd), "{text}");
    }
    let (ok, text) = run(bin().args(["encode", "--help"]));
    assert!(
        ok && text.contains("--bpp") && text.contains("--method"),
        "{text}"
    );
}

#[test]
fn encode_then_decode_round_trips_for_both_methods() {
    let dir = tmp("round-trip");
    let png = small_png(&dir);
    for method in ["coin", "l0onie"] {
        let file = dir.join(format!("{method}.tc"));
        let decoded = dir.join(format!("{method}-encoder.png"));
        let (ok, text) = run(bin().args([
            "encode",
            png.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
            "--bpp",
            "2.5",
            "--steps",
            "80",
            "--method",
            method,
            "--decoded",
            decoded.to_str().unwrap(),
        ]));
        assert!(ok, "{text}");
        let bytes = std::fs::metadata(&file).unwrap().len() as usize;
        assert!(bytes * 8 <= (2.5 * 32.0 * 24.0) as usize, "{bytes} bytes");
        let out = dir.join(format!("{method}.png"));
        let (ok, text) = run(bin().args([
            "decode",
            file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]));
        assert!(ok, "{text}");
        // The decoder's image is the one the encoder reported on.
        assert_eq!(Image::load(&out).unwrap(), Image::load(&decoded).unwrap());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn eval_needs_no_data_folder_and_checks_published_first() {
    // The help names no developer-only path: the published curves are built in.
    let (ok, text) = run(bin().args(["eval", "--help"]));
    assert!(ok && text.contains("IMAGES_DIR"), "{text}");
    assert!(!text.contains("shared"), "{text}");
    // A --published folder that is not there fails at once, naming it, before any
    // image is encoded.
    let dir = tmp("eval-published");
    small_png(&dir);
    let out = dir.join("out");
    let (ok, text) = run(bin().args([
        "eval",
        dir.to_str().unwrap(),
        "--published",
        "/no/such/curves",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(!ok && text.contains("/no/such/curves"), "{text}");
    assert!(!out.exists(), "nothing written after a failed eval");
    std::fs::remove_dir_all(dir).unwrap();
}
