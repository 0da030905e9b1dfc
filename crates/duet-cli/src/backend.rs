//! The only place that names concrete burn backends.

use anyhow::Result;
use burn::tensor::Device;
use clap::ValueEnum;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (burn's `flex` backend, multi-threaded, SIMD).
    Cpu,
    /// A GPU through wgpu (Vulkan on Linux); needs the `wgpu` feature.
    Wgpu,
}

impl DeviceKind {
    /// The burn device, or an error saying how to get it.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => anyhow::bail!(
                "this duet was built without GPU support; rebuild with `--features wgpu`"
            ),
        }
    }
}
