//! Max pooling without padding or dilation as one autodiff operation on `Autodiff<Flex>`,
//! each window's argmax kept as one byte (its tap) for the backward pass. burn-flex 0.21
//! runs 2-D max pooling through its 3-D kernel with an `i64` index per output and per-tap
//! bounds checks, and scatters the gradient through those indices: 22% of a LeNet-5
//! training step (issue 33). Ties keep the first tap in row-major order and a NaN wins
//! only as a window's first value, as burn's kernel does.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::flex_op::AdFlex;
use super::simd::vectorized;

/// The sizes of one pooling: `x [batch, c, h, w]` in windows `[kh, kw]` every `[sy, sx]`
/// to `y [batch, c, oh, ow]`, `oh = (h - kh) / sy + 1` (floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    planes: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sy: usize,
    sx: usize,
    oh: usize,
    ow: usize,
}

impl Pool {
    /// The pooling of `x` dims, or `None` where this kernel does not apply (an empty
    /// window or stride, a window larger than the input, more than 256 taps).
    pub fn new(x: [usize; 4], kernel: [usize; 2], stride: [usize; 2]) -> Option<Self> {
        let [batch, c, h, w] = x;
        let [kh, kw] = kernel;
        let [sy, sx] = stride;
        if kh == 0 || kw == 0 || sy == 0 || sx == 0 || kh > h || kw > w || kh * kw > 256 {
            return None;
        }
        Some(Self {
            planes: batch * c,
            h,
            w,
            kh,
            kw,
            sy,
            sx,
            oh: (h - kh) / sy + 1,
            ow: (w - kw) / sx + 1,
        })
    }

    /// `(y, argmax)`: each window's maximum and its tap `i kw + j`.
    #[inline(always)]
    pub fn forward(&self, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
        let (hw, p) = (self.h * self.w, self.oh * self.ow);
        let mut y = vec![0.0f32; self.planes * p];
        let mut arg = vec![0u8; self.planes * p];
        let windows = y.chunks_exact_mut(p).zip(arg.chunks_exact_mut(p));
        for ((yp, ap), xp) in windows.zip(x.chunks_exact(hw)) {
            if (self.kh, self.kw, self.sy, self.sx) == (2, 2, 2, 2) {
                self.forward_2x2(xp, yp, ap);
                continue;
            }
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let at = oy * self.sy * self.w + ox * self.sx;
                    let (mut best, mut tap) = (xp[at], 0);
                    for i in 0..self.kh {
                        let row = &xp[at + i * self.w..][..self.kw];
                        for (j, &v) in row.iter().enumerate() {
                            if v > best {
                                (best, tap) = (v, i * self.kw + j);
                            }
                        }
                    }
                    yp[oy * self.ow + ox] = best;
                    ap[oy * self.ow + ox] = tap as u8;
                }
            }
        }
        (y, arg)
    }

    /// The 2x2 stride-2 windows of one plane (LeNet-5's), two input rows at a time.
    #[inline(always)]
    fn forward_2x2(&self, xp: &[f32], yp: &mut [f32], ap: &mut [u8]) {
        for oy in 0..self.oh {
            let r0 = &xp[2 * oy * self.w..][..2 * self.ow];
            let r1 = &xp[(2 * oy + 1) * self.w..][..2 * self.ow];
            let out = yp[oy * self.ow..][..self.ow].iter_mut();
            let taps = ap[oy * self.ow..][..self.ow].iter_mut();
            let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
            for ((y, a), (t, b)) in out.zip(taps).zip(pairs) {
                let (mut best, mut tap) = (t[0], 0u8);
                // Selects, not branches (which tap wins is unpredictable).
                for (k, v) in [(1, t[1]), (2, b[0]), (3, b[1])] {
                    let wins = v > best;
                    best = if wins { v } else { best };
                    tap = if wins { k } else { tap };
                }
                *y = best;
                *a = tap;
            }
        }
    }

    /// `dx`: each output's gradient added at its window's argmax.
    #[inline(always)]
    pub fn backward(&self, arg: &[u8], dy: &[f32]) -> Vec<f32> {
        let (hw, p) = (self.h * self.w, self.oh * self.ow);
        let mut dx = vec![0.0f32; self.planes * hw];
        let planes = dx.chunks_exact_mut(hw).zip(arg.chunks_exact(p));
        for ((dxp, ap), gp) in planes.zip(dy.chunks_exact(p)) {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let q = oy * self.ow + ox;
                    let tap = ap[q] as usize;
                    let (i, j) = (tap / self.kw, tap % self.kw);
                    dxp[(oy * self.sy + i) * self.w + ox * self.sx + j] += gp[q];
                }
            }
        }
        dx
    }
}

#[derive(Clone, Debug)]
struct Saved {
    pool: Pool,
    x_dims: [usize; 4],
    arg: Vec<u8>,
}

#[derive(Debug)]
struct MaxPool;

impl Backward<Flex, 1> for MaxPool {
    type State = Saved;
    fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let [Some(node)] = &ops.parents else {
            return;
        };
        let Saved { pool, x_dims, arg } = ops.state;
        let dy = dy
            .as_slice::<f32>()
            .expect("the pooling's gradient is made contiguous f32");
        let dx = vectorized(
            #[inline(always)]
            || pool.backward(&arg, dy),
        );
        let dx = FlexTensor::from_data(TensorData::new(dx, x_dims.to_vec()));
        grads.register::<Flex>(node.id, dx);
    }
}

/// `max_pool2d(x)` (no padding, no dilation, floor), or `None` when this kernel does not
/// apply (not f32, or see [`Pool::new`]).
pub fn max_pool2d(
    x: &Tensor<AdFlex, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Option<Tensor<AdFlex, 4>> {
    let x_dims = x.dims();
    let pool = Pool::new(x_dims, kernel, stride).filter(|_| x.dtype() == DType::F32)?;
    let x = x.clone().into_primitive().tensor();
    let xp = x.primitive.to_contiguous();
    let xs = xp
        .as_slice::<f32>()
        .expect("the pooling's input is made contiguous f32");
    let (y, arg) = vectorized(
        #[inline(always)]
        || pool.forward(xs),
    );
    let [batch, c, ..] = x_dims;
    let y = FlexTensor::from_data(TensorData::new(y, vec![batch, c, pool.oh, pool.ow]));
    let out = match MaxPool
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(Saved { pool, x_dims, arg }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}
