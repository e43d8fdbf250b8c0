//! Every block's Shampoo state on every rank, from the blocks' owners: what a checkpoint
//! of a data-parallel run saves, so that it resumes on any number of ranks (the owners
//! then change, and each new owner must find its blocks' state in the record).
//!
//! One all-gather: each rank sends the blocks it owns, in the order every rank knows
//! (the parameters in their assignment order, their blocks in order), each block as a
//! fixed-length run of floats whose length follows from its shape alone:
//! a presence flag; each factor and each inverse root (`d_k^2` each); the grafting
//! statistics, the filtered gradient and the momentum, each a presence flag and `numel`
//! values; the count of failed root computations. Values travel as they are (no
//! arithmetic), so the gathered state is the owners' bit for bit.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::optim::record::{AdaptorRecord, AdaptorRecordV1};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::blocking::{Block, BlockPlan};
use super::error::ShampooError;
use super::host::host_values;
use super::ownership::Ownership;
use super::step::{BlockState, Shampoo, ShampooState};
use crate::parallel::Collective;

/// The per-parameter states, as burn's adaptor keeps them (the same record type, so
/// checkpoints are interchangeable with a single process's).
pub(super) type Records<B> = hashbrown::HashMap<ParamId, AdaptorRecord<Shampoo, B>>;

/// The floats one block's state travels as.
fn block_len(block: &Block) -> usize {
    let squares: usize = block.shape.iter().map(|d| d * d).sum();
    1 + 2 * squares + 3 * (1 + block.numel()) + 1
}

/// A record's state, whatever the rank its variant was saved under (Shampoo's state type
/// does not depend on the parameter's rank).
fn state_mut<B: AutodiffBackend>(
    record: &mut AdaptorRecord<Shampoo, B>,
) -> &mut ShampooState<B::InnerBackend> {
    let AdaptorRecord::V1(v) = record;
    match v {
        AdaptorRecordV1::Rank0(s)
        | AdaptorRecordV1::Rank1(s)
        | AdaptorRecordV1::Rank2(s)
        | AdaptorRecordV1::Rank3(s)
        | AdaptorRecordV1::Rank4(s)
        | AdaptorRecordV1::Rank5(s)
        | AdaptorRecordV1::Rank6(s)
        | AdaptorRecordV1::Rank7(s)
        | AdaptorRecordV1::Rank8(s) => s,
    }
}

/// Appends `state` (of `block`) to `out` as [`block_len`] floats.
fn write_block<B: Backend>(state: Option<&BlockState<B>>, block: &Block, out: &mut Vec<f32>) {
    let start = out.len();
    let Some(st) = state else {
        out.resize(start + block_len(block), 0.0);
        return;
    };
    out.push(1.0);
    for m in st.factors.iter().chain(&st.roots) {
        out.extend(host_values(m.clone()));
    }
    for v in [&st.graft, &st.filtered, &st.momentum] {
        match v {
            Some(v) => {
                out.push(1.0);
                out.extend(host_values(v.clone()));
            }
            None => out.resize(out.len() + 1 + block.numel(), 0.0),
        }
    }
    out.push(st.failed_computations as f32);
    debug_assert_eq!(out.len() - start, block_len(block));
}

/// The state [`write_block`] wrote (`None`: absent).
fn read_block<B: Backend>(
    values: &[f32],
    block: &Block,
    device: &B::Device,
) -> Option<BlockState<B>> {
    if values[0] == 0.0 {
        return None;
    }
    let mut at = 1;
    let mut take = |n: usize| {
        let part = values[at..at + n].to_vec();
        at += n;
        part
    };
    let squares = |take: &mut dyn FnMut(usize) -> Vec<f32>| -> Vec<Tensor<B, 2>> {
        block
            .shape
            .iter()
            .map(|&d| Tensor::from_data(TensorData::new(take(d * d), [d, d]), device))
            .collect()
    };
    let factors = squares(&mut take);
    let roots = squares(&mut take);
    let n = block.numel();
    let mut vector = || {
        let present = take(1)[0] != 0.0;
        let v = take(n);
        present.then(|| Tensor::from_data(TensorData::new(v, [n]), device))
    };
    let (graft, filtered, momentum) = (vector(), vector(), vector());
    let failed_computations = take(1)[0] as usize;
    Some(BlockState {
        factors,
        roots,
        graft,
        filtered,
        momentum,
        failed_computations,
    })
}

/// `records` with every block of every assigned parameter filled in from its owner
/// (every rank makes the call at the same point, with the same assigned parameters).
///
/// # Errors
/// The all-gather failed.
pub(super) fn gather_states<B: AutodiffBackend>(
    group: &dyn Collective,
    ownership: &Ownership,
    plans: &HashMap<ParamId, BlockPlan>,
    records: &Records<B>,
) -> Result<Records<B>, ShampooError> {
    let rank = group.rank();
    let mut records = records.clone();
    // The parameters stepped so far: every rank holds a record for each (the same ones).
    let params: Vec<(ParamId, &BlockPlan, &[usize])> = ownership
        .order()
        .iter()
        .filter(|id| records.contains_key(*id))
        .map(|id| {
            let owners = ownership.owners(id).expect("in the order");
            (*id, &plans[id], owners)
        })
        .collect();
    let mut counts = vec![0usize; group.size()];
    let mut mine = Vec::new();
    for (id, plan, owners) in &params {
        let state = state_mut(records.get_mut(id).expect("filtered"));
        for (i, (block, &r)) in plan.blocks.iter().zip(*owners).enumerate() {
            counts[r] += block_len(block);
            if r == rank {
                write_block(
                    state.blocks.get(i).and_then(Option::as_ref),
                    block,
                    &mut mine,
                );
            }
        }
    }
    let mut all = vec![0.0f32; counts.iter().sum()];
    group
        .all_gather(&mine, &counts, &mut all)
        .map_err(|e| ShampooError::Collective(format!("gathering the state: {e}")))?;
    let mut cursor: Vec<usize> = counts
        .iter()
        .scan(0, |at, &c| {
            let start = *at;
            *at += c;
            Some(start)
        })
        .collect();
    for (id, plan, owners) in &params {
        let state = state_mut(records.get_mut(id).expect("filtered"));
        let device = state
            .blocks
            .iter()
            .flatten()
            .next()
            .map(|b| b.factors[0].device())
            .unwrap_or_default();
        state.blocks.resize_with(plan.blocks.len(), || None);
        for (i, (block, &r)) in plan.blocks.iter().zip(*owners).enumerate() {
            let n = block_len(block);
            let values = &all[cursor[r]..cursor[r] + n];
            cursor[r] += n;
            if let Some(st) = read_block(values, block, &device) {
                state.blocks[i] = Some(st);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// A block's state survives its trip through floats, with and without its optional
    /// buffers, and an absent state stays absent.
    #[test]
    fn a_block_state_round_trips() {
        let device = Default::default();
        let block = Block {
            offsets: vec![0, 0],
            shape: vec![2, 3],
        };
        let t = |v: Vec<f32>, d: usize| -> Tensor<Flex, 2> {
            Tensor::from_data(TensorData::new(v, [d, d]), &device)
        };
        let st = BlockState::<Flex> {
            factors: vec![
                t(vec![1.0, 2.0, 3.0, 4.0], 2),
                t((0..9).map(|v| v as f32).collect(), 3),
            ],
            roots: vec![t(vec![-1.0; 4], 2), t(vec![0.5; 9], 3)],
            graft: Some(Tensor::from_data(
                TensorData::new(vec![7.0f32; 6], [6]),
                &device,
            )),
            filtered: None,
            momentum: Some(Tensor::from_data(
                TensorData::new(vec![1e-30f32, -0.0, 3.0, 4.0, 5.0, 6.0], [6]),
                &device,
            )),
            failed_computations: 3,
        };
        let mut out = vec![];
        write_block(Some(&st), &block, &mut out);
        write_block::<Flex>(None, &block, &mut out);
        let n = block_len(&block);
        assert_eq!(out.len(), 2 * n);
        let back = read_block::<Flex>(&out[..n], &block, &device).expect("present");
        assert!(read_block::<Flex>(&out[n..], &block, &device).is_none());
        let vals = |v: &[Tensor<Flex, 2>]| -> Vec<Vec<f32>> {
            v.iter().map(|m| host_values(m.clone())).collect()
        };
        assert_eq!(vals(&back.factors), vals(&st.factors));
        assert_eq!(vals(&back.roots), vals(&st.roots));
        let opt = |v: &Option<Tensor<Flex, 1>>| v.clone().map(host_values);
        assert_eq!(opt(&back.graft), opt(&st.graft));
        assert_eq!(opt(&back.filtered), None);
        assert_eq!(
            opt(&back.momentum)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            opt(&st.momentum)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        );
        assert_eq!(back.failed_computations, 3);
    }
}
