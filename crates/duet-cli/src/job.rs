//! The job this process belongs to: a world of one, or one rank of several started by `mpirun`
//! or `srun` (feature `mpi`). The trainer sees only its [`Collective`].
//!
//! In a job of several processes, a rank that fails or panics ends the whole job at once
//! (`MPI_Abort`, [`Job::run`]), naming itself, instead of leaving the others waiting in a
//! collective: mpirun then stops every rank and exits non-zero. A rank that dies (killed, out of memory) is
//! noticed by mpirun itself, which does the same.

use anyhow::Result;
use duet_dist::{Collective, Launch, Solo, detect_launch};

/// This process's place in its job.
#[derive(Debug)]
pub struct Job {
    comm: Box<dyn Collective>,
    launch: Option<Launch>,
}

impl Job {
    /// The job the launcher's environment describes, its engine initialised; a world of one
    /// without a launcher.
    pub fn from_env() -> Result<Self> {
        let Some(launch) = detect_launch()? else {
            return Ok(Self {
                comm: Box::new(Solo),
                launch: None,
            });
        };
        Ok(Self {
            comm: engine(&launch)?,
            launch: Some(launch),
        })
    }

    /// The job's collectives.
    pub fn comm(&self) -> &dyn Collective {
        self.comm.as_ref()
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Whether this process is the one that writes and reports (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The rank among the processes of this node, which picks the GPU of `--device cuda`.
    pub fn local_rank(&self) -> Option<usize> {
        self.launch.as_ref().and_then(|l| l.local_rank)
    }

    /// Processes of this job on this node (1 without a launcher or when it does not say).
    pub fn local_size(&self) -> usize {
        self.launch.as_ref().and_then(|l| l.local_size).unwrap_or(1)
    }

    /// `work()`; in a job of several processes, an error or a panic (from any of the rank's
    /// threads, re-raised here) is printed with this rank and ends the whole job, so no peer
    /// waits for this one. A panic that is caught where it happens (a corrupt JPEG inside the
    /// decoder) never gets here.
    pub fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.comm.world() == 1 {
            return work();
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(Err(error)) => {
                eprintln!("duet: rank {}: error: {error:#}", self.rank());
                abort_job(1)
            }
            Ok(ok) => ok,
            Err(_) => {
                // The panic's message is already printed, by the thread that panicked.
                eprintln!("duet: rank {} panicked; ending the job", self.rank());
                abort_job(101)
            }
        }
    }
}

#[cfg(feature = "mpi")]
fn engine(launch: &Launch) -> Result<Box<dyn Collective>> {
    let mpi = duet_mpi::Mpi::init()?;
    if (mpi.world(), mpi.rank()) != (launch.world, launch.rank) {
        anyhow::bail!(
            "{} started this process as rank {} of {}, but MPI sees rank {} of {}: with Slurm, \
             launch with `srun --mpi=pmix` (or `mpirun`)",
            launch.launcher,
            launch.rank,
            launch.world,
            mpi.rank(),
            mpi.world()
        );
    }
    tracing::info!(
        "rank {} of {} (MPI, started by {})",
        mpi.rank(),
        mpi.world(),
        launch.launcher
    );
    Ok(Box::new(mpi))
}

#[cfg(not(feature = "mpi"))]
fn engine(launch: &Launch) -> Result<Box<dyn Collective>> {
    anyhow::bail!(
        "{} started this process as rank {} of {}, but this duet was built without the `mpi` \
         feature: run scripts/setup_mpi.sh, then build with `cargo build --release --features \
         mpi`",
        launch.launcher,
        launch.rank,
        launch.world
    )
}

#[cfg(feature = "mpi")]
fn abort_job(code: i32) -> ! {
    duet_mpi::abort_job(code)
}

#[cfg(not(feature = "mpi"))]
fn abort_job(code: i32) -> ! {
    // Without MPI there is no job of several processes to end.
    std::process::exit(code)
}
