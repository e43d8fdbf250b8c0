//! CSV (and TSV) tables: one sample per line, a label column chosen by name, an optional
//! group column, and every other column a numeric feature.
//!
//! Fields may be quoted (`"a, b"`, with `""` for a quote) but may not span lines; a UTF-8
//! byte-order mark and `\r\n` line ends are accepted; blank lines are skipped. A feature
//! that is not a number is an error naming its line, column and value (one-hot encode
//! categorical columns first, or leave them out with
//! [`LoadOptions::ignore_columns`]); a missing value (empty, `NA`, `NaN`, `null`, `?`, an
//! infinity) is an error too: drop or fill such rows first, as the right choice depends on
//! the data.

use std::path::Path;

use super::{
    LabelledSet, LoadOptions, OwnError, index_group_keys, index_keys, malformed, read_file,
};

/// Values read as missing.
const MISSING: [&str; 9] = ["", "na", "n/a", "nan", "null", "none", "?", "-nan", "+nan"];

/// Loads a CSV or TSV table (see the module documentation).
pub fn load_csv(path: &Path, options: &LoadOptions) -> Result<LabelledSet, OwnError> {
    let bytes = read_file(path)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|e| malformed(path, format!("not UTF-8 text: {e}")))?;
    let tsv = path
        .to_string_lossy()
        .to_lowercase()
        .trim_end_matches(".gz")
        .ends_with(".tsv");
    let delimiter = options.delimiter.unwrap_or(if tsv { b'\t' } else { b',' });
    parse_csv(
        text.trim_start_matches('\u{feff}'),
        path,
        delimiter,
        options,
    )
}

/// Parses CSV text (`path` names it in errors).
pub fn parse_csv(
    text: &str,
    path: &Path,
    delimiter: u8,
    options: &LoadOptions,
) -> Result<LabelledSet, OwnError> {
    let row_err = |line: usize, reason: String| OwnError::Row {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let header: Vec<String> = match (options.header, lines.peek()) {
        (_, None) => return Err(malformed(path, "empty file")),
        (true, Some(&(n, l))) => {
            lines.next();
            split_line(l, delimiter).map_err(|e| row_err(n, e))?
        }
        (false, Some(&(n, l))) => {
            let width = split_line(l, delimiter).map_err(|e| row_err(n, e))?.len();
            (0..width).map(|i| i.to_string()).collect()
        }
    };
    for (i, h) in header.iter().enumerate() {
        if header[..i].contains(h) {
            return Err(row_err(
                1,
                format!("column {h:?} appears twice in the header"),
            ));
        }
    }
    let listing = || format!("columns: {}", header.join(", "));
    let find = |name: &str, role: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| malformed(path, format!("no {role} column {name:?}; {}", listing())))
    };
    let label_name = options.label_column.as_deref().ok_or_else(|| {
        OwnError::Invalid(format!(
            "{}: which column holds the labels? Name it ({})",
            path.display(),
            listing()
        ))
    })?;
    let label = find(label_name, "label")?;
    // One group column, or several (`race,sex`: intersectional groups such as
    // `White/Male`, Balancing Act's groupings) where no column has the whole name.
    let group: Vec<usize> = match options.group_column.as_deref() {
        None => Vec::new(),
        Some(g) if header.iter().any(|h| h == g) || !g.contains(',') => vec![find(g, "group")?],
        Some(g) => g
            .split(',')
            .map(|name| find(name.trim(), "group"))
            .collect::<Result<_, _>>()?,
    };
    if group.contains(&label) {
        return Err(OwnError::Invalid(
            "the label column cannot also be a group column".into(),
        ));
    }
    let mut skip = vec![false; header.len()];
    skip[label] = true;
    for &g in &group {
        skip[g] = true;
    }
    for name in &options.ignore_columns {
        skip[find(name, "ignored")?] = true;
    }
    let features: Vec<usize> = (0..header.len()).filter(|&c| !skip[c]).collect();
    if features.is_empty() {
        return Err(malformed(
            path,
            format!("no feature column left; {}", listing()),
        ));
    }
    let mut values = Vec::new();
    let (mut labels, mut groups) = (Vec::new(), Vec::new());
    for (line, l) in lines {
        let f = split_line(l, delimiter).map_err(|e| row_err(line, e))?;
        if f.len() != header.len() {
            let reason = format!(
                "expected {} fields (as many as columns), found {}",
                header.len(),
                f.len()
            );
            return Err(row_err(line, reason));
        }
        let missing = |c: usize| {
            row_err(
                line,
                format!(
                    "column {:?}: missing value {:?}; drop or fill rows with missing values first",
                    header[c], f[c]
                ),
            )
        };
        for &c in &features {
            let v = f[c].trim();
            if MISSING.contains(&v.to_lowercase().as_str()) {
                return Err(missing(c));
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => values.push(x as f32),
                Ok(_) => return Err(missing(c)),
                Err(_) => {
                    return Err(row_err(
                        line,
                        format!(
                            "column {:?}: {v:?} is not a number; feature columns must be numeric: \
                             one-hot encode categorical columns, or leave the column out \
                             (--ignore-columns)",
                            header[c]
                        ),
                    ));
                }
            }
        }
        for &c in std::iter::once(&label).chain(&group) {
            if MISSING.contains(&f[c].trim().to_lowercase().as_str()) {
                return Err(missing(c));
            }
        }
        labels.push(f[label].trim().to_string());
        if !group.is_empty() {
            let key: Vec<&str> = group.iter().map(|&g| f[g].trim()).collect();
            groups.push(Some(key.join("/")));
        }
    }
    if labels.is_empty() {
        return Err(malformed(path, "no data rows after the header"));
    }
    let (class_names, labels) = index_keys(&labels);
    Ok(LabelledSet {
        features: values,
        sample_shape: vec![features.len()],
        labels,
        class_names,
        groups: (!group.is_empty()).then(|| index_group_keys(&groups)),
        skipped: Vec::new(),
    })
}

/// Splits one CSV line into fields: quoted fields may hold the delimiter and `""` quotes.
pub(crate) fn split_line(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let d = delimiter as char;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && field.trim().is_empty() && !was_quoted {
            field.clear();
            quoted = true;
            was_quoted = true;
        } else if c == d {
            fields.push(std::mem::take(&mut field));
            was_quoted = false;
        } else {
            field.push(c);
        }
    }
    if quoted {
        return Err("unterminated quoted field (fields may not span lines)".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;
    use crate::data::groups::NO_GROUP;

    fn opts(label: &str) -> LoadOptions {
        LoadOptions {
            label_column: Some(label.into()),
            ..LoadOptions::default()
        }
    }

    fn parse(text: &str, o: &LoadOptions) -> Result<LabelledSet, OwnError> {
        parse_csv(text, Path::new("t.csv"), b',', o)
    }

    #[test]
    fn reads_features_labels_and_groups() {
        let text = "id,height,species,weight,sex\n\
                    1,1.5,setosa,2,f\n\
                    2, 2.5 ,\"virginica\",-3e-1,m\n\
                    \n\
                    3,0,setosa,7,m\r\n";
        let o = LoadOptions {
            group_column: Some("sex".into()),
            ignore_columns: vec!["id".into()],
            ..opts("species")
        };
        let s = parse(text, &o).unwrap();
        assert_eq!(s.sample_shape, vec![2]);
        assert_eq!(s.features, vec![1.5, 2.0, 2.5, -0.3, 0.0, 7.0]);
        assert_eq!(s.class_names, vec!["setosa", "virginica"]);
        assert_eq!(s.labels, vec![0, 1, 0]);
        let g = s.groups.unwrap();
        assert_eq!(
            (g.names, g.ids),
            (vec!["f".into(), "m".into()], vec![0, 1, 1])
        );
        // Several group columns: their intersections.
        let o = LoadOptions {
            group_column: Some("id,sex".into()),
            ..opts("species")
        };
        let g = parse(text, &o).unwrap().groups.unwrap();
        assert_eq!(g.names, vec!["1/f", "2/m", "3/m"]);
        let o = LoadOptions {
            group_column: Some("sex,age".into()),
            ..opts("species")
        };
        let e = parse(text, &o).unwrap_err().to_string();
        assert!(e.contains("no group column \"age\""), "{e}");
        // Numeric labels sort as numbers.
        let s = parse("x,y\n1,10\n2,9\n3,9.0\n", &opts("y")).unwrap();
        assert_eq!(s.class_names, vec!["9", "10"]);
        assert_eq!(s.labels, vec![1, 0, 0]);
        assert_eq!(NO_GROUP, u32::MAX);
    }

    #[test]
    fn headerless_tables_name_columns_by_position() {
        let o = LoadOptions {
            header: false,
            ..opts("2")
        };
        let s = parse("1,2,a\n3,4,b\n", &o).unwrap();
        assert_eq!(s.features, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.class_names, vec!["a", "b"]);
    }

    #[test]
    fn errors_name_row_column_and_value() {
        let e = parse("a,b,y\n1,2,0\n1,red,1\n", &opts("y"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.csv: line 3: column \"b\": \"red\" is not a number; feature columns must be numeric: one-hot encode"),
            "{e}"
        );
        let e = parse("a,b,y\n1,,0\n", &opts("y")).unwrap_err().to_string();
        assert!(
            e.contains("line 2: column \"b\": missing value \"\"; drop or fill"),
            "{e}"
        );
        let e = parse("a,b,y\n1,NaN,0\n", &opts("y"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing value \"NaN\""), "{e}");
        let e = parse("a,b,y\n1,2,NA\n", &opts("y"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("column \"y\": missing value \"NA\""), "{e}");
        let e = parse("a,b,y\n1,2\n", &opts("y")).unwrap_err().to_string();
        assert!(e.contains("line 2: expected 3 fields"), "{e}");
        let e = parse("a,b,y\n1,2,0\n", &opts("label"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.csv: no label column \"label\"; columns: a, b, y");
        let e = parse("a,b\n1,2\n", &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("which column holds the labels"), "{e}");
        let e = parse("a,a,y\n", &opts("y")).unwrap_err().to_string();
        assert!(e.contains("\"a\" appears twice"), "{e}");
        let e = parse("a,y\n", &opts("y")).unwrap_err().to_string();
        assert!(e.contains("no data rows"), "{e}");
        let e = parse("y\n1\n", &opts("y")).unwrap_err().to_string();
        assert!(e.contains("no feature column left"), "{e}");
        let e = parse("a,y\n\"1,0\n", &opts("y")).unwrap_err().to_string();
        assert!(e.contains("line 2: unterminated quoted field"), "{e}");
        let o = LoadOptions {
            ignore_columns: vec!["zz".into()],
            ..opts("y")
        };
        let e = parse("a,y\n1,0\n", &o).unwrap_err().to_string();
        assert!(e.contains("no ignored column \"zz\""), "{e}");
    }

    #[test]
    fn quoted_fields_split() {
        assert_eq!(
            split_line("a,\"b, c\",\"say \"\"hi\"\"\",", b',').unwrap(),
            vec!["a", "b, c", "say \"hi\"", ""]
        );
        assert_eq!(split_line("1\t2", b'\t').unwrap(), vec!["1", "2"]);
    }

    #[test]
    fn files_tsv_and_gzip() {
        use std::io::Write;
        let dir = TempDir::new("table");
        let p = dir.write("t.tsv", b"a\tlabel\n1\tx\n2\ty\n");
        let s = load_csv(&p, &opts("label")).unwrap();
        assert_eq!(s.features, vec![1.0, 2.0]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all("\u{feff}a,label\n1,x\n".as_bytes()).unwrap();
        let p = dir.write("t.csv.gz", &enc.finish().unwrap());
        let s = super::super::load(&p, &opts("label")).unwrap();
        assert_eq!((s.len(), s.class_names.clone()), (1, vec!["x".to_string()]));
    }

    /// scikit-learn's 8x8 digits (`digits.csv.gz`: 64 pixel columns, then the digit; no
    /// header), when it is in the data cache as `digits/digits.csv.gz`.
    #[test]
    fn real_digits_table() {
        let dir = crate::data::data_dir().join("digits");
        let Some(path) = ["digits.csv.gz", "digits.csv"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        else {
            if crate::data::may_skip("digits") {
                eprintln!(
                    "SKIPPED: digits not at {} (scikit-learn's digits.csv.gz, from Debian \
                     python3-sklearn 1.2.1+dfsg-1)",
                    dir.display()
                );
                return;
            }
            panic!("digits required but not at {}", dir.display());
        };
        let o = LoadOptions {
            header: false,
            ..opts("64")
        };
        let s = super::super::load(&path, &o).unwrap();
        assert_eq!(s.len(), 1797);
        assert_eq!(s.sample_shape, vec![64]);
        let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        assert_eq!(s.class_names, names);
        let counts = vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
        assert_eq!(s.class_counts(), counts);
        assert!(s.features.iter().all(|&v| (0.0..=16.0).contains(&v)));
        // A stratified 20% split, standardised per pixel on the training part.
        let (mut train, mut test) = s.split(0.2, 0, true).unwrap();
        assert_eq!(
            test.class_counts(),
            vec![36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
        );
        let n = super::super::Normalization::fit(&train, super::super::NormAxis::Feature);
        n.apply(&mut train).unwrap();
        n.apply(&mut test).unwrap();
        let col = |k: usize| train.features.iter().skip(k).step_by(64);
        let mean = col(20).sum::<f32>() / train.len() as f32;
        let var = col(20).map(|v| (v - mean).powi(2)).sum::<f32>() / train.len() as f32;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
        // The always-blank corner pixel stays 0 (centred, not scaled).
        assert!(col(0).all(|&v| v == 0.0));
        train.check_input_shape(&[64]).unwrap();
        let e = train.check_input_shape(&[1, 28, 28]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("data samples are [64] but the model takes [1, 28, 28]")
        );
    }
}
