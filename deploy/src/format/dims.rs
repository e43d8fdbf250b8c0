//! Shapes: [`Dims`] and numpy broadcasting.

use super::layout::MAX_RANK;

/// A shape of rank 1 to 4 (activations exclude the batch dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    rank: usize,
    dims: [usize; MAX_RANK],
}

impl Dims {
    /// A shape from its dimensions; `None` for rank 0 or above 4, or a zero dimension.
    pub fn new(dims: &[usize]) -> Option<Self> {
        if dims.is_empty() || dims.len() > MAX_RANK || dims.contains(&0) {
            return None;
        }
        let mut d = [0; MAX_RANK];
        d[..dims.len()].copy_from_slice(dims);
        let s = Self {
            rank: dims.len(),
            dims: d,
        };
        s.checked_numel().map(|_| s)
    }

    /// The dimensions.
    pub fn as_slice(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of elements (validated not to overflow at construction).
    pub fn numel(&self) -> usize {
        self.as_slice().iter().product()
    }

    fn checked_numel(&self) -> Option<usize> {
        self.as_slice()
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= u32::MAX as usize)
    }
}

/// The numpy broadcast of three shapes (ONNX `Where`), or `None`.
pub fn broadcast_three(a: &[usize], b: &[usize], c: &[usize]) -> Option<Dims> {
    broadcast(broadcast(a, b)?.as_slice(), c)
}

/// The numpy broadcast of two shapes (aligned at the last axis), or `None`.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Dims> {
    let n = a.len().max(b.len());
    let mut out = [0usize; MAX_RANK];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Dims::new(&out[..n])
}
