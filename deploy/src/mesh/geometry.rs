//! The geometry an EMAN layer needs, computed once per mesh in f64 (Basu et al., TMLR
//! 2022, §3; the gauge machinery is GEM-CNN's, de Haan et al., ICLR 2021, §3-4):
//!
//! - **normals**: area-weighted sums of the face normals;
//! - **gauges** (tangent frames `e1, e2 = n x e1`): `e1` points to the neighbour whose
//!   offset projects longest onto the tangent plane. The choice is arbitrary (that is what
//!   gauge equivariance buys) but made from geometry alone, so it turns with the mesh;
//! - **neighbourhoods**: the 1-ring (vertices sharing an edge), sorted by index;
//! - **log-map angles** `theta_pq`: the angle of `q - p` projected onto `p`'s tangent plane,
//!   in `p`'s frame (GEM-CNN's projection approximation of the logarithmic map);
//! - **parallel transport** `g_{q->p}`: the rotation taking `n_q` to `n_p` along the edge
//!   (discrete Levi-Civita connection) carries `q`'s `e1` into `p`'s tangent plane; `g` is
//!   its angle in `p`'s frame. A tangent vector at angle `a` in `q`'s frame has angle
//!   `a + g` in `p`'s, so a feature of rotation order `n` is transported by `e^{i n g}`;
//! - **RelTan** input features (EMAN eq. 6): for each relative power `r`,
//!   `v_p = (c * deg_p^d)^-1 * sum_q pi_p(q - p) / |q - p|^r * sum_q |q - p|^(r - 1)`,
//!   a tangent vector at `p` (order 1) that is invariant to translation, rotation and
//!   scale (the two sums scale as `s^(1-r)` and `s^(r-1)`).
//!
//! Under a gauge change (every frame `p` turned by `gamma_p`), `theta_pq -> theta_pq -
//! gamma_p`, `g_{q->p} -> g_{q->p} + gamma_q - gamma_p` and order-`n` coordinates at `p`
//! are multiplied by `e^{-i n gamma_p}`; [`GeometryOptions::gauge_offsets`] applies such
//! a change, which is how the equivariance tests exercise it.

use alloc::vec;
use alloc::vec::Vec;

use super::{Mesh, MeshError, cross, dot, face_cross, norm, scale, sub};

/// Choices made while computing the geometry.
#[derive(Clone, Debug, Default)]
pub struct GeometryOptions {
    /// Turns vertex `p`'s frame by `gauge_offsets[p]` radians after it is chosen (a gauge
    /// transformation; `None`: the geometric choice alone).
    pub gauge_offsets: Option<Vec<f64>>,
}

/// RelTan's hyper-parameters (the EMAN reference's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RelTanOptions {
    /// Relative powers `r`, one order-1 feature each (default `[0.7]`).
    pub powers: Vec<f64>,
    /// Degree normalisation power `d` (default 1.5).
    pub degree_power: f64,
    /// Normalisation constant `c` (default 1.0).
    pub constant: f64,
}

impl Default for RelTanOptions {
    fn default() -> Self {
        Self {
            powers: vec![0.7],
            degree_power: 1.5,
            constant: 1.0,
        }
    }
}

/// Per-vertex frames and per-edge angles of a mesh, neighbours in compressed rows.
#[derive(Clone, Debug)]
pub struct MeshGeometry {
    positions: Vec<[f64; 3]>,
    normals: Vec<[f64; 3]>,
    frames: Vec<[[f64; 3]; 2]>,
    offsets: Vec<u32>,
    neighbours: Vec<u32>,
    angles: Vec<f64>,
    transport: Vec<f64>,
}

impl MeshGeometry {
    /// Computes the geometry of `mesh`.
    pub fn new(mesh: &Mesh, options: &GeometryOptions) -> Result<Self, MeshError> {
        let positions = mesh.positions().to_vec();
        let n = positions.len();
        if let Some(g) = &options.gauge_offsets
            && (g.len() != n || g.iter().any(|a| !a.is_finite()))
        {
            return Err(MeshError::BadOption(
                "gauge offsets: one finite angle per vertex",
            ));
        }

        let mut normals = vec![[0.0f64; 3]; n];
        for f in mesh.faces() {
            let c = face_cross(&positions, f);
            for &v in f {
                let s = &mut normals[v as usize];
                for k in 0..3 {
                    s[k] += c[k];
                }
            }
        }
        for (vertex, nrm) in normals.iter_mut().enumerate() {
            let len = norm(*nrm);
            if len.is_nan() || len <= 1e-300 {
                return Err(MeshError::NoNormal { vertex });
            }
            *nrm = scale(*nrm, 1.0 / len);
        }

        let (offsets, neighbours) = one_ring(n, mesh.faces());

        let mut frames = Vec::with_capacity(n);
        for p in 0..n {
            let nrm = normals[p];
            let row = &neighbours[offsets[p] as usize..offsets[p + 1] as usize];
            let mut best = ([0.0; 3], -1.0);
            for &q in row {
                let t = tangent_part(sub(positions[q as usize], positions[p]), nrm);
                let len = norm(t);
                if len > best.1 {
                    best = (t, len);
                }
            }
            if best.1 <= 0.0 {
                // Every neighbour sits on the normal line: no direction to anchor the frame.
                return Err(MeshError::NoNormal { vertex: p });
            }
            let mut e1 = scale(best.0, 1.0 / best.1);
            let mut e2 = cross(nrm, e1);
            if let Some(g) = &options.gauge_offsets {
                let (s, c) = (libm::sin(g[p]), libm::cos(g[p]));
                let (a, b) = (e1, e2);
                e1 = [
                    c * a[0] + s * b[0],
                    c * a[1] + s * b[1],
                    c * a[2] + s * b[2],
                ];
                e2 = [
                    c * b[0] - s * a[0],
                    c * b[1] - s * a[1],
                    c * b[2] - s * a[2],
                ];
            }
            frames.push([e1, e2]);
        }

        let mut angles = Vec::with_capacity(neighbours.len());
        let mut transport = Vec::with_capacity(neighbours.len());
        for p in 0..n {
            let [e1p, e2p] = frames[p];
            for &q in &neighbours[offsets[p] as usize..offsets[p + 1] as usize] {
                let q = q as usize;
                let d = sub(positions[q], positions[p]);
                angles.push(libm::atan2(dot(d, e2p), dot(d, e1p)));
                let carried = rotate_normal_onto(normals[q], normals[p], frames[q][0]);
                transport.push(libm::atan2(dot(carried, e2p), dot(carried, e1p)));
            }
        }

        Ok(Self {
            positions,
            normals,
            frames,
            offsets,
            neighbours,
            angles,
            transport,
        })
    }

    /// Number of vertices.
    pub fn vertex_count(&self) -> usize {
        self.normals.len()
    }

    /// Unit normals.
    pub fn normals(&self) -> &[[f64; 3]] {
        &self.normals
    }

    /// Tangent frames `[e1, e2]`.
    pub fn frames(&self) -> &[[[f64; 3]; 2]] {
        &self.frames
    }

    /// Neighbours of vertex `p` (sorted, unless a gauge or permutation reordered them:
    /// always the 1-ring).
    pub fn neighbours(&self, p: usize) -> &[u32] {
        &self.neighbours[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }

    /// Row offsets into the per-edge arrays: vertex `p`'s edges are
    /// `offsets[p]..offsets[p + 1]`.
    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }

    /// Log-map angles `theta_pq`, one per (vertex, neighbour) edge, in row order.
    pub fn angles(&self) -> &[f64] {
        &self.angles
    }

    /// Transport angles `g_{q->p}`, one per edge, in row order.
    pub fn transport(&self) -> &[f64] {
        &self.transport
    }

    /// The largest neighbourhood.
    pub fn max_degree(&self) -> usize {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0)
    }

    /// Coordinates of a tangent vector `v` at `p` in `p`'s frame.
    pub fn tangent_coordinates(&self, p: usize, v: [f64; 3]) -> [f64; 2] {
        let [e1, e2] = self.frames[p];
        [dot(v, e1), dot(v, e2)]
    }

    /// RelTan features: `[vertex][power] -> [x, y]` in each vertex's frame, flattened
    /// (length `vertex_count * powers.len() * 2`).
    pub fn reltan(&self, options: &RelTanOptions) -> Result<Vec<f64>, MeshError> {
        if options.powers.is_empty()
            || options.powers.iter().any(|r| !r.is_finite())
            || !options.degree_power.is_finite()
            || !(options.constant.is_finite() && options.constant > 0.0)
        {
            return Err(MeshError::BadOption(
                "RelTan: at least one finite power, a finite degree power, a positive constant",
            ));
        }
        let n = self.vertex_count();
        let mut out = Vec::with_capacity(n * options.powers.len() * 2);
        for p in 0..n {
            let nrm = self.normals[p];
            let row = self.neighbours(p);
            let deg = row.len() as f64;
            for &r in &options.powers {
                let mut projected = [0.0; 3];
                let mut lengths = 0.0;
                for &q in row {
                    let d = sub(self.positions[q as usize], self.positions[p]);
                    let len = norm(d);
                    let t = scale(tangent_part(d, nrm), libm::pow(len, -r));
                    for k in 0..3 {
                        projected[k] += t[k];
                    }
                    lengths += libm::pow(len, r - 1.0);
                }
                let v = scale(
                    projected,
                    lengths / (options.constant * libm::pow(deg, options.degree_power)),
                );
                out.extend_from_slice(&self.tangent_coordinates(p, v));
            }
        }
        Ok(out)
    }
}

/// `v` minus its component along the unit normal `n`.
fn tangent_part(v: [f64; 3], n: [f64; 3]) -> [f64; 3] {
    let a = dot(v, n);
    [v[0] - a * n[0], v[1] - a * n[1], v[2] - a * n[2]]
}

/// Applies the smallest rotation taking unit `from` to unit `to` (Rodrigues) to `x`.
/// Antiparallel normals (a knife edge) have no smallest rotation: the half turn about `x`
/// itself is used, which leaves `x` in place (still a tangent vector of both planes when
/// `x` is tangent to `from`).
fn rotate_normal_onto(from: [f64; 3], to: [f64; 3], x: [f64; 3]) -> [f64; 3] {
    let c = dot(from, to);
    if 1.0 + c <= 1e-12 {
        return x;
    }
    let v = cross(from, to);
    let vx = cross(v, x);
    let k = dot(v, x) / (1.0 + c);
    [
        x[0] * c + vx[0] + v[0] * k,
        x[1] * c + vx[1] + v[1] * k,
        x[2] * c + vx[2] + v[2] * k,
    ]
}

/// The 1-ring of every vertex as compressed rows (sorted, deduplicated).
fn one_ring(n: usize, faces: &[[u32; 3]]) -> (Vec<u32>, Vec<u32>) {
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(faces.len() * 6);
    for f in faces {
        for k in 0..3 {
            let (a, b) = (f[k], f[(k + 1) % 3]);
            pairs.push((a, b));
            pairs.push((b, a));
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    let mut offsets = vec![0u32; n + 1];
    for &(a, _) in &pairs {
        offsets[a as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    (offsets, pairs.into_iter().map(|(_, b)| b).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::f64::consts::PI;

    /// A regular hexagon fan around vertex 0 in the plane z = 0, lifted at the rim so the
    /// centre has a well-defined normal (+z) and six neighbours.
    fn fan() -> Mesh {
        let mut p = vec![[0.0, 0.0, 0.0]];
        for k in 0..6 {
            let a = k as f64 * PI / 3.0;
            p.push([libm::cos(a), libm::sin(a), 0.1]);
        }
        let f = (0..6u32).map(|k| [0, 1 + k, 1 + (k + 1) % 6]).collect();
        Mesh::new(p, f).unwrap()
    }

    /// A fan with unequal spokes and a wavy rim: no two neighbours tie for the frame's
    /// anchor, and the normals vary (a curved surface).
    fn irregular_fan() -> Mesh {
        let mut p = vec![[0.0, 0.0, 0.0]];
        for k in 0..6 {
            let a = k as f64 * PI / 3.0 + 0.1 * libm::sin(k as f64);
            let r = 1.3 - 0.05 * k as f64;
            p.push([
                r * libm::cos(a),
                r * libm::sin(a),
                0.1 + 0.2 * libm::cos(2.0 * k as f64),
            ]);
        }
        let f = (0..6u32).map(|k| [0, 1 + k, 1 + (k + 1) % 6]).collect();
        Mesh::new(p, f).unwrap()
    }

    fn wrap(a: f64) -> f64 {
        let mut a = a % (2.0 * PI);
        if a > PI {
            a -= 2.0 * PI;
        }
        if a < -PI {
            a += 2.0 * PI;
        }
        a
    }

    #[test]
    fn a_flat_fan_has_the_expected_frame_and_angles() {
        let g = MeshGeometry::new(&fan(), &GeometryOptions::default()).unwrap();
        let n = g.normals()[0];
        assert!((n[2] - 1.0).abs() < 1e-12, "{n:?}");
        assert_eq!(g.neighbours(0), &[1, 2, 3, 4, 5, 6]);
        // All neighbours project equally far; the first (vertex 1, at angle 0) anchors e1.
        let e1 = g.frames()[0][0];
        assert!((e1[0] - 1.0).abs() < 1e-12, "{e1:?}");
        for (k, a) in g.angles()[..6].iter().enumerate() {
            assert!(wrap(a - k as f64 * PI / 3.0).abs() < 1e-12, "{k}: {a}");
        }
    }

    #[test]
    fn a_gauge_change_shifts_angles_and_transport_as_theory_says() {
        let mesh = irregular_fan();
        let g0 = MeshGeometry::new(&mesh, &GeometryOptions::default()).unwrap();
        let gamma: Vec<f64> = (0..7).map(|i| 0.3 + 0.7 * i as f64).collect();
        let g1 = MeshGeometry::new(
            &mesh,
            &GeometryOptions {
                gauge_offsets: Some(gamma.clone()),
            },
        )
        .unwrap();
        for p in 0..7 {
            let start = g0.offsets()[p] as usize;
            for (j, &q) in g0.neighbours(p).iter().enumerate() {
                let e = start + j;
                let q = q as usize;
                assert!(wrap(g1.angles()[e] - (g0.angles()[e] - gamma[p])).abs() < 1e-12);
                let want = g0.transport()[e] + gamma[q] - gamma[p];
                assert!(wrap(g1.transport()[e] - want).abs() < 1e-12);
            }
        }
        let r0 = g0.reltan(&RelTanOptions::default()).unwrap();
        let r1 = g1.reltan(&RelTanOptions::default()).unwrap();
        for p in 0..7 {
            let (c, s) = (libm::cos(gamma[p]), libm::sin(gamma[p]));
            let (x, y) = (r0[2 * p], r0[2 * p + 1]);
            assert!((r1[2 * p] - (c * x + s * y)).abs() < 1e-12);
            assert!((r1[2 * p + 1] - (-s * x + c * y)).abs() < 1e-12);
        }
    }

    #[test]
    fn transport_is_zero_on_a_plane_and_inverts_along_an_edge() {
        // On a flat mesh all normals agree: transport is the difference of the frames.
        let p = vec![
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
        ];
        let m = Mesh::new(p, vec![[0, 1, 2], [1, 3, 2]]).unwrap();
        let g = MeshGeometry::new(&m, &GeometryOptions::default()).unwrap();
        for p in 0..4 {
            let start = g.offsets()[p] as usize;
            for (j, &q) in g.neighbours(p).iter().enumerate() {
                let e1p = g.frames()[p][0];
                let e1q = g.frames()[q as usize][0];
                let want = libm::atan2(cross(e1p, e1q)[2], dot(e1p, e1q));
                assert!(wrap(g.transport()[start + j] - want).abs() < 1e-12);
            }
        }
        // On a curved mesh, g_{q->p} = -g_{p->q} (the connection is metric and symmetric).
        let g = MeshGeometry::new(&irregular_fan(), &GeometryOptions::default()).unwrap();
        for p in 0..7usize {
            for (j, &q) in g.neighbours(p).iter().enumerate() {
                let q = q as usize;
                let back = g
                    .neighbours(q)
                    .iter()
                    .position(|&r| r as usize == p)
                    .unwrap();
                let a = g.transport()[g.offsets()[p] as usize + j];
                let b = g.transport()[g.offsets()[q] as usize + back];
                assert!(wrap(a + b).abs() < 1e-12, "{p}->{q}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn reltan_is_invariant_to_similarity_transforms() {
        let mesh = irregular_fan();
        let opts = RelTanOptions {
            powers: vec![0.5, 0.7],
            ..Default::default()
        };
        let r0 = MeshGeometry::new(&mesh, &GeometryOptions::default())
            .unwrap()
            .reltan(&opts)
            .unwrap();
        // Rotation about an oblique axis, scaling by 3.7, translation.
        let (c, s) = (libm::cos(1.1), libm::sin(1.1));
        let moved = mesh
            .map_positions(|p| {
                let (x, y, z) = (p[0], c * p[1] - s * p[2], s * p[1] + c * p[2]);
                [
                    3.7 * (c * x - s * z) + 5.0,
                    3.7 * y - 2.0,
                    3.7 * (s * x + c * z),
                ]
            })
            .unwrap();
        let r1 = MeshGeometry::new(&moved, &GeometryOptions::default())
            .unwrap()
            .reltan(&opts)
            .unwrap();
        for (a, b) in r0.iter().zip(&r1) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert!(
            r0.iter().any(|v| v.abs() > 1e-3),
            "features are not all zero"
        );
    }
}
