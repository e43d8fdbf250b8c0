//! Per-vertex parcellation of the cortex (`scripts/fetch-data brainspace`): brainspace's
//! conte69 32k midthickness surfaces of both hemispheres (32,492 vertices, 64,980
//! triangles each) with a per-vertex label for each of the 64,984 vertices (left then
//! right; 0 is the medial wall).
//!
//! The split is by surface: train on the left hemisphere, test on the right one mirrored
//! through the midsagittal plane (`x -> -x`, windings reversed). Mirroring puts the test
//! surface into the training surface's pose, so the untransformed test is fair to a
//! network fed raw coordinates; a random rotation, translation, scaling, permutation and
//! gauge change of it then measures what each network's symmetries buy.

use std::path::PathBuf;

use tether_deploy::mesh::Mesh;
use tether_deploy::mesh::io::read;

use super::{DataError, dataset_file};

const DATASET: &str = "brainspace";
/// Vertices per conte69 hemisphere.
pub const HEMISPHERE_VERTICES: usize = 32_492;

/// Which labelling of the vertices.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Parcellation {
    /// Mesulam's four levels of the cortical hierarchy (paralimbic, heteromodal,
    /// unimodal, idiotypic) and the medial wall: 5 classes.
    Mesulam,
    /// Schaefer's 100 parcels (50 per hemisphere; the right's 51..100 are read as the
    /// homologous left 1..50) and the medial wall: 51 classes.
    Schaefer100,
}

impl Parcellation {
    fn file(self) -> &'static str {
        match self {
            Parcellation::Mesulam => "mesulam_conte69.csv",
            Parcellation::Schaefer100 => "schaefer_100_conte69.csv",
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Parcellation::Mesulam => 5,
            Parcellation::Schaefer100 => 51,
        }
    }
}

/// A mesh with one class per vertex.
#[derive(Clone, Debug)]
pub struct LabelledMesh {
    /// What it is.
    pub name: String,
    /// The surface.
    pub mesh: Mesh,
    /// Class of each vertex.
    pub labels: Vec<u32>,
}

/// The train (left) and test (mirrored right) hemispheres.
#[derive(Clone, Debug)]
pub struct CorticalParcellation {
    /// Left hemisphere.
    pub train: LabelledMesh,
    /// Right hemisphere, mirrored into the left's pose.
    pub test: LabelledMesh,
    /// Number of classes.
    pub classes: usize,
}

impl CorticalParcellation {
    /// Loads the surfaces and `parcellation`'s labels.
    pub fn load(parcellation: Parcellation) -> Result<Self, DataError> {
        let surface = |file: &str| -> Result<Mesh, DataError> {
            let path = dataset_file(DATASET, file)?;
            let mesh = read(&path, false).map_err(|e| malformed(path.clone(), 0, e.to_string()))?;
            if mesh.vertex_count() != HEMISPHERE_VERTICES {
                return Err(malformed(
                    path,
                    0,
                    format!(
                        "{} vertices, expected {HEMISPHERE_VERTICES}",
                        mesh.vertex_count()
                    ),
                ));
            }
            Ok(mesh)
        };
        let left = surface("conte69_32k_lh.gii")?;
        let right = surface("conte69_32k_rh.gii")?;
        let path = dataset_file(DATASET, parcellation.file())?;
        let labels = read_labels(&path, parcellation)?;
        let (lh, rh) = labels.split_at(HEMISPHERE_VERTICES);
        let mirrored = right
            .mirrored_x()
            .map_err(|e| malformed(path.clone(), 0, e.to_string()))?;
        Ok(Self {
            train: LabelledMesh {
                name: "conte69 left hemisphere".into(),
                mesh: left,
                labels: lh.to_vec(),
            },
            test: LabelledMesh {
                name: "conte69 right hemisphere (mirrored)".into(),
                mesh: mirrored,
                labels: rh.to_vec(),
            },
            classes: parcellation.classes(),
        })
    }
}

fn malformed(path: PathBuf, line: usize, reason: String) -> DataError {
    DataError::Malformed { path, line, reason }
}

/// One integer label per line for both hemispheres, checked against the class count;
/// Schaefer's right-hemisphere parcels are renumbered onto their left homologues.
fn read_labels(path: &std::path::Path, parcellation: Parcellation) -> Result<Vec<u32>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut labels = Vec::with_capacity(2 * HEMISPHERE_VERTICES);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: f64 = line
            .parse()
            .map_err(|_| malformed(path.to_path_buf(), i + 1, format!("not a label: {line:?}")))?;
        let mut label = value as i64;
        if value.fract() != 0.0 || label < 0 {
            return Err(malformed(
                path.to_path_buf(),
                i + 1,
                format!("not a label: {line:?}"),
            ));
        }
        if parcellation == Parcellation::Schaefer100 && label > 50 {
            label -= 50;
        }
        if label as usize >= parcellation.classes() {
            return Err(malformed(
                path.to_path_buf(),
                i + 1,
                format!("label {value} outside 0..{}", parcellation.classes()),
            ));
        }
        labels.push(label as u32);
    }
    if labels.len() != 2 * HEMISPHERE_VERTICES {
        return Err(malformed(
            path.to_path_buf(),
            0,
            format!(
                "{} labels, expected {}",
                labels.len(),
                2 * HEMISPHERE_VERTICES
            ),
        ));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_hemispheres_load_with_their_labels() {
        let data = match CorticalParcellation::load(Parcellation::Mesulam) {
            Ok(d) => d,
            Err(e @ DataError::Missing { .. }) if super::super::may_skip(DATASET) => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(data.train.labels.len(), HEMISPHERE_VERTICES);
        assert_eq!(data.test.mesh.vertex_count(), HEMISPHERE_VERTICES);
        let mut counts = [0usize; 5];
        for &l in data.train.labels.iter().chain(&data.test.labels) {
            counts[l as usize] += 1;
        }
        // The published counts of the five values over both hemispheres.
        assert_eq!(counts, [6252, 7742, 20381, 18024, 12585]);
        // Mirrored, the right hemisphere lies where the left does (x < 0).
        let mean_x =
            |m: &Mesh| m.positions().iter().map(|p| p[0]).sum::<f64>() / m.vertex_count() as f64;
        assert!(mean_x(&data.train.mesh) < -10.0 && mean_x(&data.test.mesh) < -10.0);
        let s = CorticalParcellation::load(Parcellation::Schaefer100).unwrap();
        assert!(
            s.train
                .labels
                .iter()
                .chain(&s.test.labels)
                .all(|&l| l <= 50)
        );
        assert!(s.test.labels.contains(&50));
    }

    #[test]
    fn a_bad_label_file_names_the_line() {
        let dir = std::env::temp_dir().join(format!("tether-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("labels.csv");
        std::fs::write(&path, "0\n1\n7\n").unwrap();
        let e = read_labels(&path, Parcellation::Mesulam)
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:") && e.contains("outside"), "{e}");
        std::fs::write(&path, "0\n1\n").unwrap();
        let e = read_labels(&path, Parcellation::Mesulam)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 labels"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
