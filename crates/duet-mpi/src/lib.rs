//! [`Mpi`]: duet's [`Collective`] over the system's MPI, through rsmpi. It works with every burn
//! backend (the buffers are on the host), so a CPU job runs over it as well as a GPU one.
//!
//! MPI carries the job: `mpirun` / `srun --mpi=pmix` start the processes, MPI gives rank and
//! world, and a rank that dies is noticed by the launcher, which ends the job. What MPI does not
//! do, this crate adds: [`abort_job`] for a rank that fails (duet-cli calls it, after naming the
//! rank, on an error or a panic that reaches the run's top), and a watchdog that ends the job
//! when a collective waits longer than [`duet_dist::collective_timeout`] for its peers (a peer
//! hung, not dead), naming the operation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duet_dist::{Collective, CommError, check_chunks, collective_timeout};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

#[cfg(feature = "nccl")]
mod nccl;
#[cfg(feature = "nccl")]
pub use nccl::Nccl;

/// One rank of an MPI job: `MPI_COMM_WORLD`, initialised with `MPI_THREAD_FUNNELED` (only the
/// thread that initialised it calls MPI: rsmpi's communicator is not `Send`). Dropping it
/// finalises MPI.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    in_flight: Arc<Mutex<Option<(&'static str, Instant)>>>,
    // Last: MPI_Finalize runs after the communicators are dropped.
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("local_rank", &self.local_rank)
            .finish_non_exhaustive()
    }
}

impl Mpi {
    /// Initialises MPI (once per process) and starts the watchdog.
    pub fn init() -> Result<Self, CommError> {
        let (universe, _threading) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| CommError::Engine {
                engine: "mpi",
                message: "MPI was already initialised in this process".into(),
            })?;
        let world = universe.world();
        let rank = usize::try_from(world.rank()).unwrap_or_default();
        let size = usize::try_from(world.size()).unwrap_or(1);
        // The processes sharing this node's memory, ranked: which GPU is this process's.
        let local_rank = usize::try_from(world.split_shared(0).rank()).unwrap_or_default();
        let in_flight = Arc::new(Mutex::new(None));
        watchdog(rank, in_flight.clone(), collective_timeout());
        Ok(Self {
            world,
            rank,
            size,
            local_rank,
            in_flight,
            _universe: universe,
        })
    }

    /// This process's rank among those of its node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Runs `op` with the watchdog watching.
    fn watched<R>(&self, name: &'static str, op: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        set(&self.in_flight, Some((name, Instant::now())));
        let out = op(&self.world);
        set(&self.in_flight, None);
        out
    }
}

fn set(slot: &Mutex<Option<(&'static str, Instant)>>, value: Option<(&'static str, Instant)>) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

/// A thread that ends the job when a collective has waited longer than `timeout`: MPI itself
/// would wait for a hung peer forever.
fn watchdog(
    rank: usize,
    in_flight: Arc<Mutex<Option<(&'static str, Instant)>>>,
    timeout: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name("duet-mpi-watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let stuck = *in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((op, since)) = stuck
                    && since.elapsed() > timeout
                {
                    eprintln!(
                        "duet: rank {rank}: MPI {op} has waited {:.0} s for its peers; ending \
                         the job (DUET_COLLECTIVE_TIMEOUT_S sets the bound)",
                        since.elapsed().as_secs_f64()
                    );
                    // Not MPI_Abort: only the initialising thread may call MPI. The launcher
                    // sees this process die and ends the others.
                    std::process::abort();
                }
            }
        });
    if let Err(error) = spawned {
        eprintln!(
            "duet: rank {rank}: no collective watchdog ({error}); a hung peer will hang the job"
        );
    }
}

/// Ends every process of the job with `code` (`MPI_Abort` on `MPI_COMM_WORLD`).
pub fn abort_job(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

fn count(op: &'static str, len: usize) -> Result<i32, CommError> {
    i32::try_from(len).map_err(|_| CommError::Mismatch {
        op,
        detail: format!("{len} values exceed MPI's count limit"),
    })
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.size
    }

    fn engine(&self) -> &'static str {
        "mpi"
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.watched("barrier", |w| w.barrier());
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        let root = i32::try_from(root).map_err(|_| CommError::Mismatch {
            op: "broadcast",
            detail: format!("root {root}"),
        })?;
        self.watched("broadcast", |w| w.process_at_rank(root).broadcast_into(buf));
        Ok(())
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        let mut out = vec![0.0_f32; local.len() * self.size];
        self.watched("all_gather", |w| w.all_gather_into(local, &mut out[..]));
        Ok(out)
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        let send = buf.to_vec();
        self.watched("all_reduce", |w| {
            w.all_reduce_into(&send[..], buf, SystemOperation::sum());
        });
        Ok(())
    }

    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError> {
        let chunk = check_chunks("reduce_scatter", buf.len(), self.size)?;
        let mut out = vec![0.0_f32; chunk];
        self.watched("reduce_scatter", |w| {
            w.reduce_scatter_block_into(buf, &mut out[..], SystemOperation::sum());
        });
        Ok(out)
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        let mine = count("all_gather_bytes", local.len())?;
        let mut counts = vec![0_i32; self.size];
        self.watched("all_gather_bytes", |w| {
            w.all_gather_into(&mine, &mut counts[..])
        });
        let displs: Vec<i32> = counts
            .iter()
            .scan(0_i32, |at, c| {
                let here = *at;
                *at += c;
                Some(here)
            })
            .collect();
        let total: usize = counts
            .iter()
            .map(|c| usize::try_from(*c).unwrap_or(0))
            .sum();
        let mut all = vec![0_u8; total];
        {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.watched("all_gather_bytes", |w| {
                w.all_gather_varcount_into(local, &mut partition);
            });
        }
        let mut out = Vec::with_capacity(self.size);
        for (c, d) in counts.iter().zip(&displs) {
            let (c, d) = (
                usize::try_from(*c).unwrap_or(0),
                usize::try_from(*d).unwrap_or(0),
            );
            out.push(all[d..d + c].to_vec());
        }
        Ok(out)
    }

    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError> {
        let mut out = 0_u64;
        self.watched("all_reduce_max", |w| {
            w.all_reduce_into(&value, &mut out, SystemOperation::max());
        });
        Ok(out)
    }
}
