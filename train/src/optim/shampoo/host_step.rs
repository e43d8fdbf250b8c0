//! Shampoo's step on the host for CPU backends (flex, ndarray): the same equations as
//! [`super::step`] (the module docs list them), computed on the parameter's values in place.
//!
//! Why (issue 33: Shampoo's step at most 1.10x Adam's at batch 128 on LeNet-5):
//! - nothing recomputed: one pass over the block updates the filtered gradient and the
//!   grafted method's statistics and sums the grafted direction's squared norm (the tensor
//!   path builds the grafted direction as a tensor to take its norm), one pass sums the
//!   preconditioned block's norm, one pass applies the graft scale, decay and momentum;
//! - the factor statistics on the lower triangle only, and the mode products without
//!   transposes ([`super::kernels`]);
//! - no allocation for the state: on a CPU backend a uniquely held tensor's buffer is
//!   handed out and back without a copy (burn-flex's `into_data` / `from_data`).
//!
//! The equivalence with the tensor path is tested in [`super::tests`].

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::blocking::Block;
use super::config::Grafting;
use super::error::ShampooError;
use super::host::host_values;
use super::kernels::{precondition, runs, sum_squares, update_factor};
use super::step::{BlockAt, BlockState, GRAFT_NORM_FLOOR, Shampoo, ShampooState};

fn to_tensor<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// One block's state on the host (see [`BlockState`]).
struct HostBlock {
    factors: Vec<Vec<f32>>,
    roots: Vec<Vec<f32>>,
    graft: Option<Vec<f32>>,
    filtered: Option<Vec<f32>>,
    momentum: Option<Vec<f32>>,
}

impl HostBlock {
    fn take<B: Backend>(st: &mut BlockState<B>) -> Self {
        let vecs =
            |v: &mut Vec<Tensor<B, 2>>| std::mem::take(v).into_iter().map(host_values).collect();
        Self {
            factors: vecs(&mut st.factors),
            roots: vecs(&mut st.roots),
            graft: st.graft.take().map(host_values),
            filtered: st.filtered.take().map(host_values),
            momentum: st.momentum.take().map(host_values),
        }
    }

    fn put_back<B: Backend>(self, st: &mut BlockState<B>, block: &Block, device: &B::Device) {
        let n = block.numel();
        let square = |v: Vec<Vec<f32>>| {
            v.into_iter()
                .zip(&block.shape)
                .map(|(m, &d)| to_tensor(m, [d, d], device))
                .collect()
        };
        st.factors = square(self.factors);
        st.roots = square(self.roots);
        st.graft = self.graft.map(|v| to_tensor(v, [n], device));
        st.filtered = self.filtered.map(|v| to_tensor(v, [n], device));
        st.momentum = self.momentum.map(|v| to_tensor(v, [n], device));
    }
}

impl Shampoo {
    /// One parameter's step on the host: `Err` leaves the parameter as it was (returned
    /// with the error); the state may then hold the failed step's statistics, and the
    /// health handle stops every later step.
    pub(super) fn step_host<B: Backend, const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: &mut ShampooState<B>,
        t: usize,
    ) -> Result<Tensor<B, D>, (ShampooError, Tensor<B, D>)> {
        let shape = tensor.dims();
        let device = tensor.device();
        let plan = self.plan(&shape);
        let grad = self.with_l2(grad, &tensor);
        let g = host_values(grad);
        // Finite entries only (as the tensor path's check, without its f32 sum overflowing).
        if g.iter().any(|v| !v.is_finite()) {
            let e = ShampooError::NonFiniteGradient {
                shape: shape.to_vec(),
                step: t,
            };
            return Err((e, tensor));
        }
        let mut w = host_values(tensor);
        let decay = self.config().weight_decay != 0.0 && self.config().decoupled_weight_decay;
        let mut dir = if plan.is_single() {
            let at = BlockAt {
                block: &plan.blocks[0],
                step: t,
                shape: &shape,
                index: 0,
            };
            let st = state.blocks[0]
                .as_mut()
                .expect("a single-device state holds every block");
            self.block_direction_host(st, at, g, decay.then_some(w.as_slice()), &device)
        } else {
            let mut dir = vec![0.0; w.len()];
            let mut result = Ok(());
            for (i, block) in plan.blocks.iter().enumerate() {
                let gather = |src: &[f32]| {
                    let mut out = vec![0.0; block.numel()];
                    runs(&plan.merged, block, |s, d, n| {
                        out[d..d + n].copy_from_slice(&src[s..s + n])
                    });
                    out
                };
                let wb = decay.then(|| gather(&w));
                let at = BlockAt {
                    block,
                    step: t,
                    shape: &shape,
                    index: i,
                };
                let st = state.blocks[i]
                    .as_mut()
                    .expect("a single-device state holds every block");
                match self.block_direction_host(st, at, gather(&g), wb.as_deref(), &device) {
                    Ok(p) => runs(&plan.merged, block, |s, d, n| {
                        dir[s..s + n].copy_from_slice(&p[d..d + n])
                    }),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            result.map(|()| dir)
        };
        match dir.as_mut() {
            Ok(dir) => {
                let lr = lr as f32;
                for (w, d) in w.iter_mut().zip(dir.iter()) {
                    *w -= lr * d;
                }
                Ok(to_tensor(w, shape, &device))
            }
            Err(e) => Err((e.clone(), to_tensor(w, shape, &device))),
        }
    }

    /// One block's direction `P` (after grafting, decoupled decay and momentum) from its raw
    /// gradient `g` and, for decoupled decay, its values `w`.
    pub(super) fn block_direction_host<B: Backend>(
        &self,
        st: &mut BlockState<B>,
        at: BlockAt<'_>,
        g: Vec<f32>,
        w: Option<&[f32]>,
        device: &B::Device,
    ) -> Result<Vec<f32>, ShampooError> {
        let mut hb = HostBlock::take(st);
        let result = self.host_direction(&mut hb, &mut st.failed_computations, at, g, w);
        hb.put_back(st, at.block, device);
        result
    }

    fn host_direction(
        &self,
        hb: &mut HostBlock,
        failed: &mut usize,
        at: BlockAt<'_>,
        g: Vec<f32>,
        w: Option<&[f32]>,
    ) -> Result<Vec<f32>, ShampooError> {
        let c = self.config();
        let t = at.step;
        let n = g.len();
        let shape = &at.block.shape;
        // 2. The factors from the raw gradient.
        let (beta2, alpha) = if c.beta2 == 1.0 {
            (1.0, 1.0)
        } else {
            (c.beta2 as f32, (1.0 - c.beta2) as f32)
        };
        for (k, l) in hb.factors.iter_mut().enumerate() {
            update_factor(l, &g, shape, k, beta2, alpha);
        }
        // 3. Inverse roots when due.
        let start = c.start_step();
        if (t.is_multiple_of(c.precondition_frequency) && t > start) || t == start {
            let new = self.roots_from_lower(&hb.factors, shape, failed, at)?;
            for (r, new) in hb.roots.iter_mut().zip(new) {
                if let Some(new) = new {
                    *r = new;
                }
            }
        }
        // 4. and 2. (grafting) in one pass: the filtered gradient into `g_bar`, the grafted
        // method's statistics, and the grafted direction's squared norm (kept as the
        // direction itself before preconditioning starts).
        let graft_only = t < start && c.grafting.is_some();
        let mut g = g;
        let mut g_bar = vec![0.0f32; n];
        self.filter_and_graft(hb, &mut g, &mut g_bar, t);
        // 5. The direction, grafted (`g` now holds the grafted direction).
        let dir = if graft_only {
            g
        } else {
            let graft_norm = sum_squares(&g).sqrt() as f32;
            let mut dir = g_bar;
            precondition(&mut dir, &mut g, shape, &hb.roots);
            if c.grafting.is_some() {
                let p_norm = sum_squares(&dir).sqrt() as f32;
                let scale = graft_norm / (p_norm + GRAFT_NORM_FLOOR as f32);
                for v in &mut dir {
                    *v *= scale;
                }
            }
            dir
        };
        let mut dir = dir;
        // 6. Decoupled decay and momentum.
        if let Some(w) = w {
            let wd = c.weight_decay as f32;
            for (d, &w) in dir.iter_mut().zip(w) {
                *d += wd * w;
            }
        }
        if c.momentum != 0.0 {
            let (mu, damp) = (c.momentum as f32, 1.0 - c.dampening as f32);
            let m = hb.momentum.get_or_insert_with(|| vec![0.0; n]);
            for (d, m) in dir.iter_mut().zip(m.iter_mut()) {
                *m = mu * *m + damp * *d;
                *d = if c.nesterov { damp * *d + mu * *m } else { *m };
            }
        }
        Ok(dir)
    }

    /// The filtered gradient `g_bar` (step 4) and the grafted method's statistics from the
    /// raw gradient `g`, which is then overwritten with the grafted direction (`g_bar`
    /// preconditioned by the grafted method). Branch-free loops (they vectorize); a
    /// division by a bias of 1 is exact, so it stands for no correction.
    fn filter_and_graft(&self, hb: &mut HostBlock, g: &mut [f32], g_bar: &mut [f32], t: usize) {
        let c = self.config();
        if c.beta1 != 0.0 {
            // The coefficients rounded from f64 once, as the tensor path's scalars are.
            let (b1, nb1) = (c.beta1 as f32, (1.0 - c.beta1) as f32);
            let (b3, nb3) = (c.beta3() as f32, (1.0 - c.beta3()) as f32);
            let bias = if c.bias_correction {
                (1.0 - c.beta3() * c.beta1.powi(t as i32 - 1)) as f32
            } else {
                1.0
            };
            let f = hb.filtered.get_or_insert_with(|| vec![0.0; g.len()]);
            let rows = f.iter_mut().zip(g.iter()).zip(g_bar.iter_mut());
            if b3 != b1 {
                for ((f, &g), gb) in rows {
                    let old = *f;
                    *f = old * b1 + g * nb1;
                    *gb = (old * b3 + g * nb3) / bias;
                }
            } else {
                for ((f, &g), gb) in rows {
                    *f = *f * b1 + g * nb1;
                    *gb = *f / bias;
                }
            }
        } else {
            g_bar.copy_from_slice(g);
        }
        // The grafted direction is g_bar / (sqrt(v / bc) + eps), bc = 1 but for Adam;
        // AdaGrad sums the squares, RMSProp and Adam take an EMA.
        let (ema, bc, eps) = match (c.grafting, hb.graft.as_ref()) {
            (Some(Grafting::AdaGrad { epsilon }), Some(_)) => (None, 1.0, epsilon),
            (Some(Grafting::RmsProp { beta2, epsilon }), Some(_)) => (Some(beta2), 1.0, epsilon),
            (Some(Grafting::Adam { beta2, epsilon }), Some(_)) => {
                (Some(beta2), 1.0 - beta2.powi(t as i32), epsilon)
            }
            _ => {
                // SGD grafting (or none): g_bar itself.
                g.copy_from_slice(g_bar);
                return;
            }
        };
        let (bc, eps) = (bc as f32, eps as f32);
        let v = hb.graft.as_mut().expect("matched above");
        let rows = v.iter_mut().zip(g.iter_mut()).zip(g_bar.iter());
        match ema {
            None => {
                for ((v, g), &gb) in rows {
                    *v += *g * *g;
                    *g = gb / ((*v / bc).sqrt() + eps);
                }
            }
            Some(beta2) => {
                let (decay, add) = (beta2 as f32, (1.0 - beta2) as f32);
                for ((v, g), &gb) in rows {
                    *v = *v * decay + *g * *g * add;
                    *g = gb / ((*v / bc).sqrt() + eps);
                }
            }
        }
    }
}
