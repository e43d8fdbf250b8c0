//! Model bytes at an address the zero-copy reader accepts (16-byte aligned).

use alloc::vec::Vec;
use core::ops::Deref;

/// An owned, 16-byte-aligned copy of model bytes (e.g. a file read into memory, whose
/// `Vec<u8>` has no alignment guarantee). On a device, embed the model with
/// [`include_model!`](crate::include_model) instead.
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut words = alloc::vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self {
            words,
            len: bytes.len(),
        }
    }
}

impl Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }
}

/// A 16-byte-aligned wrapper for `include_bytes!` data.
#[repr(C, align(16))]
pub struct Align16<T: ?Sized>(pub T);

/// Embeds a model file at a 16-byte-aligned address, as a `&'static [u8]`:
/// `static MODEL: &[u8] = tether_deploy::include_model!("lenet.tthr");`
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static ALIGNED: &$crate::Align16<[u8]> = &$crate::Align16(*include_bytes!($path));
        &ALIGNED.0
    }};
}
