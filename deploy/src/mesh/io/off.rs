//! OFF (Object File Format): `OFF`, then `V F E`, `V` lines `x y z`, `F` lines
//! `n i1 .. in` (optional colour values after the indices are ignored). `#` starts a
//! comment. The `COFF`/`NOFF` variants (colours or normals after each vertex) are read too.

use std::string::{String, ToString};
use std::vec::Vec;

use super::{RawMesh, parse_error};
use crate::mesh::MeshError;

const F: &str = "OFF";

/// Parses an OFF file.
pub fn parse_off(text: &str) -> Result<RawMesh, MeshError> {
    // (line number, tokens) of every non-empty line, comments stripped.
    let mut lines = text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.split('#').next().unwrap_or("").trim();
        (!l.is_empty()).then(|| (i + 1, l.split_whitespace().collect::<Vec<_>>()))
    });
    let (mut line_no, mut tokens) = lines.next().ok_or_else(|| parse_error(F, "empty file"))?;
    let keyword = tokens[0];
    if !keyword.ends_with("OFF") || keyword.len() > 5 {
        return Err(parse_error(
            F,
            "the first line is not OFF (or COFF, NOFF, CNOFF)",
        ));
    }
    tokens.remove(0);
    if tokens.is_empty() {
        (line_no, tokens) = lines
            .next()
            .ok_or_else(|| parse_error(F, "no vertex/face counts"))?;
    }
    let count = |t: Option<&&str>, what: &str| -> Result<usize, MeshError> {
        t.and_then(|s| s.parse().ok()).ok_or_else(|| {
            parse_error(
                F,
                std::format!("line {line_no}: bad or missing {what} count"),
            )
        })
    };
    let nv = count(tokens.first(), "vertex")?;
    let nf = count(tokens.get(1), "face")?;
    let mut mesh = RawMesh {
        positions: Vec::with_capacity(nv.min(1 << 24)),
        faces: Vec::with_capacity(nf.min(1 << 24)),
    };
    for k in 0..nv {
        let (line, t) = lines.next().ok_or_else(|| {
            parse_error(F, std::format!("the file ends after {k} of {nv} vertices"))
        })?;
        if t.len() < 3 {
            return Err(parse_error(
                F,
                std::format!("line {line}: a vertex needs x y z"),
            ));
        }
        let mut p = [0.0; 3];
        for (c, s) in p.iter_mut().zip(&t) {
            *c = s
                .parse()
                .map_err(|_| parse_error(F, std::format!("line {line}: bad coordinate {s:?}")))?;
        }
        mesh.positions.push(p);
    }
    for k in 0..nf {
        let (line, t) = lines
            .next()
            .ok_or_else(|| parse_error(F, std::format!("the file ends after {k} of {nf} faces")))?;
        let n: usize = t[0]
            .parse()
            .map_err(|_| parse_error(F, std::format!("line {line}: bad face size {:?}", t[0])))?;
        if t.len() < 1 + n {
            return Err(parse_error(
                F,
                std::format!("line {line}: a face of {n} vertices lists {}", t.len() - 1),
            ));
        }
        let mut idx = Vec::with_capacity(n);
        for s in &t[1..=n] {
            idx.push(s.parse::<u64>().map_err(|_| {
                parse_error(F, std::format!("line {line}: bad vertex index {s:?}"))
            })?);
        }
        mesh.push_polygon(F, &idx, &|| String::from("line ") + &line.to_string())?;
    }
    Ok(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    #[test]
    fn reads_triangles_and_splits_quads() {
        let m = parse_off(
            "OFF\n# a square and a triangle\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n2 2 1\n\
             4 0 1 2 3\n3 1 4 2 255 0 0\n",
        )
        .unwrap();
        assert_eq!(m.positions.len(), 5);
        assert_eq!(m.faces, vec![[0, 1, 2], [0, 2, 3], [1, 4, 2]]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = parse_off("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n").unwrap_err();
        assert!(e.to_string().contains("line 6"), "{e}");
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = parse_off("OFF\n3 1 0\n0 0 0\n1 x 0\n").unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
        let e = parse_off("OFF\n3 1 0\n0 0 0\n").unwrap_err();
        assert!(e.to_string().contains("after 1 of 3 vertices"), "{e}");
        assert!(parse_off("PLY\n").is_err());
        assert!(parse_off("").is_err());
    }
}
