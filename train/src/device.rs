//! Picking a backend at run time: `--device flex|ndarray|cuda|wgpu`.
//!
//! Training code is generic over `B: AutodiffBackend`; a command describes its work as a
//! [`BackendTask`] and [`run_on`] monomorphises it for the backend the user named. A
//! device whose cargo feature was not compiled in is a clear error, not a missing flag.

use std::fmt;

use burn::tensor::backend::AutodiffBackend;

/// The devices a command can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// burn's pure-Rust CPU backend (feature `flex`, the default).
    Flex,
    /// burn's ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// An NVIDIA GPU through burn's CUDA backend (feature `cuda`).
    Cuda,
    /// burn's wgpu backend (feature `wgpu`): any Vulkan device, including Mesa's
    /// software Vulkan (lavapipe), which lets device-resident code run without a GPU.
    Wgpu,
}

impl DeviceKind {
    /// The cargo feature that compiles this device in.
    pub fn feature(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
        }
    }

    /// Whether the backend computes on the host CPU (flex, ndarray): one device, which
    /// data-parallel replicas share as threads (`--devices N`).
    pub fn is_cpu(self) -> bool {
        matches!(self, Self::Flex | Self::Ndarray)
    }

    /// Whether this binary was built with the device's feature.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::Ndarray => cfg!(feature = "ndarray"),
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The devices compiled into this binary.
    pub fn compiled() -> Vec<DeviceKind> {
        [Self::Flex, Self::Ndarray, Self::Cuda, Self::Wgpu]
            .into_iter()
            .filter(|d| d.is_compiled())
            .collect()
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.feature())
    }
}

/// The `--device` flag, to `#[command(flatten)]` into any command.
#[derive(Clone, Debug, clap::Args)]
pub struct DeviceArgs {
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = DeviceKind::Flex)]
    pub device: DeviceKind,
}

/// The device named cannot be used by this binary on this machine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// The device's cargo feature was not compiled in.
    #[error(
        "device `{device}` is not compiled into this binary: rebuild with `--features {feature}` (compiled: {compiled})"
    )]
    NotCompiled {
        /// The device asked for.
        device: DeviceKind,
        /// The feature that provides it.
        feature: &'static str,
        /// What this binary has.
        compiled: String,
    },
    /// The device is compiled in but this machine does not have it.
    #[error("device `{device}` is not available on this machine: {reason}")]
    Unavailable {
        /// The device asked for.
        device: DeviceKind,
        /// What is missing.
        reason: &'static str,
    },
}

/// Work that can run on any autodiff backend.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` and its `device`.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs `task` on the backend named by `kind`.
pub fn run_on<T: BackendTask>(kind: DeviceKind, task: T) -> Result<T::Output, DeviceError> {
    // burn's CUDA runtime panics deep inside its device thread when there is no driver;
    // on Linux the driver's control node tells us first.
    if kind == DeviceKind::Cuda
        && kind.is_compiled()
        && cfg!(target_os = "linux")
        && !std::path::Path::new("/dev/nvidiactl").exists()
    {
        return Err(DeviceError::Unavailable {
            device: kind,
            reason: "no NVIDIA driver (/dev/nvidiactl is missing)",
        });
    }
    match kind {
        #[cfg(feature = "flex")]
        DeviceKind::Flex => {
            Ok(task.run::<burn::backend::Autodiff<burn::backend::Flex>>(Default::default()))
        }
        #[cfg(feature = "ndarray")]
        DeviceKind::Ndarray => {
            Ok(task.run::<burn::backend::Autodiff<burn::backend::NdArray>>(Default::default()))
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            Ok(task.run::<burn::backend::Autodiff<burn::backend::Cuda>>(Default::default()))
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            Ok(task.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(Default::default()))
        }
        #[allow(unreachable_patterns)] // reachable whenever a feature is off
        other => Err(DeviceError::NotCompiled {
            device: other,
            feature: other.feature(),
            compiled: DeviceKind::compiled()
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Name;
    impl BackendTask for Name {
        type Output = String;
        fn run<B: AutodiffBackend>(self, _device: B::Device) -> String {
            core::any::type_name::<B>().to_string()
        }
    }

    #[test]
    fn compiled_devices_run_and_others_are_clear_errors() {
        for kind in [
            DeviceKind::Flex,
            DeviceKind::Ndarray,
            DeviceKind::Cuda,
            DeviceKind::Wgpu,
        ] {
            if kind == DeviceKind::Cuda && kind.is_compiled() {
                // needs a GPU (scripts/gpu-check); without one, a clear error
                if !std::path::Path::new("/dev/nvidiactl").exists() {
                    let err = run_on(kind, Name).unwrap_err().to_string();
                    assert!(err.contains("no NVIDIA driver"), "{err}");
                }
                continue;
            }
            match run_on(kind, Name) {
                Ok(name) => {
                    assert!(kind.is_compiled());
                    assert!(name.to_lowercase().contains(kind.feature()), "{name}");
                }
                Err(e) => {
                    assert!(!kind.is_compiled());
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&format!("--features {}", kind.feature())),
                        "{msg}"
                    );
                }
            }
        }
    }
}
