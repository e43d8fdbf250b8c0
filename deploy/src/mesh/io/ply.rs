//! PLY (Stanford polygon format): ASCII, binary little- and big-endian. The `vertex`
//! element's `x y z` (any numeric type) and the `face` element's `vertex_indices` (or
//! `vertex_index`) list are read; every other element and property is skipped by its
//! declared type, so files with colours, normals or extra elements load.

use std::string::{String, ToString};
use std::vec::Vec;

use super::{RawMesh, parse_error};
use crate::mesh::MeshError;

const F: &str = "PLY";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "char" | "int8" => Self::I8,
            "uchar" | "uint8" => Self::U8,
            "short" | "int16" => Self::I16,
            "ushort" | "uint16" => Self::U16,
            "int" | "int32" => Self::I32,
            "uint" | "uint32" => Self::U32,
            "float" | "float32" => Self::F32,
            "double" | "float64" => Self::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

#[derive(Debug)]
enum Property {
    Scalar(String, Scalar),
    List(String, Scalar, Scalar),
}

#[derive(Debug)]
struct Element {
    name: String,
    count: usize,
    properties: Vec<Property>,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Ascii,
    Little,
    Big,
}

/// Reads values one at a time from the body, in the file's encoding.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
    encoding: Encoding,
}

impl Body<'_> {
    fn value(&mut self, ty: Scalar) -> Result<f64, MeshError> {
        if self.encoding == Encoding::Ascii {
            let rest = &self.bytes[self.pos..];
            let start = rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .ok_or_else(|| parse_error(F, "the body ends early"))?;
            let len = rest[start..]
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(rest.len() - start);
            let token = std::str::from_utf8(&rest[start..start + len])
                .map_err(|_| parse_error(F, "non-text bytes in an ASCII body"))?;
            self.pos += start + len;
            return token
                .parse()
                .map_err(|_| parse_error(F, std::format!("bad number {token:?}")));
        }
        let n = ty.size();
        let raw = self
            .bytes
            .get(self.pos..self.pos + n)
            .ok_or_else(|| parse_error(F, "the body ends early"))?;
        self.pos += n;
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(raw);
        if self.encoding == Encoding::Big {
            b[..n].reverse();
        }
        Ok(match ty {
            Scalar::I8 => f64::from(b[0] as i8),
            Scalar::U8 => f64::from(b[0]),
            Scalar::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            Scalar::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            Scalar::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Scalar::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Scalar::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Scalar::F64 => f64::from_le_bytes(b),
        })
    }
}

/// Parses a PLY file.
pub fn parse_ply(bytes: &[u8]) -> Result<RawMesh, MeshError> {
    const END: &[u8] = b"end_header";
    let end = bytes
        .windows(END.len())
        .position(|w| w == END)
        .ok_or_else(|| parse_error(F, "no end_header line"))?;
    let header =
        std::str::from_utf8(&bytes[..end]).map_err(|_| parse_error(F, "the header is not text"))?;
    let mut body_start = end + END.len();
    while body_start < bytes.len() && bytes[body_start] != b'\n' {
        body_start += 1;
    }
    body_start += 1;

    let mut lines = header.lines();
    if lines.next().map(str::trim) != Some("ply") {
        return Err(parse_error(F, "the file does not start with 'ply'"));
    }
    let mut encoding = None;
    let mut elements: Vec<Element> = Vec::new();
    for (i, line) in lines.enumerate() {
        let at = || std::format!("header line {}", i + 2);
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            [] | ["comment", ..] | ["obj_info", ..] => {}
            ["format", kind, _version] => {
                encoding = Some(match *kind {
                    "ascii" => Encoding::Ascii,
                    "binary_little_endian" => Encoding::Little,
                    "binary_big_endian" => Encoding::Big,
                    _ => return Err(parse_error(F, std::format!("{}: format {kind}", at()))),
                });
            }
            ["element", name, count] => elements.push(Element {
                name: name.to_string(),
                count: count
                    .parse()
                    .map_err(|_| parse_error(F, std::format!("{}: bad count", at())))?,
                properties: Vec::new(),
            }),
            ["property", "list", count_ty, item_ty, name] => {
                let (c, v) = (Scalar::parse(count_ty), Scalar::parse(item_ty));
                let (Some(c), Some(v), Some(e)) = (c, v, elements.last_mut()) else {
                    return Err(parse_error(F, std::format!("{}: bad list property", at())));
                };
                e.properties.push(Property::List(name.to_string(), c, v));
            }
            ["property", ty, name] => {
                let (Some(ty), Some(e)) = (Scalar::parse(ty), elements.last_mut()) else {
                    return Err(parse_error(F, std::format!("{}: bad property", at())));
                };
                e.properties.push(Property::Scalar(name.to_string(), ty));
            }
            _ => return Err(parse_error(F, std::format!("{}: {line:?}", at()))),
        }
    }
    let encoding = encoding.ok_or_else(|| parse_error(F, "no format line"))?;
    let mut body = Body {
        bytes,
        pos: body_start.min(bytes.len()),
        encoding,
    };
    let mut mesh = RawMesh::default();
    let mut saw_vertices = false;
    for e in &elements {
        let is_vertex = e.name == "vertex";
        let is_face = e.name == "face";
        let xyz: Vec<Option<usize>> = e
            .properties
            .iter()
            .map(|p| match p {
                Property::Scalar(n, _) => ["x", "y", "z"].iter().position(|c| c == n),
                Property::List(..) => None,
            })
            .collect();
        if is_vertex {
            saw_vertices = true;
            for k in 0..3 {
                if !xyz.contains(&Some(k)) {
                    return Err(parse_error(F, "the vertex element lacks x, y or z"));
                }
            }
        }
        let mut idx = Vec::new();
        for item in 0..e.count {
            let mut p = [0.0; 3];
            for (prop, &slot) in e.properties.iter().zip(&xyz) {
                match prop {
                    Property::Scalar(_, ty) => {
                        let v = body.value(*ty)?;
                        if let (true, Some(k)) = (is_vertex, slot) {
                            p[k] = v;
                        }
                    }
                    Property::List(name, count_ty, item_ty) => {
                        let n = body.value(*count_ty)?;
                        if !(0.0..=1e6).contains(&n) || n.fract() != 0.0 {
                            return Err(parse_error(
                                F,
                                std::format!("{} {item}: bad list length {n}", e.name),
                            ));
                        }
                        let wanted =
                            is_face && (name == "vertex_indices" || name == "vertex_index");
                        idx.clear();
                        for _ in 0..n as usize {
                            let v = body.value(*item_ty)?;
                            if wanted {
                                if v < 0.0 || v.fract() != 0.0 {
                                    return Err(parse_error(
                                        F,
                                        std::format!("face {item}: bad vertex index {v}"),
                                    ));
                                }
                                idx.push(v as u64);
                            }
                        }
                        if wanted {
                            mesh.push_polygon(F, &idx, &|| std::format!("face {item}"))?;
                        }
                    }
                }
            }
            if is_vertex {
                mesh.positions.push(p);
            }
        }
    }
    if !saw_vertices {
        return Err(parse_error(F, "no vertex element"));
    }
    Ok(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    const HEADER: &str = "ply\nformat {} 1.0\ncomment test\nelement vertex 4\nproperty float x\n\
        property float y\nproperty float z\nproperty uchar red\nelement face 2\n\
        property list uchar int vertex_indices\nelement edge 1\nproperty int a\nend_header\n";

    fn header(format: &str) -> Vec<u8> {
        HEADER.replace("{}", format).into_bytes()
    }

    #[test]
    fn ascii_and_both_binary_encodings_agree() {
        let mut ascii = header("ascii");
        ascii.extend_from_slice(b"0 0 0 255\n1 0 0 0\n1 1 0 0\n0 1 0 0\n3 0 1 2\n4 0 2 3 1\n7\n");
        let a = parse_ply(&ascii).unwrap();
        assert_eq!(a.faces, vec![[0, 1, 2], [0, 2, 3], [0, 3, 1]]);
        assert_eq!(a.positions[2], [1.0, 1.0, 0.0]);
        for (fmt, big) in [("binary_little_endian", false), ("binary_big_endian", true)] {
            let mut b = header(fmt);
            let f = |v: f32| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let i = |v: i32| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            for p in &a.positions {
                for &c in p {
                    b.extend_from_slice(&f(c as f32));
                }
                b.push(9);
            }
            b.push(3);
            for k in [0, 1, 2] {
                b.extend_from_slice(&i(k));
            }
            b.push(4);
            for k in [0, 2, 3, 1] {
                b.extend_from_slice(&i(k));
            }
            b.extend_from_slice(&i(7));
            assert_eq!(parse_ply(&b).unwrap(), a, "{fmt}");
            b.truncate(b.len() - 6);
            assert!(
                parse_ply(&b)
                    .unwrap_err()
                    .to_string()
                    .contains("ends early")
            );
        }
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse_ply(b"ply\nformat ascii 1.0\n").is_err());
        assert!(parse_ply(b"plx\nformat ascii 1.0\nend_header\n").is_err());
        assert!(parse_ply(b"ply\nformat ascii 1.0\nproperty float x\nend_header\n").is_err());
        let e = parse_ply(
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("lacks x, y or z"), "{e}");
    }
}
