//! The host/device boundary of training: where the numbers of a step are computed, and
//! every read of a tensor back to host memory, counted.
//!
//! On a CPU backend (burn-flex, ndarray) "device" memory is host memory: reading a tensor
//! is a copy, and a fused host loop over 266,200 gate locations beats a dozen element-wise
//! tensor ops and their backward passes (BENCHMARKS.md, "Cost of the L0 gates"). On a GPU
//! each read is a synchronisation that drains the queue and stalls the step, so the same
//! code must keep the step on the device and read back only what logging asks for.
//! [`residency`] decides which, in one place; [`force_residency`] overrides it (tests run
//! the device path on flex, where it can be compared with the host path).
//!
//! Every host read of the training code goes through [`read`] (clippy's
//! `disallowed-methods`, in the crates' `clippy.toml`, rejects `Tensor::into_data`,
//! `to_data` and `into_scalar` elsewhere), which counts it per thread: a test can then
//! assert how many reads a training step makes ([`ReadCounter`], [`record_steps`]).

use std::cell::{Cell, RefCell};

use burn::tensor::backend::Backend;
use burn::tensor::{BasicOps, Tensor, TensorData};

/// Where a training step's computations run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    /// On the host, in fused loops over `TensorData`; reads are memory copies.
    Host,
    /// On the device, as tensor ops; no host read except what logging asks for.
    Device,
}

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
    static FORCED: Cell<Option<Residency>> = const { Cell::new(None) };
    static STEPS: RefCell<Option<Vec<u64>>> = const { RefCell::new(None) };
}

/// Whether backend `B` (on `device`) keeps a step on the host or on the device: host for
/// burn's CPU backends (`flex`, `ndarray`, under autodiff or not), device for every other
/// (cuda, wgpu, rocm, metal, fusion), unless [`force_residency`] says otherwise on this
/// thread.
pub fn residency<B: Backend>(device: &B::Device) -> Residency {
    if let Some(forced) = FORCED.with(Cell::get) {
        return forced;
    }
    residency_of_name(&B::name(device))
}

/// [`residency`] by the backend's name (`B::name`): `autodiff<flex>` is host,
/// `autodiff<fusion<cubecl<cuda>>>` device.
fn residency_of_name(name: &str) -> Residency {
    let inner = name
        .trim_start_matches("autodiff<")
        .trim_end_matches('>')
        .to_ascii_lowercase();
    match inner.as_str() {
        "flex" | "ndarray" => Residency::Host,
        _ => Residency::Device,
    }
}

/// Forces [`residency`] on this thread until the guard is dropped (the previous setting
/// is restored then).
#[must_use = "the residency is forced only while the guard lives"]
pub fn force_residency(residency: Residency) -> ForcedResidency {
    ForcedResidency {
        previous: FORCED.with(|f| f.replace(Some(residency))),
    }
}

/// Restores the residency in force before [`force_residency`] when dropped.
pub struct ForcedResidency {
    previous: Option<Residency>,
}

impl Drop for ForcedResidency {
    fn drop(&mut self) {
        FORCED.with(|f| f.set(self.previous));
    }
}

/// Reads `tensor` back to the host: the one place the training code does (each call is
/// one synchronisation on a GPU), counted on this thread.
#[allow(
    clippy::disallowed_methods,
    reason = "the counted helper every other host read goes through"
)]
pub fn read<B: Backend, const D: usize, K: BasicOps<B>>(tensor: Tensor<B, D, K>) -> TensorData {
    READS.with(|r| r.set(r.get() + 1));
    tensor.into_data()
}

/// A float tensor's values as `f64`, through [`read`].
pub fn read_f64<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    read(tensor).iter::<f64>().collect()
}

/// Host reads made on this thread since it was made.
#[derive(Clone, Copy, Debug)]
pub struct ReadCounter {
    start: u64,
}

impl ReadCounter {
    /// Starts counting from now.
    pub fn start() -> Self {
        Self {
            start: READS.with(Cell::get),
        }
    }

    /// Reads made on this thread since [`Self::start`].
    pub fn reads(&self) -> u64 {
        READS.with(Cell::get) - self.start
    }
}

/// Records the host reads of every training step run on this thread while the guard
/// lives (the training loop calls [`step_done`] after each step); [`StepRecording::take`]
/// returns them.
#[must_use = "steps are recorded only while the guard lives"]
pub fn record_steps() -> StepRecording {
    STEPS.with(|s| *s.borrow_mut() = Some(Vec::new()));
    StepRecording { _private: () }
}

/// See [`record_steps`].
pub struct StepRecording {
    _private: (),
}

impl StepRecording {
    /// The host reads of each step recorded so far, in order.
    pub fn take(&self) -> Vec<u64> {
        STEPS.with(|s| {
            s.borrow_mut()
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        })
    }
}

impl Drop for StepRecording {
    fn drop(&mut self) {
        STEPS.with(|s| *s.borrow_mut() = None);
    }
}

/// Called by the training loop after each step with the counter started before it:
/// appends its reads to the recording of [`record_steps`], if one is running.
pub fn step_done(counter: ReadCounter) {
    STEPS.with(|s| {
        if let Some(steps) = s.borrow_mut().as_mut() {
            steps.push(counter.reads());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn cpu_backends_are_host_resident_and_the_rest_device_resident() {
        assert_eq!(residency_of_name("flex"), Residency::Host);
        assert_eq!(residency_of_name("autodiff<flex>"), Residency::Host);
        assert_eq!(residency_of_name("ndarray"), Residency::Host);
        assert_eq!(
            residency_of_name("autodiff<fusion<cubecl<cuda>>>"),
            Residency::Device
        );
        assert_eq!(residency_of_name("cubecl<wgpu<vulkan>>"), Residency::Device);
        let device = Default::default();
        assert_eq!(residency::<Autodiff<Flex>>(&device), Residency::Host);
    }

    #[test]
    fn forcing_is_scoped_to_the_guard() {
        let device = Default::default();
        {
            let _g = force_residency(Residency::Device);
            assert_eq!(residency::<Flex>(&device), Residency::Device);
            {
                let _h = force_residency(Residency::Host);
                assert_eq!(residency::<Flex>(&device), Residency::Host);
            }
            assert_eq!(residency::<Flex>(&device), Residency::Device);
        }
        assert_eq!(residency::<Flex>(&device), Residency::Host);
    }

    #[test]
    fn reads_are_counted_per_thread_and_per_step() {
        let device = Default::default();
        let t = Tensor::<Flex, 1>::from_floats([1.0, 2.0], &device);
        let counter = ReadCounter::start();
        let recording = record_steps();
        assert_eq!(read_f64(t.clone()), vec![1.0, 2.0]);
        step_done(counter);
        let counter = ReadCounter::start();
        step_done(counter);
        let counter = ReadCounter::start();
        read(t.clone());
        read(t.clone().equal_elem(1.0));
        step_done(counter);
        assert_eq!(recording.take(), vec![1, 0, 2]);
        std::thread::spawn(move || read(t)).join().unwrap();
        assert_eq!(counter.reads(), 2, "another thread's read is not counted");
    }
}
