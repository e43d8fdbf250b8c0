//! An encode stopped part-way and resumed from its checkpoint writes the same file as the
//! uninterrupted encode, byte for byte (COIN; L0onie stopped in its pruning and again in
//! its fine-tuning); the checkpoint is gone once the file is written; a resume with other
//! settings or without a checkpoint is refused before the fit.

use std::path::{Path, PathBuf};

use tether_compress::Image;
use tether_compress::codec::Method;
use tether_compress::error::CompressError;
use tether_compress::tasks::config::{CodecConfig, EncodeConfig};
use tether_compress::tasks::encode::{run, run_controlled};
use tether_train::resume::{Interrupt, RunControl};

/// The backend's random generator is one per process: encodes take turns.
static ONE_FIT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_FIT_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tether-compress-resume-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 24x16 image with some structure (gradients and a bright square).
fn image(dir: &Path) -> PathBuf {
    let (w, h) = (24, 16);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let bright = (6..12).contains(&x) && (4..10).contains(&y);
            rgb.extend([
                (x * 10) as u8,
                (y * 15) as u8,
                if bright { 250 } else { 40 },
            ]);
        }
    }
    let path = dir.join("image.png");
    Image::new(w, h, rgb).unwrap().save_png(&path).unwrap();
    path
}

fn config(dir: &Path, method: Method, output: &str) -> EncodeConfig {
    EncodeConfig {
        image: image(dir),
        output: dir.join(output),
        bpp: 8.0,
        downscale: 1,
        decoded: None,
        log: Some(dir.join(format!("{output}.csv"))),
        strict_input: false,
        checkpoint_every: 10,
        resume: None,
        codec: CodecConfig {
            method,
            steps: 60,
            ..CodecConfig::default()
        },
    }
}

/// Encodes until `steps` steps of this process are taken; returns the checkpoint.
fn stop_after(config: &EncodeConfig, steps: usize, at: usize) -> PathBuf {
    let control = RunControl {
        progress: false,
        interrupt: Interrupt::after_steps(steps),
    };
    let err = run_controlled(config, &mut std::io::sink(), &control).unwrap_err();
    match err.downcast_ref::<CompressError>() {
        Some(CompressError::Interrupted(stop)) => {
            assert_eq!(stop.position.global_step, at, "{stop}");
            assert!(!config.output.exists(), "no output before the fit ends");
            stop.checkpoint.clone()
        }
        _ => panic!("not an interruption: {err:?}"),
    }
}

fn resumed_equals_whole(method: Method, stops: &[(usize, usize)]) {
    let _turn = turn();
    let dir = folder(&format!("{method}"));
    let whole = config(&dir, method, "whole.tc");
    run(&whole, &mut std::io::sink(), false).unwrap();
    assert!(!whole.checkpoint_dir().exists(), "removed once written");
    let mut parts = config(&dir, method, "parts.tc");
    for &(steps, at) in stops {
        let checkpoint = stop_after(&parts, steps, at);
        assert_eq!(checkpoint, parts.checkpoint_dir());
        parts.resume = Some(checkpoint);
    }
    run(&parts, &mut std::io::sink(), false).unwrap();
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert!(
        read(&whole.output) == read(&parts.output),
        "{method}: the files differ"
    );
    assert!(
        read(&dir.join("whole.tc.csv")) == read(&dir.join("parts.tc.csv")),
        "{method}: the logs differ"
    );
    assert!(!parts.checkpoint_dir().exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_coin_encode_stopped_between_checkpoints_resumes_to_the_same_file() {
    // Stopped at step 25: the checkpoint of step 20 is replaced by the one the interrupt
    // writes at 25.
    resumed_equals_whole(Method::Coin, &[(25, 25)]);
}

#[test]
fn an_l0onie_encode_stopped_in_pruning_and_in_fine_tuning_resumes_to_the_same_file() {
    // 60 steps, the first 30 pruning: stopped at 13 (pruning), then at 13 + 32 = 45
    // (fine-tuning).
    resumed_equals_whole(Method::L0onie, &[(13, 13), (32, 45)]);
}

#[test]
fn a_resume_with_other_settings_or_no_checkpoint_is_refused() {
    let _turn = turn();
    let dir = folder("refused");
    let mut c = config(&dir, Method::Coin, "out.tc");
    let checkpoint = stop_after(&c, 5, 5);
    c.resume = Some(checkpoint);
    c.codec.lr = 0.01;
    let err = run(&c, &mut std::io::sink(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr: 0.001 then, 0.01 now"), "{err}");
    c.resume = Some(dir.join("nowhere"));
    let err = run(&c, &mut std::io::sink(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint there"), "{err}");
    assert!(!c.output.exists());
    std::fs::remove_dir_all(&dir).ok();
}
