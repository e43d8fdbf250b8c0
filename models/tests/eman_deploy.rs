//! An EMAN exported to `tether-deploy`'s format and run by its `MeshPlan` computes what
//! burn computes, on real meshes (CGAL's hand, `scripts/fetch-data meshes`; a cortical
//! surface, `scripts/fetch-data brainspace`), within 1e-4 in f32 and within 1e-9 in f64
//! (`Precision::F64` against burn's network in f64, the same f32 weights); and the
//! per-sample `Plan` refuses a mesh model with a clear error.

mod common;

use burn::module::Module;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use common::mesh;
use tether_deploy::mesh::{
    GeometryOptions, Mesh, MeshGeometry, MeshPlan, Precision, RelTanOptions,
};
use tether_deploy::{AlignedBytes, Error, Model, Plan, PlanOptions};
use tether_models::eman::export::to_deploy;
use tether_models::eman::{EmanGraph, EmanInput, EmanNetConfig};

type B = burn::backend::Flex;

fn parity(mesh: &Mesh, input: EmanInput, blocks: usize) -> f64 {
    let device = Default::default();
    B::seed(&device, 3);
    let net = EmanNetConfig::new(input.channels(), input.order(), 5)
        .with_channels(8)
        .with_blocks(blocks)
        .init::<B>(&device);
    let geometry = MeshGeometry::new(mesh, &GeometryOptions::default()).unwrap();
    let graph = EmanGraph::<B>::new(&geometry, 2, &device);
    let x = input.features::<B>(mesh, &geometry, &device).unwrap();
    let want: Vec<f32> = net.forward(x, &graph).into_data().to_vec().unwrap();

    let bytes = AlignedBytes::from_slice(&to_deploy(&net, &input).unwrap());
    let model = Model::parse(&bytes).unwrap();
    let mut plan = MeshPlan::new(model).unwrap();
    assert_eq!(plan.output_width(), 5);
    let got = plan.run(mesh).unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-2, "outputs are not all ~0");
    got.iter()
        .zip(&want)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn deploy_runs_an_exported_eman_as_burn_does() {
    let Some(hand) = mesh("meshes", "hand.off") else {
        return;
    };
    let reltan = EmanInput::RelTan(RelTanOptions {
        powers: vec![0.5, 0.7],
        ..Default::default()
    });
    for blocks in [0, 2] {
        let d = parity(&hand, reltan.clone(), blocks);
        eprintln!("hand, RelTan, {blocks} blocks: max |diff| {d:.2e}");
        assert!(d < 1e-4, "{d:e}");
    }
    let d = parity(&hand, EmanInput::xyz_fitted(&hand), 1);
    eprintln!("hand, XYZ: max |diff| {d:.2e}");
    assert!(d < 1e-4, "{d:e}");
}

#[test]
fn deploy_matches_burn_on_a_cortical_surface() {
    let Some(cortex) = mesh("brainspace", "fsa5.pial.lh.gii") else {
        return;
    };
    let d = parity(&cortex, EmanInput::RelTan(RelTanOptions::default()), 1);
    eprintln!("fsa5 cortex: max |diff| {d:.2e}");
    assert!(d < 1e-4, "{d:e}");
}

/// Largest |deploy f64 - burn f64| (and the largest |output|) for a random network whose
/// f32 weights are loaded into burn's f64 backend.
fn parity_f64(mesh: &Mesh, input: EmanInput, blocks: usize) -> (f64, f64) {
    type F64 = burn::backend::NdArray<f64>;
    let device = Default::default();
    B::seed(&device, 5);
    let config = EmanNetConfig::new(input.channels(), input.order(), 5)
        .with_channels(8)
        .with_blocks(blocks);
    let net = config.init::<B>(&device);
    let bytes = AlignedBytes::from_slice(&to_deploy(&net, &input).unwrap());
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let record = recorder.record(net.into_record(), ()).unwrap();
    let device64 = Default::default();
    let net64 = config
        .init::<F64>(&device64)
        .load_record(recorder.load(record, &device64).unwrap());
    let geometry = MeshGeometry::new(mesh, &GeometryOptions::default()).unwrap();
    let graph = EmanGraph::<F64>::new(&geometry, 2, &device64);
    let x = input.features::<F64>(mesh, &geometry, &device64).unwrap();
    let want: Vec<f64> = net64.forward(x, &graph).into_data().to_vec().unwrap();

    let plan = MeshPlan::new(Model::parse(&bytes).unwrap())
        .unwrap()
        .with_precision(Precision::F64);
    let got = plan.run_f64(mesh).unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    (diff, scale)
}

#[test]
fn deploy_in_f64_computes_burns_f64_network() {
    let Some(hand) = mesh("meshes", "hand.off") else {
        return;
    };
    // The model file holds the RelTan powers in f32: burn's input gets the same ones.
    let reltan = EmanInput::RelTan(RelTanOptions {
        powers: vec![0.5, f64::from(0.7f32)],
        ..Default::default()
    });
    for (input, blocks) in [(reltan, 2), (EmanInput::xyz_fitted(&hand), 1)] {
        let (d, scale) = parity_f64(&hand, input, blocks);
        eprintln!("hand, f64, {blocks} blocks: max |diff| {d:.2e} (outputs up to {scale:.2})");
        assert!(scale > 1e-2, "outputs are not all ~0");
        assert!(d < 1e-9, "{d:e}");
    }
}

#[test]
fn a_mesh_model_needs_a_mesh() {
    let device = Default::default();
    let net = EmanNetConfig::new(1, 1, 3).init::<B>(&device);
    let input = EmanInput::RelTan(RelTanOptions::default());
    let bytes = AlignedBytes::from_slice(&to_deploy(&net, &input).unwrap());
    let model = Model::parse(&bytes).unwrap();
    let err = Plan::new(model, &PlanOptions::default()).err().unwrap();
    assert_eq!(err, Error::NeedsMesh);
    // Seven RelTan powers do not fit the op's parameters.
    let seven = EmanInput::RelTan(RelTanOptions {
        powers: vec![0.5; 7],
        ..Default::default()
    });
    let net = EmanNetConfig::new(7, 1, 3).init::<B>(&device);
    assert!(to_deploy(&net, &seven).is_err());
}
