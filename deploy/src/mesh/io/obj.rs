//! Wavefront OBJ, the geometry subset: `v x y z [w]` and `f a b c ...` where each corner
//! is `v`, `v/vt`, `v//vn` or `v/vt/vn`, 1-based or negative (relative to the vertices read
//! so far). Other statements (normals, texture coordinates, groups, materials) are skipped.

use std::vec::Vec;

use super::{RawMesh, parse_error};
use crate::mesh::MeshError;

const F: &str = "OBJ";

/// Parses an OBJ file.
pub fn parse_obj(text: &str) -> Result<RawMesh, MeshError> {
    let mut mesh = RawMesh::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let mut t = line.split('#').next().unwrap_or("").split_whitespace();
        match t.next() {
            Some("v") => {
                let mut p = [0.0; 3];
                for c in &mut p {
                    let s = t.next().ok_or_else(|| {
                        parse_error(F, std::format!("line {line_no}: a vertex needs x y z"))
                    })?;
                    *c = s.parse().map_err(|_| {
                        parse_error(F, std::format!("line {line_no}: bad coordinate {s:?}"))
                    })?;
                }
                mesh.positions.push(p);
            }
            Some("f") => {
                let n = mesh.positions.len() as i64;
                let mut idx = Vec::new();
                for corner in t {
                    let v = corner.split('/').next().unwrap_or("");
                    let k: i64 = v.parse().map_err(|_| {
                        parse_error(
                            F,
                            std::format!("line {line_no}: bad face corner {corner:?}"),
                        )
                    })?;
                    let zero_based = match k {
                        k if k > 0 => k - 1,
                        k if k < 0 => n + k,
                        _ => {
                            return Err(parse_error(
                                F,
                                std::format!("line {line_no}: vertex index 0 (OBJ is 1-based)"),
                            ));
                        }
                    };
                    if zero_based < 0 {
                        return Err(parse_error(
                            F,
                            std::format!("line {line_no}: relative index {k} before vertex 1"),
                        ));
                    }
                    idx.push(zero_based as u64);
                }
                mesh.push_polygon(F, &idx, &|| std::format!("line {line_no}"))?;
            }
            _ => {}
        }
    }
    if mesh.positions.is_empty() {
        return Err(parse_error(F, "no vertices"));
    }
    Ok(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    #[test]
    fn reads_corners_in_every_form() {
        let m = parse_obj(
            "# cube corner\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\n\
             f 1/1/1 2/2/1 3/3/1\nf -4//1 -2//1 -1//1\ng rest\nf 1 3 4 2\n",
        )
        .unwrap();
        assert_eq!(m.faces, vec![[0, 1, 2], [0, 2, 3], [0, 2, 3], [0, 3, 1]]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = parse_obj("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n").unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
        let e = parse_obj("v 0 0 0\nf 0 1 2\n").unwrap_err();
        assert!(e.to_string().contains("1-based"), "{e}");
        let e = parse_obj("v 0 0\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(parse_obj("# nothing\n").is_err());
    }
}
