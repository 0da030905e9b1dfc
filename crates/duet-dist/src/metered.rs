//! Bytes and time spent in collectives, for the metrics of a multi-process run.

use std::cell::Cell;
use std::time::Instant;

use crate::{Collective, CommError};

/// Collective traffic since the last [`Metered::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// Collective calls.
    pub calls: u64,
    /// Payload bytes this rank handed to the collectives (its buffers' sizes; what travels on
    /// the wire depends on the engine's algorithm: a ring all-reduce moves about twice this).
    pub bytes: u64,
    /// Wall-clock seconds spent inside collectives, waiting for peers included.
    pub seconds: f64,
}

/// A [`Collective`] that counts the calls, bytes and time of another.
#[derive(Debug)]
pub struct Metered<C> {
    inner: C,
    stats: Cell<CommStats>,
}

impl<C: Collective> Metered<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            stats: Cell::new(CommStats::default()),
        }
    }

    /// The traffic since the last call, and starts counting afresh.
    pub fn take(&self) -> CommStats {
        self.stats.take()
    }

    /// The wrapped collective.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn time<R>(&self, bytes: usize, op: impl FnOnce(&C) -> R) -> R {
        let started = Instant::now();
        let out = op(&self.inner);
        let mut stats = self.stats.get();
        stats.calls += 1;
        stats.bytes += bytes as u64;
        stats.seconds += started.elapsed().as_secs_f64();
        self.stats.set(stats);
        out
    }
}

const F32: usize = std::mem::size_of::<f32>();

impl<C: Collective> Collective for Metered<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world(&self) -> usize {
        self.inner.world()
    }

    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.time(0, C::barrier)
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.time(buf.len() * F32, |c| c.broadcast(buf, root))
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        self.time(local.len() * F32, |c| c.all_gather(local))
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.time(buf.len() * F32, |c| c.all_reduce_sum(buf))
    }

    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError> {
        self.time(buf.len() * F32, |c| c.reduce_scatter_sum(buf))
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        self.time(local.len(), |c| c.all_gather_bytes(local))
    }

    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError> {
        self.time(8, |c| c.all_reduce_max(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Solo;

    #[test]
    fn counts_payload_bytes_per_call() {
        let metered = Metered::new(Solo);
        let mut grads = vec![0.0_f32; 10];
        metered.all_reduce_sum(&mut grads).expect("solo");
        metered.all_gather(&[1.0; 3]).expect("solo");
        metered.all_reduce_max(1).expect("solo");
        let stats = metered.take();
        // 10 + 3 floats of 4 bytes, and one u64: 40 + 12 + 8 = 60 bytes in 3 calls.
        assert_eq!((stats.calls, stats.bytes), (3, 60));
        assert_eq!(metered.take().calls, 0, "take starts afresh");
    }
}
