//! A mesh's geometry as the tensors an EMAN layer consumes.
//!
//! Neighbourhoods are padded to the largest degree `K` (cortical meshes: 6, CGAL scans:
//! up to 20), so a layer gathers `[V * K]` rows with one `select` and reduces over
//! neighbours with a dense softmax and sum; padding slots point at the vertex itself and
//! are masked out of the softmax.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use tether_deploy::mesh::MeshGeometry;

/// Per-edge rotations of features of every order up to `M`, applied to flat
/// `[E, channels * (2m + 1)]` rows (channel-major, `[s, x1, y1, x2, y2, ...]` per channel).
///
/// `rotate(x) = x * cos + swap(x) * sin`, with `cos = [1, c1, c1, c2, c2, ...]`,
/// `sin = [0, -s1, s1, -s2, s2, ...]` tiled over the channels and `swap` exchanging each
/// `(x_n, y_n)` pair. Four same-shape passes over the rows: on burn's CPU backends a
/// broadcast or a strided slice of a 3-D tensor costs several times a flat pass, and
/// these rows (`E x C x D`, ~16M values on a cortex) are the layer's bulk.
#[derive(Clone, Debug)]
pub struct EdgeRotation<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    /// Tiled coefficients and the pair swap per `(channels, width)`, built on first use.
    tiles: TileCache<B>,
}

type Tiles<B> = (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1, Int>);
type TileCache<B> = Arc<Mutex<HashMap<(usize, usize), Tiles<B>>>>;

impl<B: Backend> EdgeRotation<B> {
    /// Rotations by `angles[e]` (`[E]`), orders `1..=max_order`.
    fn new(angles: &[f64], max_order: usize, device: &B::Device) -> Self {
        let w = 2 * max_order + 1;
        let mut cos = vec![0.0f64; angles.len() * w];
        let mut sin = vec![0.0f64; angles.len() * w];
        for (e, &a) in angles.iter().enumerate() {
            cos[e * w] = 1.0;
            for n in 1..=max_order {
                let (s, c) = (n as f64 * a).sin_cos();
                cos[e * w + 2 * n - 1] = c;
                cos[e * w + 2 * n] = c;
                sin[e * w + 2 * n - 1] = -s;
                sin[e * w + 2 * n] = s;
            }
        }
        // Built from f64: an f64 backend keeps the geometry's precision, others convert.
        let t = |v: Vec<f64>| Tensor::from_data(TensorData::new(v, [angles.len(), w]), device);
        Self {
            cos: t(cos),
            sin: t(sin),
            tiles: Arc::default(),
        }
    }

    /// Rotates `x` (`[E, channels * width]`, `width = 2m + 1 <= 2M + 1`).
    ///
    /// # Panics
    /// If `width` is beyond the graph's order (build the graph with the network's order).
    pub fn apply(&self, x: Tensor<B, 2>, channels: usize, width: usize) -> Tensor<B, 2> {
        if width == 1 {
            return x;
        }
        assert!(
            width <= self.cos.dims()[1],
            "features of width {width} on a graph built for order {}",
            self.cos.dims()[1] / 2
        );
        let (cos, sin, swap) = {
            let mut tiles = self.tiles.lock().unwrap_or_else(|e| e.into_inner());
            tiles
                .entry((channels, width))
                .or_insert_with(|| {
                    let device = x.device();
                    let swap: Vec<i64> = (0..channels)
                        .flat_map(|c| {
                            (0..width).map(move |d| {
                                let pair = match d {
                                    0 => 0,
                                    d if d % 2 == 1 => d + 1,
                                    d => d - 1,
                                };
                                (c * width + pair) as i64
                            })
                        })
                        .collect();
                    (
                        self.cos.clone().narrow(1, 0, width).repeat_dim(1, channels),
                        self.sin.clone().narrow(1, 0, width).repeat_dim(1, channels),
                        Tensor::from_data(TensorData::new(swap, [channels * width]), &device),
                    )
                })
                .clone()
        };
        x.clone() * cos + x.select(1, swap) * sin
    }
}

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
    /// `[V * K]` the vertex each slot belongs to (`p` for slot `p * K + j`).
    pub centres: Tensor<B, 1, Int>,
    /// `[V, K]`: 0 for a real neighbour, -1e9 for padding (added to attention scores).
    pub slot_bias: Tensor<B, 2>,
    /// Per slot, by `g_qp - theta_pq`: transport from `q` into `p`'s frame, then into
    /// the edge's own frame (`theta_pq` along `e1`).
    pub inward: EdgeRotation<B>,
    /// Per slot, by `theta_pq`: from the edge's frame back to `p`'s.
    pub outward: EdgeRotation<B>,
}

impl<B: Backend> EmanGraph<B> {
    /// Builds the tensors of `geometry` for features up to rotation order `max_order`.
    pub fn new(geometry: &MeshGeometry, max_order: usize, device: &B::Device) -> Self {
        let v = geometry.vertex_count();
        let k = geometry.max_degree().max(1);
        let m = max_order.max(1);
        let mut neighbours = vec![0i64; v * k];
        let mut bias = vec![-1e9f64; v * k];
        let mut inward = vec![0.0f64; v * k];
        let mut outward = vec![0.0f64; v * k];
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
                inward[e] = geometry.transport()[edge] - theta;
                outward[e] = theta;
            }
        }
        Self {
            vertices: v,
            slots: k,
            max_order: m,
            neighbours: Tensor::from_data(TensorData::new(neighbours, [v * k]), device),
            centres: Tensor::from_data(
                TensorData::new((0..v * k).map(|e| (e / k) as i64).collect(), [v * k]),
                device,
            ),
            slot_bias: Tensor::from_data(TensorData::new(bias, [v, k]), device),
            inward: EdgeRotation::new(&inward, m, device),
            outward: EdgeRotation::new(&outward, m, device),
        }
    }
}
