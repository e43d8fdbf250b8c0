//! Equivariant mesh attention networks (EMAN; Basu, Gallego-Posada, Vigano, Rowbottom,
//! Cohen, TMLR 2022) in burn.
//!
//! Features live in the tangent planes of a mesh's vertices as sums of SO(2) irreducible
//! representations: per channel a scalar (order 0) and a 2-vector for each order
//! `n = 1..=M` that turns by `n * gamma` when the vertex's frame (gauge) turns by
//! `-gamma`. The layout is `[vertices, channels, 2M + 1]`: `[s, x1, y1, x2, y2, ...]`.
//!
//! - [`graph`]: a mesh's geometry (from `tether_deploy::mesh`) as tensors: padded
//!   neighbourhoods, per-edge rotations for transport and the kernels' angles.
//! - [`kernel`]: the equivariant building blocks: rotating features by per-edge angles,
//!   the self-interaction kernel, the gate nonlinearity.
//! - [`conv`]: the EMAN attention convolution (EMAN §4).
//! - [`export`]: the network as a `tether-deploy` mesh model.
//! - [`net`]: the network (a lifting layer, residual blocks, a scalar head), fed RelTan
//!   features (equivariant) or raw XYZ (the non-equivariant baseline).

pub mod conv;
pub mod export;
pub mod graph;
pub mod kernel;
pub mod net;

pub use conv::{EmanConv, EmanConvConfig};
pub use graph::EmanGraph;
pub use net::{EmanInput, EmanNet, EmanNetConfig};
