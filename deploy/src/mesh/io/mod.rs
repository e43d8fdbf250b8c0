//! Mesh files: OFF, OBJ, PLY (ASCII and binary) and GIFTI surfaces (feature `std`).
//!
//! Each reader returns the raw positions and triangles (polygons are split into fans) so
//! the caller chooses how strict to be: [`Mesh::new`] refuses unused vertices,
//! [`Mesh::without_isolated_vertices`] drops them. The triangle subset of these formats
//! is small, so they are parsed here, where every malformation gets a message naming the
//! line or element, rather than through four crates with four error types; GIFTI's XML,
//! base64 and zlib layers go through `roxmltree`, `base64` and `miniz_oxide`.

mod gifti;
mod obj;
mod off;
mod ply;

use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

pub use gifti::parse_gifti;
pub use obj::parse_obj;
pub use off::parse_off;
pub use ply::parse_ply;

use super::{Mesh, MeshError};

/// Positions and triangles as a file holds them, before validation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawMesh {
    /// Vertex positions.
    pub positions: Vec<[f64; 3]>,
    /// Triangles (polygons split into fans around their first vertex).
    pub faces: Vec<[u32; 3]>,
}

impl RawMesh {
    /// Validates into a [`Mesh`]; `drop_isolated` drops unused vertices instead of refusing
    /// them.
    pub fn into_mesh(self, drop_isolated: bool) -> Result<Mesh, MeshError> {
        if drop_isolated {
            Mesh::without_isolated_vertices(self.positions, self.faces).map(|(m, _)| m)
        } else {
            Mesh::new(self.positions, self.faces)
        }
    }

    /// Adds a polygon (`indices` already 0-based), split into a fan.
    pub(crate) fn push_polygon(
        &mut self,
        format: &'static str,
        indices: &[u64],
        at: &dyn Fn() -> String,
    ) -> Result<(), MeshError> {
        if indices.len() < 3 {
            return Err(parse_error(
                format,
                std::format!("{}: a face needs at least 3 vertices", at()),
            ));
        }
        let n = self.positions.len() as u64;
        let mut idx = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= n || i > u64::from(u32::MAX) {
                return Err(parse_error(
                    format,
                    std::format!("{}: vertex index {i} out of range ({n} vertices)", at()),
                ));
            }
            idx.push(i as u32);
        }
        for k in 1..idx.len() - 1 {
            self.faces.push([idx[0], idx[k], idx[k + 1]]);
        }
        Ok(())
    }
}

pub(crate) fn parse_error(format: &'static str, reason: impl ToString) -> MeshError {
    MeshError::Parse {
        format,
        reason: reason.to_string(),
    }
}

/// Reads a mesh file, its format chosen by extension (`.off`, `.obj`, `.ply`, `.gii`).
pub fn read_raw(path: &Path) -> Result<RawMesh, MeshError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let bytes = std::fs::read(path)
        .map_err(|e| MeshError::Io(std::format!("cannot read {}: {e}", path.display())))?;
    let text = |format| {
        std::str::from_utf8(&bytes).map_err(|_| parse_error(format, "the file is not UTF-8 text"))
    };
    match ext.as_str() {
        "off" => parse_off(text("OFF")?),
        "obj" => parse_obj(text("OBJ")?),
        "ply" => parse_ply(&bytes),
        "gii" => parse_gifti(&bytes),
        _ => Err(MeshError::Io(std::format!(
            "{}: unknown mesh extension (expected .off, .obj, .ply or .gii)",
            path.display()
        ))),
    }
}

/// Reads and validates a mesh file (see [`read_raw`] and [`RawMesh::into_mesh`]).
pub fn read(path: &Path, drop_isolated: bool) -> Result<Mesh, MeshError> {
    read_raw(path)?.into_mesh(drop_isolated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{GeometryOptions, MeshGeometry, RelTanOptions};

    /// Random byte mutations of small valid files in every format never panic a reader,
    /// and whatever still validates has finite geometry (the fuzz target `mesh_read`
    /// explores further).
    #[test]
    fn mutated_files_are_errors_or_meshes_never_panics() {
        let off = b"OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n";
        let obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n";
        let ply = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n\
                    property float z\nelement face 4\nproperty list uchar int vertex_indices\n\
                    end_header\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n";
        let gii = b"<GIFTI><DataArray Intent=\"NIFTI_INTENT_POINTSET\" DataType=\"NIFTI_TYPE_FLOAT32\" \
                    Dimensionality=\"2\" Dim0=\"3\" Dim1=\"3\" Encoding=\"ASCII\"><Data>0 0 0 1 0 0 0 1 0\
                    </Data></DataArray><DataArray Intent=\"NIFTI_INTENT_TRIANGLE\" DataType=\"NIFTI_TYPE_INT32\" \
                    Dimensionality=\"2\" Dim0=\"1\" Dim1=\"3\" Encoding=\"ASCII\"><Data>0 1 2</Data></DataArray></GIFTI>";
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut meshes = 0;
        for round in 0..4000 {
            let base: &[u8] = [&off[..], &obj[..], &ply[..], &gii[..]][round % 4];
            let mut bytes = base.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[i] = next() as u8,
                    1 => bytes[i] = b"0123456789 -.\n/e"[(next() % 16) as usize],
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            let text = std::str::from_utf8(&bytes).ok();
            let parsed = match round % 4 {
                0 => text.map(parse_off),
                1 => text.map(parse_obj),
                2 => Some(parse_ply(&bytes)),
                _ => Some(parse_gifti(&bytes)),
            };
            let Some(Ok(raw)) = parsed else { continue };
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
                let r = g.reltan(&RelTanOptions::default()).unwrap();
                assert!(r.iter().all(|v| v.is_finite()), "round {round}");
                meshes += 1;
            }
        }
        assert!(
            meshes > 40,
            "the mutations left too few valid meshes ({meshes})"
        );
    }
}
