use burn::tensor::{Distribution, Int, Tensor, TensorData, backend::Backend};
use std::time::Instant;

fn bench<B: Backend>(name: &str) {
    let device = Default::default();
    let e = 32492 * 6;
    let x2: Tensor<B, 2> = Tensor::random([e, 80], Distribution::Default, &device);
    let c5: Tensor<B, 2> = Tensor::random([e, 5], Distribution::Default, &device);
    let perm: Vec<i64> = (0..16)
        .flat_map(|c| [0, 2, 1, 4, 3].map(|d| c * 5 + d))
        .collect();
    let perm = Tensor::<B, 1, Int>::from_data(TensorData::new(perm, [80]), &device);
    let q: Tensor<B, 2> = Tensor::random([80, 80], Distribution::Default, &device);
    for _ in 0..2 {
        let t = Instant::now();
        let _ = x2.clone().select(1, perm.clone()).sum().into_scalar();
        let a = t.elapsed();
        let t = Instant::now();
        let _ = c5.clone().repeat_dim(1, 16).sum().into_scalar();
        let b = t.elapsed();
        let t = Instant::now();
        let _ = x2.clone().matmul(q.clone()).sum().into_scalar();
        let c = t.elapsed();
        let t = Instant::now();
        let _ = (x2.clone() * x2.clone()).sum().into_scalar();
        let d = t.elapsed();
        let t = Instant::now();
        let _ = x2.clone().sum().into_scalar();
        let s = t.elapsed();
        println!("{name}: select cols {a:?} repeat {b:?} matmul80 {c:?} mul {d:?} sum {s:?}");
    }
}

fn main() {
    bench::<burn::backend::Flex>("flex");
}
