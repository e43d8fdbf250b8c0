//! Tensor kinds (the `kind` byte of a tensor entry).

/// Dense little-endian f32.
pub const F32: u8 = 0;
/// Dense IEEE 754 half precision.
pub const F16: u8 = 1;
/// CSR: rows = `dims[0]`, columns = product of the other dims; f32 values, u32 row
/// pointers, u16 column indices.
pub const CSR: u8 = 2;
