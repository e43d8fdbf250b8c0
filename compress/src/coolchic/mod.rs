//! Cool-chic (Ladune et al. 2023; Leguay et al. 2023): an overfitted codec of latent
//! grids, an auto-regressive entropy model and a small synthesis network, fitted per image
//! under a bit budget that is a *constraint* (the multiplier of the file's size is the
//! rate-distortion trade-off, found by nuPI; the papers sweep a fixed lambda instead).
//!
//! - [`model`]: the burn module and its training forward pass (noise, then rounding).
//! - [`dual`]: the rate multiplier's controller (PI in the log domain, on the real size).
//! - [`fit`]: the constrained fit, the weights' quantisation steps, the budget check.
//! - [`refine`]: greedy latent moves that spend what the fit left under the budget,
//!   priced by [`local`] (the exact change of the decoded image's error).
//! - The file and its decoder live in `tether_deploy::coolchic` (`no_std`), and the
//!   encoder writes the file through it: the probabilities the entropy coder uses are
//!   computed by the decoder's own code on the quantised values, never by burn.

pub mod dual;
pub mod fit;
pub mod local;
pub mod model;
pub mod refine;

use tether_deploy::coolchic::Arch;

use crate::error::CompressError;

/// Levels of the pyramid for a `width x height` image: down to a coarsest level of at
/// least 4 pixels on its short side, at most 7 (Cool-chic's 1/64).
pub fn levels_for(width: usize, height: usize) -> usize {
    let short = width.min(height).max(1);
    let mut levels = 1;
    while levels < 7 && short >> levels >= 4 {
        levels += 1;
    }
    levels
}

/// The network shapes tried, smallest first: `(context, ARM hidden, synthesis hidden)`.
/// The largest (12 neighbours, two hidden layers of 24 in the ARM, two of 32 in the
/// synthesis) is about the first Cool-chic's.
pub const SHAPES: [(usize, &[usize], &[usize]); 8] = [
    (4, &[], &[6]),
    (6, &[], &[8]),
    (8, &[8], &[8]),
    (8, &[8], &[12]),
    (12, &[12], &[16]),
    (12, &[16, 16], &[16, 16]),
    (12, &[24, 24], &[24, 24]),
    (12, &[24, 24], &[32, 32]),
];

/// Bits a network weight takes on average (measured: 4-6 at the steps the fit picks).
pub const BITS_PER_WEIGHT: f64 = 6.0;
/// Share of the budget the networks may take.
pub const NETWORK_SHARE: f64 = 0.2;

/// The largest shape of [`SHAPES`] whose networks take at most [`NETWORK_SHARE`] of
/// `budget_bits` at [`BITS_PER_WEIGHT`].
///
/// # Errors
/// A budget too small for even the smallest shape's header and networks.
pub fn arch_for(budget_bits: usize, width: usize, height: usize) -> Result<Arch, CompressError> {
    let levels = levels_for(width, height);
    let shape = |(context, arm, synth): (usize, &[usize], &[usize])| Arch {
        levels,
        context,
        arm_hidden: arm.to_vec(),
        synth_hidden: synth.to_vec(),
    };
    let params = |a: &Arch| {
        let n = |m: tether_deploy::coolchic::Mlp| {
            m.layers
                .iter()
                .map(|l| l.weight.len() + l.bias.len())
                .sum::<usize>()
        };
        (n(a.arm()) + n(a.synthesis())) as f64
    };
    let smallest = shape(SHAPES[0]);
    // Header, checksum and the coder's flush: about 20 bytes.
    if (params(&smallest) * BITS_PER_WEIGHT + 160.0) > budget_bits as f64 * 0.8 {
        return Err(CompressError::BudgetTooSmall(format!(
            "{budget_bits} bits cannot hold the smallest Cool-chic network and any latents; \
             raise --bpp"
        )));
    }
    Ok(SHAPES
        .iter()
        .map(|&s| shape(s))
        .take_while(|a| params(a) * BITS_PER_WEIGHT <= NETWORK_SHARE * budget_bits as f64)
        .last()
        .unwrap_or(smallest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigger_budgets_buy_bigger_networks_and_tiny_ones_are_refused() {
        assert_eq!(levels_for(192, 128), 6);
        assert_eq!(levels_for(768, 512), 7);
        assert_eq!(levels_for(3, 3), 1);
        let small = arch_for(1720, 192, 128).unwrap();
        let large = arch_for(118_000, 768, 512).unwrap();
        assert!(small.arm().macs() < large.arm().macs());
        assert_eq!(large.synth_hidden, [32, 32]);
        assert!(matches!(
            arch_for(100, 192, 128),
            Err(CompressError::BudgetTooSmall(_))
        ));
    }
}
