//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a big-endian header
//! `0x00 0x00 <type> <ndim>`, `ndim` big-endian `u32` dimensions, then the data.
//! Only unsigned bytes (`type = 0x08`) are needed here. Every length is checked.

/// A parsed IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

/// Why bytes are not a valid IDX array.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdxError {
    /// Fewer bytes than the header needs.
    #[error("truncated header: {0} bytes")]
    TruncatedHeader(usize),
    /// The magic number is not `0x0000_08_NN`.
    #[error("bad magic {0:#010x}: expected 0x000008NN (unsigned bytes, NN dimensions)")]
    BadMagic(u32),
    /// The dimensions are not what the caller expects.
    #[error("expected {expected} dimensions, found {found}")]
    Rank {
        /// Expected number of dimensions.
        expected: usize,
        /// Found number.
        found: usize,
    },
    /// The data length does not match the dimensions.
    #[error("dimensions {dims:?} need {expected} data bytes, found {found}")]
    Length {
        /// The dimensions in the header.
        dims: Vec<usize>,
        /// Bytes they need.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

/// Parses an IDX array of unsigned bytes with `rank` dimensions.
pub fn parse(bytes: &[u8], rank: usize) -> Result<IdxArray, IdxError> {
    if bytes.len() < 4 {
        return Err(IdxError::TruncatedHeader(bytes.len()));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic >> 8 != 0x08 {
        return Err(IdxError::BadMagic(magic));
    }
    let ndim = (magic & 0xff) as usize;
    if ndim != rank {
        return Err(IdxError::Rank {
            expected: rank,
            found: ndim,
        });
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(IdxError::TruncatedHeader(bytes.len()));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    let found = bytes.len() - header;
    if expected != found {
        return Err(IdxError::Length {
            dims,
            expected,
            found,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ndim: u8, dims: &[u32]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, ndim];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_a_valid_array() {
        let mut b = header(3, &[2, 2, 3]);
        b.extend(0..12u8);
        let a = parse(&b, 3).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data, (0..12).collect::<Vec<u8>>());
    }

    #[test]
    fn rejects_corrupt_bytes() {
        let mut good = header(1, &[4]);
        good.extend([1, 2, 3, 4]);
        assert_eq!(parse(&good[..3], 1), Err(IdxError::TruncatedHeader(3)));
        assert_eq!(parse(&good[..6], 1), Err(IdxError::TruncatedHeader(6)));
        assert!(matches!(
            parse(&good[..10], 1),
            Err(IdxError::Length {
                expected: 4,
                found: 2,
                ..
            })
        ));
        let mut float = good.clone();
        float[2] = 0x0d;
        assert_eq!(parse(&float, 1), Err(IdxError::BadMagic(0x0000_0d01)));
        assert_eq!(
            parse(&good, 3),
            Err(IdxError::Rank {
                expected: 3,
                found: 1
            })
        );
        let mut huge = header(2, &[u32::MAX, u32::MAX]);
        huge.push(0);
        assert!(matches!(parse(&huge, 2), Err(IdxError::Length { .. })));
    }
}
