//! The compute kernels. Slices in, slices out: no allocation, no shape logic beyond what
//! the caller passes (the plan validated the shapes).

pub mod activation;
pub mod block;
pub mod conv;
pub mod conv_transpose;
pub mod dense;
pub mod depthwise_choice;
pub mod depthwise_lanes;
pub mod direct_conv;
pub mod implicit_conv;
pub mod layout;
pub mod packed;
pub mod pool;
pub mod portable_conv;
pub mod resize;
pub mod rows;
pub mod select;
pub mod sell;
pub mod sparse;
pub mod sparse_conv;
pub mod winograd;

/// Deterministic values in [-0.5, 0.5) for the kernels' tests.
#[cfg(test)]
pub(crate) fn lcg(n: usize, seed: u32) -> alloc::vec::Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// `y[r] = b[r] + sum_k w[r, k] x[k]` for a dense row-major `[rows, cols]` weight: the
/// reference the sparse kernels' tests compare with.
#[cfg(test)]
pub(crate) fn dense_product(
    w: &[f32],
    b: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
) -> alloc::vec::Vec<f32> {
    (0..rows)
        .map(|r| b[r] + (0..cols).map(|k| w[r * cols + k] * x[k]).sum::<f32>())
        .collect()
}
