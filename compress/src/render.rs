//! Decoding: evaluate the SIREN on the pixel grid with `tether-deploy`, the same runtime a
//! microcontroller runs, in bands of rows so memory stays bounded whatever the image size.

use tether_deploy::{Model, Plan, PlanOptions};

use crate::error::CompressError;
use crate::format::CompressedImage;
use crate::grid::coordinates;
use crate::image::{Image, to_u8};
use crate::weights::SirenWeights;

/// Pixels evaluated per runtime call.
const BAND_PIXELS: usize = 4096;

/// Evaluates `weights` on a `width x height` grid, 8-bit RGB out (values clamped to
/// `[0, 1]`, then rounded).
///
/// # Errors
/// The runtime refuses the model, or the image has a zero dimension.
pub fn render(weights: &SirenWeights, width: usize, height: usize) -> Result<Image, CompressError> {
    if width == 0 || height == 0 {
        return Err(CompressError::EmptyImage);
    }
    let bytes = weights.to_deploy()?;
    let runtime = |e: tether_deploy::Error| CompressError::Invalid(format!("runtime: {e}"));
    let model = Model::parse(&bytes).map_err(runtime)?;
    let rows_per_band = (BAND_PIXELS / width).max(1);
    let options = PlanOptions {
        batch: rows_per_band * width,
        ..PlanOptions::default()
    };
    let mut plan = Plan::new(model, &options).map_err(runtime)?;
    let mut rgb = Vec::with_capacity(width * height * 3);
    let mut y = 0;
    while y < height {
        let end = (y + rows_per_band).min(height);
        let coords = coordinates(width, height, y..end);
        let out = plan.run(&coords).map_err(runtime)?;
        rgb.extend(out.iter().map(|&v| to_u8(v)));
        y = end;
    }
    Image::new(width, height, rgb)
}

/// Decodes a compressed file into an image.
///
/// # Errors
/// A corrupt file ([`CompressError::Corrupt`]) or a runtime error.
pub fn decode_file(bytes: &[u8]) -> Result<Image, CompressError> {
    if bytes.starts_with(&tether_deploy::coolchic::file::MAGIC) {
        let (w, h, rgb) = tether_deploy::coolchic::synthesis::decode_image(bytes)
            .map_err(|e| CompressError::Corrupt(e.to_string()))?;
        return Image::new(w, h, rgb);
    }
    let c = CompressedImage::decode(bytes)?;
    render(&c.weights, c.width, c.height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    use crate::weights::Architecture;

    #[test]
    fn the_runtime_computes_what_burn_computes() {
        let _rng = crate::rng_lock();
        // The decoder (tether-deploy: gemm, CSR kernels, its own sine) against burn's
        // forward pass on the same weights, dense and pruned.
        let device = Default::default();
        let arch = Architecture::new(4, 24);
        let siren = arch.config().init::<Flex>(&device);
        let dense = SirenWeights::from_siren(&siren, arch);
        let mut sparse = dense.clone();
        for l in &mut sparse.layers {
            for (i, w) in l.weight.iter_mut().enumerate() {
                if i % 7 != 0 {
                    *w = 0.0; // density 1/7: stored CSR, run by the sparse kernel
                }
            }
        }
        let (w, h) = (37, 23);
        let coords = coordinates(w, h, 0..h);
        for weights in [dense, sparse] {
            let expected = weights
                .to_siren::<Flex>(&device)
                .forward(Tensor::from_data(
                    TensorData::new(coords.clone(), [w * h, 2]),
                    &device,
                ))
                .into_data()
                .into_vec::<f32>()
                .unwrap();
            let bytes = weights.to_deploy().unwrap();
            let model = Model::parse(&bytes).unwrap();
            let options = PlanOptions {
                batch: w * h,
                ..PlanOptions::default()
            };
            let mut plan = Plan::new(model, &options).unwrap();
            let got = plan.run(&coords).unwrap();
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 2e-5, "max difference {worst}");
            // And the decoded image is those values, clamped and rounded.
            let img = render(&weights, w, h).unwrap();
            let direct: Vec<u8> = got.iter().map(|&v| to_u8(v)).collect();
            assert_eq!(img.rgb, direct);
        }
    }
}
