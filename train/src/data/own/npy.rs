//! NumPy arrays: `.npy` files (format versions 1 to 3, parsed here) and `.npz` archives
//! (zip files of `.npy` members, stored or deflated, as `np.savez` and
//! `np.savez_compressed` write them).
//!
//! Element types: booleans, signed and unsigned integers of 1 to 8 bytes, 32- and 64-bit
//! floats, in either byte order, and fixed-width strings (`U`, `S`) for labels and
//! groups. Fortran-ordered arrays, structured and object (pickled) arrays, complex
//! numbers and `float16` are errors that say how to save the array instead.
//!
//! Features are `x` of shape `[N, ...]`: a sample is `x[i]` (`[H, W]` becomes
//! `[1, H, W]`; with [`LoadOptions::channels_last`], `[H, W, C]` becomes `[C, H, W]`);
//! unsigned bytes are divided by 255. Labels are `y` of shape `[N]` (or `[N, 1]`):
//! integers, integral floats or strings, their distinct values sorted into classes.

use std::io::{Cursor, Read};
use std::path::Path;

use super::{
    LabelledSet, LoadOptions, OwnError, index_group_keys, index_keys, malformed, number_name,
    read_file, sibling,
};

/// An array's elements.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// Unsigned bytes (`|u1`).
    U8(Vec<u8>),
    /// Other integers and booleans.
    Int(Vec<i64>),
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// Strings.
    Str(Vec<String>),
}

/// A parsed `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The dtype as written (`<f4`, `|u1`, ...).
    pub descr: String,
    /// Dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements in C (row-major) order.
    pub data: NpyData,
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as features: unsigned bytes divided by 255, other numbers as they are.
    pub fn to_features(&self) -> Result<Vec<f32>, String> {
        Ok(match &self.data {
            NpyData::U8(v) => v.iter().map(|&b| f32::from(b) / 255.0).collect(),
            NpyData::Int(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::Str(_) => {
                return Err(format!(
                    "features of dtype {} are strings, not numbers",
                    self.descr
                ));
            }
        })
    }

    /// The elements as class (or group) names: integers, integral floats or strings.
    pub fn to_keys(&self) -> Result<Vec<String>, String> {
        let float = |i: usize, x: f64| {
            if x.is_finite() && x.fract() == 0.0 {
                Ok(number_name(x))
            } else {
                Err(format!(
                    "element {i} is {x}: labels must be integers (or strings)"
                ))
            }
        };
        match &self.data {
            NpyData::U8(v) => Ok(v.iter().map(|b| b.to_string()).collect()),
            NpyData::Int(v) => Ok(v.iter().map(|b| b.to_string()).collect()),
            NpyData::F32(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| float(i, f64::from(x)))
                .collect(),
            NpyData::F64(v) => v.iter().enumerate().map(|(i, &x)| float(i, x)).collect(),
            NpyData::Str(v) => Ok(v.clone()),
        }
    }
}

/// Parses the bytes of a `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err("not an NPY file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported NPY format version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated NPY header")?;
    let header = String::from_utf8_lossy(header);
    let descr = dict_value(&header, "descr")?;
    let descr = if let Some(q) = descr.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let rest = &descr[1..];
        rest[..rest.find(q).ok_or("unterminated descr")?].to_string()
    } else {
        return Err(format!(
            "structured dtype {}: save one plain array per field",
            descr.split('}').next().unwrap_or(descr)
        ));
    };
    let fortran = dict_value(&header, "fortran_order")?;
    if fortran.starts_with("True") {
        return Err(
            "fortran_order is True: save a C-ordered array (np.ascontiguousarray(a))".into(),
        );
    } else if !fortran.starts_with("False") {
        return Err(format!("bad fortran_order {fortran:?}"));
    }
    let shape = dict_value(&header, "shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("bad shape {shape:?}"))?;
    let shape: Vec<usize> = shape
        .split(',')
        .map(|d| d.trim().trim_end_matches('L'))
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad dimension {d:?}"))
        })
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let body = &bytes[start + header_len..];
    let data = decode(&descr, count, body)?;
    Ok(NpyArray { descr, shape, data })
}

/// The text after `'key':` in a header dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    for q in ['\'', '"'] {
        let pat = format!("{q}{key}{q}");
        if let Some(at) = header.find(&pat) {
            let rest = header[at + pat.len()..].trim_start();
            if let Some(v) = rest.strip_prefix(':') {
                return Ok(v.trim_start());
            }
        }
    }
    Err(format!("no {key:?} in the NPY header"))
}

/// Decodes `count` elements of dtype `descr` from `body`.
fn decode(descr: &str, count: usize, body: &[u8]) -> Result<NpyData, String> {
    let mut chars = descr.chars();
    let order = chars.next().ok_or("empty dtype")?;
    let big = match order {
        '<' | '|' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        _ => return Err(format!("dtype {descr:?}: no byte order")),
    };
    let kind = chars.next().ok_or("dtype without a kind")?;
    if kind == 'O' {
        return Err(
            "object arrays are pickled Python objects: save a numeric or string dtype".into(),
        );
    }
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("dtype {descr:?}: bad item size"))?;
    let item = match kind {
        'U' => size * 4,
        _ => size,
    };
    let need = count.checked_mul(item).ok_or("array too large")?;
    if body.len() != need {
        return Err(format!(
            "{count} elements of {descr} need {need} data bytes, found {}",
            body.len()
        ));
    }
    let int = |c: &[u8], signed: bool| -> Result<i64, String> {
        let mut b = [0u8; 8];
        if big {
            b[8 - c.len()..].copy_from_slice(c);
            b.reverse();
        } else {
            b[..c.len()].copy_from_slice(c);
        }
        if signed && c.len() < 8 && c[if big { 0 } else { c.len() - 1 }] & 0x80 != 0 {
            for x in &mut b[c.len()..] {
                *x = 0xff;
            }
        }
        let v = i64::from_le_bytes(b);
        if !signed && c.len() == 8 && v < 0 {
            return Err(format!("value {} does not fit in an i64", v as u64));
        }
        Ok(v)
    };
    let words = |n: usize| body.chunks_exact(n);
    Ok(match (kind, size) {
        ('u', 1) => NpyData::U8(body.to_vec()),
        ('b', 1) => NpyData::Int(body.iter().map(|&b| i64::from(b != 0)).collect()),
        ('i', 1 | 2 | 4 | 8) => NpyData::Int(
            words(size)
                .map(|c| int(c, true))
                .collect::<Result<_, _>>()?,
        ),
        ('u', 2 | 4 | 8) => NpyData::Int(
            words(size)
                .map(|c| int(c, false))
                .collect::<Result<_, _>>()?,
        ),
        ('f', 4) => NpyData::F32(
            words(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    if big {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    }
                })
                .collect(),
        ),
        ('f', 8) => NpyData::F64(
            words(8)
                .map(|c| {
                    let b: [u8; 8] = c.try_into().expect("8 bytes");
                    if big {
                        f64::from_be_bytes(b)
                    } else {
                        f64::from_le_bytes(b)
                    }
                })
                .collect(),
        ),
        ('U', _) if size > 0 => NpyData::Str(
            words(item)
                .map(|c| {
                    c.chunks_exact(4)
                        .map(|u| {
                            let b = [u[0], u[1], u[2], u[3]];
                            if big {
                                u32::from_be_bytes(b)
                            } else {
                                u32::from_le_bytes(b)
                            }
                        })
                        .take_while(|&u| u != 0)
                        .map(|u| char::from_u32(u).unwrap_or('\u{fffd}'))
                        .collect()
                })
                .collect(),
        ),
        ('S', _) if size > 0 => NpyData::Str(
            words(size)
                .map(|c| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    String::from_utf8_lossy(&c[..end]).into_owned()
                })
                .collect(),
        ),
        ('f', 2) => {
            return Err("float16 arrays are not read: save with a.astype('float32')".into());
        }
        _ => {
            return Err(format!(
                "dtype {descr:?} is not read (booleans, integers, float32/64 and strings are)"
            ));
        }
    })
}

/// Loads `x.npy` with its labels (see [`LoadOptions::labels_path`]) and optional groups.
pub fn load_npy_pair(x_path: &Path, options: &LoadOptions) -> Result<LabelledSet, OwnError> {
    let y_path = match &options.labels_path {
        Some(p) => p.clone(),
        None => sibling(
            x_path,
            &[
                ("x", "y"),
                ("images", "labels"),
                ("features", "labels"),
                ("inputs", "labels"),
            ],
            "labels",
        )?,
    };
    let read = |p: &Path| parse_npy(&read_file(p)?).map_err(|e| malformed(p, e));
    let x = read(x_path)?;
    let y = read(&y_path)?;
    let g = options
        .groups_path
        .as_ref()
        .map(|p| read(p).map(|a| (p.display().to_string(), a)))
        .transpose()?;
    assemble(
        (&x_path.display().to_string(), x),
        (&y_path.display().to_string(), y),
        g,
        options.channels_last,
    )
    .map_err(|e| malformed(x_path, e))
}

/// Loads an `.npz` archive's features, labels and (optional) groups arrays
/// ([`LoadOptions::npz_arrays`]).
pub fn load_npz(path: &Path, options: &LoadOptions) -> Result<LabelledSet, OwnError> {
    let bytes = std::fs::read(path).map_err(|e| super::io(path, e))?;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| malformed(path, format!("not a zip (NPZ) archive: {e}")))?;
    let mut names: Vec<String> = zip
        .file_names()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    names.sort();
    let mut member = |name: &str| -> Result<NpyArray, OwnError> {
        let mut file = zip.by_name(&format!("{name}.npy")).map_err(|_| {
            malformed(
                path,
                format!(
                    "no array {name:?} in the archive (it holds {}): name the arrays to read",
                    names.join(", ")
                ),
            )
        })?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| malformed(path, format!("array {name:?}: {e}")))?;
        parse_npy(&buf).map_err(|e| malformed(path, format!("array {name:?}: {e}")))
    };
    let a = &options.npz_arrays;
    let x = member(&a.x)?;
    let y = member(&a.y)?;
    let g = match &a.groups {
        Some(n) => Some((n.clone(), member(n)?)),
        None => None,
    };
    assemble((&a.x, x), (&a.y, y), g, options.channels_last).map_err(|e| malformed(path, e))
}

/// Builds a set from named features, labels and groups arrays.
fn assemble(
    (x_name, x): (&str, NpyArray),
    (y_name, y): (&str, NpyArray),
    groups: Option<(String, NpyArray)>,
    channels_last: bool,
) -> Result<LabelledSet, String> {
    let Some(&n) = x.shape.first() else {
        return Err(format!("{x_name} is a scalar: features must be [N, ...]"));
    };
    let mut sample_shape = match &x.shape[1..] {
        [] => vec![1],
        [h, w] => vec![1, *h, *w],
        s => s.to_vec(),
    };
    let mut features = x.to_features().map_err(|e| format!("{x_name}: {e}"))?;
    if channels_last {
        let [h, w, c] = sample_shape[..] else {
            return Err(format!(
                "{x_name}: channels-last needs [N, H, W, C] features, not {:?}",
                x.shape
            ));
        };
        features = hwc_to_chw(&features, h, w, c);
        sample_shape = vec![c, h, w];
    }
    let per_sample = |name: &str, a: &NpyArray| -> Result<Vec<String>, String> {
        if !(a.shape.len() == 1 || (a.shape.len() == 2 && a.shape[1] == 1)) {
            let hint = if a.shape.len() == 2 {
                " (one-hot? save the class indices, a.argmax(1))"
            } else {
                ""
            };
            return Err(format!(
                "{name} must hold one value per sample ([N] or [N, 1]), not {:?}{hint}",
                a.shape
            ));
        }
        if a.shape[0] != n {
            return Err(format!(
                "{name} holds {} values but {x_name} {n} samples",
                a.shape[0]
            ));
        }
        a.to_keys().map_err(|e| format!("{name}: {e}"))
    };
    let (class_names, labels) = index_keys(&per_sample(y_name, &y)?);
    let groups = match groups {
        Some((name, g)) => {
            let keys: Vec<Option<String>> = per_sample(&name, &g)?.into_iter().map(Some).collect();
            Some(index_group_keys(&keys))
        }
        None => None,
    };
    if n == 0 {
        return Err(format!("{x_name} has no samples"));
    }
    Ok(LabelledSet {
        features,
        sample_shape,
        labels,
        class_names,
        groups,
        skipped: Vec::new(),
    })
}

/// `[N, H, W, C]` values to `[N, C, H, W]`.
pub(crate) fn hwc_to_chw(v: &[f32], h: usize, w: usize, c: usize) -> Vec<f32> {
    let d = h * w * c;
    let mut out = vec![0f32; v.len()];
    for (src, dst) in v.chunks(d.max(1)).zip(out.chunks_mut(d.max(1))) {
        for p in 0..h * w {
            for k in 0..c {
                dst[k * h * w + p] = src[p * c + k];
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::super::tests::TempDir;
    use super::*;

    /// The bytes of a version-1 `.npy` file.
    pub(crate) fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i64s(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn parses_every_supported_dtype() {
        let a = parse_npy(&npy("<f4", &[2, 2], &f32s(&[1.0, -2.0, 3.5, 0.0]))).unwrap();
        assert_eq!(a.shape, vec![2, 2]);
        assert_eq!(a.data, NpyData::F32(vec![1.0, -2.0, 3.5, 0.0]));
        let be: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let a = parse_npy(&npy(">f8", &[2], &be)).unwrap();
        assert_eq!(a.data, NpyData::F64(vec![1.5, -2.0]));
        let a = parse_npy(&npy("<i8", &[3], &i64s(&[7, -1, 3]))).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![7, -1, 3]));
        let a = parse_npy(&npy("<i4", &[2], &[0xff, 0xff, 0xff, 0xff, 5, 0, 0, 0])).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![-1, 5]));
        let a = parse_npy(&npy(">i2", &[2], &[0xff, 0xfe, 0, 9])).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![-2, 9]));
        let a = parse_npy(&npy("<u2", &[1], &[0xff, 0xff])).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![65535]));
        let a = parse_npy(&npy("|u1", &[3], &[0, 128, 255])).unwrap();
        assert_eq!(a.to_features().unwrap(), vec![0.0, 128.0 / 255.0, 1.0]);
        let a = parse_npy(&npy("|b1", &[2], &[1, 0])).unwrap();
        assert_eq!(a.to_keys().unwrap(), vec!["1", "0"]);
        let mut u = Vec::new();
        for s in ["cat", "ox"] {
            let mut c: Vec<u32> = s.chars().map(|c| c as u32).collect();
            c.resize(3, 0);
            u.extend(c.iter().flat_map(|x| x.to_le_bytes()));
        }
        let a = parse_npy(&npy("<U3", &[2], &u)).unwrap();
        assert_eq!(a.data, NpyData::Str(vec!["cat".into(), "ox".into()]));
        let a = parse_npy(&npy("|S2", &[2], b"abc\0")).unwrap();
        assert_eq!(a.to_keys().unwrap(), vec!["ab", "c"]);
        let a = parse_npy(&npy("<f8", &[], &1.0f64.to_le_bytes())).unwrap();
        assert_eq!((a.shape.len(), a.len()), (0, 1));
        // Version 2 headers have a 4-byte length.
        let mut v2 = npy("<f4", &[1], &f32s(&[2.0]));
        v2[6] = 2;
        let len = u16::from_le_bytes([v2[8], v2[9]]) as u32;
        v2.splice(8..10, len.to_le_bytes());
        assert_eq!(parse_npy(&v2).unwrap().data, NpyData::F32(vec![2.0]));
    }

    #[test]
    fn bad_arrays_say_why() {
        let e = |b: Vec<u8>| parse_npy(&b).unwrap_err();
        assert!(e(b"PK\x03\x04".to_vec()).contains("not an NPY file"));
        let mut f = npy("<f4", &[1], &f32s(&[1.0]));
        let at = f.windows(5).position(|w| w == b"False").unwrap();
        f[at..at + 5].copy_from_slice(b"True ");
        assert!(e(f).contains("fortran_order is True: save a C-ordered array"));
        assert!(
            e(npy("<f4", &[3], &f32s(&[1.0])))
                .contains("3 elements of <f4 need 12 data bytes, found 4")
        );
        assert!(e(npy("<f2", &[1], &[0, 0])).contains("astype('float32')"));
        assert!(e(npy("|O", &[0], &[])).contains("pickled"));
        assert!(e(npy("<c8", &[1], &[0; 8])).contains("\"<c8\" is not read"));
        let mut structured = npy("<f4", &[1], &f32s(&[1.0]));
        let at = structured.windows(5).position(|w| w == b"'<f4'").unwrap();
        structured[at..at + 5].copy_from_slice(b"[('a'");
        assert!(e(structured).contains("structured dtype"));
        let a = parse_npy(&npy("<f4", &[1], &f32s(&[0.5]))).unwrap();
        assert!(a.to_keys().unwrap_err().contains("labels must be integers"));
        let a = parse_npy(&npy(
            "<f8",
            &[2],
            &[1.0f64, 2.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>(),
        ))
        .unwrap();
        assert_eq!(a.to_keys().unwrap(), vec!["1", "2"]);
    }

    #[test]
    fn pairs_load_with_sibling_labels() {
        let dir = TempDir::new("npy");
        // Three 2x2 grey images as bytes; labels 7, 3, 7.
        let x = dir.write(
            "x_train.npy",
            &npy("|u1", &[3, 2, 2], &[0, 255, 0, 255, 1, 2, 3, 4, 9, 9, 9, 9]),
        );
        dir.write("y_train.npy", &npy("<i8", &[3], &i64s(&[7, 3, 7])));
        let g = dir.write(
            "g.npy",
            &npy("<i4", &[3, 1], &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
        );
        let o = LoadOptions {
            groups_path: Some(g),
            ..LoadOptions::default()
        };
        let s = super::super::load(&x, &o).unwrap();
        assert_eq!(s.sample_shape, vec![1, 2, 2]);
        assert_eq!(s.class_names, vec!["3", "7"]);
        assert_eq!(s.labels, vec![1, 0, 1]);
        assert_eq!(s.sample(0), &[0.0, 1.0, 0.0, 1.0]);
        assert_eq!(s.groups.unwrap().ids, vec![1, 0, 1]);
        // Mismatched counts and one-hot labels.
        dir.write("y_bad.npy", &npy("<i8", &[2], &i64s(&[0, 1])));
        let o = LoadOptions {
            labels_path: Some(dir.path("y_bad.npy")),
            ..LoadOptions::default()
        };
        let e = load_npy_pair(&x, &o).unwrap_err().to_string();
        assert!(
            e.contains("y_bad.npy holds 2 values but") && e.contains("3 samples"),
            "{e}"
        );
        dir.write(
            "y_hot.npy",
            &npy("<f4", &[3, 2], &f32s(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0])),
        );
        let o = LoadOptions {
            labels_path: Some(dir.path("y_hot.npy")),
            ..LoadOptions::default()
        };
        let e = load_npy_pair(&x, &o).unwrap_err().to_string();
        assert!(e.contains("[N] or [N, 1]), not [3, 2] (one-hot?"), "{e}");
        let lonely = dir.write("data.npy", &npy("<f4", &[1, 1], &f32s(&[1.0])));
        let e = load_npy_pair(&lonely, &LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no labels file for"), "{e}");
    }

    #[test]
    fn channels_last_arrays_are_transposed() {
        // One 1x2 image with 3 channels: pixel 0 = (1, 2, 3), pixel 1 = (4, 5, 6).
        assert_eq!(
            hwc_to_chw(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1, 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        let dir = TempDir::new("npy-hwc");
        let x = dir.write(
            "x.npy",
            &npy("<f4", &[1, 1, 2, 3], &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        );
        dir.write("y.npy", &npy("<i8", &[1], &i64s(&[0])));
        let o = LoadOptions {
            channels_last: true,
            ..LoadOptions::default()
        };
        let s = load_npy_pair(&x, &o).unwrap();
        assert_eq!(s.sample_shape, vec![3, 1, 2]);
        assert_eq!(s.features, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let flat = dir.write("x2.npy", &npy("<f4", &[1, 6], &f32s(&[0.0; 6])));
        let o = LoadOptions {
            labels_path: Some(dir.path("y.npy")),
            ..o
        };
        let e = load_npy_pair(&flat, &o).unwrap_err().to_string();
        assert!(e.contains("channels-last needs [N, H, W, C]"), "{e}");
    }

    fn npz(path: &Path, members: &[(&str, Vec<u8>)], method: zip::CompressionMethod) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in members {
            z.start_file(format!("{name}.npy"), opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn npz_archives_stored_and_deflated() {
        let dir = TempDir::new("npz");
        let x = npy(
            "<f8",
            &[2, 3],
            &[0.5f64, 1.0, 1.5, 2.0, 2.5, 3.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        let mut labels = Vec::new();
        for s in ["no", "yes"] {
            let mut c: Vec<u32> = s.chars().map(|c| c as u32).collect();
            c.resize(3, 0);
            labels.extend(c.iter().flat_map(|x| x.to_le_bytes()));
        }
        let y = npy("<U3", &[2], &labels);
        for (name, method) in [
            ("stored.npz", zip::CompressionMethod::Stored),
            ("deflated.npz", zip::CompressionMethod::Deflated),
        ] {
            let p = dir.path(name);
            npz(&p, &[("x", x.clone()), ("y", y.clone())], method);
            let s = super::super::load(&p, &LoadOptions::default()).unwrap();
            assert_eq!(s.sample_shape, vec![3]);
            assert_eq!(s.features, vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
            assert_eq!(s.class_names, vec!["no", "yes"]);
        }
        let p = dir.path("named.npz");
        npz(
            &p,
            &[
                ("x_test", x.clone()),
                ("y_test", y.clone()),
                ("s", y.clone()),
            ],
            zip::CompressionMethod::Stored,
        );
        let e = super::super::load(&p, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no array \"x\" in the archive (it holds s, x_test, y_test)"),
            "{e}"
        );
        let o = LoadOptions {
            npz_arrays: super::super::NpzArrays {
                x: "x_test".into(),
                y: "y_test".into(),
                groups: Some("s".into()),
            },
            ..LoadOptions::default()
        };
        let s = load_npz(&p, &o).unwrap();
        assert_eq!(s.groups.unwrap().names, vec!["no", "yes"]);
        let junk = dir.write("junk.npz", b"not a zip");
        let e = load_npz(&junk, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a zip (NPZ) archive"), "{e}");
    }
}
