//! Little-endian fields of the model bytes (offsets already checked by the caller).

use super::dims::Dims;
use super::layout::MAX_RANK;

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn dims_at(b: &[u8], at: usize, rank: usize) -> Option<Dims> {
    if rank == 0 || rank > MAX_RANK {
        return None;
    }
    let mut d = [0usize; MAX_RANK];
    for (i, v) in d.iter_mut().enumerate().take(rank) {
        *v = u32_at(b, at + 4 * i) as usize;
    }
    Dims::new(&d[..rank])
}
