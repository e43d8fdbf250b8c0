//! The pixel grid as SIREN inputs: (row, column) coordinates, each axis normalised to
//! `[-1, 1]` on its own (`-1 + 2 i / (n - 1)`; a one-pixel axis sits at 0), row-major.
//!
//! COIN scales both axes by the height, so a landscape image's columns run past 1; per-axis
//! normalisation keeps every input inside the interval SIREN's first-layer initialisation
//! (`U(-1/2, 1/2)` for two inputs) was derived for, whatever the aspect ratio.

/// Coordinate of index `i` on an axis of `n` samples.
pub fn axis(i: usize, n: usize) -> f32 {
    if n <= 1 {
        0.0
    } else {
        -1.0 + 2.0 * i as f32 / (n - 1) as f32
    }
}

/// Coordinates of rows `rows` of a `width x height` grid, `[rows.len() * width, 2]`
/// flattened.
pub fn coordinates(width: usize, height: usize, rows: std::ops::Range<usize>) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width * 2);
    for y in rows {
        let cy = axis(y, height);
        for x in 0..width {
            out.push(cy);
            out.push(axis(x, width));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_span_minus_one_to_one() {
        assert_eq!(axis(0, 5), -1.0);
        assert_eq!(axis(4, 5), 1.0);
        assert_eq!(axis(2, 5), 0.0);
        assert_eq!(axis(0, 1), 0.0);
        let c = coordinates(3, 2, 0..2);
        assert_eq!(
            c,
            vec![
                -1.0, -1.0, -1.0, 0.0, -1.0, 1.0, 1.0, -1.0, 1.0, 0.0, 1.0, 1.0
            ]
        );
    }
}
