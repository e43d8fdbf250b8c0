//! `tether-train prune --data FOLDER` trains on exactly the same numbers whether the image
//! folder is held in memory or decoded from its files for each batch (`--loading`): the
//! same seed gives the same metrics, epochs and model, byte for byte.

use std::path::{Path, PathBuf};

mod common;
use common::tether_train;

fn tmp(name: &str) -> PathBuf {
    common::fresh_dir("stream", name)
}

/// Three classes of 28x28 grey images: a bright bar at a class-dependent row, with noise.
fn image_folder(root: &Path, per_class: u32) {
    for class in 0..3u32 {
        let dir = root.join(format!("c{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = image::GrayImage::from_fn(28, 28, |x, y| {
                let noise = (x * 7 + y * 13 + i * 31 + class * 5) % 40;
                let bar = if y / 9 == class { 180 } else { 0 };
                image::Luma([(bar + noise) as u8])
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

fn run(data: &Path, out: &Path, loading: &str) -> String {
    let (ok, stdout, err) = tether_train(&[
        "prune",
        "--data",
        data.to_str().unwrap(),
        "--loading",
        loading,
        "--holdout",
        "0.25",
        "--batch",
        "16",
        "--epochs",
        "2",
        "--target-density",
        "0.5",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "--loading {loading}: {err}");
    stdout
}

#[test]
fn streamed_and_in_memory_image_folders_train_identically() {
    let dir = tmp("identical");
    image_folder(&dir.join("data"), 40);
    let stdout = run(&dir.join("data"), &dir.join("stream"), "stream");
    assert!(stdout.contains("decoded from their files"), "{stdout}");
    run(&dir.join("data"), &dir.join("memory"), "memory");
    for f in [
        "metrics.csv",
        "epochs.csv",
        "model.tthr",
        "model.safetensors",
    ] {
        let a = std::fs::read(dir.join("stream").join(f)).unwrap();
        let b = std::fs::read(dir.join("memory").join(f)).unwrap();
        assert!(a == b, "{f} differs between --loading stream and memory");
    }
    // The run learned something: the bars tell the classes apart.
    let epochs = std::fs::read_to_string(dir.join("stream/epochs.csv")).unwrap();
    let last = epochs.lines().last().unwrap();
    let test_accuracy: f64 = last.split(',').nth(2).unwrap().parse().unwrap();
    assert!(test_accuracy > 0.6, "{epochs}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_streamed_folder_with_a_broken_image_is_refused_naming_it() {
    let dir = tmp("broken");
    image_folder(&dir.join("data"), 4);
    std::fs::write(dir.join("data/c1/bad.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    let (ok, _, err) = tether_train(&[
        "prune",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--loading",
        "stream",
        "--epochs",
        "1",
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("bad.png: cannot decode the image"), "{err}");
    assert!(!dir.join("out").exists(), "no output for a refused run");
    std::fs::remove_dir_all(&dir).unwrap();
}
