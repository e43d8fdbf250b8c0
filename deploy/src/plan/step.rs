//! The steps a plan runs, one per op, and the choice of which activations stay
//! transposed between sparse layers.

use alloc::borrow::Cow;

use super::layer::{Layer, Matrix};
use crate::format::{Binary, Dims, MAX_INPUTS, Model, PoolGeom, Unary};
use crate::kernels::conv::ConvShape;
use crate::kernels::implicit_conv::{Act, Mode};

#[derive(Clone, Debug)]
pub(super) enum Step<'a> {
    /// Rows of `lead` per sample (the leading axes of the input). A sparse layer on a
    /// batch reads `[in, batch]` (`in_t`: its input is already in that layout, else it
    /// transposes it) and writes `[out, batch]` when `out_t` (its readers take that
    /// layout), `[batch, out]` otherwise.
    Linear {
        layer: usize,
        lead: usize,
        in_t: bool,
        out_t: bool,
    },
    /// One layer per group (consecutive), `lead` images per sample; `act` applied to the
    /// output (a ReLU or Clip op fused into the convolution); `implicit`: the mode of the
    /// implicit AVX-512 product, whose packing the (one) layer holds; `residual`: the
    /// step's second input is added to the output before `act` (an Add fused into the
    /// convolution, `build::fused_residual`); `patch_free`: the
    /// groups run the portable patch-free kernel (`kernels::portable_conv`, no im2col
    /// scratch: the plan a microcontroller builds).
    Conv {
        first_layer: usize,
        groups: usize,
        shape: ConvShape,
        lead: usize,
        act: Act,
        implicit: Option<Mode>,
        patch_free: bool,
        residual: bool,
    },
    MaxPool {
        c: usize,
        h: usize,
        w: usize,
        geom: PoolGeom,
    },
    AvgPool {
        c: usize,
        h: usize,
        w: usize,
        geom: PoolGeom,
    },
    Copy,
    Relu,
    Sine(f32),
    Unary(Unary),
    Softmax {
        outer: usize,
        n: usize,
        inner: usize,
    },
    Binary {
        op: Binary,
        a: Dims,
        b: Dims,
        out: Dims,
    },
    MatMul {
        a: Dims,
        b: Dims,
    },
    Transpose {
        dims: Dims,
        perm: [usize; crate::format::MAX_RANK],
    },
    Concat {
        axis: usize,
    },
    Const(Cow<'a, [f32]>),
    Input(usize),
    Reduce {
        kind: crate::format::Reduce,
        dims: Dims,
        axes: u8,
    },
    Pad {
        dims: Dims,
        geom: crate::format::PadGeom,
    },
    Resize {
        dims: Dims,
        geom: crate::format::ResizeGeom,
    },
    /// `lead` images per sample; `weight` as `conv_transpose::transpose_weight` lays it
    /// out.
    ConvTranspose {
        weight: Cow<'a, [f32]>,
        bias: Option<Cow<'a, [f32]>>,
        shape: crate::kernels::conv_transpose::DeconvShape,
        lead: usize,
    },
    Where {
        c: Dims,
        a: Dims,
        b: Dims,
        out: Dims,
    },
}

#[derive(Clone, Debug)]
pub(super) struct Exec<'a> {
    pub(super) step: Step<'a>,
    /// The model node the step runs (an activation or Add fused into it is not counted).
    pub(super) node: usize,
    pub(super) inputs: [usize; MAX_INPUTS],
    pub(super) n_inputs: usize,
    pub(super) output: usize,
}

/// Chains of sparse linear layers on a batch keep their activations in the `[features,
/// batch]` layout `spmm` reads and writes, instead of transposing in and out at every
/// layer: a value is stored that way when its producer is such a layer (or an element-wise
/// op on such a value) and every reader is such a layer or an element-wise op whose output
/// is stored that way too. Element-wise ops do not care about the layout.
pub(super) fn transposed_chains(execs: &mut [Exec], layers: &[Layer], model: &Model, batch: usize) {
    if batch == 1 {
        return;
    }
    let n_values = model.shapes.len();
    let sparse_linear = |e: &Exec| match e.step {
        Step::Linear { layer, lead, .. } => {
            lead == 1 && matches!(layers[layer].weight, Matrix::Sparse(_))
        }
        _ => false,
    };
    let elementwise = |e: &Exec| {
        matches!(e.step, Step::Relu | Step::Sine(_) | Step::Unary(_))
            || (matches!(e.step, Step::Copy) && model.shapes[e.inputs[0]].as_slice().len() == 1)
    };
    // Backward: every reader takes the transposed layout.
    let mut readers_ok = alloc::vec![true; n_values];
    let mut read = alloc::vec![false; n_values];
    for &v in &model.outputs {
        readers_ok[v] = false;
    }
    for e in execs.iter().rev() {
        for &v in &e.inputs[..e.n_inputs] {
            read[v] = true;
            let ok = sparse_linear(e) || (elementwise(e) && readers_ok[e.output]);
            readers_ok[v] &= ok;
        }
    }
    // Forward: produced in that layout.
    let mut transposed = alloc::vec![false; n_values];
    for e in execs.iter_mut() {
        let v = e.output;
        let input_t = e.n_inputs > 0 && transposed[e.inputs[0]];
        let produces = if sparse_linear(e) {
            true
        } else {
            elementwise(e) && input_t
        };
        transposed[v] = produces && read[v] && readers_ok[v];
        if let Step::Linear { in_t, out_t, .. } = &mut e.step {
            *in_t = input_t;
            *out_t = transposed[v];
        }
    }
}
