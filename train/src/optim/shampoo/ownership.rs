//! Which rank computes which block in data-parallel Shampoo (Shi et al. 2023, §4,
//! "Distributed Shampoo"): every block is owned by one rank, which alone updates its
//! factors, computes its inverse roots and its search direction. The assignment is a
//! function of the blocks' shapes, the precondition frequency and the number of ranks
//! only, so every rank computes the same one without communicating.
//!
//! The reference balances the blocks' bytes. What ownership saves is compute, and a
//! block's compute grows faster than its bytes (a root is `O(d^3)` for `d^2` bytes), so
//! here a block weighs its flops per step ([`block_cost`]), and blocks go to ranks by
//! Graham's (1969) longest-processing-time rule: largest first, each to the rank with the
//! least load so far. The largest load then exceeds the smallest by at most the largest
//! block's cost (the rank that ends with the most took its last block while it had the
//! least), and is at most `4/3 - 1/(3 ranks)` times the best possible (Graham 1969).

use std::collections::HashMap;

use burn::module::ParamId;

use super::blocking::Block;

/// Flops of one inverse root of a `d x d` factor, per `d^3`, in f64: the symmetric
/// eigendecomposition with vectors, about `9 d^3` (Golub & Van Loan, "Matrix
/// Computations", §8.3: `4/3 d^3` to tridiagonalise, about `6 d^3` for the QR sweeps that
/// accumulate the vectors; rounded down), and `Q diag(l^(-1/p)) Q^T`, `2 d^3`.
const ROOT_FLOPS_PER_CUBE: f64 = 10.0;

/// A block's flops per step: for each dimension `d_k`, its factor's update
/// (`G_(k) G_(k)^T`, `2 numel d_k`, every step), its mode product in the direction
/// (`2 numel d_k`, every step) and its inverse root (`10 d_k^3` every `frequency` steps).
pub fn block_cost(block: &Block, frequency: usize) -> f64 {
    let n = block.numel() as f64;
    let frequency = frequency.max(1) as f64;
    block
        .shape
        .iter()
        .map(|&d| {
            let d = d as f64;
            4.0 * n * d + ROOT_FLOPS_PER_CUBE * d.powi(3) / frequency
        })
        .sum()
}

/// Owner of each block of cost `costs[i]` among `ranks` ranks: largest cost first (equal
/// costs in their order), each to the rank with the least load so far (ties: the lower
/// rank). See the module docs for the bound on the largest load.
pub fn assign_blocks(costs: &[f64], ranks: usize) -> Vec<usize> {
    assign_onto(costs, &mut vec![0.0; ranks.max(1)])
}

/// [`assign_blocks`] onto ranks already carrying `load` (updated).
fn assign_onto(costs: &[f64], load: &mut [f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    // Stable: equal costs keep their order.
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    let mut owner = vec![0usize; costs.len()];
    for i in order {
        let rank = (0..load.len())
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("at least one rank");
        owner[i] = rank;
        load[rank] += costs[i];
    }
    owner
}

/// The owners of every block of the parameters a data-parallel Shampoo has stepped. A
/// parameter is assigned the first time it has a gradient, and keeps its owners: the
/// state of a block lives on its owner only, so an owner never changes during a run.
#[derive(Clone, Debug)]
pub(super) struct Ownership {
    ranks: usize,
    load: Vec<f64>,
    owners: HashMap<ParamId, Vec<usize>>,
    /// The assigned parameters in the order they were assigned (every rank's order).
    order: Vec<ParamId>,
}

impl Ownership {
    pub(super) fn new(ranks: usize) -> Self {
        Self {
            ranks: ranks.max(1),
            load: vec![0.0; ranks.max(1)],
            owners: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// The number of ranks.
    pub(super) fn ranks(&self) -> usize {
        self.ranks
    }

    /// Assigns the blocks of the parameters not assigned yet, given in the module's order
    /// with their blocks' costs; the others keep their owners.
    pub(super) fn assign(&mut self, params: &[(ParamId, Vec<f64>)]) {
        let new: Vec<&(ParamId, Vec<f64>)> = params
            .iter()
            .filter(|(id, _)| !self.owners.contains_key(id))
            .collect();
        if new.is_empty() {
            return;
        }
        let costs: Vec<f64> = new.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        let mut owner = assign_onto(&costs, &mut self.load).into_iter();
        for (id, c) in new {
            self.owners
                .insert(*id, owner.by_ref().take(c.len()).collect());
            self.order.push(*id);
        }
    }

    /// The owner of each block of parameter `id` (`None`: not assigned).
    pub(super) fn owners(&self, id: &ParamId) -> Option<&[usize]> {
        self.owners.get(id).map(Vec::as_slice)
    }

    /// The assigned parameters, in the order every rank assigned them.
    pub(super) fn order(&self) -> &[ParamId] {
        &self.order
    }

    /// Each rank's summed cost.
    #[cfg(test)]
    pub(super) fn load(&self) -> &[f64] {
        &self.load
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::shampoo::BlockPlan;

    /// The reference's example sizes on two ranks, and the edge cases.
    #[test]
    fn blocks_go_largest_first_to_the_least_loaded_rank() {
        assert_eq!(
            assign_blocks(&[128.0, 64.0, 500.0, 256.0], 2),
            vec![1, 1, 0, 1]
        );
        assert_eq!(assign_blocks(&[128.0, 64.0, 500.0, 256.0], 1), vec![0; 4]);
        assert_eq!(assign_blocks(&[128.0, 64.0], 4), vec![0, 1]);
        assert!(assign_blocks(&[], 2).is_empty());
        // Ties keep their order and go to the lower rank first.
        assert_eq!(assign_blocks(&[1.0, 1.0, 1.0, 1.0], 2), vec![0, 1, 0, 1]);
    }

    /// The blocks of LeNet-5 and LeNet-300-100 at several factor sizes and frequencies,
    /// on 2 to 5 ranks: each block has exactly one owner among the ranks, and the largest
    /// load exceeds the smallest by at most the largest block's cost (so it is at most
    /// the mean plus the largest block).
    #[test]
    fn each_block_has_one_owner_and_the_load_is_balanced() {
        let lenet5: &[&[usize]] = &[
            &[20, 1, 5, 5],
            &[20],
            &[50, 20, 5, 5],
            &[50],
            &[800, 500],
            &[500],
            &[500, 10],
            &[10],
        ];
        let lenet300: &[&[usize]] = &[&[784, 300], &[300], &[300, 100], &[100], &[100, 10]];
        for (net, shapes) in [("lenet5", lenet5), ("lenet300", lenet300)] {
            for max_dim in [64, 128, 1024] {
                for frequency in [1, 10, 100] {
                    let mut ids = vec![];
                    let mut params = vec![];
                    for shape in shapes {
                        let costs: Vec<f64> = BlockPlan::new(shape, max_dim, true)
                            .blocks
                            .iter()
                            .map(|b| block_cost(b, frequency))
                            .collect();
                        let id = ParamId::new();
                        ids.push((id, costs.len()));
                        params.push((id, costs));
                    }
                    let all: Vec<f64> = params.iter().flat_map(|(_, c)| c.clone()).collect();
                    let total: f64 = all.iter().sum();
                    let largest = all.iter().copied().fold(0.0, f64::max);
                    for ranks in 2..=5 {
                        let what = format!("{net}, max dim {max_dim}, f {frequency}, {ranks}");
                        let mut o = Ownership::new(ranks);
                        o.assign(&params);
                        // Exactly one owner per block, a valid rank; the loads add up.
                        let mut load = vec![0.0; ranks];
                        for ((id, n), (_, costs)) in ids.iter().zip(&params) {
                            let owners = o.owners(id).expect("assigned");
                            assert_eq!(owners.len(), *n, "{what}");
                            for (&r, c) in owners.iter().zip(costs) {
                                assert!(r < ranks, "{what}: rank {r}");
                                load[r] += c;
                            }
                        }
                        for (a, b) in load.iter().zip(o.load()) {
                            assert!((a - b).abs() <= 1e-12 * total, "{what}: {load:?}");
                        }
                        let max = load.iter().copied().fold(0.0, f64::max);
                        let min = load.iter().copied().fold(f64::INFINITY, f64::min);
                        let slack = 1e-12 * total;
                        assert!(max - min <= largest + slack, "{what}: {load:?}");
                        assert!(max <= total / ranks as f64 + largest + slack, "{what}");
                        // Assigning again changes nothing.
                        let before = o.clone();
                        o.assign(&params);
                        assert_eq!(before.order(), o.order());
                        assert_eq!(before.load(), o.load());
                    }
                }
            }
        }
    }

    /// A parameter first seen later joins without moving the blocks already owned.
    #[test]
    fn later_parameters_keep_earlier_owners() {
        let (a, b) = (ParamId::new(), ParamId::new());
        let mut o = Ownership::new(2);
        o.assign(&[(a, vec![5.0, 3.0])]);
        assert_eq!(o.owners(&a), Some(&[0, 1][..]));
        o.assign(&[(b, vec![4.0]), (a, vec![5.0, 3.0])]);
        assert_eq!(o.owners(&a), Some(&[0, 1][..]));
        assert_eq!(o.owners(&b), Some(&[1][..]));
        assert_eq!(o.order(), &[a, b]);
        assert_eq!(o.load(), &[5.0, 7.0]);
    }
}
