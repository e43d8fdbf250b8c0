//! The compute kernels. Slices in, slices out: no allocation, no shape logic beyond what
//! the caller passes (the plan validated the shapes).

pub mod activation;
pub mod conv;
pub mod dense;
pub mod layout;
pub mod packed;
pub mod pool;
pub mod sparse;
