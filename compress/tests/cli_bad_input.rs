//! `tether-compress` on bad input (issue 30), run as a user runs it: images the codec
//! cannot code exactly (translucent alpha, 16-bit channels) are warned about by name and
//! refused under `--strict-input`; rates at or above the raw size, files that are not
//! images or not compressed files, and settings out of range are errors (status 1, 2 for
//! a flag clap refuses) that never panic and write nothing. `tether-deploy`'s bad-input
//! cases are `deploy/tests/cli_bad_input.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::ExtendedColorType;

/// What a run of the CLI gave.
struct Outcome {
    /// Exit status (`None`: killed by a signal).
    code: Option<i32>,
    /// Standard error.
    stderr: String,
}

/// `tether-compress` with `args` (no backtraces in the messages); fails the test on a
/// panic.
fn cli(args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-compress"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("the binary runs");
    let outcome = Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !outcome.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        outcome.stderr
    );
    outcome
}

/// Asserts `tether-compress` with `args` exits with `code` and a message on stderr holding
/// every one of `want`; returns the message.
fn fails_with(args: &[&str], code: i32, want: &[&str]) -> String {
    let out = cli(args);
    assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr);
    for w in want {
        assert!(
            out.stderr.contains(w),
            "{args:?}: {w:?} not in {:?}",
            out.stderr
        );
    }
    out.stderr
}

/// A fresh, empty folder per test (tests run in parallel).
fn tmp(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tether-compress-bad-input-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a `&str` (the temporary folders' are UTF-8).
fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The names in `dir`, sorted: what a failed command left there.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A 16 x 12 PNG of `color` at `path`, each pixel's channels from `pixel(x, y)` (16-bit
/// values for the 16-bit types, 8-bit ones otherwise).
fn png(path: &Path, color: ExtendedColorType, pixel: impl Fn(u32, u32) -> Vec<u16>) -> PathBuf {
    let (w, h) = (16, 12);
    let wide = matches!(color, ExtendedColorType::Rgb16 | ExtendedColorType::Rgba16);
    let raw: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .flat_map(|(x, y)| pixel(x, y))
        .flat_map(|v| {
            if wide {
                // PNG's byte order.
                v.to_be_bytes().to_vec()
            } else {
                vec![u8::try_from(v).expect("an 8-bit value")]
            }
        })
        .collect();
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        &raw,
        w,
        h,
        color,
    )
    .unwrap();
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// A smooth 8-bit colour at (x, y).
fn colour(x: u32, y: u32) -> [u16; 3] {
    [(x * 15) as u16, (y * 20) as u16, ((x + y) * 9) as u16]
}

/// `encode IMAGE -o OUT`, a few steps at 4 bpp (quick), and `extra`.
fn encode(image: &Path, out: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "encode",
        s(image),
        "-o",
        s(out),
        "--bpp",
        "4",
        "--steps",
        "4",
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn translucent_alpha_is_warned_about_and_refused_under_strict_input() {
    let d = tmp("alpha");
    // Alpha 0 on the left half: the colour under it is coded as stored.
    let rgba = png(&d.join("rgba.png"), ExtendedColorType::Rgba8, |x, y| {
        let [r, g, b] = colour(x, y);
        vec![r, g, b, if x < 8 { 0 } else { 255 }]
    });
    let out = d.join("rgba.tc");
    let run = encode(&rgba, &out, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "warning: {}: alpha channel dropped: 96 of 192 pixels are not fully opaque",
            s(&rgba)
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--strict-input refuses such images"));
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    fails_with(
        &["encode", s(&rgba), "-o", s(&out), "--strict-input"],
        1,
        &[
            &format!("{}: the image loses information as 8-bit RGB", s(&rgba)),
            "alpha channel dropped: 96 of 192 pixels",
        ],
    );
    assert_eq!(listing(&d), ["rgba.png"], "nothing written");
    // Opaque everywhere: nothing is lost, nothing said, and --strict-input takes it.
    let opaque = png(&d.join("opaque.png"), ExtendedColorType::Rgba8, |x, y| {
        let [r, g, b] = colour(x, y);
        vec![r, g, b, 255]
    });
    let run = encode(&opaque, &out, &["--strict-input"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("alpha"), "{}", run.stderr);
    assert!(out.exists());
}

#[test]
fn sixteen_bit_channels_are_warned_about_and_refused_under_strict_input() {
    let d = tmp("16-bit");
    // Values between 8-bit levels: rounding loses them.
    let deep = png(&d.join("deep.png"), ExtendedColorType::Rgb16, |x, y| {
        colour(x, y).iter().map(|&v| v * 257 + 100).collect()
    });
    let out = d.join("deep.tc");
    let run = encode(&deep, &out, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "warning: {}: 16-bit channels rounded to 8 bits",
            s(&deep)
        )),
        "{}",
        run.stderr
    );
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    fails_with(
        &["encode", s(&deep), "-o", s(&out), "--strict-input"],
        1,
        &[
            s(&deep),
            "16-bit channels rounded to 8 bits",
            "--strict-input",
        ],
    );
    assert!(!out.exists());
    // 16-bit RGBA, translucent: both said in one warning.
    let both = png(&d.join("both.png"), ExtendedColorType::Rgba16, |x, y| {
        let [r, g, b] = colour(x, y);
        vec![
            r * 257 + 1,
            g * 257,
            b * 257,
            if y == 0 { 0 } else { 65535 },
        ]
    });
    let run = encode(&both, &out, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "alpha channel dropped: 16 of 192 pixels are not fully opaque (the colour stored \
             under them is coded, not composited over a background); 16-bit channels rounded \
             to 8 bits"
        ),
        "{}",
        run.stderr
    );
    // Exact 8-bit levels stored in 16 bits lose nothing.
    let exact = png(&d.join("exact.png"), ExtendedColorType::Rgb16, |x, y| {
        colour(x, y).iter().map(|&v| v * 257).collect()
    });
    let run = encode(&exact, &out, &["--strict-input"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("16-bit"), "{}", run.stderr);
}

#[test]
fn a_rate_at_or_above_the_raw_size_is_refused() {
    let d = tmp("bpp");
    let img = png(&d.join("rgb.png"), ExtendedColorType::Rgb8, |x, y| {
        colour(x, y).to_vec()
    });
    let out = d.join("x.tc");
    // Before: 100 bpp made a file four times the raw pixels.
    for bpp in ["24", "100", "1000"] {
        fails_with(
            &["encode", s(&img), "-o", s(&out), "--bpp", bpp],
            1,
            &[
                &format!("--bpp {bpp} is at or above the size of the raw pixels"),
                "24 bits per pixel",
            ],
        );
    }
    for bpp in ["0", "-1", "NaN", "inf"] {
        fails_with(
            &["encode", s(&img), "-o", s(&out), &format!("--bpp={bpp}")],
            1,
            &["--bpp"],
        );
    }
    assert_eq!(listing(&d), ["rgb.png"], "nothing written");
    // Just below the raw size: encoded, the file no larger than the pixels.
    let run = cli(&[
        "encode",
        s(&img),
        "-o",
        s(&out),
        "--bpp",
        "23.5",
        "--steps",
        "4",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bytes = std::fs::metadata(&out).unwrap().len();
    assert!(bytes * 8 <= 16 * 12 * 24, "{bytes} bytes");
    // eval checks every rate before it encodes anything.
    let results = d.join("eval");
    fails_with(
        &[
            "eval",
            s(&d),
            "--bpp",
            "0.5,30",
            "--out",
            s(&results),
            "--steps",
            "4",
        ],
        1,
        &["--bpp 30 is at or above the size of the raw pixels"],
    );
    assert!(!results.exists());
}

#[test]
fn eval_refuses_an_image_that_loses_information_under_strict_input() {
    let d = tmp("eval-strict");
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    png(&images.join("a.png"), ExtendedColorType::Rgb8, |x, y| {
        colour(x, y).to_vec()
    });
    let rgba = png(&images.join("b.png"), ExtendedColorType::Rgba8, |x, y| {
        let [r, g, b] = colour(x, y);
        vec![r, g, b, 7]
    });
    let results = d.join("eval");
    fails_with(
        &[
            "eval",
            s(&images),
            "--bpp",
            "4",
            "--methods",
            "coin",
            "--steps",
            "4",
            "--strict-input",
            "--out",
            s(&results),
        ],
        1,
        &[s(&rgba), "alpha channel dropped: 192 of 192 pixels"],
    );
    assert!(!results.exists(), "refused before any encoding");
}

/// Mistakes the CLI already reported well, kept that way.
#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tmp("bad-input");
    let out = dir.join("out.tc");
    // A missing image.
    fails_with(
        &["encode", "/no/such/image.png", "-o", s(&out)],
        1,
        &["/no/such/image.png"],
    );
    // Not an image.
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"definitely not a png").unwrap();
    fails_with(
        &["encode", s(&junk), "-o", s(&out)],
        1,
        &["cannot decode the image", s(&junk)],
    );
    // A zero-size file.
    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    fails_with(
        &["encode", s(&empty), "-o", s(&out)],
        1,
        &[s(&empty), "the file is empty"],
    );
    // A budget no network fits.
    let png = png(&dir.join("small.png"), ExtendedColorType::Rgb8, |x, y| {
        colour(x, y).to_vec()
    });
    fails_with(
        &["encode", s(&png), "-o", s(&out), "--bpp", "0.01"],
        1,
        &["raise --bpp"],
    );
    // COIN's format is f16.
    fails_with(
        &[
            "encode",
            s(&png),
            "-o",
            s(&out),
            "--method",
            "coin",
            "--value-bits",
            "12",
        ],
        1,
        &["--value-bits must be 16"],
    );
    // A wrong flag: clap's error.
    fails_with(&["encode", s(&png), "--qualty", "3"], 2, &["--qualty"]);
    assert!(!out.exists(), "no output after a failed encode");
    // Corrupt and truncated compressed files.
    let png_out = dir.join("x.png");
    for bytes in [
        &b"TC\x01\x01garbage"[..],
        &b""[..],
        &b"\x89PNG\r\n\x1a\n0000"[..],
    ] {
        let bad = dir.join("bad.tc");
        std::fs::write(&bad, bytes).unwrap();
        fails_with(
            &["decode", s(&bad), "-o", s(&png_out)],
            1,
            &["corrupt compressed file"],
        );
    }
    assert!(!png_out.exists());
    assert_eq!(
        listing(&dir),
        ["bad.tc", "empty.png", "junk.png", "small.png"],
        "nothing else written"
    );
}

/// Output paths that cannot be written are refused before the fit (with the flag and
/// path named), and nothing is created; `--resume` without a checkpoint likewise.
#[test]
fn unwritable_outputs_and_a_missing_checkpoint_are_refused_before_the_fit() {
    let dir = tmp("outputs");
    let image = png(&dir.join("in.png"), ExtendedColorType::Rgb8, |x, y| {
        colour(x, y).to_vec()
    });
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("out.tc");
    for (extra, want) in [
        (vec!["-o", s(&dir)], vec!["-o", "is a folder, not a file"]),
        (
            vec!["-o", s(&under_file)],
            vec!["-o", "a-file is a file, not a folder"],
        ),
        (
            vec!["-o", s(&dir.join("ok.tc")), "--log", s(&under_file)],
            vec!["--log", "is a file, not a folder"],
        ),
        (
            vec!["-o", s(&dir.join("ok.tc")), "--decoded", s(&dir)],
            vec!["--decoded", "is a folder"],
        ),
        (
            vec![
                "-o",
                s(&dir.join("ok.tc")),
                "--resume",
                s(&dir.join("none")),
            ],
            vec!["--resume", "no checkpoint there"],
        ),
    ] {
        let mut args = vec!["encode", s(&image), "--bpp", "4", "--steps", "4"];
        args.extend(extra);
        fails_with(&args, 1, &want);
    }
    assert_eq!(listing(&dir), ["a-file", "in.png"]);
    std::fs::remove_dir_all(&dir).ok();
}
