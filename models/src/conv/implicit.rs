//! The forward product of one-group convolutions through tether-deploy's implicit-GEMM
//! kernel (`tether_deploy::kernels::implicit_conv`, AVX-512F): the input copied once into
//! zero-padded stride-phase planes and multiplied in place by 8-channel x 48-column
//! register tiles (cuDNN's "implicit GEMM", Chetlur et al. 2014; a 1x1 kernel reads its
//! patch matrix), the bias, residual and ReLU applied to the tile in registers. The im2col path ([`super::gemm_conv`]) copies
//! each input value `kh kw` times and ran the small ResNet's 16-64-channel products at
//! about half of PyTorch's forward speed (issue 33's profile); the same kernel serves
//! inference, so training and deployment share it.
//!
//! The ReLU here is `max(0, v)` as AVX-512's `vmaxps` computes it, so a NaN stays NaN
//! where [`super::epilogue`]'s (burn's) turns it into 0; either way the step's loss or
//! gradients are not finite once a NaN reaches a convolution's sum.
//!
//! With rayon (more than one thread) the batch is split into one part per thread, each
//! part a whole call of the kernel with its own scratch.

use tether_deploy::kernels::conv::ConvShape;
use tether_deploy::kernels::implicit_conv::{self, Act, Mode};

use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::parts;

/// Whether `geo` runs here: one group, a CPU with AVX-512F, and either a 1x1 kernel (the
/// patch matrix, no wasted columns) or phase planes that compute at most 1.2x the outputs.
/// The planes compute every column of a zero-padded phase row: 30x30 for a 28x28 output
/// (1.15x), 16x16 for 14x14 (1.31x), 9x9 for 7x7 (1.65x). In the small ResNet's step
/// (one thread, the same binary with and without, two interleaved profiles each) the
/// kernel took the stem's forward from 4.1 to 1.4 CPU ms, the two 16->16 28x28 layers'
/// from 18.1 to 17.2 and their input gradients from 11.8 to 8.4, while the 14x14 and 7x7
/// layers' forwards went from 6.9 to 8.9 and from 5.2 to 7.3 ms: im2col and faer keep
/// those.
pub fn applies(geo: &Geometry) -> bool {
    if !runs(geo) {
        return false;
    }
    if geo.kh * geo.kw == 1 {
        return true;
    }
    let [sy, sx] = geo.stride;
    let ph = (geo.h + 2 * geo.pad[0]).div_ceil(sy);
    let pw = (geo.w + 2 * geo.pad[1]).div_ceil(sx);
    5 * ph * pw <= 6 * geo.oh * geo.ow
}

/// Whether the kernel can run `geo` at all: one group, a CPU with AVX-512F.
fn runs(geo: &Geometry) -> bool {
    geo.groups == 1 && geo.batch > 0 && implicit_conv::available()
}

fn shape(geo: &Geometry) -> ConvShape {
    ConvShape {
        c: geo.c_in,
        h: geo.h,
        w: geo.w,
        k: [geo.kh, geo.kw],
        stride: geo.stride,
        pads: [geo.pad[0], geo.pad[1], geo.pad[0], geo.pad[1]],
        dilation: geo.dil,
    }
}

std::thread_local! {
    /// The kernel's scratch (phase planes or patch matrix), reused across calls so that
    /// no call pays for fresh zeroed pages.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch buffer of at least `len` floats (contents arbitrary).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else {
            return f(&mut vec![0.0; len]);
        };
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// The kernel's mode for training's shapes: the phase planes, or the patch matrix for
/// 1x1 kernels (no taps to share a plane) and kernels of more taps than the planes take.
/// Measured at batch 128 on the small ResNet's and LeNet-5's layers (one thread, us per
/// call, Planes / Patches / Channels / Winograd), the planes were the fastest or within
/// 8% on every layer: 16->16 3x3 at 28x28 3439 / 4899 / 4649 / 5484, 32->32 at 14x14
/// 3389 / 4533 / 4470 / 3608, 32->64 3x3 /2 2322 / 2854 / 3147 / -, 64->64 at 7x7
/// 3571 / 4300 / 3869 / 3816; deploy's cycle model (tuned on inference batches) picked
/// Channels or Winograd on three of them, up to 1.36x slower (`cargo run --release -p
/// tether-deploy --example conv_modes -- --training --trials 3`, load average 8.6).
fn mode(geo: &Geometry) -> Mode {
    if geo.kh * geo.kw == 1 || geo.kh * geo.kw > 64 {
        Mode::Patches
    } else {
        Mode::Planes
    }
}

/// `y = ep(conv(x, w) + b)`, `y` in NCHW, for a `geo` that [`applies`] (or any of one
/// group, on a CPU with AVX-512F).
///
/// # Panics
/// Without AVX-512F, with more than one group, or when a slice is shorter than `geo` says.
pub fn forward(
    geo: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    ep: Epilogue<'_>,
) -> Vec<f32> {
    assert!(
        runs(geo),
        "the implicit convolution needs one group and AVX-512F"
    );
    let s = shape(geo);
    let (m, k) = (geo.c_out, geo.k());
    let (x_len, _, y_len) = geo.sizes();
    let (x_per, y_per) = (x_len / geo.batch, y_len / geo.batch);
    let mode = mode(geo);
    let packed = implicit_conv::pack(w, m, k, mode);
    let act = if ep.relu { Act::Relu } else { Act::None };
    let mut y = vec![0.0f32; y_len];
    parts::split(&mut y, y_per, |n0, yp| {
        let n = yp.len() / y_per;
        let xs = &x[n0 * x_per..][..n * x_per];
        let r = ep.residual.map(|r| &r[n0 * y_per..][..n * y_per]);
        with_scratch(implicit_conv::scratch(&s, mode, n), |scratch| {
            implicit_conv::conv(&packed, m, b, act, r, xs, n, &s, mode, scratch, yp);
        });
    });
    y
}

#[cfg(test)]
mod tests {
    use burn::tensor::ops::ConvOptions;

    use super::*;

    /// `(x dims, weight dims, stride, padding, dilation)`.
    type Case = ([usize; 4], [usize; 4], usize, usize, usize);

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `act(conv(x, w) + b + r)` by its definition, in f64.
    fn reference(
        geo: &Geometry,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        r: &[f32],
        relu: bool,
    ) -> Vec<f64> {
        let mut y = vec![0.0f64; geo.sizes().2];
        for n in 0..geo.batch {
            for o in 0..geo.c_out {
                for oy in 0..geo.oh {
                    for ox in 0..geo.ow {
                        let mut v = f64::from(b[o]);
                        for c in 0..geo.c_in {
                            for i in 0..geo.kh {
                                for j in 0..geo.kw {
                                    let iy = (oy * geo.stride[0] + i * geo.dil[0]) as isize
                                        - geo.pad[0] as isize;
                                    let ix = (ox * geo.stride[1] + j * geo.dil[1]) as isize
                                        - geo.pad[1] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= geo.h as isize
                                        || ix >= geo.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((n * geo.c_in + c) * geo.h + iy as usize) * geo.w
                                        + ix as usize];
                                    let wv = w[((o * geo.c_in + c) * geo.kh + i) * geo.kw + j];
                                    v += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        let at = ((n * geo.c_out + o) * geo.oh + oy) * geo.ow + ox;
                        v += f64::from(r[at]);
                        y[at] = if relu { v.max(0.0) } else { v };
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_f64_definition_with_residual_and_relu() {
        if !implicit_conv::available() {
            eprintln!("no AVX-512F: the implicit convolution does not run here");
            return;
        }
        // The small ResNet's shapes at a small batch (a "same" 3x3, strided 3x3 and 1x1),
        // LeNet-5's unpadded 5x5, a dilated kernel, and a batch of several chunks.
        let cases: [Case; 6] = [
            ([3, 16, 28, 28], [16, 16, 3, 3], 1, 1, 1),
            ([3, 16, 28, 28], [32, 16, 3, 3], 2, 1, 1),
            ([3, 32, 14, 14], [64, 32, 1, 1], 2, 0, 1),
            ([5, 6, 14, 14], [16, 6, 5, 5], 1, 0, 1),
            ([2, 3, 10, 11], [5, 3, 3, 3], 1, 2, 2),
            ([70, 4, 12, 12], [9, 4, 3, 3], 1, 1, 1),
        ];
        for (k, (xd, wd, s, p, d)) in cases.into_iter().enumerate() {
            let geo = Geometry::new(xd, wd, &ConvOptions::new([s, s], [p, p], [d, d], 1)).unwrap();
            let (x_len, w_len, y_len) = geo.sizes();
            let (x, w) = (values(x_len, k as u64), values(w_len, 100 + k as u64));
            let (b, r) = (values(geo.c_out, 200), values(y_len, 300));
            for (residual, relu) in [(false, false), (false, true), (true, true)] {
                let zeros = vec![0.0f32; y_len];
                let rr = if residual { &r[..] } else { &zeros[..] };
                let ep = Epilogue {
                    residual: residual.then_some(&r[..]),
                    relu,
                };
                let got = forward(&geo, &x, &w, Some(&b), ep);
                let want = reference(&geo, &x, &w, &b, rr, relu);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(*g) - e).abs() <= 1e-5 * e.abs().max(1.0),
                        "case {k} {xd:?} {wd:?} residual {residual} relu {relu}: y[{i}] = {g}, f64 {e}"
                    );
                }
            }
        }
    }
}
