//! Resize (opset 10 on) and Upsample (opsets 7 to 9): nearest and linear modes with the
//! coordinate transformations PyTorch's exporters write (`F.interpolate` and
//! `nn.Upsample`: asymmetric for nearest, half_pixel / pytorch_half_pixel or align_corners
//! for bilinear), the scales or sizes constant (folded). The batch axis is not resized.

use std::format;
use std::string::String;
use std::vec::Vec;

use onnx_protobuf::NodeProto;

use super::attrs::Attrs;
use super::fold::BATCH;
use super::importer::{Importer, malformed, unsupported};
use crate::format::{CoordMode, MAX_RANK, NearestRound, ResizeGeom, ResizeMode};
use crate::onnx::error::OnnxError;
use crate::write::OpSpec;

impl Importer {
    /// ONNX `Resize`.
    pub(super) fn resize(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let mode = at.string("mode").unwrap_or_else(|| "nearest".into());
        // Opset 10's Resize has no coordinate transformation: it is asymmetric.
        let default_coord = if self.opset < 11 {
            "asymmetric"
        } else {
            "half_pixel"
        };
        let coord = at
            .string("coordinate_transformation_mode")
            .unwrap_or_else(|| default_coord.into());
        let nearest = at
            .string("nearest_mode")
            .unwrap_or_else(|| "round_prefer_floor".into());
        at.get("cubic_coeff_a");
        at.get("extrapolation_value");
        if at.int("exclude_outside", 0) != 0 {
            return unsupported("Resize with exclude_outside = 1 (cubic resampling only)");
        }
        let antialias = at.int("antialias", 0) != 0;
        let axes = at.ints("axes");
        let policy = at
            .string("keep_aspect_ratio_policy")
            .unwrap_or_else(|| "stretch".into());
        let mode = resize_mode(&mode, &nearest)?;
        let coord = coord_mode(&coord)?;
        // Inputs: opset 10 (X, scales); later (X, roi, scales, sizes), all but X optional.
        let (scales_at, sizes_at) = if self.opset < 11 {
            (1, None)
        } else {
            (2, Some(3))
        };
        self.constant(n, 1, "roi")?;
        let scales = self
            .constant(n, scales_at, "the scales")?
            .filter(|t| t.numel() > 0)
            .map(|t| t.to_f32());
        let sizes = match sizes_at {
            Some(i) => self.constant(n, i, "the sizes")?.filter(|t| t.numel() > 0),
            None => None,
        };
        let (x, d, batched) = self.operand(n, 0)?;
        let full = self.full_shape(&d, batched);
        let rank = full.len();
        // The axes the scales or sizes cover (all by default).
        let axes: Vec<usize> = match axes {
            None => (0..rank).collect(),
            Some(a) => a
                .iter()
                .map(|&a| super::importer::axis(a, rank))
                .collect::<Result<_, _>>()?,
        };
        // Per full axis: the output extent and the scale (0: from the sizes).
        let mut out: Vec<usize> = full.clone();
        let mut scale: Vec<f32> = vec_of(rank, 1.0);
        match (scales, sizes) {
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return malformed(format!("{} scales for {} axes", s.len(), axes.len()));
                }
                for (&a, &v) in axes.iter().zip(&s) {
                    if !(v.is_finite() && v > 0.0) {
                        return malformed(format!("scale {v}"));
                    }
                    scale[a] = v;
                    out[a] = (f64::from(v) * full[a] as f64).floor() as usize;
                }
            }
            (None, Some(t)) => {
                let Some(v) = t.as_i64() else {
                    return malformed("sizes are not integers");
                };
                if v.len() != axes.len() {
                    return malformed(format!("{} sizes for {} axes", v.len(), axes.len()));
                }
                let batch_axis = self.batch_mode && batched;
                let mut want = Vec::new();
                for (&a, &s) in axes.iter().zip(v) {
                    if a == 0 && batch_axis {
                        // The batch axis keeps its extent: the symbolic batch size, or the
                        // fixed one the graph was exported with.
                        if s == BATCH || Some(s as usize) == self.batch_hint || s == 1 {
                            want.push((a, None));
                            continue;
                        }
                        return unsupported(format!("Resize of the batch axis to {s}"));
                    }
                    if !(1..=1 << 24).contains(&s) {
                        return malformed(format!("size {s}"));
                    }
                    want.push((a, Some(s as usize)));
                }
                match policy.as_str() {
                    "stretch" => {
                        for (a, s) in want {
                            if let Some(s) = s {
                                out[a] = s;
                                scale[a] = 0.0;
                            }
                        }
                    }
                    "not_larger" | "not_smaller" => {
                        let ratios = want
                            .iter()
                            .filter_map(|&(a, s)| s.map(|s| s as f64 / full[a] as f64));
                        let r = if policy == "not_larger" {
                            ratios.fold(f64::INFINITY, f64::min)
                        } else {
                            ratios.fold(0.0, f64::max)
                        };
                        for (a, s) in want {
                            if s.is_some() {
                                out[a] = (r * full[a] as f64 + 0.5).floor() as usize;
                                scale[a] = r as f32;
                            }
                        }
                    }
                    other => return malformed(format!("keep_aspect_ratio_policy {other:?}")),
                }
            }
            (Some(_), Some(_)) => return malformed("Resize with both scales and sizes"),
            (None, None) => return malformed("Resize without scales or sizes"),
        }
        self.lower_resize(n, x, d, batched, out, scale, mode, coord, antialias)
    }

    /// ONNX `Upsample` (opset 7: a `scales` attribute; 9: a scales input): nearest (the
    /// index `floor(x / s)`, as `np.repeat` for whole scales) or linear, asymmetric.
    pub(super) fn upsample(&mut self, n: &NodeProto, at: &mut Attrs) -> Result<(), OnnxError> {
        let mode = at.string("mode").unwrap_or_else(|| "nearest".into());
        let mode = match mode.as_str() {
            "nearest" => ResizeMode::Nearest(NearestRound::Floor),
            "linear" | "bilinear" => ResizeMode::Linear,
            other => return unsupported(format!("Upsample mode {other:?} (nearest, linear)")),
        };
        let s = match at.get("scales") {
            Some(a) => a.floats.clone(),
            None => self
                .constant(n, 1, "the scales")?
                .ok_or_else(|| OnnxError::malformed("Upsample without scales"))?
                .to_f32(),
        };
        let (x, d, batched) = self.operand(n, 0)?;
        let full = self.full_shape(&d, batched);
        if s.len() != full.len() {
            return malformed(format!("{} scales for rank {}", s.len(), full.len()));
        }
        let mut out = full.clone();
        for (a, &v) in s.iter().enumerate() {
            if !(v.is_finite() && v >= 1.0) {
                return malformed(format!("Upsample scale {v} (at least 1)"));
            }
            out[a] = (f64::from(v) * full[a] as f64).floor() as usize;
        }
        self.lower_resize(n, x, d, batched, out, s, mode, CoordMode::Asymmetric, false)
    }

    /// Emits the resize of full-rank extents `out` and `scale` (batch axis included).
    #[allow(clippy::too_many_arguments)]
    fn lower_resize(
        &mut self,
        n: &NodeProto,
        x: crate::write::ValueId,
        d: Vec<usize>,
        batched: bool,
        mut out: Vec<usize>,
        mut scale: Vec<f32>,
        mode: ResizeMode,
        coord: CoordMode,
        antialias: bool,
    ) -> Result<(), OnnxError> {
        let full = self.full_shape(&d, batched);
        if self.batch_mode && batched {
            if out[0] != full[0] && self.batch_hint != Some(out[0])
                || scale[0] != 1.0 && scale[0] != 0.0
            {
                return unsupported("Resize of the batch axis");
            }
            out.remove(0);
            scale.remove(0);
        }
        if out.contains(&0) || out.iter().any(|&o| o > 1 << 24) {
            return malformed(format!("Resize output shape {out:?}"));
        }
        if antialias && mode == ResizeMode::Linear && out.iter().zip(&d).any(|(o, i)| o < i) {
            return unsupported("Resize with antialias = 1 when downsampling");
        }
        if out.len() > MAX_RANK {
            return unsupported(format!("Resize of rank {}", out.len()));
        }
        let mut geom = ResizeGeom {
            out: [0; MAX_RANK],
            scales: [0.0; MAX_RANK],
            mode,
            coord,
        };
        geom.out[..out.len()].copy_from_slice(&out);
        geom.scales[..scale.len()].copy_from_slice(&scale);
        let y = self.b.op(
            OpSpec::Resize {
                geom,
                rank: d.len(),
            },
            &[x],
        );
        self.set(n, 0, y, out, batched);
        Ok(())
    }
}

fn vec_of(n: usize, v: f32) -> Vec<f32> {
    std::vec![v; n]
}

fn resize_mode(mode: &str, nearest: &str) -> Result<ResizeMode, OnnxError> {
    Ok(match mode {
        "nearest" => ResizeMode::Nearest(match nearest {
            "round_prefer_floor" => NearestRound::PreferFloor,
            "round_prefer_ceil" => NearestRound::PreferCeil,
            "floor" => NearestRound::Floor,
            "ceil" => NearestRound::Ceil,
            other => return malformed(format!("nearest_mode {other:?}")),
        }),
        "linear" => ResizeMode::Linear,
        other => {
            return unsupported(format!(
                "Resize mode {other:?} (nearest and linear are supported)"
            ));
        }
    })
}

fn coord_mode(c: &str) -> Result<CoordMode, OnnxError> {
    Ok(match c {
        "half_pixel" => CoordMode::HalfPixel,
        "asymmetric" => CoordMode::Asymmetric,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
        "tf_half_pixel_for_nearest" => CoordMode::TfHalfPixelForNearest,
        other => {
            let known = other == "tf_crop_and_resize";
            let what = String::from(if known { "unsupported" } else { "unknown" });
            return unsupported(format!(
                "Resize coordinate_transformation_mode {other:?} ({what}; half_pixel, \
                 asymmetric, pytorch_half_pixel, align_corners, half_pixel_symmetric and \
                 tf_half_pixel_for_nearest are supported)"
            ));
        }
    })
}
