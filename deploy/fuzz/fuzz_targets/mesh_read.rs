//! Fuzzes the mesh readers and EMAN's geometry: every reader (OFF, OBJ, PLY, GIFTI) on
//! arbitrary bytes, then validation and `MeshGeometry` on what parses. Any panic is a bug:
//! a hostile mesh file is a `MeshError`, and a validated mesh has finite geometry or a
//! `MeshError` (no normal), never a NaN.
//!
//! `cd deploy/fuzz && cargo +nightly fuzz run mesh_read`

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_deploy::mesh::io::{parse_gifti, parse_obj, parse_off, parse_ply};
use tether_deploy::mesh::{GeometryOptions, MeshGeometry, RelTanOptions};

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();
    let parsed = [
        text.and_then(|t| parse_off(t).ok()),
        text.and_then(|t| parse_obj(t).ok()),
        parse_ply(data).ok(),
        parse_gifti(data).ok(),
    ];
    for raw in parsed.into_iter().flatten() {
        if raw.positions.len() > 4096 {
            continue;
        }
        let Ok(mesh) = raw.into_mesh(true) else {
            continue;
        };
        if let Ok(g) = MeshGeometry::new(&mesh, &GeometryOptions::default()) {
            assert!(
                g.angles()
                    .iter()
                    .chain(g.transport())
                    .all(|a| a.is_finite())
            );
            let r = g
                .reltan(&RelTanOptions::default())
                .expect("default options");
            assert!(r.iter().all(|v| v.is_finite()), "RelTan is not finite");
        }
    }
});
