//! GIFTI surfaces (`.surf.gii`, `.gii`): an XML file whose `DataArray`s hold the vertices
//! (`NIFTI_INTENT_POINTSET`, N x 3) and triangles (`NIFTI_INTENT_TRIANGLE`, M x 3), encoded
//! as ASCII, base64, or zlib-compressed base64 ("GZipBase64Binary", which despite its name
//! is a zlib stream), either endianness, row- or column-major. External data files are
//! refused (a surface is one file here).

use std::string::String;
use std::vec::Vec;

use base64::Engine;

use super::{RawMesh, parse_error};
use crate::mesh::MeshError;

const F: &str = "GIFTI";

/// Parses a GIFTI surface.
pub fn parse_gifti(bytes: &[u8]) -> Result<RawMesh, MeshError> {
    let text = std::str::from_utf8(bytes).map_err(|_| parse_error(F, "not UTF-8 XML"))?;
    // FreeSurfer's GIFTI files carry a DOCTYPE; roxmltree never expands external entities.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(text, options).map_err(|e| parse_error(F, e))?;
    let root = doc.root_element();
    if root.tag_name().name() != "GIFTI" {
        return Err(parse_error(F, "the root element is not <GIFTI>"));
    }
    let mut points = None;
    let mut triangles = None;
    for (k, array) in root
        .children()
        .filter(|n| n.tag_name().name() == "DataArray")
        .enumerate()
    {
        let intent = array.attribute("Intent").unwrap_or("");
        let slot = match intent {
            "NIFTI_INTENT_POINTSET" => &mut points,
            "NIFTI_INTENT_TRIANGLE" => &mut triangles,
            _ => continue,
        };
        if slot.is_some() {
            return Err(parse_error(
                F,
                std::format!("DataArray {k}: a second {intent}"),
            ));
        }
        *slot = Some(read_array(&array, k)?);
    }
    let (Some(points), Some(triangles)) = (points, triangles) else {
        return Err(parse_error(
            F,
            "a surface needs a NIFTI_INTENT_POINTSET and a NIFTI_INTENT_TRIANGLE array",
        ));
    };
    let mut mesh = RawMesh {
        positions: points.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        faces: Vec::with_capacity(triangles.len() / 3),
    };
    for (face, t) in triangles.chunks_exact(3).enumerate() {
        let mut idx = [0u64; 3];
        for (i, &v) in idx.iter_mut().zip(t) {
            if v < 0.0 || v.fract() != 0.0 {
                return Err(parse_error(F, std::format!("triangle {face}: index {v}")));
            }
            *i = v as u64;
        }
        mesh.push_polygon(F, &idx, &|| std::format!("triangle {face}"))?;
    }
    Ok(mesh)
}

/// One N x 3 DataArray, decoded to f64 in row-major order.
fn read_array(array: &roxmltree::Node<'_, '_>, k: usize) -> Result<Vec<f64>, MeshError> {
    let attr = |name: &str| array.attribute(name).unwrap_or("");
    let err = |what: String| parse_error(F, std::format!("DataArray {k}: {what}"));
    if attr("Dimensionality") != "2" || attr("Dim1") != "3" {
        return Err(err("expected a 2-D array of N x 3".into()));
    }
    let rows: usize = attr("Dim0")
        .parse()
        .map_err(|_| err(std::format!("bad Dim0 {:?}", attr("Dim0"))))?;
    if !attr("ExternalFileName").is_empty() {
        return Err(err("external data files are not supported".into()));
    }
    let (size, decode): (usize, fn(&[u8]) -> f64) = match attr("DataType") {
        "NIFTI_TYPE_FLOAT32" => (4, |b| {
            f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }),
        "NIFTI_TYPE_FLOAT64" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }),
        "NIFTI_TYPE_INT32" => (4, |b| {
            f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }),
        "NIFTI_TYPE_UINT8" => (1, |b| f64::from(b[0])),
        other => return Err(err(std::format!("data type {other:?} is not supported"))),
    };
    let data = array
        .children()
        .find(|n| n.tag_name().name() == "Data")
        .and_then(|n| n.text())
        .unwrap_or("");
    let count = rows
        .checked_mul(3)
        .ok_or_else(|| err("Dim0 too large".into()))?;
    let mut values = match attr("Encoding") {
        "ASCII" => {
            let v: Result<Vec<f64>, _> = data.split_whitespace().map(str::parse).collect();
            v.map_err(|_| err("a bad number in ASCII data".into()))?
        }
        enc @ ("Base64Binary" | "GZipBase64Binary") => {
            let clean: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let mut raw = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|e| err(std::format!("bad base64: {e}")))?;
            if enc == "GZipBase64Binary" {
                raw = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(
                    &raw,
                    count.saturating_mul(size),
                )
                .map_err(|e| err(std::format!("bad zlib data: {e:?}")))?;
            }
            if raw.len() != count * size {
                return Err(err(std::format!(
                    "{} bytes of data for {rows} x 3 values of {size} bytes",
                    raw.len()
                )));
            }
            let big = match attr("Endian") {
                "LittleEndian" => false,
                "BigEndian" => true,
                other => return Err(err(std::format!("endianness {other:?}"))),
            };
            raw.chunks_exact(size)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..size].copy_from_slice(c);
                    if big {
                        b[..size].reverse();
                    }
                    decode(&b)
                })
                .collect()
        }
        other => return Err(err(std::format!("encoding {other:?} is not supported"))),
    };
    if values.len() != count {
        return Err(err(std::format!("{} values for {rows} x 3", values.len())));
    }
    match attr("ArrayIndexingOrder") {
        "RowMajorOrder" | "" => {}
        "ColumnMajorOrder" => {
            let col = values.clone();
            for r in 0..rows {
                for c in 0..3 {
                    values[3 * r + c] = col[c * rows + r];
                }
            }
        }
        other => return Err(err(std::format!("indexing order {other:?}"))),
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    fn gifti(points: &str, triangles: &str) -> String {
        std::format!(
            "<?xml version=\"1.0\"?>\n<GIFTI Version=\"1\" NumberOfDataArrays=\"2\">\n{points}\n{triangles}\n</GIFTI>"
        )
    }

    fn array(intent: &str, ty: &str, enc: &str, order: &str, data: &str) -> String {
        std::format!(
            "<DataArray Intent=\"{intent}\" DataType=\"{ty}\" ArrayIndexingOrder=\"{order}\" \
             Dimensionality=\"2\" Dim0=\"3\" Dim1=\"3\" Encoding=\"{enc}\" Endian=\"LittleEndian\" \
             ExternalFileName=\"\"><Data>{data}</Data></DataArray>"
        )
    }

    fn b64(bytes: &[u8], zlib: bool) -> String {
        let raw = if zlib {
            miniz_oxide::deflate::compress_to_vec_zlib(bytes, 6)
        } else {
            bytes.to_vec()
        };
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    #[test]
    fn every_encoding_reads_the_same_triangle() {
        let pts = [0.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let tri = [0i32, 1, 2, 0, 2, 1, 1, 2, 0];
        let pb: Vec<u8> = pts.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tb: Vec<u8> = tri.iter().flat_map(|v| v.to_le_bytes()).collect();
        let want = RawMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            faces: vec![[0, 1, 2], [0, 2, 1], [1, 2, 0]],
        };
        for (enc, pd, td) in [
            (
                "ASCII",
                "0 0 0 1 0 0 0 1 0".to_string(),
                "0 1 2 0 2 1 1 2 0".to_string(),
            ),
            ("Base64Binary", b64(&pb, false), b64(&tb, false)),
            ("GZipBase64Binary", b64(&pb, true), b64(&tb, true)),
        ] {
            let f32t = "NIFTI_TYPE_FLOAT32";
            let i32t = "NIFTI_TYPE_INT32";
            let row = "RowMajorOrder";
            let doc = gifti(
                &array("NIFTI_INTENT_POINTSET", f32t, enc, row, &pd),
                &array("NIFTI_INTENT_TRIANGLE", i32t, enc, row, &td),
            );
            assert_eq!(parse_gifti(doc.as_bytes()).unwrap(), want, "{enc}");
        }
        // Column-major: the same points stored by coordinate.
        let doc = gifti(
            &array(
                "NIFTI_INTENT_POINTSET",
                "NIFTI_TYPE_FLOAT32",
                "ASCII",
                "ColumnMajorOrder",
                "0 1 0 0 0 1 0 0 0",
            ),
            &array(
                "NIFTI_INTENT_TRIANGLE",
                "NIFTI_TYPE_INT32",
                "ASCII",
                "RowMajorOrder",
                "0 1 2 0 2 1 1 2 0",
            ),
        );
        assert_eq!(parse_gifti(doc.as_bytes()).unwrap(), want);
    }

    #[test]
    fn malformed_surfaces_are_errors() {
        let p = array(
            "NIFTI_INTENT_POINTSET",
            "NIFTI_TYPE_FLOAT32",
            "ASCII",
            "",
            "0 0 0 1 0 0 0 1 0",
        );
        let t = array(
            "NIFTI_INTENT_TRIANGLE",
            "NIFTI_TYPE_INT32",
            "ASCII",
            "",
            "0 1 2 0 2 1 1 2 3",
        );
        let e = parse_gifti(gifti(&p, &t).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let t = array(
            "NIFTI_INTENT_TRIANGLE",
            "NIFTI_TYPE_INT32",
            "Base64Binary",
            "",
            "@@@",
        );
        let e = parse_gifti(gifti(&p, &t).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        let t = array(
            "NIFTI_INTENT_TRIANGLE",
            "NIFTI_TYPE_INT32",
            "GZipBase64Binary",
            "",
            &b64(b"xx", false),
        );
        let e = parse_gifti(gifti(&p, &t).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("zlib"), "{e}");
        let e = parse_gifti(gifti(&p, "").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("TRIANGLE"), "{e}");
        assert!(parse_gifti(b"<GIFTI><DataArray").is_err());
        assert!(parse_gifti(b"<NOTGIFTI/>").is_err());
    }
}
