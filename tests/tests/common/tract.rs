//! tract, the reference ONNX runtime in Rust, as the ONNX tests and the benchmark use it
//! (included by path): a model optimised for one input shape, single-threaded (tract's
//! default without its `multithread-mm` feature).

#![allow(dead_code)]

use tract_onnx::prelude::*;

/// A runnable tract model of ONNX bytes with its input fixed to `shape`.
pub fn runnable(onnx: &[u8], shape: &[usize]) -> Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .expect("tract loads the model")
        .with_input_fact(0, f32::fact(shape).into())
        .expect("input fact")
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("runnable")
}

/// The input as a tract value.
pub fn input(shape: &[usize], x: &[f32]) -> TValue {
    Tensor::from_shape(shape, x).expect("shape matches").into()
}

/// The first output of one run, flattened.
pub fn output(model: &Arc<TypedRunnableModel>, x: TValue) -> Vec<f32> {
    model.run(tvec!(x)).expect("tract runs")[0]
        .to_plain_array_view::<f32>()
        .expect("f32 output")
        .iter()
        .copied()
        .collect()
}

/// One run of ONNX bytes on `input` of `shape` (batch included).
pub fn tract(onnx: &[u8], shape: &[usize], x: &[f32]) -> Vec<f32> {
    output(&runnable(onnx, shape), input(shape, x))
}
