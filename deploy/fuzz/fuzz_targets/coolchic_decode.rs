//! Fuzzes the Cool-chic decoder (`tether_deploy::coolchic`): `decode_with_limit` on
//! arbitrary bytes, then, for what decodes, `synthesis::render` and a write-back round
//! trip (`src/coolchic_check.rs`). Any panic is a bug: a hostile file is a `CodecError`,
//! and the header's size is checked before the decoder allocates for it.
//!
//! Each input is tried twice: as is (the checks up to the CRC-32) and with its last 4
//! bytes rewritten to the CRC-32 of the rest, so that mutations reach the header's fields
//! and the entropy-coded stream past the checksum. The seed corpus
//! (`corpus/coolchic_decode/seed-*.cc`) is real files written by `tether-compress encode`
//! (`scripts/coolchic-fuzz-seeds.sh`); `deploy/tests/coolchic_fuzz.rs` replays it on
//! stable, with every truncation, byte flip and zero-filled run of the seeds.
//!
//! `cd deploy/fuzz && cargo +nightly fuzz run coolchic_decode`

#![no_main]

#[path = "../src/coolchic_check.rs"]
mod coolchic_check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coolchic_check::exercise(data);
    if data.len() >= 4 {
        let mut sealed = data.to_vec();
        coolchic_check::reseal(&mut sealed);
        coolchic_check::exercise(&sealed);
    }
});
