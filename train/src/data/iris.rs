//! Fisher's Iris, as scikit-learn ships it (`sklearn/datasets/data/iris.csv`).
//!
//! The file's first line is `n_samples,n_features,class names...`; each following line is
//! the features then the integer class. Every count and value is checked.

use std::path::Path;

use super::DataError;

/// The 150 Iris samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Iris {
    /// Features: sepal length, sepal width, petal length, petal width (cm).
    pub features: Vec<[f64; 4]>,
    /// Class index (0 setosa, 1 versicolor, 2 virginica).
    pub labels: Vec<usize>,
    /// Class names from the header.
    pub class_names: Vec<String>,
}

impl Iris {
    /// Loads `iris/iris.csv` from the data cache.
    pub fn load() -> Result<Self, DataError> {
        Self::from_file(&super::dataset_file("iris", "iris.csv")?)
    }

    /// Parses a scikit-learn iris CSV.
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or((1, "empty file".to_string()))?;
        let head: Vec<&str> = header.split(',').map(str::trim).collect();
        if head.len() < 3 {
            return Err((
                1,
                format!("header `{header}`: expected `n,features,classes...`"),
            ));
        }
        let n: usize = head[0]
            .parse()
            .map_err(|_| (1, format!("header: `{}` is not a sample count", head[0])))?;
        if head[1] != "4" {
            return Err((1, format!("header: expected 4 features, got `{}`", head[1])));
        }
        let class_names: Vec<String> = head[2..].iter().map(|s| s.to_string()).collect();
        let mut features = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for (i, line) in lines {
            let lineno = i + 1;
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if cols.len() != 5 {
                return Err((lineno, format!("expected 5 columns, got {}", cols.len())));
            }
            let mut row = [0.0; 4];
            for (k, v) in row.iter_mut().enumerate() {
                *v = cols[k]
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or((lineno, format!("`{}` is not a finite number", cols[k])))?;
            }
            let label: usize = cols[4]
                .parse()
                .ok()
                .filter(|&l: &usize| l < class_names.len())
                .ok_or((lineno, format!("`{}` is not a class index", cols[4])))?;
            features.push(row);
            labels.push(label);
        }
        if features.len() != n {
            return Err((
                0,
                format!("header says {n} samples, found {}", features.len()),
            ));
        }
        Ok(Self {
            features,
            labels,
            class_names,
        })
    }

    /// The samples of classes `a` and `b`, labelled `-1` (class `a`) and `+1` (class `b`),
    /// restricted to the feature columns `cols`.
    pub fn binary(&self, a: usize, b: usize, cols: &[usize]) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (f, &l) in self.features.iter().zip(&self.labels) {
            if l == a || l == b {
                x.push(cols.iter().map(|&c| f[c]).collect());
                y.push(if l == b { 1.0 } else { -1.0 });
            }
        }
        (x, y)
    }
}

/// Standardises the columns of `x` to zero mean and unit variance (population std).
pub fn standardize(x: &mut [Vec<f64>]) {
    let Some(d) = x.first().map(Vec::len) else {
        return;
    };
    let n = x.len() as f64;
    for c in 0..d {
        let mean = x.iter().map(|r| r[c]).sum::<f64>() / n;
        let var = x.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt().max(f64::EPSILON);
        for r in x.iter_mut() {
            r[c] = (r[c] - mean) / std;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let ok = "2,4,setosa,versicolor\n5.1,3.5,1.4,0.2,0\n7.0,3.2,4.7,1.4,1\n";
        let iris = Iris::parse(ok).unwrap();
        assert_eq!(iris.labels, vec![0, 1]);
        assert_eq!(iris.features[1], [7.0, 3.2, 4.7, 1.4]);

        let cases = [
            ("", "empty file"),
            ("3,4,a,b\n5.1,3.5,1.4,0.2,0\n", "header says 3 samples"),
            ("1,4,a,b\n5.1,3.5,1.4,0.2\n", "expected 5 columns"),
            ("1,4,a,b\n5.1,x,1.4,0.2,0\n", "`x` is not a finite number"),
            (
                "1,4,a,b\n5.1,NaN,1.4,0.2,0\n",
                "`NaN` is not a finite number",
            ),
            ("1,4,a,b\n5.1,3.5,1.4,0.2,2\n", "`2` is not a class index"),
            ("1,3,a,b\n5.1,3.5,1.4,0\n", "expected 4 features"),
        ];
        for (text, want) in cases {
            let err = Iris::parse(text).unwrap_err();
            assert!(err.1.contains(want), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn missing_dataset_names_the_fetch_command() {
        let err = super::super::dataset_file("iris", "no-such-file.csv").unwrap_err();
        assert!(err.to_string().contains("scripts/fetch-data iris"), "{err}");
    }
}
