//! From shards to an ordered, shuffled, exactly resumable stream of raw samples.
//!
//! [`EpochPlan`] decides which shard each reader slot reads; [`Sequencer`] merges the slots and
//! shuffles, and its [`SequencerState`] restores the stream exactly.

mod plan;
mod readers;
mod sequencer;
#[cfg(test)]
mod tests;

pub use plan::{EpochPlan, Sampling, WeightedShard};
pub use readers::ReaderPos;
pub use sequencer::{Sequencer, SequencerConfig, SequencerState};
