//! `tether-deploy` on mesh models: a small EMAN-shaped model built here runs on a mesh
//! file (predictions written, accuracy against a label file), and bad input (a corrupt
//! mesh, a missing mesh, flags for other model kinds) is a clear error.

#![cfg(feature = "std")]

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_deploy::{MeshFeatures, ModelBuilder, OpSpec};

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether-deploy"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// RelTan (one power) -> EMAN conv to 2 channels of orders 0-1 -> gate -> scalars ->
/// linear to 3 classes, with fixed weights.
fn mesh_model() -> Vec<u8> {
    let mut b = ModelBuilder::new(&[3]);
    let mut powers = [0.0; 6];
    powers[0] = 0.7;
    let x = b.op(
        OpSpec::MeshFeatures(MeshFeatures::RelTan {
            powers,
            count: 1,
            degree_power: 1.5,
            constant: 1.0,
        }),
        &[b.input()],
    );
    let w = |n: usize, k: f32| (0..n).map(|i| (i as f32 * k).sin()).collect::<Vec<f32>>();
    let key = b.dense(&[6, 3], &w(18, 0.7));
    let value = b.dense(&[6, 3], &w(18, 1.3));
    let query = b.dense(&[3, 1, 2], &w(6, 0.9));
    let self_k = b.dense(&[3, 1, 2], &w(6, 2.1));
    let bias = b.dense(&[2], &[0.1, -0.2]);
    let h = b.op(
        OpSpec::EmanConv {
            key,
            value,
            query,
            self_kernel: self_k,
            bias,
            heads: 2,
            order_out: 1,
        },
        &[x],
    );
    let g = b.op(OpSpec::Gate, &[h]);
    let s = b.op(OpSpec::Scalars, &[g]);
    let weight = b.dense(&[3, 2], &w(6, 0.4));
    let y = b.op(OpSpec::Linear { weight, bias: None }, &[s]);
    b.finish(y).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-deploy-cli-mesh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const TETRA: &str = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n";

#[test]
fn a_mesh_model_runs_on_a_mesh_file() {
    let model = tmp("m.tthr");
    std::fs::write(&model, mesh_model()).unwrap();
    let mesh = tmp("tetra.off");
    std::fs::write(&mesh, TETRA).unwrap();
    let labels = tmp("labels.txt");
    std::fs::write(&labels, "9\n0\n1\n2\n0\n").unwrap();
    let pred = tmp("pred.txt");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (ok, out, err) = cli(&[
        "run",
        &s(&model),
        &s(&mesh),
        "--vertex-labels",
        &s(&labels),
        "--label-offset",
        "1",
        "--predictions",
        &s(&pred),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("4 vertices"), "{out}");
    assert!(out.contains("accuracy"), "{out}");
    let written = std::fs::read_to_string(&pred).unwrap();
    assert_eq!(written.lines().count(), 4);
    assert!(written.lines().all(|l| l.parse::<usize>().unwrap() < 3));
    let (ok, out, err) = cli(&["inspect", &s(&model)]);
    assert!(ok && out.contains("a mesh model"), "{out}{err}");
    let (ok, out, err) = cli(&["bench", &s(&model), "--mesh", &s(&mesh), "--trials", "3"]);
    assert!(ok && out.contains("ms per mesh"), "{out}{err}");
    assert!(out.contains("f64 / f32"), "{out}");
    // f64 predicts what f32 predicts on this small model.
    let pred64 = tmp("pred64.txt");
    let (ok, out, err) = cli(&[
        "run",
        &s(&model),
        &s(&mesh),
        "--precision",
        "f64",
        "--predictions",
        &s(&pred64),
    ]);
    assert!(ok && out.contains("F64"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&pred64).unwrap(), written);
}

#[test]
fn bad_mesh_input_is_a_clear_error() {
    let model = tmp("bad.tthr");
    std::fs::write(&model, mesh_model()).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let bad = tmp("bad.off");
    std::fs::write(&bad, "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n").unwrap();
    let (ok, _, err) = cli(&["run", &s(&model), &s(&bad)]);
    assert!(!ok && err.contains("out of range"), "{err}");
    let flat = tmp("flat.off");
    std::fs::write(&flat, "OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n5 5 5\n3 0 1 2\n").unwrap();
    let (ok, _, err) = cli(&["run", &s(&model), &s(&flat)]);
    assert!(!ok && err.contains("--drop-isolated"), "{err}");
    let (ok, _, err) = cli(&["run", &s(&model), &s(&flat), "--drop-isolated"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["run", &s(&model), &s(&flat), "--scores"]);
    assert!(!ok && err.contains("not for mesh models"), "{err}");
    let (ok, _, err) = cli(&["bench", &s(&model)]);
    assert!(!ok && err.contains("--mesh"), "{err}");
    let (ok, _, err) = cli(&["run", &s(&model), &s(&flat), "--precision", "f16"]);
    assert!(!ok && err.contains("f16"), "{err}");
    let (ok, _, err) = cli(&["run", &s(&model), "/nonexistent/m.obj"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
}

/// The loader refuses malformed mesh ops (the builder parses what it writes).
#[test]
fn malformed_mesh_ops_are_refused_at_load() {
    use tether_deploy::Error;
    let features = |f: MeshFeatures| {
        let mut b = ModelBuilder::new(&[3]);
        let x = b.op(OpSpec::MeshFeatures(f), &[b.input()]);
        b.finish(x)
    };
    let reltan = |count, constant| MeshFeatures::RelTan {
        powers: [0.7; 6],
        count,
        degree_power: 1.5,
        constant,
    };
    assert!(features(reltan(1, 1.0)).is_ok());
    for bad in [
        reltan(0, 1.0),
        reltan(7, 1.0),
        reltan(1, 0.0),
        reltan(1, f32::NAN),
        MeshFeatures::Xyz {
            mean: [0.0; 3],
            scale: -1.0,
        },
        MeshFeatures::Xyz {
            mean: [f32::INFINITY, 0.0, 0.0],
            scale: 1.0,
        },
    ] {
        assert!(
            matches!(features(bad), Err(Error::BadOp { .. })),
            "{bad:?} was accepted"
        );
    }
    // Mesh features read value 0 as a vertex position: a model of another input is refused.
    let mut b = ModelBuilder::new(&[4]);
    let x = b.op(OpSpec::MeshFeatures(reltan(1, 1.0)), &[b.input()]);
    assert!(matches!(b.finish(x), Err(Error::ShapeMismatch { .. })));
    // EMAN conv: kernels of the wrong shape, heads that do not divide the channels.
    let conv = |key_cols: usize, heads: u32| {
        let mut b = ModelBuilder::new(&[3]);
        let x = b.op(OpSpec::MeshFeatures(reltan(1, 1.0)), &[b.input()]);
        let key = b.dense(&[6, key_cols], &vec![0.1; 6 * key_cols]);
        let value = b.dense(&[6, 3], &[0.1; 18]);
        let query = b.dense(&[3, 1, 2], &[0.1; 6]);
        let self_k = b.dense(&[3, 1, 2], &[0.1; 6]);
        let bias = b.dense(&[2], &[0.0; 2]);
        let h = b.op(
            OpSpec::EmanConv {
                key,
                value,
                query,
                self_kernel: self_k,
                bias,
                heads,
                order_out: 1,
            },
            &[x],
        );
        b.finish(h)
    };
    assert!(conv(3, 2).is_ok());
    assert!(matches!(conv(4, 2), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(conv(3, 3), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(conv(3, 0), Err(Error::BadOp { .. })));
}
