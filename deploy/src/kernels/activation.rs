//! Element-wise activations and softmax.

/// `y = max(x, 0)`.
pub fn relu(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(0.0);
    }
}

/// `y = sin(w0 x)` (SIREN's activation; Sitzmann et al. 2020).
pub fn sine(x: &[f32], w0: f32, y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = libm::sinf(w0 * x);
    }
}

/// `y = a + b`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a + b;
    }
}

/// Softmax of each consecutive `row`-long slice of `x` (max-subtracted, so large logits
/// do not overflow).
pub fn softmax(x: &[f32], row: usize, y: &mut [f32]) {
    for (x, y) in x.chunks_exact(row).zip(y.chunks_exact_mut(row)) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = libm::expf(x - max);
            sum += *y;
        }
        for y in y.iter_mut() {
            *y /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let mut y = [0.0; 4];
        softmax(&[1000.0, 1000.0, 0.0, 0.0], 2, &mut y);
        assert_eq!(&y[..2], &[0.5, 0.5]);
        assert!((y[2] - 0.5).abs() < 1e-7);
        let mut y = [0.0; 2];
        relu(&[-1.0, 2.0], &mut y);
        assert_eq!(y, [0.0, 2.0]);
        sine(&[0.5, 0.0], 2.0, &mut y);
        assert!((y[0] - 1f32.sin()).abs() < 1e-7 && y[1] == 0.0);
    }
}
