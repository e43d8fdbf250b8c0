//! The mesh readers and EMAN's geometry on real files: CGAL's demo meshes (Stanford scans
//! and CAD parts; `scripts/fetch-data meshes`) and brainspace's cortical surfaces
//! (`scripts/fetch-data brainspace`). Skipped, loudly, when the data is absent, unless
//! `TETHER_REQUIRE_DATA` names it.

#![cfg(feature = "std")]

use std::path::PathBuf;

use tether_deploy::mesh::io::{read, read_raw};
use tether_deploy::mesh::{GeometryOptions, MeshError, MeshGeometry, RelTanOptions};

fn dataset(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("TETHER_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data-cache"))
        .join(name);
    if root.is_dir() {
        return Some(root);
    }
    let required = std::env::var("TETHER_REQUIRE_DATA").unwrap_or_default();
    assert!(
        !required
            .split(',')
            .any(|d| d.trim() == name || d.trim() == "1" || d.trim() == "all"),
        "{name} is required but absent: scripts/fetch-data {name}"
    );
    eprintln!(
        "skipped: {} absent (scripts/fetch-data {name})",
        root.display()
    );
    None
}

/// Every geometric quantity is finite and the frames are orthonormal and tangent.
fn check_geometry(g: &MeshGeometry) {
    for (p, (n, [e1, e2])) in g.normals().iter().zip(g.frames()).enumerate() {
        let dot = |a: &[f64; 3], b: &[f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        for (a, b, want) in [
            (n, n, 1.0),
            (e1, e1, 1.0),
            (e2, e2, 1.0),
            (n, e1, 0.0),
            (n, e2, 0.0),
            (e1, e2, 0.0),
        ] {
            assert!((dot(a, b) - want).abs() < 1e-9, "vertex {p}");
        }
    }
    assert!(
        g.angles()
            .iter()
            .chain(g.transport())
            .all(|a| a.is_finite())
    );
    let r = g.reltan(&RelTanOptions::default()).unwrap();
    assert!(r.iter().all(|v| v.is_finite()));
}

#[test]
fn cgal_scans_load_and_have_finite_geometry() {
    let Some(dir) = dataset("meshes") else { return };
    for (file, vertices) in [
        ("hand.off", 1197),
        ("homer.off", 4930),
        ("elephant.off", 2775),
        ("ChineseDragon-10kv.off", 10000),
        ("man.off", 17495),
        ("armadillo.off", 26002),
        ("bunny00.off", 37706),
        ("sphere.ply", 0),
        ("colored_tetra.ply", 4),
    ] {
        let raw = read_raw(&dir.join(file)).unwrap();
        if vertices > 0 {
            assert_eq!(raw.positions.len(), vertices, "{file}");
        }
        let mesh = match raw.clone().into_mesh(false) {
            Ok(m) => m,
            Err(e) => panic!("{file}: {e}"),
        };
        let g = MeshGeometry::new(&mesh, &GeometryOptions::default()).unwrap();
        check_geometry(&g);
        eprintln!(
            "{file}: {} vertices, max degree {}, non-manifold edges {}",
            mesh.vertex_count(),
            g.max_degree(),
            mesh.non_manifold_edges()
        );
    }
}

#[test]
fn a_point_cloud_is_not_a_mesh() {
    let Some(dir) = dataset("meshes") else { return };
    // b9.ply: 22,300 scanned points and no faces.
    let raw = read_raw(&dir.join("b9.ply")).unwrap();
    assert_eq!((raw.positions.len(), raw.faces.len()), (22300, 0));
    assert_eq!(raw.into_mesh(true), Err(MeshError::Empty));
}

#[test]
fn cortical_surfaces_load() {
    let Some(dir) = dataset("brainspace") else {
        return;
    };
    for (file, vertices, faces) in [
        ("conte69_32k_lh.gii", 32492, 64980),
        ("conte69_32k_rh.gii", 32492, 64980),
        ("fsa5.pial.lh.gii", 10242, 20480),
    ] {
        let raw = read_raw(&dir.join(file)).unwrap();
        assert_eq!(
            (raw.positions.len(), raw.faces.len()),
            (vertices, faces),
            "{file}"
        );
        let mesh = read(&dir.join(file), false).unwrap();
        let g = MeshGeometry::new(&mesh, &GeometryOptions::default()).unwrap();
        check_geometry(&g);
        eprintln!("{file}: max degree {}", g.max_degree());
    }
}

#[test]
fn a_missing_or_foreign_file_is_a_clear_error() {
    let e = read(std::path::Path::new("/nonexistent/mesh.off"), false).unwrap_err();
    assert!(matches!(e, MeshError::Io(_)), "{e}");
    let e = read(std::path::Path::new("Cargo.toml"), false).unwrap_err();
    assert!(e.to_string().contains("unknown mesh extension"), "{e}");
}
