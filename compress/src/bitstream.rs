//! Bit-level writing and reading, and Rice codes (Golomb codes with a power-of-two
//! parameter), which code the positions of a sparse layer's nonzero weights.
//!
//! With nonzeros drawn independently at density `p`, the gaps between them are geometric,
//! and a Golomb code is optimal for geometric sources (Gallager & van Voorhis 1975); the
//! Rice restriction `m = 2^k` costs at most a few percent over the entropy `H(p)` per
//! weight, needs no tables, and decodes with shifts on a microcontroller.
//!
//! Bits are written most significant first within each byte.

use crate::error::CompressError;

/// Appends bits to a byte vector.
#[derive(Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bits written so far.
    pub fn len_bits(&self) -> usize {
        if self.used == 0 {
            self.bytes.len() * 8
        } else {
            (self.bytes.len() - 1) * 8 + self.used as usize
        }
    }

    /// Writes one bit.
    pub fn bit(&mut self, b: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if b {
            *self.bytes.last_mut().expect("pushed above") |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the `n` low bits of `v`, most significant first (`n <= 32`).
    pub fn bits(&mut self, v: u32, n: u32) {
        debug_assert!(n <= 32);
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    /// Writes `v` with the Rice code of parameter `k`: `v >> k` in unary (ones, then a
    /// zero), then the `k` low bits.
    pub fn rice(&mut self, v: u32, k: u32) {
        for _ in 0..(v >> k) {
            self.bit(true);
        }
        self.bit(false);
        self.bits(v & ((1u32 << k) - 1), k);
    }

    /// The bytes, the last one zero-padded.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Length in bits of the Rice code of `v` with parameter `k`.
pub fn rice_len(v: u32, k: u32) -> usize {
    (v >> k) as usize + 1 + k as usize
}

/// Reads bits from a byte slice; reading past the end is an error, not a panic.
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// Reads `bytes` from their first bit.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bits consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn truncated() -> CompressError {
        CompressError::Corrupt("the bit stream ends early (truncated file?)".into())
    }

    /// Reads one bit.
    ///
    /// # Errors
    /// The stream is exhausted.
    pub fn bit(&mut self) -> Result<bool, CompressError> {
        let byte = self.bytes.get(self.pos / 8).ok_or_else(Self::truncated)?;
        let b = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Ok(b)
    }

    /// Reads `n <= 32` bits, most significant first.
    ///
    /// # Errors
    /// The stream is exhausted.
    pub fn bits(&mut self, n: u32) -> Result<u32, CompressError> {
        debug_assert!(n <= 32);
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    /// Reads a Rice code of parameter `k` whose value is at most `max`.
    ///
    /// # Errors
    /// The stream is exhausted, or the value exceeds `max` (corrupt data; the bound also
    /// stops a hostile stream of ones from looping long).
    pub fn rice(&mut self, k: u32, max: u32) -> Result<u32, CompressError> {
        let limit = (max >> k) + 1;
        let mut q = 0u32;
        while self.bit()? {
            q += 1;
            if q > limit {
                return Err(CompressError::Corrupt(
                    "a position code runs past its layer".into(),
                ));
            }
        }
        let v = (u64::from(q) << k) | u64::from(self.bits(k)?);
        if v > u64::from(max) {
            return Err(CompressError::Corrupt(
                "a position code runs past its layer".into(),
            ));
        }
        Ok(v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_msb_first() {
        let mut w = BitWriter::new();
        w.bits(0b101, 3);
        w.bits(0xABCD, 16);
        w.bit(true);
        assert_eq!(w.len_bits(), 20);
        let bytes = w.finish();
        assert_eq!(bytes[0], 0b1011_0101);
        assert_eq!(bytes.len(), 3);
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.bits(3).unwrap(), 0b101);
        assert_eq!(r.bits(16).unwrap(), 0xABCD);
        assert!(r.bit().unwrap());
        // Padding bits read as zeros; past the last byte is an error.
        assert_eq!(r.bits(4).unwrap(), 0);
        assert!(matches!(r.bit(), Err(CompressError::Corrupt(_))));
    }

    #[test]
    fn rice_codes_round_trip_with_their_length() {
        for k in 0..6 {
            let values = [0u32, 1, 2, 3, 7, 8, 31, 100, 1000];
            let mut w = BitWriter::new();
            let mut expected = 0;
            for &v in &values {
                w.rice(v, k);
                expected += rice_len(v, k);
            }
            assert_eq!(w.len_bits(), expected);
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for &v in &values {
                assert_eq!(r.rice(k, 1000).unwrap(), v, "k = {k}");
            }
        }
    }

    #[test]
    fn hostile_rice_codes_are_errors() {
        // All ones: the unary part never ends.
        let ones = [0xFFu8; 64];
        assert!(BitReader::new(&ones).rice(0, 10).is_err());
        // A value above the bound.
        let mut w = BitWriter::new();
        w.rice(11, 1);
        let bytes = w.finish();
        assert!(BitReader::new(&bytes).rice(1, 10).is_err());
    }
}
