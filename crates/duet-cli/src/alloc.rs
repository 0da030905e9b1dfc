//! glibc malloc tuning for training: keep freed memory for the next step.
//!
//! flex gives every tensor a fresh buffer, and one training step allocates and frees hundreds
//! of them, many of several MiB. glibc serves a block above its mmap threshold (128 KiB at
//! first, adapting up to 32 MiB) with a fresh `mmap` and unmaps it on free, and trims the heap
//! top above 128 KiB: every step then page-faults its activations in again, and the kernel
//! zeroes each page. `perf` put that at about a third of the tiny model's step on 2 cores, and
//! with the towers on two threads the faults also serialise on the address-space lock.
//! Raising the thresholds keeps the memory in the heap for reuse (BENCHMARKS.md, "CPU step").
//!
//! This and the CUDA driver check in `backend.rs` are the only places in the workspace that
//! need `unsafe`: here an FFI call with no memory argument. A `mimalloc` global allocator (safe to install) measured 5–10 % slower than this,
//! and `jemalloc` slower still.

/// Sets glibc's mmap threshold to its largest value (32 MiB on 64-bit), the trim threshold to
/// 1 GiB and the top pad to 256 MiB; the same as the environment `MALLOC_MMAP_THRESHOLD_=33554432
/// MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456`. Leaves malloc alone when the
/// user has set any of those (or `GLIBC_TUNABLES`), and off glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const USER_SETTINGS: [&str; 4] = [
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_TOP_PAD_",
            "GLIBC_TUNABLES",
        ];
        if USER_SETTINGS
            .iter()
            .any(|name| std::env::var_os(name).is_some())
        {
            return;
        }
        let settings = [
            (libc::M_MMAP_THRESHOLD, 32 << 20),
            (libc::M_TRIM_THRESHOLD, 1 << 30),
            (libc::M_TOP_PAD, 256 << 20),
        ];
        for (param, value) in settings {
            // SAFETY: `mallopt` takes two integers and only changes malloc's tuning parameters
            // (under malloc's own lock); it touches no memory of ours. An unsupported value
            // makes it return 0 and change nothing.
            #[allow(unsafe_code)]
            let accepted = unsafe { libc::mallopt(param, value) } == 1;
            if !accepted {
                tracing::debug!(param, value, "glibc refused a malloc setting");
            }
        }
    }
}
