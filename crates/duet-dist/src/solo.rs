//! A world of one process: every collective is the identity.

use crate::{Collective, CommError, check_chunks};

/// The world of a process started without a launcher: rank 0 of 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn engine(&self) -> &'static str {
        "solo"
    }

    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }

    fn broadcast(&self, _buf: &mut [f32], root: usize) -> Result<(), CommError> {
        if root != 0 {
            return Err(CommError::Mismatch {
                op: "broadcast",
                detail: format!("root {root} in a world of 1"),
            });
        }
        Ok(())
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        Ok(local.to_vec())
    }

    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<(), CommError> {
        Ok(())
    }

    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError> {
        check_chunks("reduce_scatter", buf.len(), 1)?;
        Ok(buf.to_vec())
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        Ok(vec![local.to_vec()])
    }

    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError> {
        Ok(value)
    }
}
