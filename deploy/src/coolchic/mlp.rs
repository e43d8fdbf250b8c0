//! The small per-position networks of the codec (the auto-regressive model and the
//! synthesis): dense layers with ReLU between them, evaluated in `f32` in one fixed order,
//! so the encoder's and the decoder's probabilities are the same bits.
//!
//! Two orders ([`SumOrder`]): the synthesis and the version-1 ARM sum bias first, then
//! the inputs in order ([`Mlp::forward`]); the version-2 ARM sums the inputs in eight
//! interleaved partial sums joined by a fixed tree ([`Mlp::forward_tree`]), whose
//! dependent chain is a quarter as long: the ARM runs once per latent, each run waiting
//! for the latent decoded just before it, so its latency is the entropy decoder's speed.

use alloc::vec;
use alloc::vec::Vec;

/// The order in which a layer sums its products: part of the file format for the ARM,
/// whose outputs decide the entropy decoder's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumOrder {
    /// `bias + w_0 x_0 + w_1 x_1 + ...`, left to right ([`Mlp::forward`]; format version 1).
    Sequential,
    /// `bias + T(p)` with `p_k = 0 + sum_{i = k mod 8} w_i x_i` (increasing `i`) and
    /// `T(p) = ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))` ([`Mlp::forward_tree`];
    /// format version 2).
    Tree,
}

/// Partial sums of [`SumOrder::Tree`].
pub const TREE_LANES: usize = 8;

/// [`SumOrder::Tree`]'s join of the eight partial sums.
#[inline(always)]
pub fn tree8(p: &[f32; TREE_LANES]) -> f32 {
    ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]))
}

/// One dense layer, `out = W x + b` with `W` row-major `[outputs][inputs]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// `outputs * inputs` weights.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// Dense layers with ReLU after every one but the last.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// The layers, first to last.
    pub layers: Vec<Dense>,
}

impl Mlp {
    /// Zero weights for the widths `inputs, hidden..., outputs`.
    pub fn zeros(inputs: usize, hidden: &[usize], outputs: usize) -> Self {
        let mut widths = vec![inputs];
        widths.extend_from_slice(hidden);
        widths.push(outputs);
        let layers = widths
            .windows(2)
            .map(|w| Dense {
                inputs: w[0],
                outputs: w[1],
                weight: vec![0.0; w[0] * w[1]],
                bias: vec![0.0; w[1]],
            })
            .collect();
        Self { layers }
    }

    /// Widest layer (the scratch each buffer needs).
    pub fn max_width(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.inputs.max(l.outputs))
            .max()
            .unwrap_or(0)
    }

    /// Multiply-accumulates per evaluation.
    pub fn macs(&self) -> usize {
        self.layers.iter().map(|l| l.inputs * l.outputs).sum()
    }

    /// Evaluates on `x`, the result in `out` (`a` and `b`: scratch of [`Mlp::max_width`]).
    pub fn forward<'s>(&self, x: &[f32], a: &'s mut [f32], b: &'s mut [f32]) -> &'s [f32] {
        let (mut src, mut dst) = (a, b);
        src[..x.len()].copy_from_slice(x);
        let last = self.layers.len() - 1;
        for (k, l) in self.layers.iter().enumerate() {
            for ((d, row), &bias) in dst
                .iter_mut()
                .zip(l.weight.chunks_exact(l.inputs))
                .zip(&l.bias)
            {
                let mut acc = bias;
                for (w, v) in row.iter().zip(&src[..l.inputs]) {
                    acc += w * v;
                }
                *d = if k < last && acc < 0.0 { 0.0 } else { acc };
            }
            core::mem::swap(&mut src, &mut dst);
        }
        &src[..self.layers[last].outputs]
    }

    /// [`Mlp::forward`] in [`SumOrder::Tree`]: the reference every faster evaluation of the
    /// version-2 ARM must match bit for bit.
    pub fn forward_tree<'s>(&self, x: &[f32], a: &'s mut [f32], b: &'s mut [f32]) -> &'s [f32] {
        let (mut src, mut dst) = (a, b);
        src[..x.len()].copy_from_slice(x);
        let last = self.layers.len() - 1;
        for (k, l) in self.layers.iter().enumerate() {
            for ((d, row), &bias) in dst
                .iter_mut()
                .zip(l.weight.chunks_exact(l.inputs.max(1)))
                .zip(&l.bias)
            {
                let mut p = [0.0f32; TREE_LANES];
                for (i, (w, v)) in row.iter().zip(&src[..l.inputs]).enumerate() {
                    p[i % TREE_LANES] += w * v;
                }
                let acc = bias + tree8(&p);
                *d = if k < last && acc < 0.0 { 0.0 } else { acc };
            }
            core::mem::swap(&mut src, &mut dst);
        }
        &src[..self.layers[last].outputs]
    }

    /// [`Mlp::forward`] or [`Mlp::forward_tree`], as `order` says.
    pub fn forward_in<'s>(
        &self,
        order: SumOrder,
        x: &[f32],
        a: &'s mut [f32],
        b: &'s mut [f32],
    ) -> &'s [f32] {
        match order {
            SumOrder::Sequential => self.forward(x, a, b),
            SumOrder::Tree => self.forward_tree(x, a, b),
        }
    }
}
