//! A byte-wise rANS coder (Duda 2013; the 32-bit state and byte renormalisation of
//! Giesen's `ryg_rans`), `no_std`: every symbol of a Cool-chic file (header fields,
//! network weights, latents) goes through one stream.
//!
//! Why rANS and not a crate: the decoder must run on a microcontroller with only `alloc`,
//! and the symbols' probabilities come from the codec's own deterministic model, so all the
//! coder has to do is map (start, frequency) pairs to bytes and back. The encoder buffers
//! its symbols and codes them last to first (rANS is a stack), so the decoder reads them
//! first to first. The flush writes the 4-byte state; the decoder checks at the end that
//! it has consumed every byte and is back at the encoder's initial state, which catches
//! most corruption even before the file's checksum does.

use alloc::vec::Vec;

use super::CodecError;

/// Probabilities are integers out of `1 << PROB_BITS`.
pub const PROB_BITS: u32 = 16;
/// The total of every frequency table.
pub const PROB_TOTAL: u32 = 1 << PROB_BITS;
/// Lower bound of the normalised state.
const RANS_L: u32 = 1 << 23;

/// Collects symbols as (start, frequency) out of [`PROB_TOTAL`] and writes them.
#[derive(Clone, Debug, Default)]
pub struct RansEncoder {
    symbols: Vec<(u32, u32)>,
}

impl RansEncoder {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a symbol occupying `[start, start + freq)` of the table.
    ///
    /// # Errors
    /// A zero frequency or an interval outside the table (a bug in the caller's model).
    pub fn put(&mut self, start: u32, freq: u32) -> Result<(), CodecError> {
        if freq == 0 || start.checked_add(freq).is_none_or(|e| e > PROB_TOTAL) {
            return Err(CodecError::Model("a symbol with no probability"));
        }
        self.symbols.push((start, freq));
        Ok(())
    }

    /// Appends `value` uniformly distributed on `0..n` (`n` a power of two up to the table).
    ///
    /// # Errors
    /// `value >= n` or `n` not a power of two dividing the table.
    pub fn put_uniform(&mut self, value: u32, n: u32) -> Result<(), CodecError> {
        if !n.is_power_of_two() || n > PROB_TOTAL || value >= n {
            return Err(CodecError::Model("a uniform symbol out of its range"));
        }
        let freq = PROB_TOTAL / n;
        self.put(value * freq, freq)
    }

    /// Symbols so far.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// No symbols yet.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The coded bytes (the decoder reads them front to back).
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x = RANS_L;
        for &(start, freq) in self.symbols.iter().rev() {
            let x_max = ((RANS_L >> PROB_BITS) << 8) * freq;
            while x >= x_max {
                out.push(x as u8);
                x >>= 8;
            }
            x = ((x / freq) << PROB_BITS) + (x % freq) + start;
        }
        out.extend_from_slice(&x.to_le_bytes());
        out.reverse();
        out
    }
}

/// Reads symbols back from [`RansEncoder::finish`]'s bytes.
#[derive(Clone, Debug)]
pub struct RansDecoder<'a> {
    bytes: &'a [u8],
    at: usize,
    x: u32,
}

impl<'a> RansDecoder<'a> {
    /// Starts decoding `bytes`.
    ///
    /// # Errors
    /// Fewer than the 4 bytes of the state, or a state no encoder writes.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CodecError> {
        let head: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(CodecError::Truncated)?;
        let x = u32::from_be_bytes(head);
        if x < RANS_L {
            return Err(CodecError::Corrupt("the entropy coder's state"));
        }
        Ok(Self { bytes, at: 4, x })
    }

    /// The slot the next symbol occupies: find the symbol whose `[start, start + freq)`
    /// holds it, then call [`RansDecoder::advance`].
    pub fn peek(&self) -> u32 {
        self.x & (PROB_TOTAL - 1)
    }

    /// Consumes the symbol `[start, start + freq)` that holds [`RansDecoder::peek`].
    ///
    /// # Errors
    /// The stream ends early (a truncated file).
    pub fn advance(&mut self, start: u32, freq: u32) -> Result<(), CodecError> {
        let slot = self.peek();
        debug_assert!(slot >= start && slot - start < freq);
        self.x = freq * (self.x >> PROB_BITS) + slot - start;
        while self.x < RANS_L {
            let b = *self.bytes.get(self.at).ok_or(CodecError::Truncated)?;
            self.at += 1;
            self.x = (self.x << 8) | u32::from(b);
        }
        Ok(())
    }

    /// A value coded by [`RansEncoder::put_uniform`] with the same `n`.
    ///
    /// # Errors
    /// The stream ends early.
    pub fn get_uniform(&mut self, n: u32) -> Result<u32, CodecError> {
        let freq = PROB_TOTAL / n;
        let v = self.peek() / freq;
        self.advance(v * freq, freq)?;
        Ok(v)
    }

    /// Checks that the stream is over: every byte read and the state back at the encoder's
    /// start.
    ///
    /// # Errors
    /// Bytes left over or a wrong final state: the file is corrupt.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.at != self.bytes.len() || self.x != RANS_L {
            return Err(CodecError::Corrupt(
                "the entropy-coded stream does not end cleanly",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) for the tests' symbol streams.
    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn random_tables_round_trip_and_cost_close_to_their_entropy() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        // A skewed 3-symbol table: 0.9, 0.09, 0.01 (of 65536).
        let table = [(0u32, 58982u32), (58982, 5898), (64880, 656)];
        let mut enc = RansEncoder::new();
        let mut expect = Vec::new();
        let mut ideal = 0.0f64;
        for _ in 0..20_000 {
            let r = (xorshift(&mut s) % 1000) as u32;
            let k = if r < 900 {
                0
            } else if r < 990 {
                1
            } else {
                2
            };
            let (start, freq) = table[k];
            enc.put(start, freq).unwrap();
            ideal -= (f64::from(freq) / f64::from(PROB_TOTAL)).log2();
            expect.push(Some(k));
            if xorshift(&mut s).is_multiple_of(7) {
                let u = (xorshift(&mut s) % 32) as u32;
                enc.put_uniform(u, 32).unwrap();
                ideal += 5.0;
                expect.push(None);
                expect.push(Some(u as usize));
            }
        }
        let bytes = enc.finish();
        // Within 0.1% + the 4-byte flush of the ideal code length.
        assert!(
            (bytes.len() * 8) as f64 <= ideal * 1.001 + 40.0,
            "{} bits vs ideal {ideal}",
            bytes.len() * 8
        );
        let mut dec = RansDecoder::new(&bytes).unwrap();
        let mut it = expect.iter();
        while let Some(e) = it.next() {
            match e {
                Some(k) => {
                    let slot = dec.peek();
                    let got = table
                        .iter()
                        .position(|&(a, f)| slot >= a && slot < a + f)
                        .unwrap();
                    assert_eq!(got, *k);
                    dec.advance(table[got].0, table[got].1).unwrap();
                }
                None => {
                    let u = it.next().unwrap().unwrap();
                    assert_eq!(dec.get_uniform(32).unwrap() as usize, u);
                }
            }
        }
        dec.finish().unwrap();
    }

    #[test]
    fn truncation_and_leftovers_are_errors() {
        let mut enc = RansEncoder::new();
        for i in 0..1000 {
            enc.put_uniform(i % 256, 256).unwrap();
        }
        let bytes = enc.finish();
        let read_all = |b: &[u8]| -> Result<(), CodecError> {
            let mut d = RansDecoder::new(b)?;
            for _ in 0..1000 {
                d.get_uniform(256)?;
            }
            d.finish()
        };
        read_all(&bytes).unwrap();
        for cut in [0, 3, 4, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
        assert!(RansEncoder::new().put(0, 0).is_err());
        assert!(RansEncoder::new().put(65535, 2).is_err());
        assert!(RansEncoder::new().put_uniform(4, 4).is_err());
    }
}
