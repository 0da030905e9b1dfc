//! The seam between duet's trainer and the engines that carry multi-process training.
//!
//! The trainer talks to the other processes of a job only through [`Collective`]: rank, world,
//! barrier, broadcast, all-gather, all-reduce and reduce-scatter on host buffers, plus two
//! small helpers for agreement (a maximum) and for variable-length records (bytes). Three
//! implementations: [`Solo`] (a world of one: every operation is the identity), [`ThreadGroup`]
//! (ranks as threads of one process: the in-memory twin that tests use, as `MemoryStore` is
//! for shard stores), and MPI in the `duet-mpi` crate (any backend, over the system's MPI;
//! NCCL's communicator is set up over it). The trainer never names MPI or NCCL.
//!
//! Every implementation reduces in a fixed order for a given world (the [`ThreadGroup`] sums
//! in rank order; MPI's algorithm is fixed by the library for a given size and world), so a
//! run is reproducible. Every blocking wait has a bound (see [`CommError::Timeout`]).

mod error;
mod launch;
mod metered;
mod solo;
mod threads;

use std::time::Duration;

pub use error::CommError;
pub use launch::{Launch, detect_launch};
pub use metered::{CommStats, Metered};
pub use solo::Solo;
pub use threads::ThreadGroup;

/// Collective operations over the processes (ranks) of one training job, on host buffers.
///
/// Every rank must call the same operations in the same order with matching sizes; a rank
/// that stops calling (it failed, or left) makes the others' next call fail with the rank
/// named, or end the job, within the implementation's bound. Not `Send`: MPI's communicator
/// lives on the thread that initialised it.
pub trait Collective: std::fmt::Debug {
    /// This process's rank, `0..world()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world(&self) -> usize;

    /// The engine, for logs: `"solo"`, `"threads"`, `"mpi"`.
    fn engine(&self) -> &'static str;

    /// Waits until every rank has arrived.
    fn barrier(&self) -> Result<(), CommError>;

    /// Replaces `buf` on every rank with `root`'s; every rank passes the same length.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError>;

    /// Every rank's `local` (all the same length), concatenated in rank order.
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError>;

    /// The element-wise sum of every rank's `buf` (all the same length), in place.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError>;

    /// The element-wise sum over ranks of `buf`, seen as `world()` equal chunks: this rank
    /// gets the sum of every rank's chunk number `rank()`. `buf.len()` must be a multiple of
    /// `world()`, the same on every rank.
    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError>;

    /// Every rank's `local` bytes (any lengths), in rank order: cursors, checks, messages.
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError>;

    /// The largest `value` over all ranks: agreement on a flag (stop, skip) or a count.
    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError>;
}

/// How long a collective may wait for its peers before it gives up, naming the operation:
/// `DUET_COLLECTIVE_TIMEOUT_S` seconds, else 30 minutes (rank 0 may evaluate or write a
/// checkpoint while the others wait at the next step's first collective).
pub fn collective_timeout() -> Duration {
    std::env::var("DUET_COLLECTIVE_TIMEOUT_S")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(1800), Duration::from_secs_f64)
}

/// Checks that `len` splits into `world` equal chunks (reduce-scatter's precondition).
pub fn check_chunks(op: &'static str, len: usize, world: usize) -> Result<usize, CommError> {
    if world == 0 || !len.is_multiple_of(world) {
        return Err(CommError::Mismatch {
            op,
            detail: format!("{len} values do not split into {world} equal chunks"),
        });
    }
    Ok(len / world)
}

/// A reference to a collective is one: `Metered<&dyn Collective>` counts a borrowed one.
impl<C: Collective + ?Sized> Collective for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn world(&self) -> usize {
        (**self).world()
    }

    fn engine(&self) -> &'static str {
        (**self).engine()
    }

    fn barrier(&self) -> Result<(), CommError> {
        (**self).barrier()
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        (**self).broadcast(buf, root)
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        (**self).all_gather(local)
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        (**self).all_reduce_sum(buf)
    }

    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError> {
        (**self).reduce_scatter_sum(buf)
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        (**self).all_gather_bytes(local)
    }

    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError> {
        (**self).all_reduce_max(value)
    }
}
