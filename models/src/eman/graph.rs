//! A mesh's geometry as the tensors an EMAN layer consumes.
//!
//! Neighbourhoods are padded to the largest degree `K` (cortical meshes: 6, CGAL scans:
//! up to 20), so a layer gathers `[V * K]` rows with one `select` and reduces over
//! neighbours with a dense softmax and sum; padding slots point at the vertex itself and
//! are masked out of the softmax.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use tether_deploy::mesh::MeshGeometry;

/// Padded neighbourhoods and per-edge rotations of one mesh, up to rotation order `M`.
#[derive(Clone, Debug)]
pub struct EmanGraph<B: Backend> {
    /// Vertices `V`.
    pub vertices: usize,
    /// Neighbourhood slots per vertex `K` (the largest degree).
    pub slots: usize,
    /// The largest rotation order the rotations cover.
    pub max_order: usize,
    /// `[V * K]` neighbour of each slot (padding: the vertex itself).
    pub neighbours: Tensor<B, 1, Int>,
    /// `[V, K]`: 0 for a real neighbour, -1e9 for padding (added to attention scores).
    pub slot_bias: Tensor<B, 2>,
    /// `[V * K, M]`: `cos(n (g_qp - theta_pq))`, `n = 1..=M`: transport from `q` into
    /// `p`'s frame, then into the edge's own frame (`theta_pq` along `e1`).
    pub inward_cos: Tensor<B, 2>,
    /// `[V * K, M]`: the matching sines.
    pub inward_sin: Tensor<B, 2>,
    /// `[V * K, M]`: `cos(n theta_pq)`: from the edge's frame back to `p`'s.
    pub outward_cos: Tensor<B, 2>,
    /// `[V * K, M]`: the matching sines.
    pub outward_sin: Tensor<B, 2>,
}

impl<B: Backend> EmanGraph<B> {
    /// Builds the tensors of `geometry` for features up to rotation order `max_order`.
    pub fn new(geometry: &MeshGeometry, max_order: usize, device: &B::Device) -> Self {
        let v = geometry.vertex_count();
        let k = geometry.max_degree().max(1);
        let m = max_order.max(1);
        let mut neighbours = vec![0i64; v * k];
        let mut bias = vec![-1e9f64; v * k];
        let mut trig = [
            vec![1.0f64; v * k * m],
            vec![0.0f64; v * k * m],
            vec![1.0f64; v * k * m],
            vec![0.0f64; v * k * m],
        ];
        for (p, &start) in geometry.offsets()[..v].iter().enumerate() {
            let row = geometry.neighbours(p);
            for slot in 0..k {
                let e = p * k + slot;
                let Some(&q) = row.get(slot) else {
                    neighbours[e] = p as i64;
                    continue;
                };
                neighbours[e] = i64::from(q);
                bias[e] = 0.0;
                let edge = start as usize + slot;
                let theta = geometry.angles()[edge];
                let inward = geometry.transport()[edge] - theta;
                for n in 1..=m {
                    let nf = n as f64;
                    let i = e * m + n - 1;
                    trig[0][i] = (nf * inward).cos();
                    trig[1][i] = (nf * inward).sin();
                    trig[2][i] = (nf * theta).cos();
                    trig[3][i] = (nf * theta).sin();
                }
            }
        }
        // Built from f64: an f64 backend keeps the geometry's precision, others convert.
        let t2 = |data: Vec<f64>, cols: usize| {
            Tensor::<B, 2>::from_data(TensorData::new(data, [v * k, cols]), device)
        };
        let [ic, is, oc, os] = trig;
        Self {
            vertices: v,
            slots: k,
            max_order: m,
            neighbours: Tensor::from_data(TensorData::new(neighbours, [v * k]), device),
            slot_bias: Tensor::from_data(TensorData::new(bias, [v, k]), device),
            inward_cos: t2(ic, m),
            inward_sin: t2(is, m),
            outward_cos: t2(oc, m),
            outward_sin: t2(os, m),
        }
    }
}
