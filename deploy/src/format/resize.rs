//! The geometry of [`opcode::RESIZE`](super::opcode::RESIZE): ONNX `Resize` (opset 10 on)
//! and `Upsample`, whose output coordinate `x` reads the input at
//! `x_in = transform(x, scale, extents)` (the operator's `coordinate_transformation_mode`)
//! and takes the nearest element there or interpolates linearly between its two
//! neighbours, axis by axis (bilinear on two axes, trilinear on three, ...).

use super::layout::MAX_RANK;

/// How an output coordinate maps to an input coordinate (ONNX
/// `coordinate_transformation_mode`; `s` the axis's scale, `L` its extents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    /// `(x + 0.5) / s - 0.5`: pixel centres aligned (ONNX's default, PyTorch's
    /// `align_corners=False`).
    HalfPixel,
    /// `x / s`: PyTorch's `nearest` mode, ONNX `Upsample`.
    Asymmetric,
    /// As half pixel, but 0 when the output extent is 1 (PyTorch's legacy exporter).
    PytorchHalfPixel,
    /// `x (L_in - 1) / (L_out - 1)`: corner pixels aligned (PyTorch `align_corners=True`).
    AlignCorners,
    /// Half pixel about the centre of an axis whose scale was rounded (ONNX 1.16).
    HalfPixelSymmetric,
    /// `(x + 0.5) / s` (TensorFlow's nearest resize, ONNX opset 11 to 18).
    TfHalfPixelForNearest,
}

/// How a nearest-neighbour resize rounds the input coordinate (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRound {
    /// To the nearest integer, halves down (ONNX's default).
    PreferFloor,
    /// To the nearest integer, halves up.
    PreferCeil,
    /// Down.
    Floor,
    /// Up.
    Ceil,
}

/// Nearest-neighbour or linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// The input element nearest the coordinate.
    Nearest(NearestRound),
    /// Linear interpolation between the two neighbours along each axis.
    Linear,
}

/// A resize of every axis of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeGeom {
    /// Output extents (`out[..rank]`).
    pub out: [usize; MAX_RANK],
    /// Each axis's scale; 0: `out / in` (the operator was given sizes, not scales).
    pub scales: [f32; MAX_RANK],
    /// Nearest or linear.
    pub mode: ResizeMode,
    /// The coordinate transformation.
    pub coord: CoordMode,
}

impl ResizeGeom {
    /// `mode | coord << 8 | round << 16`, as stored in parameter 8.
    pub fn encode_mode(&self) -> u32 {
        let (m, r) = match self.mode {
            ResizeMode::Nearest(r) => (0, r as u32),
            ResizeMode::Linear => (1, 0),
        };
        m | (self.coord as u32) << 8 | r << 16
    }

    /// The mode and coordinate transformation of a stored parameter 8.
    pub fn decode_mode(p: u32) -> Option<(ResizeMode, CoordMode)> {
        let round = match p >> 16 {
            0 => NearestRound::PreferFloor,
            1 => NearestRound::PreferCeil,
            2 => NearestRound::Floor,
            3 => NearestRound::Ceil,
            _ => return None,
        };
        let mode = match p & 0xff {
            0 => ResizeMode::Nearest(round),
            1 if p >> 16 == 0 => ResizeMode::Linear,
            _ => return None,
        };
        let coord = match (p >> 8) & 0xff {
            0 => CoordMode::HalfPixel,
            1 => CoordMode::Asymmetric,
            2 => CoordMode::PytorchHalfPixel,
            3 => CoordMode::AlignCorners,
            4 => CoordMode::HalfPixelSymmetric,
            5 => CoordMode::TfHalfPixelForNearest,
            _ => return None,
        };
        Some((mode, coord))
    }

    /// The input coordinate that output coordinate `x` of axis `a` reads, for an input
    /// extent `n_in` (ONNX's formulas, in f64 as its reference implementation computes).
    pub fn source(&self, a: usize, x: usize, n_in: usize) -> f64 {
        let n_out = self.out[a] as f64;
        let n_in_f = n_in as f64;
        let s = if self.scales[a] == 0.0 {
            n_out / n_in_f
        } else {
            f64::from(self.scales[a])
        };
        let x = x as f64;
        match self.coord {
            CoordMode::HalfPixel => (x + 0.5) / s - 0.5,
            CoordMode::Asymmetric => x / s,
            CoordMode::PytorchHalfPixel => {
                if self.out[a] > 1 {
                    (x + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            // ONNX's reference divides by the resized length before rounding, `s L_in`
            // (the output extent itself when sizes were given).
            CoordMode::AlignCorners => {
                if self.out[a] == 1 {
                    0.0
                } else {
                    x * (n_in_f - 1.0) / (s * n_in_f - 1.0)
                }
            }
            CoordMode::HalfPixelSymmetric => {
                let adjustment = n_out / (s * n_in_f);
                let center = n_in_f / 2.0;
                let offset = center * (1.0 - adjustment);
                offset + (x + 0.5) / s - 0.5
            }
            CoordMode::TfHalfPixelForNearest => (x + 0.5) / s,
        }
    }
}
