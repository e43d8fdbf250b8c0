//! How a parameter is cut into the blocks Shampoo preconditions (Shi et al. 2023, §3.2;
//! the reference's `merge_small_dims` and `multi_dim_split`).
//!
//! Why: a Kronecker factor costs `d^2` memory and `d^3` per inverse root, so a dimension of
//! 50 000 is out of reach, while a dimension of 1 or 5 wastes a factor on nothing. Merging
//! small adjacent dimensions (a conv kernel's `in x kh x kw`) gives fewer, more useful
//! factors; splitting large ones bounds every factor at `max_dim x max_dim`.

/// Drops the size-1 dimensions of `shape` (all of them size 1: `[1]`), then merges each
/// dimension into the previous one while their product stays `<= threshold`.
///
/// `[1, 2, 5, 1]` with threshold 10 is `[10]`; with threshold 1 it is `[2, 5]`.
pub fn merge_small_dims(shape: &[usize], threshold: usize) -> Vec<usize> {
    let mut squeezed = shape.iter().copied().filter(|&d| d != 1);
    let Some(first) = squeezed.next() else {
        return vec![1];
    };
    let mut merged = vec![first];
    for d in squeezed {
        let last = merged.last_mut().expect("non-empty");
        match last.checked_mul(d) {
            Some(p) if p <= threshold => *last = p,
            _ => merged.push(d),
        }
    }
    merged
}

/// One block of a (merged) tensor: where it starts and how large it is along each dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// First index of the block along each merged dimension.
    pub offsets: Vec<usize>,
    /// Block extent along each merged dimension (each `<= max_dim`).
    pub shape: Vec<usize>,
}

impl Block {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The blocks of a parameter: its merged shape and the grid of blocks covering it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPlan {
    /// The parameter's shape after [`merge_small_dims`].
    pub merged: Vec<usize>,
    /// Blocks in row-major order of the block grid (the last dimension's blocks vary
    /// fastest), as the reference's nested `torch.split` produces them.
    pub blocks: Vec<Block>,
}

impl BlockPlan {
    /// Plans the blocks of a parameter of shape `shape`: dimensions merged up to `max_dim`
    /// (when `merge` is set), then every dimension split into chunks of `max_dim` (the last
    /// chunk shorter).
    pub fn new(shape: &[usize], max_dim: usize, merge: bool) -> Self {
        let merged = if merge {
            merge_small_dims(shape, max_dim)
        } else {
            let s: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
            if s.is_empty() { vec![1] } else { s }
        };
        let max_dim = max_dim.max(1);
        // Chunks of every dimension: (offset, length).
        let chunks: Vec<Vec<(usize, usize)>> = merged
            .iter()
            .map(|&d| {
                (0..d.div_ceil(max_dim))
                    .map(|c| (c * max_dim, max_dim.min(d - c * max_dim)))
                    .collect()
            })
            .collect();
        let mut blocks = Vec::new();
        let mut index = vec![0usize; merged.len()];
        'grid: loop {
            blocks.push(Block {
                offsets: index.iter().zip(&chunks).map(|(&i, c)| c[i].0).collect(),
                shape: index.iter().zip(&chunks).map(|(&i, c)| c[i].1).collect(),
            });
            for k in (0..merged.len()).rev() {
                index[k] += 1;
                if index[k] < chunks[k].len() {
                    continue 'grid;
                }
                index[k] = 0;
            }
            break;
        }
        Self { merged, blocks }
    }

    /// Whether the parameter is one block (no slicing needed).
    pub fn is_single(&self) -> bool {
        self.blocks.len() == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's `merge_small_dims` examples (distributed_shampoo/utils/tests).
    #[test]
    fn merges_as_the_reference() {
        assert_eq!(merge_small_dims(&[1, 2, 5, 1], 10), vec![10]);
        assert_eq!(merge_small_dims(&[1, 2, 5, 1], 1), vec![2, 5]);
        assert_eq!(merge_small_dims(&[2, 3, 5, 7], 6), vec![6, 5, 7]);
        assert_eq!(merge_small_dims(&[1, 1, 1], 2), vec![1]);
        assert_eq!(merge_small_dims(&[2, 4, 6], 48), vec![48]);
        assert_eq!(merge_small_dims(&[2, 4, 6], 47), vec![8, 6]);
        // LeNet-5's second convolution with the default threshold: one factor.
        assert_eq!(merge_small_dims(&[16, 6, 5, 5], 1024), vec![480, 5]);
        assert_eq!(merge_small_dims(&[7], 1024), vec![7]);
    }

    #[test]
    fn splits_every_dimension_into_chunks_of_max_dim() {
        let plan = BlockPlan::new(&[5, 3], 2, false);
        assert_eq!(plan.merged, vec![5, 3]);
        let shapes: Vec<_> = plan.blocks.iter().map(|b| b.shape.clone()).collect();
        let offsets: Vec<_> = plan.blocks.iter().map(|b| b.offsets.clone()).collect();
        assert_eq!(
            shapes,
            vec![
                vec![2, 2],
                vec![2, 1],
                vec![2, 2],
                vec![2, 1],
                vec![1, 2],
                vec![1, 1]
            ]
        );
        assert_eq!(
            offsets,
            vec![
                vec![0, 0],
                vec![0, 2],
                vec![2, 0],
                vec![2, 2],
                vec![4, 0],
                vec![4, 2]
            ]
        );
        assert_eq!(plan.blocks.iter().map(Block::numel).sum::<usize>(), 15);
    }

    #[test]
    fn small_parameters_are_one_block() {
        let plan = BlockPlan::new(&[120, 400], 1024, true);
        assert_eq!(plan.merged, vec![120, 400]);
        assert!(plan.is_single());
        let plan = BlockPlan::new(&[1, 1], 1024, true);
        assert_eq!(plan.merged, vec![1]);
        assert_eq!(plan.blocks[0].shape, vec![1]);
        // Merging is optional; size-1 dimensions are dropped either way.
        assert_eq!(BlockPlan::new(&[4, 1, 3], 1024, false).merged, vec![4, 3]);
    }
}
