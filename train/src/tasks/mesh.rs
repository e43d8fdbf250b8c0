//! Per-vertex classification on meshes with EMAN (Basu et al., TMLR 2022), and the random
//! symmetry transformations its evaluation applies to the test surface.
//!
//! Training runs through the project's loop ([`crate::trainer::fit`]) as a problem with no
//! constraints: one step is the cross-entropy over every vertex of the training mesh.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use tether_deploy::mesh::{
    GeometryOptions, Mesh, MeshError, MeshGeometry, mat_vec, uniform_rotation,
};
use tether_models::eman::{EmanGraph, EmanInput, EmanNet};

use crate::constrained::{CmpState, ConstrainedProblem};
use crate::data::batches::SplitMix64;
use crate::tasks::metrics::cross_entropy;

/// A mesh made ready for a network: its graph, input features and labels on a device.
#[derive(Clone, Debug)]
pub struct PreparedMesh<B: Backend> {
    /// Neighbourhoods and rotations.
    pub graph: EmanGraph<B>,
    /// `[V, channels, 2 order + 1]` inputs.
    pub features: Tensor<B, 3>,
    /// `[V]` classes.
    pub labels: Tensor<B, 1, Int>,
}

impl<B: Backend> PreparedMesh<B> {
    /// Computes the geometry of `mesh` (frames turned by `gauge` when given) and the
    /// inputs `input` describes, for hidden features up to rotation order `order`.
    pub fn new(
        mesh: &Mesh,
        labels: &[u32],
        input: &EmanInput,
        gauge: Option<Vec<f64>>,
        order: usize,
        device: &B::Device,
    ) -> Result<Self, MeshError> {
        if labels.len() != mesh.vertex_count() {
            return Err(MeshError::BadOption("one label per vertex"));
        }
        let geometry = MeshGeometry::new(
            mesh,
            &GeometryOptions {
                gauge_offsets: gauge,
            },
        )?;
        let labels: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
        Ok(Self {
            graph: EmanGraph::new(&geometry, order, device),
            features: input.features(mesh, &geometry, device)?,
            labels: Tensor::from_data(TensorData::new(labels, [mesh.vertex_count()]), device),
        })
    }
}

/// The training problem: mean cross-entropy over the vertices of one mesh.
pub struct MeshSegmentation<B: Backend> {
    /// The training mesh.
    pub mesh: PreparedMesh<B>,
}

impl<B: AutodiffBackend> ConstrainedProblem<B, EmanNet<B>> for MeshSegmentation<B> {
    type Input = ();

    fn compute_cmp_state(&self, model: &EmanNet<B>, _: &()) -> CmpState<B> {
        let logits = model.forward(self.mesh.features.clone(), &self.mesh.graph);
        CmpState::new(cross_entropy(logits, self.mesh.labels.clone()))
    }
}

/// Fraction of the vertices of `mesh` that `net` labels correctly.
pub fn accuracy<B: Backend>(net: &EmanNet<B>, mesh: &PreparedMesh<B>) -> f64 {
    let logits = net.forward(mesh.features.clone(), &mesh.graph);
    let [v, _] = logits.dims();
    let hits: i64 = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(mesh.labels.clone())
        .int()
        .sum()
        .into_scalar()
        .elem();
    hits as f64 / v.max(1) as f64
}

/// A random element of the symmetries EMAN is built for: a rotation (uniform on SO(3)),
/// a scaling (log-uniform in [1/4, 4]), a translation (uniform in a cube of side
/// `2 * translation`), a vertex permutation (uniform) and a gauge change (an independent
/// uniform angle per vertex).
#[derive(Clone, Debug)]
pub struct RandomTransform {
    /// Rotation matrix.
    pub rotation: [[f64; 3]; 3],
    /// Scale factor.
    pub scale: f64,
    /// Offset added after rotating and scaling.
    pub translation: [f64; 3],
    /// Vertex `i` of the result is vertex `order[i]` of the input.
    pub order: Vec<u32>,
    /// Frame rotation per vertex of the result.
    pub gauge: Vec<f64>,
}

impl RandomTransform {
    /// Draws a transformation of a mesh of `vertices` vertices; translations up to
    /// `translation` per axis.
    pub fn sample(vertices: usize, translation: f64, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0xE3A1_5EED);
        let rotation = uniform_rotation([rng.next_unit(), rng.next_unit(), rng.next_unit()]);
        let scale = 4f64.powf(2.0 * rng.next_unit() - 1.0);
        let translation = [0; 3].map(|_| translation * (2.0 * rng.next_unit() - 1.0));
        let mut order: Vec<u32> = (0..vertices as u32).collect();
        for i in (1..vertices).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let gauge = (0..vertices)
            .map(|_| std::f64::consts::TAU * rng.next_unit())
            .collect();
        Self {
            rotation,
            scale,
            translation,
            order,
            gauge,
        }
    }

    /// The transformed mesh and its labels (permuted along).
    pub fn apply(&self, mesh: &Mesh, labels: &[u32]) -> Result<(Mesh, Vec<u32>), MeshError> {
        let moved = mesh.map_positions(|p| {
            let q = mat_vec(&self.rotation, p);
            [0, 1, 2].map(|i| self.scale * q[i] + self.translation[i])
        })?;
        let permuted = moved.permuted(&self.order)?;
        let labels = self.order.iter().map(|&o| labels[o as usize]).collect();
        Ok((permuted, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_transform_is_a_similarity_and_a_permutation() {
        let t = RandomTransform::sample(50, 10.0, 3);
        let r = t.rotation;
        for i in 0..3 {
            for j in 0..3 {
                let d: f64 = (0..3).map(|k| r[i][k] * r[j][k]).sum();
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        assert!((det - 1.0).abs() < 1e-12, "a rotation, not a reflection");
        assert!((0.25..=4.0).contains(&t.scale));
        let mut sorted = t.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(t.order, sorted);
    }
}
