//! From shards to batches: an ordered, shuffled, exactly resumable stream.
//!
//! [`EpochPlan`] decides which shard each reader slot reads; [`Sequencer`] merges the slots and
//! shuffles raw samples, and its [`SequencerState`] restores that stream exactly; [`Loader`]
//! decodes, transforms and tokenizes in parallel and batches, each [`Batch`] carrying the
//! [`LoaderCursor`] that continues right after it. [`SlotLoader`] runs the data slots a process
//! owns: the global batch as a fixed number of independent streams, whatever the process count.

mod loader;
mod plan;
mod process;
mod readers;
mod sequencer;
mod slots;
#[cfg(test)]
mod tests;

pub use loader::{Batch, Loader, LoaderConfig, LoaderCursor, LoaderSource};
pub use plan::{EpochPlan, Sampling, WeightedShard};
pub use readers::ReaderPos;
pub use sequencer::{Sequencer, SequencerConfig, SequencerState};
pub use slots::{SlotBatch, SlotLoader, owned_slots};
