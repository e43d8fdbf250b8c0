//! Running a mesh model (an EMAN exported by `tether-models`) on a mesh.
//!
//! A mesh model is an op graph whose samples are a mesh's vertices: value 0 holds each
//! vertex's position, [`Op::MeshFeatures`] turns the mesh into input features, and
//! [`Op::EmanConv`] reads each vertex's 1-ring. [`MeshPlan::run`] computes the mesh's
//! geometry ([`MeshGeometry`], the same code the training side uses) and runs the ops in
//! order: EMAN convolutions, gates, scalars, residual additions, linear heads, ReLU. The
//! per-sample [`crate::Plan`] refuses such a model ([`Error::NeedsMesh`]).
//!
//! Buffers depend on the mesh's size, so they are allocated per run (`alloc`), unlike
//! the per-sample plan's fixed arena. A plan computes in f32 or in f64
//! ([`Precision`], `super::real` says why both): the ops are written once, over the float
//! type.

use alloc::vec;
use alloc::vec::Vec;

use super::real::{Real, linear, widen};
use super::{GeometryOptions, Mesh, MeshGeometry, Precision, RelTanOptions};
use crate::error::Error;
use crate::format::{Binary, MeshFeatures, Model, Op};

/// Weights of one op, widened to dense f32 once (and to the run's float type per run:
/// they are a few thousand numbers).
enum Weights {
    None,
    Linear {
        w: Vec<f32>,
        b: Option<Vec<f32>>,
        out: usize,
        inp: usize,
    },
    Eman {
        key: Vec<f32>,
        value: Vec<f32>,
        query: Vec<f32>,
        self_kernel: Vec<f32>,
        bias: Vec<f32>,
    },
}

/// A mesh model, checked and ready to run on meshes.
pub struct MeshPlan<'m> {
    model: Model<'m>,
    weights: Vec<Weights>,
    precision: Precision,
    output: Vec<f32>,
}

impl<'m> MeshPlan<'m> {
    /// Checks that every op of `model` can run on a mesh.
    pub fn new(model: Model<'m>) -> Result<Self, Error> {
        let mut weights = Vec::with_capacity(model.nodes.len());
        let mut has_features = false;
        for (index, node) in model.nodes.iter().enumerate() {
            let bad = |reason| Error::BadOp { index, reason };
            let dense = |t: usize| model.tensors[t].to_dense();
            weights.push(match node.op {
                Op::MeshFeatures(_) => {
                    has_features = true;
                    Weights::None
                }
                Op::EmanConv {
                    key,
                    value,
                    query,
                    self_kernel,
                    bias,
                    ..
                } => Weights::Eman {
                    key: dense(key),
                    value: dense(value),
                    query: dense(query),
                    self_kernel: dense(self_kernel),
                    bias: dense(bias),
                },
                Op::Linear { weight, bias } => {
                    let d = model.tensors[weight].dims;
                    Weights::Linear {
                        w: dense(weight),
                        b: bias.map(dense),
                        out: d.as_slice()[0],
                        inp: d.as_slice()[1],
                    }
                }
                Op::Gate | Op::Scalars | Op::Relu => Weights::None,
                Op::Binary(Binary::Add) => {
                    let (a, b) = (node.inputs[0], node.inputs[1]);
                    if model.shapes[a] != model.shapes[b] || !model.batched[a] || !model.batched[b]
                    {
                        return Err(bad("a mesh model adds two per-vertex values of one shape"));
                    }
                    Weights::None
                }
                _ => return Err(bad("not an op a mesh model runs")),
            });
        }
        if !has_features {
            return Err(Error::BadOp {
                index: model.nodes.len(),
                reason: "a mesh model needs a mesh_features op",
            });
        }
        Ok(Self {
            model,
            weights,
            precision: Precision::default(),
            output: Vec::new(),
        })
    }

    /// Runs in `precision` from now on (f32 by default; see [`Precision`]).
    #[must_use]
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The arithmetic runs use.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Values per vertex of the output.
    pub fn output_width(&self) -> usize {
        self.model.shapes[self.model.output].numel()
    }

    /// Runs the model on `mesh`: `[vertices, output_width]` row-major, computed in the
    /// plan's [`Precision`] and returned in f32.
    pub fn run(&mut self, mesh: &Mesh) -> Result<&[f32], Error> {
        let geometry = MeshGeometry::new(mesh, &GeometryOptions::default()).map_err(Error::Mesh)?;
        self.output = match self.precision {
            Precision::F32 => to_f32(self.run_in::<f32>(mesh, &geometry)?),
            Precision::F64 => to_f32(self.run_in::<f64>(mesh, &geometry)?),
        };
        Ok(&self.output)
    }

    /// Runs the model on `mesh` in f64 and returns the f64 outputs (`[vertices,
    /// output_width]`), for comparisons against a reference evaluation.
    pub fn run_f64(&self, mesh: &Mesh) -> Result<Vec<f64>, Error> {
        let geometry = MeshGeometry::new(mesh, &GeometryOptions::default()).map_err(Error::Mesh)?;
        self.run_in::<f64>(mesh, &geometry)
    }

    fn run_in<T: Real>(&self, mesh: &Mesh, geometry: &MeshGeometry) -> Result<Vec<T>, Error> {
        let v = mesh.vertex_count();
        let mut values: Vec<Vec<T>> = Vec::with_capacity(self.model.shapes.len());
        values.push(
            mesh.positions()
                .iter()
                .flat_map(|p| p.map(T::from_f64))
                .collect(),
        );
        for (node, weights) in self.model.nodes.iter().zip(&self.weights) {
            let x = &values[node.inputs[0]];
            let in_shape = self.model.shapes[node.inputs[0]];
            let width = self.model.shapes[node.output].numel();
            let out = match (node.op, weights) {
                (Op::MeshFeatures(f), _) => features(f, mesh, geometry)?,
                (
                    Op::EmanConv { heads, .. },
                    Weights::Eman {
                        key,
                        value,
                        query,
                        self_kernel,
                        bias,
                    },
                ) => {
                    let [c_in, d_in] = [in_shape.as_slice()[0], in_shape.as_slice()[1]];
                    let shape = self.model.shapes[node.output];
                    let [c_out, d_out] = [shape.as_slice()[0], shape.as_slice()[1]];
                    let w = EmanWeights {
                        key: widen(key),
                        value: widen(value),
                        query: widen(query),
                        self_kernel: widen(self_kernel),
                        bias: widen(bias),
                    };
                    let dims = Dims4 {
                        c_in,
                        d_in,
                        c_out,
                        d_out,
                    };
                    eman_conv(x, geometry, &w, dims, heads)
                }
                (Op::Gate, _) => {
                    let d = in_shape.as_slice()[1];
                    let mut y = x.clone();
                    for ch in y.chunks_exact_mut(d) {
                        let s = ch[0];
                        // sigmoid(s) = exp(min(s, 0)) / (1 + exp(-|s|)): no exponent is
                        // positive (tether-models' gate computes the same).
                        let neg_abs = if s > T::ZERO { T::ZERO - s } else { s };
                        let g = (if s > T::ZERO { T::ZERO } else { s })
                            .exp()
                            .div(T::ONE + neg_abs.exp());
                        ch[0] = s.max(T::ZERO);
                        for c in &mut ch[1..] {
                            *c = *c * g;
                        }
                    }
                    y
                }
                (Op::Scalars, _) => {
                    let d = in_shape.as_slice()[1];
                    x.chunks_exact(d).map(|ch| ch[0]).collect()
                }
                (Op::Relu, _) => x.iter().map(|&a| a.max(T::ZERO)).collect(),
                (Op::Binary(Binary::Add), _) => {
                    let b = &values[node.inputs[1]];
                    x.iter().zip(b).map(|(&a, &b)| a + b).collect()
                }
                (Op::Linear { .. }, Weights::Linear { w, b, out, inp }) => {
                    let b = b.as_deref().map(widen::<T>);
                    linear(&widen(w), b.as_deref(), x, x.len() / inp, *out, *inp)
                }
                _ => unreachable!("MeshPlan::new admitted only the ops above"),
            };
            debug_assert_eq!(out.len(), v * width);
            values.push(out);
        }
        Ok(values.swap_remove(self.model.output))
    }
}

fn to_f32<T: Real>(v: Vec<T>) -> Vec<f32> {
    v.into_iter().map(Real::to_f32).collect()
}

/// An EMAN convolution's weights in the run's arithmetic.
struct EmanWeights<T> {
    key: Vec<T>,
    value: Vec<T>,
    query: Vec<T>,
    self_kernel: Vec<T>,
    bias: Vec<T>,
}

fn features<T: Real>(
    f: MeshFeatures,
    mesh: &Mesh,
    geometry: &MeshGeometry,
) -> Result<Vec<T>, Error> {
    Ok(match f {
        MeshFeatures::RelTan {
            powers,
            count,
            degree_power,
            constant,
        } => {
            let r = geometry
                .reltan(&RelTanOptions {
                    powers: powers[..count].iter().map(|&p| f64::from(p)).collect(),
                    degree_power: f64::from(degree_power),
                    constant: f64::from(constant),
                })
                .map_err(Error::Mesh)?;
            r.chunks_exact(2)
                .flat_map(|xy| [T::ZERO, T::from_f64(xy[0]), T::from_f64(xy[1])])
                .collect()
        }
        MeshFeatures::Xyz { mean, scale } => mesh
            .positions()
            .iter()
            .flat_map(|p| {
                [0, 1, 2].map(|k| T::from_f64((p[k] - f64::from(mean[k])) / f64::from(scale)))
            })
            .collect(),
    })
}

#[derive(Clone, Copy)]
struct Dims4 {
    c_in: usize,
    d_in: usize,
    c_out: usize,
    d_out: usize,
}

/// Turns the order-`n` pairs of `row` (`channels` blocks of `d`) by `n * angle`.
fn rotate<T: Real>(row: &mut [T], d: usize, angle: f64) {
    let order = d / 2;
    if order == 0 {
        return;
    }
    let cos_sin = |a: f64| (T::from_f64(libm::cos(a)), T::from_f64(libm::sin(a)));
    let mut cs = [(T::ZERO, T::ZERO); 8];
    for (n, c) in cs.iter_mut().enumerate().take(order.min(8)) {
        *c = cos_sin((n + 1) as f64 * angle);
    }
    for ch in row.chunks_exact_mut(d) {
        for n in 1..=order {
            let (c, s) = if n <= 8 {
                cs[n - 1]
            } else {
                cos_sin(n as f64 * angle)
            };
            let (x, y) = (ch[2 * n - 1], ch[2 * n]);
            ch[2 * n - 1] = c * x - s * y;
            ch[2 * n] = s * x + c * y;
        }
    }
}

/// The equivariant self-kernel (`[1 + 2s, c_in, c_out]`) of one vertex's features.
fn self_kernel<T: Real>(k: &[T], x: &[T], dims: Dims4, y: &mut [T]) {
    let Dims4 {
        c_in,
        d_in,
        c_out,
        d_out,
    } = dims;
    let shared = (d_in / 2).min(d_out / 2);
    let mat = |m: usize, ci: usize, co: usize| k[(m * c_in + ci) * c_out + co];
    for co in 0..c_out {
        let mut s = T::ZERO;
        for ci in 0..c_in {
            s += x[ci * d_in] * mat(0, ci, co);
        }
        y[co * d_out] = s;
        for n in 1..=shared {
            let (mut re, mut im) = (T::ZERO, T::ZERO);
            for ci in 0..c_in {
                let (xr, xi) = (x[ci * d_in + 2 * n - 1], x[ci * d_in + 2 * n]);
                let (wr, wi) = (mat(2 * n - 1, ci, co), mat(2 * n, ci, co));
                re += xr * wr - xi * wi;
                im += xr * wi + xi * wr;
            }
            y[co * d_out + 2 * n - 1] = re;
            y[co * d_out + 2 * n] = im;
        }
        for c in &mut y[co * d_out + 1 + 2 * shared..(co + 1) * d_out] {
            *c = T::ZERO;
        }
    }
}

/// One EMAN attention convolution over every vertex's 1-ring (`tether_models::eman::conv`
/// documents the equations).
fn eman_conv<T: Real>(
    x: &[T],
    g: &MeshGeometry,
    w: &EmanWeights<T>,
    dims: Dims4,
    heads: usize,
) -> Vec<T> {
    let EmanWeights {
        key,
        value,
        query,
        self_kernel: self_k,
        bias,
    } = w;
    let Dims4 {
        c_in,
        d_in,
        c_out,
        d_out,
    } = dims;
    let (win, wout) = (c_in * d_in, c_out * d_out);
    let v = g.vertex_count();
    let offsets = g.offsets();
    let edges = offsets[v] as usize;

    // Neighbour features transported into each edge's frame, then keys and values.
    let mut gathered = vec![T::ZERO; edges * win];
    for (p, &start) in offsets[..v].iter().enumerate() {
        for (j, &q) in g.neighbours(p).iter().enumerate() {
            let e = start as usize + j;
            let row = &mut gathered[e * win..(e + 1) * win];
            row.copy_from_slice(&x[q as usize * win..(q as usize + 1) * win]);
            rotate(row, d_in, g.transport()[e] - g.angles()[e]);
        }
    }
    let mut keys = linear(key, None, &gathered, edges, wout, win);
    let mut values = linear(value, None, &gathered, edges, wout, win);
    drop(gathered);
    for (e, &theta) in g.angles().iter().enumerate() {
        rotate(&mut keys[e * wout..(e + 1) * wout], d_out, theta);
        rotate(&mut values[e * wout..(e + 1) * wout], d_out, theta);
    }

    let per_head = wout / heads;
    let scale = T::from_f64(1.0 / libm::sqrt(per_head as f64));
    let mut out = vec![T::ZERO; v * wout];
    let mut q = vec![T::ZERO; wout];
    let mut scores = Vec::new();
    for p in 0..v {
        let xp = &x[p * win..(p + 1) * win];
        let y = &mut out[p * wout..(p + 1) * wout];
        self_kernel(query, xp, dims, &mut q);
        self_kernel(self_k, xp, dims, y);
        for co in 0..c_out {
            y[co * d_out] += bias[co];
        }
        let (start, end) = (offsets[p] as usize, offsets[p + 1] as usize);
        for h in 0..heads {
            let span = h * per_head..(h + 1) * per_head;
            scores.clear();
            let mut max = T::NEG_INFINITY;
            for e in start..end {
                let k = &keys[e * wout..(e + 1) * wout];
                let s = q[span.clone()]
                    .iter()
                    .zip(&k[span.clone()])
                    .map(|(&a, &b)| a * b)
                    .sum::<T>()
                    * scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut total = T::ZERO;
            for s in &mut scores {
                *s = (*s - max).exp();
                total += *s;
            }
            for (e, &s) in (start..end).zip(&scores) {
                let a = s.div(total);
                let val = &values[e * wout..(e + 1) * wout];
                for (o, &vv) in y[span.clone()].iter_mut().zip(&val[span.clone()]) {
                    *o += a * vv;
                }
            }
        }
    }
    out
}
