//! A per-thread generator for the sampled gates' noise, seeded once per training step.
//!
//! Why: burn's CPU backends (flex, ndarray) and cubecl keep *one* generator per process
//! (`Backend::seed` sets it, every `Tensor::random` consumes it). Data-parallel replicas
//! on threads (`tether-train prune --devices N`) seeding it with the same step seed would
//! interleave their draws, so each replica's gates would get a different part of the
//! stream, and none the single process's. With [`seed_thread`] the host gate path
//! ([`super::HardConcrete::gates`]) draws from a generator of this thread's own instead:
//! every replica draws exactly what the single process draws.
//!
//! The generator is the backend's type (burn-std's `StdRng`, rand 0.10), seeded the way
//! `Flex::seed` and `NdArray::seed` seed theirs (`seed_from_u64`) and drawn through the
//! same `TensorData::random`: on those backends a step's noise is bit for bit the one the
//! backend's generator gave before this module existed, so results do not change.

use std::cell::RefCell;

use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::host;

thread_local! {
    static STREAM: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// This thread's gate noise comes from a generator seeded with `seed` until the guard
/// drops (then from the backend's generator again, as before the call).
#[must_use = "the thread's generator is unset when the guard drops"]
pub fn seed_thread(seed: u64) -> ThreadNoise {
    let previous = STREAM.with(|s| s.borrow_mut().replace(StdRng::seed_from_u64(seed)));
    ThreadNoise { previous }
}

/// [`seed_thread`]'s scope: restores the thread's previous generator (usually none).
#[derive(Debug)]
pub struct ThreadNoise {
    previous: Option<StdRng>,
}

impl Drop for ThreadNoise {
    fn drop(&mut self) {
        let previous = self.previous.take();
        STREAM.with(|s| *s.borrow_mut() = previous);
    }
}

/// `n` uniform draws in `[0, 1)` (`f32` values, widened): from this thread's generator
/// when [`seed_thread`] set one, else from the backend's (a tensor on `device`, read back).
pub(crate) fn uniforms<B: Backend>(n: usize, device: &B::Device) -> Vec<f64> {
    let drawn = STREAM.with(|s| {
        s.borrow_mut()
            .as_mut()
            .map(|rng| TensorData::random::<f32, _, _>([n], Distribution::Default, rng))
    });
    match drawn {
        Some(data) => data.iter::<f32>().map(f64::from).collect(),
        None => host::read_f64(Tensor::<B, 1>::random([n], Distribution::Default, device)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Flex, NdArray};

    /// The thread's stream repeats the backend's generator seeded alike, draw for draw
    /// (three calls: the generator carries on between them as the backend's does).
    fn matches_backend<B: Backend>() {
        let device = Default::default();
        B::seed(&device, 77);
        let backend: Vec<Vec<f64>> = (0..3)
            .map(|_| host::read_f64(Tensor::<B, 1>::random([5], Distribution::Default, &device)))
            .collect();
        let _noise = seed_thread(77);
        let own: Vec<Vec<f64>> = (0..3).map(|_| uniforms::<B>(5, &device)).collect();
        assert_eq!(own, backend);
    }

    /// Runs `check` in a process of its own (this test binary again, filtered to `test`):
    /// the backend's generator is the process's, and the other tests of this binary draw
    /// from it on their threads meanwhile (seen: every other draw missing).
    fn alone(test: &str, check: fn()) {
        const CHILD: &str = "TETHER_NOISE_TEST_ALONE";
        if std::env::var_os(CHILD).is_some() {
            check();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_thread_stream_is_the_flex_generators() {
        alone(
            "l0::noise::tests::the_thread_stream_is_the_flex_generators",
            matches_backend::<Flex>,
        );
    }

    #[test]
    fn the_thread_stream_is_the_ndarray_generators() {
        alone(
            "l0::noise::tests::the_thread_stream_is_the_ndarray_generators",
            matches_backend::<NdArray>,
        );
    }

    /// Another thread drawing from the backend's generator meanwhile does not move this
    /// thread's stream, and the guard restores the backend's generator.
    #[test]
    fn other_threads_do_not_disturb_the_stream_and_the_guard_unsets_it() {
        let device = Default::default();
        let expected = {
            let _noise = seed_thread(5);
            uniforms::<Flex>(4, &device)
        };
        let _noise = seed_thread(5);
        std::thread::spawn(|| {
            Flex::seed(&Default::default(), 9);
            let _ = Tensor::<Flex, 1>::random([100], Distribution::Default, &Default::default());
        })
        .join()
        .unwrap();
        assert_eq!(uniforms::<Flex>(4, &device), expected);
        drop(_noise);
        assert!(STREAM.with(|s| s.borrow().is_none()));
    }
}
