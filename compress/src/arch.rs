//! Which SIREN a bit budget buys.
//!
//! COIN (Dupont et al. 2021, Sec. 4) searched the architecture per bpp on Kodak and
//! published the winners: 5x20 (0.07 bpp), 5x30 (0.15), 10x28 (0.3), 10x40 (0.6),
//! 13x49 (1.2). The depth of the band a target falls in is kept; the width is the largest
//! whose *real file* fits the budget, so a target slightly below COIN's (0.07 vs its
//! 0.0736) gets a slightly narrower network rather than an over-budget file. On smaller
//! images the same budget in bpp buys far fewer weights; the depth is then lowered until
//! the layers stay at least [`MIN_WIDTH_PER_LAYER`] times as wide as the network is deep
//! (COIN's winners have width/depth between 2.8 and 6).
//!
//! L0onie (Ramirez & Gallego-Posada 2022) starts from an over-parameterised network and
//! lets the bit-budget constraint prune it: the same depth, the width scaled so it has
//! about `overparam` times the weights COIN's network has.

use crate::error::CompressError;
use crate::format::dense_file_bytes;
use crate::weights::Architecture;

/// COIN's depth by bpp band: `(upper bound of the band, layers)`.
const COIN_DEPTHS: [(f64, usize); 5] = [
    (0.11, 5),
    (0.22, 5),
    (0.45, 10),
    (0.9, 10),
    (f64::INFINITY, 13),
];

/// Narrowest width per layer of depth the automatic choice accepts.
pub const MIN_WIDTH_PER_LAYER: f64 = 2.5;

/// COIN's depth for a target bpp.
pub fn coin_depth(bpp: f64) -> usize {
    COIN_DEPTHS
        .iter()
        .find(|&&(upper, _)| bpp < upper)
        .map_or(13, |&(_, d)| d)
}

fn budget_bytes(bpp: f64, width: usize, height: usize) -> usize {
    (bpp * (width * height) as f64 / 8.0).floor() as usize
}

/// Widest `layers`-deep network whose dense file fits the budget (`None` if not even one
/// unit does).
fn widest(layers: usize, budget: usize, width: usize, height: usize) -> Option<Architecture> {
    let fits = |w: usize| dense_file_bytes(&Architecture::new(layers, w), width, height) <= budget;
    if !fits(1) {
        return None;
    }
    let mut w = 1;
    while fits(w + 1) {
        w += 1;
    }
    Some(Architecture::new(layers, w))
}

/// COIN's network for `bpp` on a `width x height` image (see the module documentation).
///
/// # Errors
/// A budget no 1-layer network fits in, or a non-positive bpp.
pub fn coin_architecture(
    bpp: f64,
    width: usize,
    height: usize,
) -> Result<Architecture, CompressError> {
    if !(bpp.is_finite() && bpp > 0.0) {
        return Err(CompressError::Invalid(format!(
            "the target bpp must be a positive number, got {bpp}"
        )));
    }
    let budget = budget_bytes(bpp, width, height);
    let mut best = None;
    for layers in (1..=coin_depth(bpp)).rev() {
        if let Some(arch) = widest(layers, budget, width, height) {
            if arch.width as f64 >= MIN_WIDTH_PER_LAYER * layers as f64 {
                return Ok(arch);
            }
            best.get_or_insert(arch);
            if layers == 1 {
                return Ok(arch);
            }
        }
    }
    best.ok_or_else(|| {
        CompressError::BudgetTooSmall(format!(
            "{bpp} bpp on a {width}x{height} image is {budget} bytes, less than the smallest \
             network's file ({} bytes); raise --bpp",
            dense_file_bytes(&Architecture::new(1, 1), width, height)
        ))
    })
}

/// L0onie's starting network: COIN's depth, about `overparam` times the weights the
/// budget holds at `value_bits` bits a value (COIN's weights times `16 / value_bits`).
///
/// # Errors
/// As [`coin_architecture`], `overparam < 1`, or `value_bits` outside 2..=16.
pub fn l0onie_architecture(
    bpp: f64,
    width: usize,
    height: usize,
    overparam: f64,
    value_bits: u8,
) -> Result<Architecture, CompressError> {
    if !(2..=16).contains(&value_bits) {
        return Err(CompressError::Invalid(format!(
            "values take 2 to 16 bits, not {value_bits}"
        )));
    }
    if !(overparam.is_finite() && overparam >= 1.0) {
        return Err(CompressError::Invalid(format!(
            "--overparam must be >= 1, got {overparam}"
        )));
    }
    let coin = coin_architecture(bpp, width, height)?;
    let target = overparam * coin.params() as f64 * 16.0 / f64::from(value_bits);
    let mut arch = coin;
    while (Architecture::new(coin.layers, arch.width + 1).params() as f64) <= target {
        arch.width += 1;
    }
    Ok(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coins_published_architectures_at_their_own_rates() {
        // At the rate of each COIN network's own file (its published bpp plus the few
        // header bytes), Kodak's 768x512 gets COIN's network back.
        for (layers, width) in [(5, 20), (5, 30), (10, 28), (10, 40)] {
            let bytes = dense_file_bytes(&Architecture::new(layers, width), 768, 512);
            let bpp = (bytes * 8) as f64 / (768.0 * 512.0);
            let a = coin_architecture(bpp, 768, 512).unwrap();
            assert_eq!((a.layers, a.width), (layers, width), "{bpp}");
        }
    }

    #[test]
    fn the_chosen_network_always_fits_its_budget() {
        for bpp in [0.07, 0.15, 0.3, 0.6, 1.2] {
            for (w, h) in [(768, 512), (192, 128), (96, 64)] {
                let a = coin_architecture(bpp, w, h).unwrap();
                let bytes = dense_file_bytes(&a, w, h);
                assert!(
                    bytes * 8 <= (bpp * (w * h) as f64) as usize,
                    "{bpp} {w}x{h}: {a:?}"
                );
                let wider = Architecture::new(a.layers, a.width + 1);
                assert!(dense_file_bytes(&wider, w, h) as f64 * 8.0 > bpp * (w * h) as f64);
            }
        }
    }

    #[test]
    fn small_images_get_shallower_networks_and_tiny_budgets_an_error() {
        let a = coin_architecture(0.07, 192, 128).unwrap();
        assert!(
            a.layers < 5 && a.width as f64 >= MIN_WIDTH_PER_LAYER * a.layers as f64,
            "{a:?}"
        );
        let err = coin_architecture(0.01, 32, 32).unwrap_err();
        assert!(matches!(err, CompressError::BudgetTooSmall(_)), "{err}");
        assert!(coin_architecture(-1.0, 32, 32).is_err());
        assert!(coin_architecture(f64::NAN, 32, 32).is_err());
    }

    #[test]
    fn l0onie_starts_overparameterised() {
        let coin = coin_architecture(0.3, 768, 512).unwrap();
        let l0 = l0onie_architecture(0.3, 768, 512, 2.0, 16).unwrap();
        assert_eq!(l0.layers, coin.layers);
        let ratio = l0.params() as f64 / coin.params() as f64;
        assert!((1.8..=2.0).contains(&ratio), "{ratio}");
        assert!(l0onie_architecture(0.3, 768, 512, 0.5, 16).is_err());
        // Fewer bits a value: the budget holds more weights, so the start is larger.
        let l8 = l0onie_architecture(0.3, 768, 512, 2.0, 8).unwrap();
        let ratio = l8.params() as f64 / coin.params() as f64;
        assert!((3.6..=4.0).contains(&ratio), "{ratio}");
    }
}
