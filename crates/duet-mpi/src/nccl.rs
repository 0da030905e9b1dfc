//! [`Nccl`]: the job's float collectives on NCCL, over CUDA device memory, its communicator set
//! up over MPI (rank 0 makes NCCL's 128-byte unique id, MPI carries it to the others). What NCCL
//! has no call for (barrier, variable-length records, agreement) stays on MPI.
//!
//! Status: builds (`--features nccl`, no GPU or CUDA needed to compile: cudarc loads CUDA and
//! NCCL at run time), **never run**: no GPU has been available. The buffers are the trainer's
//! host buffers, staged through device memory here (`clone_htod`, the collective, `clone_dtoh`):
//! the transport is NCCL's (NVLink, InfiniBand), not yet the zero-copy path on burn's own CUDA
//! tensors.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};
use duet_dist::{Collective, CommError, check_chunks};

use crate::Mpi;

/// One rank of a job whose float collectives run on NCCL; see the module docs.
pub struct Nccl {
    mpi: Mpi,
    stream: Arc<CudaStream>,
    comm: Comm,
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("mpi", &self.mpi)
            .field("ordinal", &self.comm.ordinal())
            .finish_non_exhaustive()
    }
}

fn nccl_error(what: &str) -> impl Fn(cudarc::nccl::result::NcclError) -> CommError + '_ {
    move |e| CommError::Engine {
        engine: "nccl",
        message: format!("{what}: {e:?}"),
    }
}

fn cuda_error(what: &str) -> impl Fn(cudarc::driver::DriverError) -> CommError + '_ {
    move |e| CommError::Engine {
        engine: "cuda",
        message: format!("{what}: {e}"),
    }
}

impl Nccl {
    /// An NCCL communicator over `mpi`'s ranks, this rank on GPU `ordinal` (its local rank:
    /// NCCL refuses two ranks on one GPU).
    pub fn init(mpi: Mpi, ordinal: usize) -> Result<Self, CommError> {
        let context = CudaContext::new(ordinal).map_err(cuda_error("opening the GPU"))?;
        let stream = context.default_stream();
        let mine: Vec<u8> = if mpi.rank() == 0 {
            let id = Id::new().map_err(nccl_error("making the unique id"))?;
            id.internal().iter().map(|c| c.to_ne_bytes()[0]).collect()
        } else {
            Vec::new()
        };
        let all = mpi.all_gather_bytes(&mine)?;
        let root: [u8; 128] = all[0]
            .as_slice()
            .try_into()
            .map_err(|_| CommError::Mismatch {
                op: "nccl id",
                detail: format!("rank 0 sent {} bytes, not 128", all[0].len()),
            })?;
        let id = Id::uninit(root.map(|b| std::ffi::c_char::from_ne_bytes([b])));
        let comm = Comm::from_rank(stream.clone(), mpi.rank(), mpi.world(), id)
            .map_err(nccl_error("joining the communicator"))?;
        Ok(Self { mpi, stream, comm })
    }

    fn staged(
        &self,
        what: &'static str,
        host: &[f32],
        out_len: usize,
        op: impl FnOnce(
            &Comm,
            &cudarc::driver::CudaSlice<f32>,
            &mut cudarc::driver::CudaSlice<f32>,
        ) -> Result<(), cudarc::nccl::result::NcclError>,
    ) -> Result<Vec<f32>, CommError> {
        let send = self.stream.clone_htod(host).map_err(cuda_error(what))?;
        let mut recv = self
            .stream
            .alloc_zeros::<f32>(out_len)
            .map_err(cuda_error(what))?;
        op(&self.comm, &send, &mut recv).map_err(nccl_error(what))?;
        self.stream.clone_dtoh(&recv).map_err(cuda_error(what))
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world(&self) -> usize {
        self.mpi.world()
    }

    fn engine(&self) -> &'static str {
        "nccl"
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.mpi.barrier()
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        let root = i32::try_from(root).map_err(|_| CommError::Mismatch {
            op: "broadcast",
            detail: format!("root {root}"),
        })?;
        let out = self.staged("broadcast", buf, buf.len(), |c, s, r| {
            c.broadcast(Some(s), r, root).map(drop)
        })?;
        buf.copy_from_slice(&out);
        Ok(())
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        self.staged(
            "all_gather",
            local,
            local.len() * self.world(),
            |c, s, r| c.all_gather(s, r).map(drop),
        )
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        let out = self.staged("all_reduce", buf, buf.len(), |c, s, r| {
            c.all_reduce(s, r, &ReduceOp::Sum).map(drop)
        })?;
        buf.copy_from_slice(&out);
        Ok(())
    }

    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError> {
        let chunk = check_chunks("reduce_scatter", buf.len(), self.world())?;
        self.staged("reduce_scatter", buf, chunk, |c, s, r| {
            c.reduce_scatter(s, r, &ReduceOp::Sum).map(drop)
        })
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        self.mpi.all_gather_bytes(local)
    }

    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError> {
        self.mpi.all_reduce_max(value)
    }
}
