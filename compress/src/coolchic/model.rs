//! The Cool-chic model being fitted, as a burn module: the latent pyramid, the ARM and the
//! synthesis (shapes from [`tether_deploy::coolchic::Arch`]), and one training forward
//! pass that gives both the reconstruction and the estimated rate of the latents.
//!
//! Quantisation in training follows C3 (Kim et al. 2024, Sec. 3.1) as Cool-chic 3 took it
//! over: first soft-rounding with noise, `sr(sr(y, T) + n, T)` (Agustsson & Theis 2020's
//! soft-round `sr`, Kumaraswamy noise `n` in `(-1/2, 1/2)`), whose temperature `T` and
//! noise shape are annealed towards rounding so that the rate estimated in training
//! approaches the real file's, then actual rounding with a straight-through gradient.
//! (Cool-chic 1's plain `y + U(-1/2, 1/2)` stays available: measured on kodim03 at 0.15
//! bpp, its rate estimate was 2.5x under the real file's and the constrained fit
//! collapsed.) The upsampling of each level but the first is learned too: a symmetric
//! 5-tap pre-filter on the level's grid, then the fixed bilinear interpolation
//! (`tether_deploy::coolchic::synthesis`; Philippe et al. 2024's separable symmetric
//! filters), two numbers per level, started at zero (the fixed upsampling), learned in
//! the rounding phase only (see [`CoolChicNet::forward`]) and quantised like the
//! networks' weights. Since the filter is linear in its two numbers, each level's
//! interpolation matrix is `B + k1 D1 + k2 D2` with `B`, `D1`, `D2` fixed, so it costs two
//! scaled additions of matrices per pass. The ARM's contexts are the latents' shifted copies (a
//! zero-padded pyramid level sliced at each causal offset), so the whole ARM runs as one
//! matrix product over every latent instead of a gather per position.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::{Distribution, Tensor, TensorData};
use tether_deploy::coolchic::laplace::{MAX_SCALE, MIN_SCALE};
use tether_deploy::coolchic::synthesis::{prefilter_taps, taps};
use tether_deploy::coolchic::{Arch, CONTEXT, Dense, LATENT_MAX, Mlp};

/// How latents are quantised in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quant {
    /// `y + U(-1/2, 1/2)` (Cool-chic 1).
    Noise,
    /// `sr(sr(y, T) + n, T)` with `n` Kumaraswamy noise of shape `a` (`a = 1`: uniform;
    /// larger: concentrated at 0), C3's training quantiser.
    SoftRound {
        /// Soft-round temperature `T` (0: rounding; large: identity).
        temperature: f64,
        /// The Kumaraswamy shape `a` (>= 1).
        noise: f64,
    },
    /// `round(y)` forward, identity backward.
    Round,
}

/// The upsampling filters are stored over this gain: Adam moves a parameter by about
/// the learning rate per step, and the filters learn only in the rounding phase, at
/// `round_lr` (0.05) of the learning rate, where they would move by at most 5e-4 per
/// step (a power of two: the scaling is exact).
pub const FILTER_GAIN: f64 = 8.0;

/// The fitted model.
#[derive(Module, Debug)]
pub struct CoolChicNet<B: Backend> {
    /// Level `l`: `ceil(H / 2^l) x ceil(W / 2^l)`.
    pub latents: Vec<Param<Tensor<B, 2>>>,
    /// The ARM's layers (burn's `[inputs, outputs]` weights).
    pub arm: Vec<Linear<B>>,
    /// The synthesis' layers.
    pub synth: Vec<Linear<B>>,
    /// The upsampling pre-filter `[k1, k2]` of each level from 1 up, over
    /// [`FILTER_GAIN`]; empty: no filters (all zero, not learned).
    pub ups: Vec<Param<Tensor<B, 1>>>,
}

fn layers<B: Backend>(
    inputs: usize,
    hidden: &[usize],
    outputs: usize,
    device: &B::Device,
) -> Vec<Linear<B>> {
    let mut widths = vec![inputs];
    widths.extend_from_slice(hidden);
    widths.push(outputs);
    widths
        .windows(2)
        .map(|w| {
            LinearConfig::new(w[0], w[1])
                .with_initializer(Initializer::KaimingUniform {
                    gain: 1.0 / 3f64.sqrt(),
                    fan_out_only: false,
                })
                .init(device)
        })
        .collect()
}

/// Agustsson & Theis 2020 (Sec. 4.1): `floor(x) + 1/2 + tanh(d / T) / (2 tanh(1 / 2T))`,
/// `d = x - floor(x) - 1/2`; continuous and differentiable, rounding as `T -> 0`.
pub fn soft_round<B: Backend, const D: usize>(x: Tensor<B, D>, t: f64) -> Tensor<B, D> {
    let floor = x.clone().floor().detach();
    let d = x - floor.clone() - 0.5;
    floor + d.div_scalar(t).tanh().mul_scalar(0.5 / (0.5 / t).tanh()) + 0.5
}

/// Kumaraswamy noise of shape `a` in `(-1/2, 1/2)` from uniform `u` in `[0, 1)` (C3, Sec.
/// 3.1): the inverse CDF `(1 - (1 - u)^(1/b))^(1/a)` with `b = (2^a (a - 1) + 1) / a`, so the
/// mode stays at the centre; `a = 1` is the uniform distribution.
pub fn kumaraswamy<B: Backend, const D: usize>(u: Tensor<B, D>, a: f64) -> Tensor<B, D> {
    let b = (2f64.powf(a) * (a - 1.0) + 1.0) / a;
    u.neg()
        .add_scalar(1.0)
        .powf_scalar(1.0 / b)
        .neg()
        .add_scalar(1.0)
        .clamp_min(0.0)
        .powf_scalar(1.0 / a)
        .sub_scalar(0.5)
}

/// `w` rounded to the step `2^-e` forward, unchanged backward (straight-through).
fn fake_quant<B: Backend, const D: usize>(w: Tensor<B, D>, e: u32) -> Tensor<B, D> {
    let s = f64::from(1u32 << e);
    let q = w.clone().mul_scalar(s).round().div_scalar(s);
    w.clone() + (q - w).detach()
}

/// The layers on `x`; with `steps` (two exponents per layer, weight then bias, as the
/// file stores them) the weights are quantised as the file will hold them, so the rate
/// the ARM is trained on is the rate the file's ARM gives (quantisation-aware training:
/// without it, the file's ARM was off by enough to triple the real rate).
fn mlp<B: Backend>(
    layers: &[Linear<B>],
    mut x: Tensor<B, 2>,
    steps: Option<&[u32]>,
) -> Tensor<B, 2> {
    let last = layers.len() - 1;
    for (k, l) in layers.iter().enumerate() {
        x = match steps {
            None => l.forward(x),
            Some(e) => {
                let w = fake_quant(l.weight.val(), e[2 * k]);
                let y = x.matmul(w);
                match &l.bias {
                    Some(b) => y + fake_quant(b.val(), e[2 * k + 1]).unsqueeze(),
                    None => y,
                }
            }
        };
        if k < last {
            x = relu(x);
        }
    }
    x
}

/// `layers` as the runtime's dense layers (row-major `[outputs][inputs]`).
pub fn to_dense<B: Backend>(layers: &[Linear<B>]) -> Mlp {
    Mlp {
        layers: layers
            .iter()
            .map(|l| {
                let [i, o] = l.weight.val().dims();
                let w: Vec<f32> = l.weight.val().into_data().to_vec().expect("f32 weights");
                let weight = (0..o)
                    .flat_map(|r| (0..i).map(move |c| (r, c)))
                    .map(|(r, c)| w[c * o + r])
                    .collect();
                let bias = l.bias.as_ref().map_or_else(
                    || vec![0.0; o],
                    |b| b.val().into_data().to_vec().expect("f32 biases"),
                );
                Dense {
                    inputs: i,
                    outputs: o,
                    weight,
                    bias,
                }
            })
            .collect(),
    }
}

/// The interpolation matrix `[n_out, n_in]` of the runtime's bilinear upsampling by `2^l`.
fn upsampling_matrix(n_out: usize, n_in: usize, l: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n_out * n_in];
    for i in 0..n_out {
        let (a, b, f) = taps(i, n_in, l);
        m[i * n_in + a] += 1.0 - f;
        m[i * n_in + b] += f;
    }
    m
}

/// `B (S_d - 2 I)`: the change of the interpolation matrix `b` (`[n_out, n_in]`) per unit
/// of the pre-filter's tap at distance `d` (1 or 2), `S_d` summing the clamped sources
/// at `-d` and `+d` ([`prefilter_taps`]).
fn prefilter_slope(b: &[f32], n_out: usize, n_in: usize, d: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n_out * n_in];
    for i in 0..n_out {
        let row = &b[i * n_in..(i + 1) * n_in];
        for (j, &w) in row.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let t = prefilter_taps(j, n_in);
            let (lo, hi) = if d == 1 { (t[0], t[1]) } else { (t[2], t[3]) };
            m[i * n_in + lo] += w;
            m[i * n_in + hi] += w;
            m[i * n_in + j] -= 2.0 * w;
        }
    }
    m
}

/// One axis of a level's upsampling: the bilinear matrix and its slopes in `k1`, `k2`.
type Axis<B> = [Tensor<B, 2>; 3];

/// What a forward pass needs besides the model: the image size and each level's
/// upsampling matrices (rows `[H, h_l]`, columns transposed `[w_l, W]`), each with its
/// slopes in the pre-filter's two numbers.
pub struct Geometry<B: Backend> {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// ARM context size.
    pub context: usize,
    up: Vec<Option<(Axis<B>, Axis<B>)>>,
}

impl<B: Backend> Clone for Geometry<B> {
    fn clone(&self) -> Self {
        Self {
            width: self.width,
            height: self.height,
            context: self.context,
            up: self.up.clone(),
        }
    }
}

impl<B: Backend> Geometry<B> {
    /// The geometry of `arch` on a `width x height` image.
    pub fn new(width: usize, height: usize, arch: &Arch, device: &B::Device) -> Self {
        let up = (0..arch.levels)
            .map(|l| {
                (l > 0).then(|| {
                    let (h, w) = Arch::level_size(width, height, l);
                    let axis = |n_out: usize, n_in: usize| -> Axis<B> {
                        let b = upsampling_matrix(n_out, n_in, l);
                        let t = |m: Vec<f32>| {
                            Tensor::<B, 2>::from_data(TensorData::new(m, [n_out, n_in]), device)
                        };
                        let d1 = prefilter_slope(&b, n_out, n_in, 1);
                        let d2 = prefilter_slope(&b, n_out, n_in, 2);
                        [t(b), t(d1), t(d2)]
                    };
                    let rows = axis(height, h);
                    let cols = axis(width, w).map(|m| m.transpose());
                    (rows, cols)
                })
            })
            .collect();
        Self {
            width,
            height,
            context: arch.context,
            up,
        }
    }
}

/// What a forward pass gives.
pub struct Forward<B: Backend> {
    /// RGB `[H * W, 3]` in `[0, 1]` (nominally; not clamped, so gradients flow).
    pub rgb: Tensor<B, 2>,
    /// Estimated bits of all latents under the ARM (a scalar).
    pub bits: Tensor<B, 1>,
    /// The same per level, `[levels]` (the file codes an all-zero level in 1 bit instead,
    /// which the fit accounts for: counting such levels at the ARM's rate over-estimated
    /// the real file 2-4x at 0.15 bpp).
    pub level_bits: Tensor<B, 1>,
}

impl<B: Backend> CoolChicNet<B> {
    /// Zero latents and freshly initialised networks of `arch` for a `width x height` image.
    pub fn new(width: usize, height: usize, arch: &Arch, device: &B::Device) -> Self {
        let latents = (0..arch.levels)
            .map(|l| {
                let (h, w) = Arch::level_size(width, height, l);
                Param::from_tensor(Tensor::zeros([h, w], device))
            })
            .collect();
        Self {
            latents,
            arm: layers(arch.context, &arch.arm_hidden, 2, device),
            synth: layers(arch.levels, &arch.synth_hidden, 3, device),
            ups: (1..arch.levels)
                .map(|_| Param::from_tensor(Tensor::zeros([2], device)))
                .collect(),
        }
    }

    fn quantised(&self, quant: Quant) -> Vec<Tensor<B, 2>> {
        let max = f64::from(LATENT_MAX);
        self.latents
            .iter()
            .map(|y| {
                let y = y.val().clamp(-max, max);
                match quant {
                    Quant::Noise => {
                        let noise = y.random_like(Distribution::Uniform(-0.5, 0.5));
                        y + noise
                    }
                    Quant::SoftRound { temperature, noise } => {
                        let u = y.random_like(Distribution::Uniform(0.0, 1.0)).detach();
                        let n = kumaraswamy(u, noise);
                        soft_round(soft_round(y, temperature) + n, temperature)
                    }
                    Quant::Round => y.clone() + (y.clone().round() - y).detach(),
                }
            })
            .collect()
    }

    /// The reconstruction and the latents' estimated rate.
    ///
    /// `steps`: the step exponents of the ARM's and the synthesis' tensors (weight then
    /// bias, layer by layer) and of the upsampling filters, to train quantisation-aware;
    /// `None` for float networks.
    pub fn forward(
        &self,
        g: &Geometry<B>,
        quant: Quant,
        steps: Option<(&[u32], &[u32], u32)>,
    ) -> Forward<B> {
        let q = self.quantised(quant);
        // ARM contexts: each level zero-padded (2 above, 2 left and right), sliced at every
        // causal offset; all levels stacked so the ARM is one pass.
        let mut contexts = Vec::with_capacity(q.len());
        let mut values = Vec::with_capacity(q.len());
        for y in &q {
            let [h, w] = y.dims();
            let padded = y.clone().pad([(2, 0), (2, 2)], PadMode::Constant(0.0));
            let shifted: Vec<Tensor<B, 2>> = CONTEXT[..g.context]
                .iter()
                .map(|&(dy, dx)| {
                    let r0 = (2 + dy) as usize;
                    let c0 = (2 + dx) as usize;
                    padded
                        .clone()
                        .slice([r0..r0 + h, c0..c0 + w])
                        .reshape([h * w, 1])
                })
                .collect();
            contexts.push(Tensor::cat(shifted, 1));
            values.push(y.clone().reshape([h * w]));
        }
        let out = mlp(&self.arm, Tensor::cat(contexts, 0), steps.map(|s| s.0));
        let n = out.dims()[0];
        let mu = out.clone().slice([0..n, 0..1]).reshape([n]);
        let log_b = out
            .slice([0..n, 1..2])
            .reshape([n])
            .clamp(f64::from(MIN_SCALE.ln()), f64::from(MAX_SCALE.ln()));
        let b = log_b.exp();
        let v = Tensor::cat(values, 0);
        let cdf = |x: Tensor<B, 1>| {
            let d = x - mu.clone();
            let tail = (d.clone().abs().neg() / b.clone())
                .exp()
                .neg()
                .add_scalar(1.0);
            d.sign().mul(tail).mul_scalar(0.5).add_scalar(0.5)
        };
        let p = cdf(v.clone().add_scalar(0.5)) - cdf(v.sub_scalar(0.5));
        // The integer tables give every value at least 2^-16 and the mode at most
        // 1 - 127 * 2^-16 (tether_deploy::coolchic::laplace).
        let nats = p
            .clamp(2f64.powi(-16), 1.0 - 127.0 * 2f64.powi(-16))
            .log()
            .neg();
        let mut at = 0;
        let level_bits = Tensor::cat(
            q.iter()
                .map(|y| {
                    let [h, w] = y.dims();
                    let level = nats.clone().slice(at..at + h * w).sum();
                    at += h * w;
                    level
                })
                .collect(),
            0,
        )
        .div_scalar(std::f64::consts::LN_2);
        let bits = level_bits.clone().sum();
        // Synthesis: every level upsampled to full resolution.
        let (hh, ww) = (g.height, g.width);
        let planes: Vec<Tensor<B, 2>> = q
            .into_iter()
            .zip(&g.up)
            .enumerate()
            .map(|(l, (y, up))| {
                let full = match up {
                    None => y,
                    Some(([rows, ..], [cols, ..])) if self.ups.is_empty() => {
                        rows.clone().matmul(y).matmul(cols.clone())
                    }
                    Some((rows, cols)) => {
                        // Learned only while the latents are rounded: under the soft
                        // phase's noise, a smoothing filter lowers the training error by
                        // averaging the noise away (kodim12 at 192x128, 1000 steps,
                        // trained throughout: 1.6 dB under the fixed upsampling at 0.6
                        // bpp), a gain the rounded file does not have.
                        let k = self.ups[l - 1].val().mul_scalar(FILTER_GAIN);
                        let k = if quant == Quant::Round { k } else { k.detach() };
                        let k = match steps {
                            Some((_, _, e)) => fake_quant(k, e),
                            None => k,
                        };
                        let k1 = k.clone().slice(0..1).reshape([1, 1]);
                        let k2 = k.slice(1..2).reshape([1, 1]);
                        let mix = |[b, d1, d2]: &Axis<B>| {
                            b.clone() + d1.clone() * k1.clone() + d2.clone() * k2.clone()
                        };
                        mix(rows).matmul(y).matmul(mix(cols))
                    }
                };
                full.reshape([hh * ww, 1])
            })
            .collect();
        let rgb = mlp(&self.synth, Tensor::cat(planes, 1), steps.map(|s| s.1));
        Forward {
            rgb,
            bits,
            level_bits,
        }
    }

    /// The latents rounded and clamped as the file stores them.
    pub fn latent_codes(&self) -> Vec<Vec<i32>> {
        self.latents
            .iter()
            .map(|y| {
                let v: Vec<f32> = y.val().into_data().to_vec().expect("f32 latents");
                v.iter()
                    .map(|x| (x.round() as i32).clamp(-LATENT_MAX, LATENT_MAX))
                    .collect()
            })
            .collect()
    }

    /// The upsampling pre-filters, `[k1, k2]` of level 1, then 2, ... (the file's order).
    pub fn upsampling(&self) -> Vec<f32> {
        if self.ups.is_empty() {
            return vec![0.0; 2 * self.latents.len().saturating_sub(1)];
        }
        self.ups
            .iter()
            .flat_map(|k| {
                k.val()
                    .mul_scalar(FILTER_GAIN)
                    .into_data()
                    .to_vec::<f32>()
                    .expect("f32 filters")
            })
            .collect()
    }

    /// The latents before rounding (for choosing which to drop).
    pub fn latent_values(&self) -> Vec<Vec<f32>> {
        self.latents
            .iter()
            .map(|y| y.val().into_data().to_vec().expect("f32 latents"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::ElementConversion;
    use tether_deploy::coolchic::file::QTensor;
    use tether_deploy::coolchic::{CoolChic, Header, context_of, latent_distribution, synthesis};

    type B = Autodiff<Flex>;

    fn arch() -> Arch {
        Arch {
            levels: 3,
            context: 12,
            arm_hidden: vec![8],
            synth_hidden: vec![8],
        }
    }

    /// A model with integer latents (so rounding is exact) of a 13x9 image.
    fn model(seed: u32) -> (CoolChicNet<B>, Arch) {
        let _rng = crate::rng_lock();
        let device = Default::default();
        <B as Backend>::seed(&device, u64::from(seed));
        let arch = arch();
        let mut net = CoolChicNet::<B>::new(13, 9, &arch, &device);
        let mut s = seed;
        for p in &mut net.latents {
            let [h, w] = p.val().dims();
            let v: Vec<f32> = (0..h * w)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    ((s >> 24) % 7) as f32 - 3.0
                })
                .collect();
            *p = Param::from_tensor(Tensor::from_data(TensorData::new(v, [h, w]), &device));
        }
        // Upsampling filters exact at the file's step 2^-8: a sharpening and a smoothing.
        for (p, k) in net
            .ups
            .iter_mut()
            .zip([[-0.125f32, 0.0625], [0.1875, 0.0390625]])
        {
            let k: Vec<f32> = k.iter().map(|v| v / FILTER_GAIN as f32).collect();
            *p = Param::from_tensor(Tensor::from_data(TensorData::new(k, [2]), &device));
        }
        (net, arch)
    }

    /// `net`'s synthesis with its weights rounded to what the file stores (step 2^-8).
    fn quantise_synthesis(net: &mut CoolChicNet<B>) -> Vec<QTensor> {
        let device = Default::default();
        let dense = to_dense(&net.synth);
        let mut out = Vec::new();
        for (layer, d) in net.synth.iter_mut().zip(&dense.layers) {
            let w = QTensor::quantise(&d.weight, 8);
            let b = QTensor::quantise(&d.bias, 8);
            let wv = w.values();
            // Runtime [out][in] back to burn's [in][out].
            let t: Vec<f32> = (0..d.inputs)
                .flat_map(|i| (0..d.outputs).map(move |o| (i, o)))
                .map(|(i, o)| wv[o * d.inputs + i])
                .collect();
            layer.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [d.inputs, d.outputs]),
                &device,
            ));
            layer.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b.values(), [d.outputs]),
                &device,
            )));
            out.push(w);
            out.push(b);
        }
        out
    }

    #[test]
    fn the_training_rate_is_the_decoders_model_and_the_synthesis_its_pixels() {
        let (mut net, arch) = model(7);
        let synth_q = quantise_synthesis(&mut net);
        let device = Default::default();
        let g = Geometry::new(13, 9, &arch, &device);
        let f = net.forward(&g, Quant::Round, None);
        let est: f64 = f.bits.into_scalar().elem();
        // The decoder's ARM on the same (float) weights and latents.
        let arm = to_dense(&net.arm);
        let latents = net.latent_codes();
        let mut real = 0.0;
        let (mut a, mut b) = (vec![0.0; 16], vec![0.0; 16]);
        let mut ctx = vec![0.0; arch.context];
        for (l, level) in latents.iter().enumerate() {
            let (rows, cols) = Arch::level_size(13, 9, l);
            let grid: Vec<f32> = level.iter().map(|&v| v as f32).collect();
            for y in 0..rows {
                for x in 0..cols {
                    context_of(&grid, rows, cols, y, x, &mut ctx);
                    let d = latent_distribution(arm.forward(&ctx, &mut a, &mut b));
                    real += d.bits(level[y * cols + x]);
                }
            }
        }
        assert!(
            (est - real).abs() < 0.01 * real,
            "training estimate {est} bits, decoder's tables {real}"
        );
        // The synthesis: the runtime's render of the same model, within rounding to 8 bits.
        let exact = |mlp: &Mlp| -> Vec<QTensor> {
            mlp.layers
                .iter()
                .flat_map(|l| [&l.weight, &l.bias])
                .map(|v| QTensor::quantise(v, 8))
                .collect()
        };
        let file = CoolChic {
            header: Header {
                width: 13,
                height: 9,
                arch: arch.clone(),
            },
            arm: exact(&arm),
            synthesis: synth_q,
            latents,
            upsampling: QTensor::quantise(&net.upsampling(), 8),
        };
        assert!(file.upsampling.codes.iter().all(|&c| c != 0));
        let rgb = synthesis::render(&file).unwrap();
        let ours: Vec<f32> = f.rgb.into_data().to_vec().unwrap();
        let mut worst = 0.0f32;
        for (&p, &q) in rgb.iter().zip(&ours) {
            worst = worst.max((f32::from(p) / 255.0 - q.clamp(0.0, 1.0)).abs());
        }
        // Only the order of float sums differs: within one 8-bit level after rounding.
        assert!(worst <= 1.0 / 255.0, "{worst}");
        assert!(
            rgb.iter().any(|&v| v != rgb[0]),
            "a flat image tests nothing"
        );
    }

    #[test]
    fn noise_moves_latents_by_at_most_half_and_rounding_not_at_all() {
        let (net, _) = model(3);
        let base: Vec<f32> = net.latents[0].val().into_data().to_vec().unwrap();
        let noisy: Vec<f32> = net.quantised(Quant::Noise)[0]
            .clone()
            .into_data()
            .to_vec()
            .unwrap();
        let rounded: Vec<f32> = net.quantised(Quant::Round)[0]
            .clone()
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(rounded, base);
        assert!(base.iter().zip(&noisy).all(|(a, b)| (a - b).abs() <= 0.5));
        assert!(base.iter().zip(&noisy).any(|(a, b)| a != b));
    }

    #[test]
    fn soft_round_goes_from_identity_to_rounding_and_kumaraswamy_from_uniform_to_centred() {
        let device = Default::default();
        let xs: Vec<f32> = (0..41).map(|i| -2.0 + 0.1 * i as f32).collect();
        let x = Tensor::<Flex, 1>::from_data(TensorData::new(xs.clone(), [41]), &device);
        let at = |t: f64| -> Vec<f32> { soft_round(x.clone(), t).into_data().to_vec().unwrap() };
        let (cold, hot) = (at(1e-3), at(10.0));
        for ((&v, &c), &h) in xs.iter().zip(&cold).zip(&hot) {
            // Half-integers are the boundaries, where soft-round stays at the midpoint.
            if (v - v.floor() - 0.5).abs() > 0.01 {
                assert!((c - v.round()).abs() < 1e-3, "{v}: {c}");
            }
            assert!((h - v).abs() < 0.01, "{v}: {h}");
        }
        // Monotone at the temperatures trained with (no level is skipped).
        let mid = at(0.3);
        assert!(mid.windows(2).all(|w| w[1] >= w[0]), "{mid:?}");
        let u: Vec<f32> = (0..1000).map(|i| (i as f32 + 0.5) / 1000.0).collect();
        let u = Tensor::<Flex, 1>::from_data(TensorData::new(u, [1000]), &device);
        let spread = |a: f64| -> (f32, f32) {
            let n: Vec<f32> = kumaraswamy(u.clone(), a).into_data().to_vec().unwrap();
            let worst = n.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            (
                n.iter().map(|v| v.abs()).sum::<f32>() / n.len() as f32,
                worst,
            )
        };
        let (uniform, w1) = spread(1.0);
        let (centred, w2) = spread(2.0);
        assert!(
            (uniform - 0.25).abs() < 1e-3,
            "a = 1 is U(-1/2, 1/2): {uniform}"
        );
        assert!(centred < uniform - 0.02, "a = 2 is concentrated: {centred}");
        assert!(w1 <= 0.5 && w2 <= 0.5);
    }
}
