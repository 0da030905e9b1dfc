//! The only place that names concrete burn backends.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use duet_train::MemoryBudget;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (burn's `flex` backend, multi-threaded, SIMD).
    Cpu,
    /// A GPU through wgpu (Vulkan on Linux); needs the `wgpu` feature.
    Wgpu,
    /// An NVIDIA GPU through CUDA; needs the `cuda` feature.
    Cuda,
}

impl DeviceKind {
    /// The burn device, or an error saying how to get it.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => bail!(NO_WGPU),
            #[cfg(feature = "cuda")]
            Self::Cuda => cuda_driver().map(|()| Device::cuda(0)),
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => bail!(NO_CUDA),
        }
    }

    /// Every device of this kind on the machine: the one CPU device (flex spreads its work over
    /// every core), or every adapter wgpu lists.
    fn all(self) -> Result<Vec<Device>> {
        match self {
            Self::Cpu => Ok(vec![Device::flex()]),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => listed(burn::tensor::DeviceType::Wgpu, "wgpu"),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => bail!(NO_WGPU),
            #[cfg(feature = "cuda")]
            Self::Cuda => {
                cuda_driver().and_then(|()| listed(burn::tensor::DeviceType::Cuda, "CUDA"))
            }
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => bail!(NO_CUDA),
        }
    }
}

/// Whether the CUDA driver library loads and sees a GPU: a one-line error before any work
/// where cubecl's CUDA runtime would panic in a worker thread (no driver, no device).
#[cfg(feature = "cuda")]
fn cuda_driver() -> Result<()> {
    // SAFETY: loads the driver library by the names cudarc would (running its initialisers, as
    // the CUDA runtime's first call would) and calls nothing in it.
    #[allow(unsafe_code)]
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    if !present {
        bail!(
            "--device cuda: no CUDA driver on this machine (libcuda.so.1 does not load; if it \
             is installed elsewhere, add its directory to LD_LIBRARY_PATH)"
        );
    }
    cudarc::driver::result::init()
        .map_err(|e| anyhow::anyhow!("--device cuda: the CUDA driver does not start: {e}"))?;
    let count = cudarc::driver::result::device::get_count()
        .map_err(|e| anyhow::anyhow!("--device cuda: the CUDA driver lists no device: {e}"))?;
    if count < 1 {
        bail!("--device cuda: the CUDA driver sees no GPU");
    }
    Ok(())
}

/// Every device burn enumerates of `kind`; none is an error.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn listed(kind: burn::tensor::DeviceType, name: &str) -> Result<Vec<Device>> {
    let devices: Vec<Device> = Device::enumerate(kind).into_iter().collect();
    if devices.is_empty() {
        bail!("{name} lists no device on this machine");
    }
    Ok(devices)
}

#[cfg(not(feature = "cuda"))]
const NO_CUDA: &str = "this duet was built without CUDA; rebuild with `--features cuda` after \
                       scripts/setup_cuda_llvm.sh";

#[cfg(not(feature = "wgpu"))]
const NO_WGPU: &str = "this duet was built without GPU support; rebuild with `--features wgpu`";

/// Where a run trains: `--device` and `--devices`.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Where to train.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Train data-parallel on several devices: `all` (every device of `--device`'s kind) or a
    /// list such as `wgpu:0,wgpu:1`. Each device takes `train.batch_size` samples of a step,
    /// and every sample is a negative for all others: the global batch is `batch_size ×
    /// accum_freq × devices`. `cpu` may repeat (`cpu,cpu`): ranks sharing the one CPU device,
    /// which exercises the data-parallel path but is not faster.
    #[arg(long, value_name = "LIST")]
    devices: Option<String>,
}

impl DeviceArgs {
    /// The devices of a process that is one of several on its node, `local_rank` among them:
    /// with `--device cuda` or `wgpu` and no `--devices` list, the `local_rank`-th GPU (one
    /// process per GPU, as `mpirun -np 8` on an 8-GPU node); otherwise as [`Self::resolve`].
    pub fn resolve_for(&self, local_rank: Option<usize>) -> Result<Vec<Device>> {
        let (Some(rank), None, DeviceKind::Cuda | DeviceKind::Wgpu) =
            (local_rank, &self.devices, self.device)
        else {
            return self.resolve();
        };
        let listed = self.device.all()?;
        let count = listed.len();
        let Some(device) = listed.into_iter().nth(rank) else {
            bail!(
                "local rank {rank} wants GPU {rank}, and this node lists {count}: start at most \
                 {count} process(es) per node"
            );
        };
        Ok(vec![device.autodiff()])
    }

    /// The autodiff devices to train on, the first holding the model and the optimizer.
    pub fn resolve(&self) -> Result<Vec<Device>> {
        let devices = match self.devices.as_deref().map(str::trim) {
            None => vec![self.device.device()?],
            Some("all") => self.device.all()?,
            Some(list) => list
                .split(',')
                .map(|entry| parse_device(entry.trim()))
                .collect::<Result<_>>()?,
        };
        Ok(devices.into_iter().map(Device::autodiff).collect())
    }
}

/// The memory a training step of this process may use. Host memory is the machine's available
/// memory (`MemAvailable`) shared by the job's `local_processes` on this node (not checked
/// where `/proc/meminfo` cannot be read): on the CPU the whole step lives there; on GPUs the
/// loader's batch does, and each device's share is checked against the free memory of the
/// emptiest CUDA device. wgpu does not tell a device's memory, so a wgpu step's device share is
/// not checked.
pub fn memory_budget(devices: &[Device], local_processes: usize) -> MemoryBudget {
    let host =
        proc_bytes("/proc/meminfo", "MemAvailable").map(|b| b / local_processes.max(1) as u64);
    let cpu = Device::flex().autodiff();
    if devices.iter().all(|d| *d == cpu) {
        return host.map_or(MemoryBudget::Unchecked, MemoryBudget::Host);
    }
    MemoryBudget::Gpu {
        host,
        device: cuda_free_memory(devices),
    }
}

/// The free memory of the emptiest of `devices`, when every one is a CUDA device whose driver
/// answers; `None` otherwise (a wgpu run of a CUDA build on a machine without the driver, too:
/// cudarc's calls panic when the library is missing, so [`cuda_driver`] asks first).
#[cfg(feature = "cuda")]
fn cuda_free_memory(devices: &[Device]) -> Option<u64> {
    cuda_driver().ok()?;
    let count = usize::try_from(cudarc::driver::result::device::get_count().ok()?).ok()?;
    devices
        .iter()
        .try_fold(None, |smallest: Option<u64>, device| {
            let ordinal = (0..count).find(|&i| *device == Device::cuda(i).autodiff())?;
            // The device's primary context, the one cubecl's runtime retains too.
            let (free, _total) = cudarc::driver::CudaContext::new(ordinal)
                .ok()?
                .mem_get_info()
                .ok()?;
            let free = free as u64;
            Some(Some(smallest.map_or(free, |s| s.min(free))))
        })?
}

#[cfg(not(feature = "cuda"))]
fn cuda_free_memory(_devices: &[Device]) -> Option<u64> {
    None
}

/// The `key:` line of a Linux `/proc` file such as `/proc/meminfo` or `/proc/self/status`
/// (`VmHWM:   123456 kB`), in bytes; `None` when the file or the line cannot be read.
pub fn proc_bytes(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// One `--devices` entry: `cpu`, `wgpu` (wgpu's preferred adapter), `wgpu:N` (the N-th adapter
/// wgpu lists, counted from 0 as `--devices all` lists them), `cuda` or `cuda:N`.
fn parse_device(entry: &str) -> Result<Device> {
    let (kind, index) = match entry.split_once(':') {
        Some((kind, index)) => (kind, Some(index)),
        None => (entry, None),
    };
    let index = index
        .map(|i| {
            i.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("--devices: `{entry}` has no device number after `:`"))
        })
        .transpose()?;
    let Ok(kind) = <DeviceKind as ValueEnum>::from_str(kind, false) else {
        bail!("--devices: unknown device `{entry}` (expected cpu, wgpu[:N] or cuda[:N])");
    };
    let in_entry = |e: anyhow::Error| anyhow::anyhow!("--devices: `{entry}`: {e}");
    match (kind, index) {
        (DeviceKind::Cpu, Some(_)) => {
            bail!("--devices: there is one CPU device; write `cpu`, not `{entry}`")
        }
        // The N-th of the devices `all` lists, so `wgpu:N` names what `--devices all` would use
        // (and a missing one is an error here, not a panic in the backend's device thread).
        (DeviceKind::Wgpu | DeviceKind::Cuda, Some(n)) => {
            let listed = kind.all().map_err(in_entry)?;
            let count = listed.len();
            listed.into_iter().nth(n).ok_or_else(|| {
                anyhow::anyhow!(
                    "--devices: `{entry}`: this machine lists {count} such device(s), numbered \
                     from 0"
                )
            })
        }
        // The kind's default device, or, for a backend this build lacks, how to get it.
        (_, None) => kind.device().map_err(in_entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(device: DeviceKind, devices: Option<&str>) -> Result<Vec<Device>> {
        DeviceArgs {
            device,
            devices: devices.map(String::from),
        }
        .resolve()
    }

    #[test]
    fn device_lists() {
        let one = resolve(DeviceKind::Cpu, None).expect("cpu");
        assert_eq!(one, vec![Device::flex().autodiff()]);
        assert_eq!(resolve(DeviceKind::Cpu, Some("all")).expect("all").len(), 1);
        assert_eq!(
            resolve(DeviceKind::Cpu, Some("cpu, cpu"))
                .expect("two")
                .len(),
            2
        );
        for (list, said) in [
            ("cpu:1", "one CPU device"),
            ("cuda:0,cuda:1", "built without CUDA"),
            ("tpu", "unknown device `tpu`"),
            ("wgpu:x", "no device number"),
        ] {
            let err = resolve(DeviceKind::Cpu, Some(list)).expect_err(list);
            assert!(err.to_string().contains(said), "{list}: {err}");
        }
    }
}
