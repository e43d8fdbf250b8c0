//! The small per-position networks of the codec (the auto-regressive model and the
//! synthesis): dense layers with ReLU between them, evaluated in `f32` in one fixed order
//! (bias first, then inputs in order), so the encoder's and the decoder's probabilities
//! are the same bits.

use alloc::vec;
use alloc::vec::Vec;

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
}
