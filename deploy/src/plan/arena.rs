//! The activation arena: first-fit placement of live buffers, and the disjoint views of
//! one step's buffers.

use alloc::vec::Vec;
use core::ops::Range;

use crate::format::MAX_INPUTS;

/// First-fit placement of live buffers in one arena.
pub(super) struct Arena {
    pub(super) live: Vec<(usize, usize, usize)>, // (start, len, value)
    pub(super) end: usize,
}

impl Arena {
    pub(super) fn place(&mut self, len: usize, value: usize) -> usize {
        self.live.sort_unstable();
        let mut at = 0;
        for &(s, l, _) in &self.live {
            if s >= at + len {
                break;
            }
            at = at.max(s + l);
        }
        self.live.push((at, len, value));
        self.end = self.end.max(at + len);
        at
    }

    pub(super) fn free(&mut self, value: usize) {
        self.live.retain(|&(_, _, v)| v != value);
    }
}

/// The output buffer and the input buffers of one step, from the arena (the placement
/// keeps the live ranges disjoint).
pub(super) fn split<'b>(
    buf: &'b mut [f32],
    out: Range<usize>,
    ins: &[Range<usize>; MAX_INPUTS],
) -> (&'b mut [f32], [&'b [f32]; MAX_INPUTS]) {
    let (lo, rest) = buf.split_at_mut(out.start);
    let (o, hi) = rest.split_at_mut(out.end - out.start);
    let (lo, hi): (&[f32], &[f32]) = (lo, hi);
    let pick = |r: &Range<usize>| -> &[f32] {
        if r.is_empty() {
            &[]
        } else if r.end <= out.start {
            &lo[r.clone()]
        } else {
            &hi[r.start - out.end..r.end - out.end]
        }
    };
    (
        o,
        [pick(&ins[0]), pick(&ins[1]), pick(&ins[2]), pick(&ins[3])],
    )
}
