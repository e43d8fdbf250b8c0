//! The exact change of a decoded image's squared error when one latent moves by one step.
//!
//! A latent of level `l` reaches only the pixels whose upsampling holds it (the level's
//! pre-filter spreads it over 5 x 5 of its neighbours, [`prefilter_taps`], and the
//! bilinear taps each of those over a `2^(l+1) x 2^(l+1)` patch at most, [`taps`]), so
//! its move changes the synthesis' inputs there alone: the change of the squared error is the sum, over that
//! patch, of the 8-bit pixels' new squared errors minus their old ones, each pixel
//! rendered by the decoder's own network ([`Mlp::forward`]). Over every latent of a
//! pyramid this costs about `4 * levels` pixel syntheses per pixel and direction, a few
//! seconds at 192x128; a first-order estimate from the gradient (the fit's straight-through
//! pass) found no improving move on a converged fit (kodim01 at 0.6 bpp: none of 25
//! batches kept), where a move of a whole step is far outside the linear range.
//!
//! The new pixels are computed from the old upsampled planes plus the move times its
//! upsampling weight, not by upsampling again, so a value may differ from the decoder's in
//! the last bit of an `f32`; the refinement that uses this checks every change it keeps
//! on the written and decoded file.

use tether_deploy::coolchic::synthesis::{prefilter_taps, taps, upsample};
use tether_deploy::coolchic::{Arch, CoolChic, Mlp};

use crate::error::CompressError;

/// A float in `[0, 1]` to the decoder's 8-bit value (`synthesis::render`'s rounding).
fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// For each source row (or column) of a level, the output rows it reaches and its
/// weight in each (nonzero weights only).
type Reach = Vec<Vec<(usize, f32)>>;

/// The [`Reach`] of an axis of `n` sources upsampled by `2^l` to `n_out`, after the
/// pre-filter `k` ([`tether_deploy::coolchic::synthesis::prefilter`]): output `i` is
/// `sum_j B[i][j] P[j][s] x[s]`, `B` the bilinear taps and `P` the filter.
fn reach(n_out: usize, n: usize, l: usize, k: [f32; 2]) -> Reach {
    let c = 1.0 - 2.0 * k[0] - 2.0 * k[1];
    let mut out: Reach = vec![Vec::new(); n];
    let mut row: Vec<(usize, f32)> = Vec::new();
    for i in 0..n_out {
        let (a, b, f) = taps(i, n, l);
        row.clear();
        for (j, w) in [(a, 1.0 - f), (b, f)] {
            if w == 0.0 {
                continue;
            }
            let t = prefilter_taps(j, n);
            let parts = [
                (j, c),
                (t[0], k[0]),
                (t[1], k[0]),
                (t[2], k[1]),
                (t[3], k[1]),
            ];
            for (src, p) in parts {
                if p == 0.0 {
                    continue;
                }
                match row.iter_mut().find(|(s, _)| *s == src) {
                    Some((_, v)) => *v += w * p,
                    None => row.push((src, w * p)),
                }
            }
        }
        for &(src, v) in &row {
            if v != 0.0 {
                out[src].push((i, v));
            }
        }
    }
    out
}

/// A decoded file, ready to price single-latent moves against `target`.
pub struct LocalError<'a> {
    synth: Mlp,
    width: usize,
    height: usize,
    levels: usize,
    /// `[level][pixel]`, the decoder's upsampled planes.
    planes: Vec<f32>,
    /// The decoded image.
    rgb: Vec<u8>,
    target: &'a [u8],
    /// Per level: the reach of every source row and of every source column.
    reach: Vec<(Reach, Reach)>,
}

impl<'a> LocalError<'a> {
    /// Decodes `file` (its latents upsampled, every pixel synthesised) against `target`
    /// (RGB, row-major, the file's size).
    ///
    /// # Errors
    /// A file whose networks do not fit its header, or a target of another size.
    pub fn new(file: &CoolChic, target: &'a [u8]) -> Result<Self, CompressError> {
        let (width, height) = (file.header.width, file.header.height);
        if target.len() != 3 * width * height {
            return Err(CompressError::Invalid(format!(
                "internal error: a target of {} bytes for a {width}x{height} image",
                target.len()
            )));
        }
        let synth = file
            .synthesis_mlp()
            .map_err(|e| CompressError::Invalid(format!("internal error: {e}")))?;
        let levels = file.header.arch.levels;
        let planes = upsample(file);
        let rgb = tether_deploy::coolchic::synthesis::render(file)
            .map_err(|e| CompressError::Invalid(format!("internal error: {e}")))?;
        let reach = (0..levels)
            .map(|l| {
                let (rows, cols) = Arch::level_size(width, height, l);
                let k = file.upsampling_kernel(l);
                (reach(height, rows, l, k), reach(width, cols, l, k))
            })
            .collect();
        Ok(Self {
            synth,
            width,
            height,
            levels,
            planes,
            rgb,
            target,
            reach,
        })
    }

    /// The decoded image's sum of squared 8-bit errors.
    pub fn sse(&self) -> f64 {
        self.rgb
            .iter()
            .zip(self.target)
            .map(|(&a, &b)| {
                let d = f64::from(a) - f64::from(b);
                d * d
            })
            .sum()
    }

    /// The change of [`LocalError::sse`] if latent `index` of level `level` moved by
    /// `delta` (every other latent unchanged).
    pub fn delta(&self, level: usize, index: usize, delta: i32) -> f64 {
        let (_, cols) = Arch::level_size(self.width, self.height, level);
        let (y, x) = (index / cols, index % cols);
        let (rows_reach, cols_reach) = &self.reach[level];
        let (rows, columns) = (&rows_reach[y], &cols_reach[x]);
        let n = self.width * self.height;
        let width = self.synth.max_width().max(self.levels);
        let (mut a, mut b) = (vec![0.0f32; width], vec![0.0f32; width]);
        let mut input = vec![0.0f32; self.levels];
        let mut change = 0.0;
        for &(i, wy) in rows {
            for &(j, wx) in columns {
                let p = i * self.width + j;
                for (k, v) in input.iter_mut().enumerate() {
                    *v = self.planes[k * n + p];
                }
                input[level] += delta as f32 * wy * wx;
                let out = self.synth.forward(&input, &mut a, &mut b);
                let pixel = 3 * p..3 * p + 3;
                for ((&v, &t), &was) in out
                    .iter()
                    .zip(&self.target[pixel.clone()])
                    .zip(&self.rgb[pixel])
                {
                    let t = f64::from(t);
                    let old = f64::from(was) - t;
                    let new = f64::from(to_u8(v)) - t;
                    change += new * new - old * old;
                }
            }
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_deploy::coolchic::file::QTensor;
    use tether_deploy::coolchic::{Header, synthesis};

    /// A small file with pseudo-random networks and latents.
    fn file(width: usize, height: usize) -> CoolChic {
        let arch = Arch {
            levels: 3,
            context: 4,
            arm_hidden: vec![],
            synth_hidden: vec![8],
        };
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |m: i32| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % (2 * m as u64 + 1)) as i32 - m
        };
        let mut tensors = |mlp: Mlp, e: u32| -> Vec<QTensor> {
            mlp.layers
                .iter()
                .flat_map(|l| [l.weight.len(), l.bias.len()])
                .map(|n| QTensor {
                    exponent: e,
                    codes: (0..n).map(|_| next(40)).collect(),
                })
                .collect()
        };
        let (arm, synthesis) = (tensors(arch.arm(), 8), tensors(arch.synthesis(), 6));
        let latents = (0..arch.levels)
            .map(|l| {
                let (r, c) = Arch::level_size(width, height, l);
                (0..r * c).map(|_| next(3)).collect()
            })
            .collect();
        CoolChic {
            header: Header {
                width,
                height,
                arch,
            },
            arm,
            synthesis,
            latents,
            // Level 1 sharpened, level 2 smoothed (exact at the step 2^-6).
            upsampling: QTensor {
                exponent: 6,
                codes: vec![-8, 3, 10, 2],
            },
        }
    }

    #[test]
    fn each_move_changes_the_error_as_decoding_the_moved_file_does() {
        // Odd sizes: the levels' last rows and columns are clamped taps.
        let (w, h) = (13, 9);
        let f = file(w, h);
        let target: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
        let local = LocalError::new(&f, &target).unwrap();
        let sse = |rgb: &[u8]| -> f64 {
            rgb.iter()
                .zip(&target)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum()
        };
        let base = sse(&synthesis::render(&f).unwrap());
        assert_eq!(local.sse(), base);
        let (mut moved, mut nonzero, mut exact) = (0, 0, 0);
        for l in 0..f.header.arch.levels {
            for i in 0..f.latents[l].len() {
                for d in [-1, 1] {
                    let mut g = f.clone();
                    g.latents[l][i] += d;
                    let truth = sse(&synthesis::render(&g).unwrap()) - base;
                    let got = local.delta(l, i, d);
                    // Equal but where a pixel lands on the other side of an 8-bit rounding
                    // (the last bit of an f32): a level of a channel or two, rarely.
                    assert!(
                        (got - truth).abs() <= 2.0 * 511.0,
                        "level {l}, latent {i}, {d:+}: {got} vs {truth}"
                    );
                    moved += 1;
                    nonzero += usize::from(truth != 0.0);
                    exact += usize::from(got == truth);
                }
            }
        }
        assert!(exact * 20 >= moved * 19, "{exact} of {moved} exact");
        assert!(
            nonzero > moved / 2,
            "{nonzero} of {moved} moves change the image"
        );
    }
}
