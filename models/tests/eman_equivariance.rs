//! EMAN's equivariance, on real meshes (CGAL's scans, `scripts/fetch-data meshes`; a
//! cortical surface, `scripts/fetch-data brainspace`): translate, rotate, scale, permute
//! the vertices, or turn every tangent frame by a random angle, recompute the geometry from
//! the transformed mesh, and compare the network's outputs with theory's prediction:
//! invariant scalars unchanged (permuted along with the vertices), order-`n` tangent
//! features turned by `-n gamma_p`. In f32 within 1e-4, in f64 within 1e-9. The XYZ
//! baseline, fed raw coordinates, must fail the same rotation test (the check can fail).

mod common;

use burn::tensor::{Tensor, backend::Backend};
use common::mesh;
use tether_deploy::mesh::{
    GeometryOptions, Mesh, MeshGeometry, RelTanOptions, mat_vec, uniform_rotation,
};
use tether_models::eman::{EmanGraph, EmanInput, EmanNet, EmanNetConfig};

type F32 = burn::backend::Flex;
type F64 = burn::backend::NdArray<f64>;

/// A deterministic pseudo-random stream in [0, 1).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn rotation(seed: u64) -> [[f64; 3]; 3] {
    let mut u = uniform(seed);
    uniform_rotation([u(), u(), u()])
}

struct Run<B: Backend> {
    net: EmanNet<B>,
    input: EmanInput,
}

impl<B: Backend> Run<B> {
    fn new(input: EmanInput) -> Self {
        let device = Default::default();
        B::seed(&device, 7);
        let net = EmanNetConfig::new(input.channels(), input.order(), 4)
            .with_channels(8)
            .with_blocks(1)
            .init(&device);
        Self { net, input }
    }

    /// `(per-vertex outputs, last hidden features)` as flat vectors.
    fn outputs(&self, mesh: &Mesh, gauge: Option<Vec<f64>>) -> (Vec<f64>, Vec<f64>, usize) {
        let device = Default::default();
        let geometry = MeshGeometry::new(
            mesh,
            &GeometryOptions {
                gauge_offsets: gauge,
            },
        )
        .unwrap();
        let graph = EmanGraph::<B>::new(&geometry, 2, &device);
        let x = self.input.features::<B>(mesh, &geometry, &device).unwrap();
        let features = self.net.features(x.clone(), &graph);
        let width = features.dims()[1] * features.dims()[2];
        let flat = |t: Tensor<B, 2>| t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
        let logits = flat(self.net.forward(x, &graph));
        let [v, c, d] = features.dims();
        (logits, flat(features.reshape([v, c * d])), width)
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Every transformation on `mesh`, outputs compared within `tol`.
fn check_all<B: Backend>(mesh: &Mesh, tol: f64) {
    let run = Run::<B>::new(EmanInput::RelTan(RelTanOptions {
        powers: vec![0.5, 0.7],
        ..Default::default()
    }));
    let (base, feats, width) = run.outputs(mesh, None);
    let scale = base.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "outputs are not all ~0 ({scale})");
    let outputs = base.len() / mesh.vertex_count();

    let r = rotation(11);
    let cases: [(&str, Mesh); 3] = [
        (
            "translation",
            mesh.map_positions(|p| [p[0] + 3.5, p[1] - 120.0, p[2] + 41.0])
                .unwrap(),
        ),
        ("rotation", mesh.map_positions(|p| mat_vec(&r, p)).unwrap()),
        ("scale", mesh.map_positions(|p| p.map(|c| 7.3 * c)).unwrap()),
    ];
    for (name, moved) in cases {
        let (out, _, _) = run.outputs(&moved, None);
        let d = max_diff(&base, &out);
        eprintln!("{name}: max |diff| {d:.2e} (outputs up to {scale:.2})");
        assert!(d < tol, "{name}: outputs moved by {d:e}");
    }

    // Permutation: vertex i of the permuted mesh is vertex order[i] of the original.
    let n = mesh.vertex_count();
    let mut u = uniform(5);
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, (u() * (i + 1) as f64) as usize);
    }
    let (out, _, _) = run.outputs(&mesh.permuted(&order).unwrap(), None);
    let expected: Vec<f64> = order
        .iter()
        .flat_map(|&o| base[o as usize * outputs..(o as usize + 1) * outputs].to_vec())
        .collect();
    let d = max_diff(&expected, &out);
    eprintln!("permutation: max |diff| {d:.2e}");
    assert!(d < tol, "permutation: outputs moved by {d:e}");

    // Gauge: every frame turned by gamma_p; scalars unchanged, order n turned by -n gamma.
    let gamma: Vec<f64> = (0..n)
        .map(|_| (u() - 0.5) * std::f64::consts::TAU)
        .collect();
    let (out, turned, _) = run.outputs(mesh, Some(gamma.clone()));
    let d = max_diff(&base, &out);
    eprintln!("gauge (scalars): max |diff| {d:.2e}");
    assert!(d < tol, "gauge: invariant outputs moved by {d:e}");
    let mut predicted = feats.clone();
    let d_feat = 5; // orders 0..=2
    for (p, g) in gamma.iter().enumerate() {
        for c in 0..width / d_feat {
            let at = p * width + c * d_feat;
            for order in 1..=2 {
                let a = -(order as f64) * g;
                let (x, y) = (feats[at + 2 * order - 1], feats[at + 2 * order]);
                predicted[at + 2 * order - 1] = a.cos() * x - a.sin() * y;
                predicted[at + 2 * order] = a.sin() * x + a.cos() * y;
            }
        }
    }
    let d = max_diff(&predicted, &turned);
    let moved = max_diff(&feats, &turned);
    eprintln!("gauge (tangent features): max |diff| {d:.2e} vs {moved:.2e} unturned");
    assert!(d < tol, "gauge: tangent features off theory by {d:e}");
    assert!(
        moved > 100.0 * tol,
        "the gauge change did not move the tangent features"
    );
}

#[test]
fn eman_is_equivariant_on_a_scan_in_f32_and_f64() {
    let Some(mesh) = mesh("meshes", "hand.off") else {
        return;
    };
    check_all::<F32>(&mesh, 1e-4);
    check_all::<F64>(&mesh, 1e-9);
}

#[test]
fn eman_is_equivariant_on_a_cortical_surface() {
    let Some(mesh) = mesh("brainspace", "fsa5.pial.lh.gii") else {
        return;
    };
    check_all::<F32>(&mesh, 1e-4);
}

#[test]
fn the_xyz_baseline_is_not_rotation_invariant() {
    let Some(mesh) = mesh("meshes", "hand.off") else {
        return;
    };
    let run = Run::<F32>::new(EmanInput::xyz_fitted(&mesh));
    let (base, _, _) = run.outputs(&mesh, None);
    let r = rotation(11);
    let (out, _, _) = run.outputs(&mesh.map_positions(|p| mat_vec(&r, p)).unwrap(), None);
    let d = max_diff(&base, &out);
    eprintln!("xyz baseline, rotation: max |diff| {d:.2e}");
    assert!(d > 1e-2, "raw coordinates should not be invariant ({d:e})");
    // It is still gauge equivariant (scalar inputs, equivariant layers).
    let n = mesh.vertex_count();
    let gamma: Vec<f64> = (0..n).map(|i| i as f64 * 0.37).collect();
    let (out, _, _) = run.outputs(&mesh, Some(gamma));
    assert!(max_diff(&base, &out) < 1e-4);
}
