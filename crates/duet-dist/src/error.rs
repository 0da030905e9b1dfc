//! The one error type of `duet-dist`.

use std::time::Duration;

/// A collective that could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// A peer left the group (its process failed or dropped its handle) before the operation.
    #[error("{op}: rank {peer} left the job{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    PeerLeft {
        /// The operation that was waiting.
        op: &'static str,
        /// The rank that left.
        peer: usize,
        /// What it said when it left, if anything.
        reason: Option<String>,
    },

    /// The peers did not all arrive within the bound.
    #[error(
        "{op}: rank {rank} waited {:.0} s for its peers (ranks {missing:?} never arrived); \
         set DUET_COLLECTIVE_TIMEOUT_S to wait longer",
        waited.as_secs_f64()
    )]
    Timeout {
        /// The operation that was waiting.
        op: &'static str,
        /// The waiting rank.
        rank: usize,
        /// How long it waited.
        waited: Duration,
        /// The ranks that had not arrived.
        missing: Vec<usize>,
    },

    /// The ranks called with buffers that do not fit together.
    #[error("{op}: {detail}")]
    Mismatch {
        /// The operation.
        op: &'static str,
        /// What does not fit.
        detail: String,
    },

    /// The engine (MPI, NCCL) reported an error.
    #[error("{engine}: {message}")]
    Engine {
        /// `"mpi"`, `"nccl"`.
        engine: &'static str,
        /// The engine's message.
        message: String,
    },

    /// The launcher's environment cannot be used.
    #[error("launch: {0}")]
    Launch(String),
}
