//! Triangle meshes for the equivariant mesh attention network (EMAN; Basu et al., TMLR
//! 2022): the mesh itself, validated ([`Mesh::new`]), and the geometry EMAN's layers are
//! built on ([`geometry`]: normals, tangent frames, neighbourhoods, parallel transport,
//! relative tangential features). Both are `no_std` + `alloc`: the runtime computes them
//! on the device from the mesh alone. Readers for OFF, OBJ, PLY and GIFTI files are in
//! [`io`] (feature `std`).
//!
//! What the validation refuses, and why: an index out of range (an out-of-bounds read), a
//! non-finite coordinate, a face that repeats a vertex or has zero area (no normal: it
//! would put a NaN into the normals), a vertex no face uses (it has no tangent plane and
//! no neighbours). [`Mesh::without_isolated_vertices`] is the documented way to accept
//! files with unused vertices (common in scans). Non-manifold edges (an edge shared by
//! three or more faces) are accepted: every quantity EMAN uses is defined per vertex and
//! per edge of the vertex graph, so such an edge is one more neighbour relation;
//! [`Mesh::non_manifold_edges`] counts them for reports.

pub mod geometry;
#[cfg(feature = "std")]
pub mod io;
mod plan;
mod real;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

pub use geometry::{GeometryOptions, MeshGeometry, RelTanOptions};
pub use plan::MeshPlan;
pub use real::Precision;

/// A mesh that cannot be used, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshError {
    /// The mesh has no vertices or no faces.
    Empty,
    /// A face refers to a vertex that does not exist.
    IndexOutOfRange {
        /// Face index.
        face: usize,
        /// The index it holds.
        index: u64,
        /// Number of vertices.
        vertices: usize,
    },
    /// A coordinate is NaN or infinite.
    NonFiniteVertex {
        /// Vertex index.
        vertex: usize,
    },
    /// A face names the same vertex twice.
    RepeatedVertex {
        /// Face index.
        face: usize,
    },
    /// A face's area is zero (collinear vertices) relative to the mesh's size.
    ZeroAreaFace {
        /// Face index.
        face: usize,
    },
    /// A vertex no face uses.
    IsolatedVertex {
        /// Vertex index.
        vertex: usize,
        /// How many such vertices the mesh has.
        count: usize,
    },
    /// A vertex's face normals cancel out: it has no tangent plane.
    NoNormal {
        /// Vertex index.
        vertex: usize,
    },
    /// The options given are out of their range.
    BadOption(&'static str),
    /// A file that cannot be read (feature `std`).
    Io(alloc::string::String),
    /// A file that is not a mesh of the format it claims (readers, feature `std`).
    Parse {
        /// Format name (`OFF`, `OBJ`, `PLY`, `GIFTI`).
        format: &'static str,
        /// What is wrong, with the line or element where that helps.
        reason: alloc::string::String,
    },
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeshError::Empty => write!(f, "the mesh has no vertices or no faces"),
            MeshError::IndexOutOfRange {
                face,
                index,
                vertices,
            } => write!(
                f,
                "face {face} refers to vertex {index}, but the mesh has {vertices} vertices"
            ),
            MeshError::NonFiniteVertex { vertex } => {
                write!(f, "vertex {vertex} has a NaN or infinite coordinate")
            }
            MeshError::RepeatedVertex { face } => {
                write!(f, "face {face} names the same vertex twice")
            }
            MeshError::ZeroAreaFace { face } => write!(
                f,
                "face {face} has zero area (collinear vertices); it has no normal"
            ),
            MeshError::IsolatedVertex { vertex, count } => write!(
                f,
                "vertex {vertex} is used by no face ({count} such vertices); drop them with \
                 Mesh::without_isolated_vertices (CLI: --drop-isolated)"
            ),
            MeshError::NoNormal { vertex } => write!(
                f,
                "the faces around vertex {vertex} cancel out: it has no normal (a fold or a \
                 sheet glued back on itself)"
            ),
            MeshError::BadOption(what) => write!(f, "bad option: {what}"),
            MeshError::Io(reason) => write!(f, "{reason}"),
            MeshError::Parse { format, reason } => write!(f, "not a valid {format} mesh: {reason}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MeshError {}

/// A validated triangle mesh: positions and counter-clockwise faces (the winding sets the
/// normals' side).
#[derive(Clone, Debug, PartialEq)]
pub struct Mesh {
    positions: Vec<[f64; 3]>,
    faces: Vec<[u32; 3]>,
}

/// Relative area below which a face counts as degenerate: `|cross| <= EPS * diag^2`, with
/// `diag` the bounding box diagonal. Scale-free, so scaling a mesh never changes its
/// validity; 1e-14 sits far below any real face (a 1,000,000-vertex sphere's faces are
/// ~1e-6 of diag^2) and well above f64 rounding of exactly collinear points.
const ZERO_AREA_EPS: f64 = 1e-14;

impl Mesh {
    /// Validates and builds a mesh (see the module doc for what is refused).
    pub fn new(positions: Vec<[f64; 3]>, faces: Vec<[u32; 3]>) -> Result<Self, MeshError> {
        if positions.is_empty() || faces.is_empty() {
            return Err(MeshError::Empty);
        }
        Self::check_faces(&positions, &faces)?;
        let mut used = alloc::vec![false; positions.len()];
        for f in &faces {
            for &v in f {
                used[v as usize] = true;
            }
        }
        if let Some(vertex) = used.iter().position(|u| !u) {
            let count = used.iter().filter(|u| !**u).count();
            return Err(MeshError::IsolatedVertex { vertex, count });
        }
        Ok(Self { positions, faces })
    }

    /// Like [`Mesh::new`], but drops vertices no face uses instead of refusing them.
    /// Returns the mesh and, for each kept vertex, its index in `positions`.
    pub fn without_isolated_vertices(
        positions: Vec<[f64; 3]>,
        faces: Vec<[u32; 3]>,
    ) -> Result<(Self, Vec<u32>), MeshError> {
        if positions.is_empty() || faces.is_empty() {
            return Err(MeshError::Empty);
        }
        Self::check_faces(&positions, &faces)?;
        let mut new_index = alloc::vec![u32::MAX; positions.len()];
        for f in &faces {
            for &v in f {
                new_index[v as usize] = 0;
            }
        }
        let mut kept = Vec::new();
        for (old, slot) in new_index.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = kept.len() as u32;
                kept.push(old as u32);
            }
        }
        let positions = kept.iter().map(|&old| positions[old as usize]).collect();
        let faces = faces
            .iter()
            .map(|f| f.map(|v| new_index[v as usize]))
            .collect();
        Ok((Self { positions, faces }, kept))
    }

    fn check_faces(positions: &[[f64; 3]], faces: &[[u32; 3]]) -> Result<(), MeshError> {
        if let Some(vertex) = positions
            .iter()
            .position(|p| p.iter().any(|c| !c.is_finite()))
        {
            return Err(MeshError::NonFiniteVertex { vertex });
        }
        let n = positions.len();
        for (face, f) in faces.iter().enumerate() {
            if let Some(&index) = f.iter().find(|&&v| v as usize >= n) {
                return Err(MeshError::IndexOutOfRange {
                    face,
                    index: u64::from(index),
                    vertices: n,
                });
            }
            if f[0] == f[1] || f[1] == f[2] || f[0] == f[2] {
                return Err(MeshError::RepeatedVertex { face });
            }
        }
        let diag2 = bounding_diagonal_sq(positions);
        for (face, f) in faces.iter().enumerate() {
            let c = face_cross(positions, f);
            if norm(c) <= ZERO_AREA_EPS * diag2 {
                return Err(MeshError::ZeroAreaFace { face });
            }
        }
        Ok(())
    }

    /// Vertex positions.
    pub fn positions(&self) -> &[[f64; 3]] {
        &self.positions
    }

    /// Faces (vertex indices, counter-clockwise seen from the normal's side).
    pub fn faces(&self) -> &[[u32; 3]] {
        &self.faces
    }

    /// Number of vertices.
    pub fn vertex_count(&self) -> usize {
        self.positions.len()
    }

    /// The same mesh with every position mapped by `f` (a rotation, a scaling...), checked
    /// again: a map that collapses faces is refused like a file that has them.
    pub fn map_positions(&self, f: impl Fn([f64; 3]) -> [f64; 3]) -> Result<Self, MeshError> {
        Self::new(
            self.positions.iter().map(|&p| f(p)).collect(),
            self.faces.clone(),
        )
    }

    /// The mesh with its vertices renumbered: vertex `i` of the result is vertex
    /// `order[i]` of `self` (`order` must be a permutation).
    pub fn permuted(&self, order: &[u32]) -> Result<Self, MeshError> {
        let n = self.positions.len();
        let mut inverse = alloc::vec![u32::MAX; n];
        if order.len() != n {
            return Err(MeshError::BadOption(
                "the order's length is not the vertex count",
            ));
        }
        for (new, &old) in order.iter().enumerate() {
            match inverse.get_mut(old as usize) {
                Some(slot) if *slot == u32::MAX => *slot = new as u32,
                _ => return Err(MeshError::BadOption("the order is not a permutation")),
            }
        }
        Self::new(
            order
                .iter()
                .map(|&old| self.positions[old as usize])
                .collect(),
            self.faces
                .iter()
                .map(|f| f.map(|v| inverse[v as usize]))
                .collect(),
        )
    }

    /// The mirror image through the plane `x = 0`, with the faces' winding reversed so
    /// the normals keep pointing to the same side of the surface (a right hemisphere
    /// mirrored into a left one's pose).
    pub fn mirrored_x(&self) -> Result<Self, MeshError> {
        Self::new(
            self.positions.iter().map(|p| [-p[0], p[1], p[2]]).collect(),
            self.faces.iter().map(|f| [f[0], f[2], f[1]]).collect(),
        )
    }

    /// Number of edges shared by more than two faces.
    pub fn non_manifold_edges(&self) -> usize {
        let mut count: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        for f in &self.faces {
            for k in 0..3 {
                let (a, b) = (f[k], f[(k + 1) % 3]);
                *count.entry((a.min(b), a.max(b))).or_insert(0) += 1;
            }
        }
        count.values().filter(|&&c| c > 2).count()
    }
}

/// The rotation matrix of Shoemake's unit quaternion from three numbers `u` in `[0, 1)`:
/// uniform on SO(3) when `u` is uniform (for random-rotation tests and test sets).
pub fn uniform_rotation(u: [f64; 3]) -> [[f64; 3]; 3] {
    let tau = core::f64::consts::TAU;
    let (s0, s1) = (libm::sqrt(1.0 - u[0]), libm::sqrt(u[0]));
    let [w, x, y, z] = [
        s0 * libm::sin(tau * u[1]),
        s0 * libm::cos(tau * u[1]),
        s1 * libm::sin(tau * u[2]),
        s1 * libm::cos(tau * u[2]),
    ];
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// `r p` for a 3 x 3 matrix `r`.
pub fn mat_vec(r: &[[f64; 3]; 3], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| dot(r[i], p))
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn norm(a: [f64; 3]) -> f64 {
    libm::sqrt(dot(a, a))
}

pub(crate) fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

pub(crate) fn face_cross(positions: &[[f64; 3]], f: &[u32; 3]) -> [f64; 3] {
    let (a, b, c) = (
        positions[f[0] as usize],
        positions[f[1] as usize],
        positions[f[2] as usize],
    );
    cross(sub(b, a), sub(c, a))
}

fn bounding_diagonal_sq(positions: &[[f64; 3]]) -> f64 {
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for p in positions {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let d = sub(hi, lo);
    dot(d, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn tetrahedron() -> (Vec<[f64; 3]>, Vec<[u32; 3]>) {
        (
            vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
            ],
            vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        )
    }

    #[test]
    fn a_closed_mesh_is_accepted() {
        let (p, f) = tetrahedron();
        let m = Mesh::new(p, f).unwrap();
        assert_eq!(m.vertex_count(), 4);
        assert_eq!(m.non_manifold_edges(), 0);
    }

    #[test]
    fn bad_meshes_are_refused_by_name() {
        let (p, mut f) = tetrahedron();
        f[2] = [0, 3, 4];
        assert_eq!(
            Mesh::new(p.clone(), f),
            Err(MeshError::IndexOutOfRange {
                face: 2,
                index: 4,
                vertices: 4
            })
        );
        let (_, f) = tetrahedron();
        let mut q = p.clone();
        q[1][2] = f64::NAN;
        assert_eq!(
            Mesh::new(q, f.clone()),
            Err(MeshError::NonFiniteVertex { vertex: 1 })
        );
        let mut g = f.clone();
        g[0] = [0, 2, 2];
        assert_eq!(
            Mesh::new(p.clone(), g),
            Err(MeshError::RepeatedVertex { face: 0 })
        );
        // Vertex 3 moved onto the line through 0 and 1: faces 1 (0,1,3) is collinear.
        let mut q = p.clone();
        q[3] = [0.5, 0.0, 0.0];
        assert_eq!(
            Mesh::new(q, f.clone()),
            Err(MeshError::ZeroAreaFace { face: 1 })
        );
        assert_eq!(Mesh::new(Vec::new(), f), Err(MeshError::Empty));
    }

    #[test]
    fn isolated_vertices_are_refused_or_dropped() {
        let (mut p, f) = tetrahedron();
        p.insert(1, [5.0, 5.0, 5.0]);
        let f: Vec<[u32; 3]> = f
            .iter()
            .map(|t| t.map(|v| if v >= 1 { v + 1 } else { v }))
            .collect();
        assert_eq!(
            Mesh::new(p.clone(), f.clone()),
            Err(MeshError::IsolatedVertex {
                vertex: 1,
                count: 1
            })
        );
        let (m, kept) = Mesh::without_isolated_vertices(p, f).unwrap();
        assert_eq!(kept, vec![0, 2, 3, 4]);
        let (p0, f0) = tetrahedron();
        assert_eq!(m, Mesh::new(p0, f0).unwrap());
    }

    #[test]
    fn non_manifold_edges_are_counted() {
        // Three triangles on the edge (0, 1): a "book" with three pages.
        let p = vec![
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.5, 1.0, 0.0],
            [0.5, -1.0, 0.0],
            [0.5, 0.0, 1.0],
        ];
        let f = vec![[0, 1, 2], [1, 0, 3], [0, 1, 4]];
        let m = Mesh::new(p, f).unwrap();
        assert_eq!(m.non_manifold_edges(), 1);
        // The documented handling: accepted, and the geometry on it is finite.
        let g = MeshGeometry::new(&m, &GeometryOptions::default()).unwrap();
        assert!(
            g.angles()
                .iter()
                .chain(g.transport())
                .all(|a| a.is_finite())
        );
        let r = g.reltan(&RelTanOptions::default()).unwrap();
        assert!(r.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn a_sheet_glued_back_on_itself_has_no_normal() {
        let p = vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let m = Mesh::new(p, vec![[0, 1, 2], [0, 2, 1]]).unwrap();
        assert_eq!(
            MeshGeometry::new(&m, &GeometryOptions::default()).err(),
            Some(MeshError::NoNormal { vertex: 0 })
        );
    }

    #[test]
    fn permutation_and_mirror_are_checked() {
        let (p, f) = tetrahedron();
        let m = Mesh::new(p, f).unwrap();
        let q = m.permuted(&[3, 1, 0, 2]).unwrap();
        assert_eq!(q.positions()[0], m.positions()[3]);
        assert!(m.permuted(&[0, 0, 1, 2]).is_err());
        let r = m.mirrored_x().unwrap().mirrored_x().unwrap();
        assert_eq!(r, m);
    }
}
