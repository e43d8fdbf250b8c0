//! The side channel through which Shampoo reports failures and counts root computations.

use std::sync::{Arc, Mutex};

use super::error::ShampooError;

/// Counters and the first error of a [`super::Shampoo`]; cloned handles share them.
#[derive(Clone, Debug, Default)]
pub struct ShampooHealth(Arc<Mutex<HealthLog>>);

/// A snapshot of [`ShampooHealth`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthLog {
    /// Inverse roots computed (one per factor per due step).
    pub roots_computed: usize,
    /// Root computations that failed and kept the previous root.
    pub root_failures: usize,
    /// The first error; once set, steps leave parameters unchanged.
    pub error: Option<ShampooError>,
}

impl ShampooHealth {
    /// A copy of the counters.
    pub fn snapshot(&self) -> HealthLog {
        self.lock().clone()
    }

    /// `Err` with the first error, if any step failed.
    pub fn check(&self) -> Result<(), ShampooError> {
        match &self.lock().error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    pub(super) fn fail(&self, error: ShampooError) {
        let mut log = self.lock();
        if log.error.is_none() {
            log.error = Some(error);
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.lock().error.is_some()
    }

    pub(super) fn count_root(&self, ok: bool) {
        let mut log = self.lock();
        log.roots_computed += 1;
        if !ok {
            log.root_failures += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthLog> {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
