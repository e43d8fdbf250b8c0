//! What the `coolchic_decode` fuzz target checks on one input, shared with its corpus's
//! replay on stable (`deploy/tests/coolchic_fuzz.rs`, which includes this file by path):
//! the decoder on hostile bytes is an error or an image, never a panic, an allocation the
//! header alone decides past [`MAX_PIXELS`], or a file that does not survive a round trip.

use tether_deploy::coolchic::{CodecError, decode, decode_with_limit, encode, synthesis};

/// The decoder's pixel limit under fuzzing: 256 x 256, so every input decodes in
/// milliseconds and a forged size is refused before anything is allocated for it.
pub const MAX_PIXELS: usize = 1 << 16;

/// What one input came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Refused with this error.
    Refused(CodecError),
    /// Decoded to a `width x height` image.
    Decoded(usize, usize),
}

/// Decodes `bytes` (at most [`MAX_PIXELS`] pixels) and renders what decodes. A decoded
/// file must render to `3 * width * height` bytes, and write back (`encode`) to a file
/// that decodes to the same latents and weights.
///
/// # Panics
/// On a bug: a decoded file that does not render or round-trip.
pub fn exercise(bytes: &[u8]) -> Outcome {
    let c = match decode_with_limit(bytes, MAX_PIXELS) {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e),
    };
    let (w, h) = (c.header.width, c.header.height);
    let rgb = synthesis::render(&c).expect("a decoded file renders");
    assert_eq!(rgb.len(), 3 * w * h, "pixels of a {w}x{h} image");
    let again = encode(&c).expect("a decoded file can be written back");
    assert_eq!(
        decode(&again).as_ref(),
        Ok(&c),
        "a decoded file round-trips"
    );
    Outcome::Decoded(w, h)
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit: the format's
/// checksum (`crc32fast::hash`), which the integration tests of `tether-deploy` cannot
/// name.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Rewrites the last 4 bytes (the CRC-32) to match the rest, so that a mutation reaches
/// the checks past the checksum (the header's fields, the entropy-coded stream).
pub fn reseal(bytes: &mut [u8]) {
    if let Some(body) = bytes.len().checked_sub(4) {
        let crc = crc32(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
}
