//! From shards to batches: an ordered, shuffled, exactly resumable stream.
//!
//! [`EpochPlan`] decides which shard each reader slot reads; [`Sequencer`] merges the slots and
//! shuffles raw samples, and its [`SequencerState`] restores that stream exactly; [`Loader`]
//! decodes, transforms and tokenizes in parallel and batches, each [`Batch`] carrying the
//! [`LoaderCursor`] that continues right after it.

mod loader;
mod plan;
mod process;
mod readers;
mod sequencer;
#[cfg(test)]
mod tests;

pub use loader::{Batch, Loader, LoaderConfig, LoaderCursor, LoaderSource};
pub use plan::{EpochPlan, Sampling, WeightedShard};
pub use readers::ReaderPos;
pub use sequencer::{Sequencer, SequencerConfig, SequencerState};
