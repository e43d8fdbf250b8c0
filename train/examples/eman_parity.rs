//! How close tether-deploy's EMAN is to burn's, on the test hemisphere, for a model
//! trained by `tether-train mesh`: deploy (in f32 and in f64) and burn's f32 forward, each
//! against burn's forward in f64 (the same weights and geometry), and against each other.
//!
//! ```text
//! cargo run --release -p tether-train --features ndarray --example eman_parity -- out/mesh
//! ```

use std::path::PathBuf;

use anyhow::Context;
use burn::config::Config;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use tether_deploy::mesh::{GeometryOptions, MeshGeometry, MeshPlan, Precision, RelTanOptions};
use tether_deploy::{AlignedBytes, MeshFeatures, Model, Op};
use tether_models::eman::{EmanGraph, EmanInput, EmanNetConfig};
use tether_train::data::cortex::{CorticalParcellation, Parcellation};

fn forward<B: Backend>(
    dir: &std::path::Path,
    input: &EmanInput,
    data: &CorticalParcellation,
) -> anyhow::Result<Vec<f64>> {
    let device = Default::default();
    let config = EmanNetConfig::load(dir.join("config.json"))?;
    let net = config
        .init::<B>(&device)
        .load_file(
            dir.join("model.mpk"),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            &device,
        )
        .context("loading model.mpk")?;
    let mesh = &data.test.mesh;
    let geometry = MeshGeometry::new(mesh, &GeometryOptions::default())?;
    let graph = EmanGraph::<B>::new(&geometry, config.order, &device);
    let x = input.features::<B>(mesh, &geometry, &device)?;
    Ok(net
        .forward(x, &graph)
        .into_data()
        .convert::<f64>()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?)
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "out/mesh".into()));
    let bytes = std::fs::read(dir.join("model.tthr")).context("reading model.tthr")?;
    let aligned = AlignedBytes::from_slice(&bytes);
    let model = Model::parse(&aligned)?;
    // The input exactly as the deploy model computes it (f32 parameters).
    let input = model
        .nodes
        .iter()
        .find_map(|n| match n.op {
            Op::MeshFeatures(MeshFeatures::RelTan {
                powers,
                count,
                degree_power,
                constant,
            }) => Some(EmanInput::RelTan(RelTanOptions {
                powers: powers[..count].iter().map(|&p| f64::from(p)).collect(),
                degree_power: f64::from(degree_power),
                constant: f64::from(constant),
            })),
            Op::MeshFeatures(MeshFeatures::Xyz { mean, scale }) => Some(EmanInput::Xyz {
                mean: mean.map(f64::from),
                scale: f64::from(scale),
            }),
            _ => None,
        })
        .context("not a mesh model")?;
    let data = CorticalParcellation::load(Parcellation::Mesulam)?;
    let mut plan = MeshPlan::new(model)?.with_precision(Precision::F32);
    let deploy: Vec<f64> = plan
        .run(&data.test.mesh)?
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let deploy64 = plan.run_f64(&data.test.mesh)?;
    let burn32 = forward::<burn::backend::Flex>(&dir, &input, &data)?;
    let burn64 = forward::<burn::backend::NdArray<f64>>(&dir, &input, &data)?;
    let max_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let scale = burn64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    println!(
        "{}: {} outputs, largest |output| {scale:.1}\n  \
         deploy f32 vs burn f64: max |diff| {:.2e}\n  \
         deploy f64 vs burn f64: max |diff| {:.2e}\n  \
         burn f32 vs burn f64:   max |diff| {:.2e}\n  \
         deploy f32 vs burn f32: max |diff| {:.2e}\n  \
         deploy f64 vs burn f32: max |diff| {:.2e}",
        dir.display(),
        deploy.len(),
        max_diff(&deploy, &burn64),
        max_diff(&deploy64, &burn64),
        max_diff(&burn32, &burn64),
        max_diff(&deploy, &burn32),
        max_diff(&deploy64, &burn32),
    );
    Ok(())
}
