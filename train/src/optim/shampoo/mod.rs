//! Shampoo (Gupta et al. 2018) as Distributed Shampoo implements it (Shi et al. 2023,
//! "A Distributed Data-Parallel PyTorch Implementation of the Distributed Shampoo Optimizer
//! for Training Neural Networks At-Scale"), as a burn optimizer: drop it in where Adam was.
//!
//! Per parameter, every step (the reference's order, Shi et al. Algorithm 1):
//! 1. `G <- G + wd W` (L2 decay, when not decoupled);
//! 2. each block's Kronecker factors `L_k <- beta2 L_k + (1 - beta2) G_(k) G_(k)^T` (a sum
//!    when `beta2 = 1`) and the grafted method's statistics take the raw `G`;
//! 3. every `precondition_frequency` steps, the inverse roots
//!    `R_k = (L_k / (1 - beta2^t) + eps I)^(-1/2o)` (order `o` of the block) on the host in f64;
//! 4. the filtered gradient `G_bar` (EMA with `beta1`, bias-corrected);
//! 5. the direction `P = G_bar x_1 R_1 ... x_o R_o` per block, rescaled to the grafted
//!    method's norm `||graft(G_bar)|| / (||P|| + 1e-16)` (before `start_preconditioning_step`:
//!    the grafted direction alone);
//! 6. `P <- P + wd W` (decoupled decay), momentum (`M <- mu M + (1 - dampening) P`; Nesterov
//!    `P <- (1 - dampening) P + mu M`, else `P <- M`), and `W <- W - lr P`.
//!
//! On a CPU backend the step runs on the host buffers with faer (`host_step`, `kernels`:
//! the factors' lower triangles only, mode products without transposes, the element-wise
//! steps fused); on a device backend by tensor ops. A factor's strict upper triangle is
//! not kept on the host; the roots read the lower one on both paths.
//!
//! Failures go to a [`ShampooHealth`] handle rather than a panic (burn's `Optimizer::step`
//! cannot return an error): the training loop checks it after every step
//! ([`crate::trainer::FitOptions::with_health`]).
//!
//! The training commands step [`DistributedShampoo`]: alone, the steps above; on a rank of
//! a data-parallel group ([`crate::parallel`]), the reference's block ownership (each block
//! stepped by one rank, [`assign_blocks`]) and one all-gather of the directions.

mod blocking;
mod config;
mod distributed;
mod error;
mod gather_state;
mod health;
mod host;
mod host_step;
mod inverse_root;
mod kernels;
mod ownership;
mod step;

pub use blocking::{Block, BlockPlan, merge_small_dims};
pub use config::{Grafting, ShampooConfig};
pub use distributed::DistributedShampoo;
pub use error::ShampooError;
pub use health::{HealthLog, ShampooHealth};
pub use inverse_root::{RootError, RootMethod, inverse_root};
pub use ownership::{assign_blocks, block_cost};
pub use step::{BlockState, Shampoo, ShampooState};

#[cfg(test)]
mod tests;
