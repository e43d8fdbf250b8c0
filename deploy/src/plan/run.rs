//! [`Plan::run`]: each step's kernel called on its buffers in the arena.

use core::ops::Range;

use super::arena::split;
use super::build::Plan;
use super::layer::{Batch1, Layer, Matrix};
use super::step::{Exec, Step};
use crate::error::Error;
use crate::format::{Dims, MAX_INPUTS};
use crate::kernels::{
    activation, block, conv, dense, depthwise_choice, direct_conv, implicit_conv, layout, packed,
    pool, portable_conv, sell, sparse, sparse_conv,
};
use crate::kernels::{conv_transpose, resize, select};

impl<'a> Plan<'a> {
    /// Runs a batch of `input.len() / per-sample size` samples (at most the plan's batch),
    /// row-major; returns the outputs, one row per sample. For a model of one input.
    pub fn run(&mut self, input: &[f32]) -> Result<&[f32], Error> {
        if self.model.inputs.len() != 1 {
            return Err(Error::BadOptions(
                "the model has several inputs: use run_inputs",
            ));
        }
        self.run_inputs(&[input])
    }

    /// Runs a batch on a model of several inputs: `inputs[i]` holds the samples of input
    /// `i`, each input the same number of samples. Returns output 0.
    pub fn run_inputs(&mut self, inputs: &[&[f32]]) -> Result<&[f32], Error> {
        let n = self.execute(inputs, &mut |_| {})?;
        Ok(&self.arena[self.output_range(self.model.output, n)])
    }

    /// [`Plan::run_inputs`], returning every output of the model (in the model's output
    /// order), each with one row per sample.
    pub fn run_outputs(&mut self, inputs: &[&[f32]]) -> Result<alloc::vec::Vec<&[f32]>, Error> {
        let n = self.execute(inputs, &mut |_| {})?;
        Ok(self
            .model
            .outputs
            .iter()
            .map(|&v| &self.arena[self.output_range(v, n)])
            .collect())
    }

    /// Where value `v` (batched) of a run of `n` samples lies in the arena.
    fn output_range(&self, v: usize, n: usize) -> Range<usize> {
        self.offsets[v]..self.offsets[v] + n * self.sizes[v]
    }

    /// [`Plan::run_inputs`], calling `after_step(i)` as soon as step `i` of
    /// [`Plan::steps`] has run: a profiler reads its clock there (`tether-deploy bench
    /// --per-node`); the plan itself keeps no clock, so that it builds without `std`.
    ///
    /// # Errors
    /// As [`Plan::run_inputs`].
    pub fn run_observed(
        &mut self,
        inputs: &[&[f32]],
        after_step: &mut dyn FnMut(usize),
    ) -> Result<(), Error> {
        self.execute(inputs, after_step).map(|_| ())
    }

    /// Runs the steps on a batch, `after_step` called after each; returns its number of
    /// samples.
    fn execute(
        &mut self,
        inputs: &[&[f32]],
        after_step: &mut dyn FnMut(usize),
    ) -> Result<usize, Error> {
        let per = self.sizes[0];
        let input = inputs.first().copied().unwrap_or(&[]);
        let n = input.len() / per;
        if inputs.len() != self.model.inputs.len() {
            return Err(Error::BadOptions("wrong number of model inputs"));
        }
        for (&x, &v) in inputs.iter().zip(&self.model.inputs) {
            let per = self.sizes[v];
            if x.is_empty() || x.len() != n * per || n > self.batch {
                return Err(Error::InputLength {
                    per_sample: per,
                    max_batch: self.batch,
                    got: x.len(),
                });
            }
        }
        let Self {
            layers,
            execs,
            offsets,
            sizes,
            arena,
            scratch,
            model,
            ..
        } = self;
        let batched = &model.batched;
        arena[offsets[0]..offsets[0] + input.len()].copy_from_slice(input);
        let range = |v: usize| {
            let count = if batched[v] { n } else { 1 };
            offsets[v]..offsets[v] + count * sizes[v]
        };
        for (i, e) in execs.iter().enumerate() {
            let mut ins: [Range<usize>; MAX_INPUTS] = Default::default();
            for (r, &v) in ins.iter_mut().zip(&e.inputs[..e.n_inputs]) {
                *r = range(v);
            }
            let (y, xs) = split(arena, range(e.output), &ins);
            let ctx = Ctx {
                n: if batched[e.output] { n } else { 1 },
                sizes,
                batched,
                inputs: &e.inputs[..e.n_inputs],
                output: e.output,
                shapes: &model.shapes,
            };
            if let Step::Input(k) = e.step {
                y.copy_from_slice(inputs[k]);
            } else {
                run_step(e, &ctx, layers, scratch, &xs[..e.n_inputs], y);
            }
            after_step(i);
        }
        Ok(n)
    }
}

/// What a step needs to know about its values.
struct Ctx<'c> {
    /// Samples the output holds (1 for a constant).
    n: usize,
    sizes: &'c [usize],
    batched: &'c [bool],
    inputs: &'c [usize],
    output: usize,
    shapes: &'c [Dims],
}

impl Ctx<'_> {
    /// Sample `b` of input `i` (the only copy of a constant).
    fn sample<'x>(&self, x: &'x [f32], i: usize, b: usize) -> &'x [f32] {
        let v = self.inputs[i];
        let s = self.sizes[v];
        if self.batched[v] {
            &x[b * s..(b + 1) * s]
        } else {
            &x[..s]
        }
    }
}

fn run_step(
    e: &Exec,
    ctx: &Ctx,
    layers: &[Layer],
    scratch: &mut [f32],
    xs: &[&[f32]],
    y: &mut [f32],
) {
    let n = ctx.n;
    let out_size = ctx.sizes[ctx.output];
    let x = xs.first().copied().unwrap_or(&[]);
    match &e.step {
        &Step::Linear {
            layer,
            lead,
            in_t,
            out_t,
        } => {
            let l = &layers[layer];
            let bias = l.bias.as_deref();
            let rows = n * lead;
            match &l.weight {
                Matrix::Dense(w) => dense::linear(w, bias, x, rows, l.rows, l.cols, y),
                Matrix::Packed(w) => packed::linear(w, bias, x, rows, l.rows, l.cols, y),
                Matrix::Sparse(s) if rows == 1 => {
                    match &l.batch1 {
                        Some(Batch1::Sell(a)) => sell::spmv(a, bias, x, y),
                        Some(Batch1::Blocks(a)) => block::spmv(a, bias, x, y),
                        None => sparse::spmv(&s.view(), bias, x, y),
                    }
                    // A NaN or an infinity facing a pruned weight: NaN, as in the dense
                    // product (every kernel choice computes the same model).
                    sparse::match_dense_on_non_finite(&s.view(), bias, x, 1, y, 1, 0);
                }
                Matrix::Sparse(s) => {
                    let t: &[f32] = if in_t {
                        x
                    } else {
                        let t = &mut scratch[..l.cols * rows];
                        sparse::transpose(x, rows, l.cols, t);
                        t
                    };
                    let (rs, cs) = if out_t { (rows, 1) } else { (1, l.rows) };
                    sparse::spmm(&s.view(), bias, t, rows, y, rs, cs);
                    sparse::match_dense_on_non_finite(&s.view(), bias, t, rows, y, rs, cs);
                }
            }
        }
        &Step::Conv {
            first_layer,
            groups,
            shape,
            lead,
            act,
            implicit,
            patch_free,
            residual,
        } => {
            let (oh, ow) = shape.out();
            let residual = residual.then(|| xs[1]);
            if let (Some(mode), Matrix::Packed(w)) = (implicit, &layers[first_layer].weight) {
                // Dense, one group, AVX-512: the implicit product over the whole batch.
                let l = &layers[first_layer];
                let (bias, images) = (l.bias.as_deref(), n * lead);
                let y = &mut y[..n * out_size];
                implicit_conv::conv(
                    w, l.rows, bias, act, residual, x, images, &shape, mode, scratch, y,
                );
                return;
            }
            if let (Matrix::Sparse(s), Some(d)) =
                (&layers[first_layer].weight, &layers[first_layer].planes)
            {
                // Sparse, one group, AVX-512: the direct kernel over the whole batch.
                let l = &layers[first_layer];
                let (bias, images) = (l.bias.as_deref(), n * lead);
                let y = &mut y[..n * out_size];
                sparse_conv::conv(
                    &s.view(),
                    d,
                    bias,
                    act,
                    residual,
                    x,
                    images,
                    &shape,
                    scratch,
                    y,
                );
                return;
            }
            let p = oh * ow;
            let in_img = groups * shape.c * shape.h * shape.w;
            let in_group = shape.c * shape.h * shape.w;
            let out_img = out_size / lead;
            // Depthwise (one input channel per group), dense: the direct kernel.
            let depthwise = shape.c == 1
                && groups > 1
                && layers[first_layer..first_layer + groups]
                    .iter()
                    .all(|l| matches!(l.weight, Matrix::Dense(_)));
            let taps = depthwise.then(|| conv::DepthwiseTaps::new(&shape));
            if depthwise
                && layers[first_layer..first_layer + groups]
                    .iter()
                    .all(|l| l.rows == 1)
            {
                // One output channel per group: every channel of every image in one call.
                let weight = |g: usize| {
                    let l = &layers[first_layer + g];
                    let Matrix::Dense(w) = &l.weight else {
                        unreachable!("checked dense above")
                    };
                    (&w[..], l.bias.as_deref().map_or(0.0, |b| b[0]))
                };
                let images = n * lead;
                let taps = taps.as_ref().expect("depthwise");
                depthwise_choice::run(x, images, groups, &weight, &shape, taps, act, scratch, y);
                return;
            }
            for b in 0..n * lead {
                let xb = &x[b * in_img..(b + 1) * in_img];
                let yb = &mut y[b * out_img..(b + 1) * out_img];
                if depthwise {
                    for g in 0..groups {
                        let l = &layers[first_layer + g];
                        let Matrix::Dense(w) = &l.weight else {
                            unreachable!("checked dense above")
                        };
                        let xg = &xb[g * in_group..(g + 1) * in_group];
                        for r in 0..l.rows {
                            let bias = l.bias.as_deref().map_or(0.0, |b| b[r]);
                            let at = (g * l.rows + r) * p;
                            let wr = &w[r * l.cols..(r + 1) * l.cols];
                            conv::depthwise(
                                xg,
                                1,
                                1,
                                &|_| (wr, bias),
                                &shape,
                                taps.as_ref().expect("depthwise"),
                                act,
                                scratch,
                                &mut yb[at..at + p],
                            );
                        }
                    }
                    continue;
                }
                for g in 0..groups {
                    let l = &layers[first_layer + g];
                    let bias = l.bias.as_deref();
                    let xg = &xb[g * in_group..(g + 1) * in_group];
                    let yg = &mut yb[g * l.rows * p..(g + 1) * l.rows * p];
                    if patch_free {
                        match &l.weight {
                            Matrix::Dense(w) => {
                                portable_conv::dense(w, bias, l.rows, xg, &shape, yg)
                            }
                            Matrix::Sparse(s) => {
                                portable_conv::sparse(&s.view(), bias, xg, &shape, yg)
                            }
                            Matrix::Packed(_) => unreachable!("packed: one group, run above"),
                        }
                        continue;
                    }
                    // The sparse kernels skip pruned weights; where the image holds a NaN or
                    // an infinity, the outputs are made the dense product's (see
                    // `sparse::match_dense_on_non_finite`), stated on the patch matrix.
                    // Padded cells are zeros, so checking the image is enough.
                    let non_finite =
                        matches!(l.weight, Matrix::Sparse(_)) && !sparse::all_finite(xg);
                    if let (Matrix::Sparse(s), Some(d)) = (&l.weight, &l.direct) {
                        direct_conv::conv(&s.view(), d, bias, xg, &shape, yg);
                        if non_finite {
                            let cols: &[f32] = if shape.is_pointwise() {
                                xg
                            } else {
                                let c = &mut scratch[..shape.patch() * p];
                                conv::im2col(xg, &shape, c);
                                c
                            };
                            let a = s.view();
                            sparse::match_dense_on_non_finite(&a, bias, cols, p, yg, p, 1);
                        }
                        continue;
                    }
                    let cols: &[f32] = if shape.is_pointwise() {
                        xg
                    } else {
                        let c = &mut scratch[..shape.patch() * p];
                        conv::im2col(xg, &shape, c);
                        c
                    };
                    match &l.weight {
                        Matrix::Dense(w) => {
                            dense::matmul_rows(w, bias, cols, l.rows, l.cols, p, yg)
                        }
                        Matrix::Sparse(s) => {
                            sparse::spmm(&s.view(), bias, cols, p, yg, p, 1);
                            if non_finite {
                                let a = s.view();
                                sparse::match_dense_on_non_finite(&a, bias, cols, p, yg, p, 1);
                            }
                        }
                        Matrix::Packed(_) => unreachable!("packed: one group, run above"),
                    }
                }
            }
            if !depthwise {
                let y = &mut y[..n * out_size];
                if let Some(r) = residual {
                    // The fused Add (one group, the plan checked the shapes).
                    for (y, r) in y.iter_mut().zip(r) {
                        *y += r;
                    }
                }
                implicit_conv::activate_in_place(y, act);
            }
        }
        Step::MaxPool { c, h, w, geom } | Step::AvgPool { c, h, w, geom } => {
            let in_size = ctx.sizes[ctx.inputs[0]];
            let max = matches!(e.step, Step::MaxPool { .. });
            for b in 0..n {
                let xb = &x[b * in_size..(b + 1) * in_size];
                let yb = &mut y[b * out_size..(b + 1) * out_size];
                if max {
                    pool::max_pool2d(xb, *c, *h, *w, geom, yb);
                } else {
                    pool::avg_pool2d(xb, *c, *h, *w, geom, yb);
                }
            }
        }
        Step::Copy => y.copy_from_slice(x),
        Step::Relu => activation::relu(x, y),
        &Step::Sine(w0) => activation::sine(x, w0, y),
        &Step::Unary(f) => activation::unary(f, x, y),
        &Step::Softmax { outer, n: m, inner } => {
            for b in 0..n {
                activation::softmax_strided(
                    &x[b * out_size..(b + 1) * out_size],
                    outer,
                    m,
                    inner,
                    &mut y[b * out_size..(b + 1) * out_size],
                );
            }
        }
        &Step::Binary { op, a, b, out } => {
            for s in 0..n {
                layout::binary(
                    op,
                    ctx.sample(xs[0], 0, s),
                    a.as_slice(),
                    ctx.sample(xs[1], 1, s),
                    b.as_slice(),
                    out.as_slice(),
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        &Step::MatMul { a, b } => {
            for s in 0..n {
                layout::matmul(
                    ctx.sample(xs[0], 0, s),
                    a.as_slice(),
                    ctx.sample(xs[1], 1, s),
                    b.as_slice(),
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Transpose { dims, perm } => {
            let in_size = dims.numel();
            for s in 0..n {
                layout::transpose(
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    &perm[..dims.as_slice().len()],
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        &Step::Concat { axis } => {
            for s in 0..n {
                let mut parts: [(&[f32], &[usize]); MAX_INPUTS] = [(&[], &[]); MAX_INPUTS];
                for (i, part) in parts.iter_mut().enumerate().take(ctx.inputs.len()) {
                    *part = (
                        ctx.sample(xs[i], i, s),
                        ctx.shapes[ctx.inputs[i]].as_slice(),
                    );
                }
                layout::concat(
                    &parts[..ctx.inputs.len()],
                    axis,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Const(d) => y.copy_from_slice(d),
        Step::Input(_) => {}
        &Step::Reduce { kind, dims, axes } => {
            let in_size = dims.numel();
            for s in 0..n {
                layout::reduce(
                    kind,
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    axes,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Resize { dims, geom } => {
            let in_size = dims.numel();
            for s in 0..n {
                resize::resize(
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    geom,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::ConvTranspose {
            weight,
            bias,
            shape,
            lead,
        } => {
            let in_img = shape.c_in * shape.h * shape.w;
            let out_img = out_size / lead;
            for b in 0..n * lead {
                conv_transpose::conv_transpose_gemm(
                    &x[b * in_img..(b + 1) * in_img],
                    weight,
                    bias.as_deref(),
                    shape,
                    scratch,
                    &mut y[b * out_img..(b + 1) * out_img],
                );
            }
        }
        &Step::Where { c, a, b, out } => {
            for s in 0..n {
                select::select(
                    (ctx.sample(xs[0], 0, s), c.as_slice()),
                    (ctx.sample(xs[1], 1, s), a.as_slice()),
                    (ctx.sample(xs[2], 2, s), b.as_slice()),
                    out.as_slice(),
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
        Step::Pad { dims, geom } => {
            let in_size = dims.numel();
            for s in 0..n {
                layout::pad(
                    &x[s * in_size..(s + 1) * in_size],
                    dims.as_slice(),
                    geom,
                    &mut y[s * out_size..(s + 1) * out_size],
                );
            }
        }
    }
}
