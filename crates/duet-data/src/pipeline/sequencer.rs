//! The sequencer: merges the reader slots round-robin and shuffles through a bounded buffer,
//! producing one deterministic stream of raw samples per (seed, epoch, rank); its state can be
//! snapshotted and restored exactly.
//!
//! Determinism: slot `r`'s samples are a function of the plan alone; the merge takes exactly one
//! sample from each live slot in turn, blocking on that slot (never "whichever is ready"); the
//! shuffle's draws come from a ChaCha8 stream whose position is part of the state.
//!
//! Restoring: slots restart at their recorded `(shard, index)`; the buffered samples are read
//! again from their shards (the buffer only ever holds recent samples, so this re-reads at most a
//! few shards per slot); the generator is set to its recorded word position.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::plan::{EpochPlan, rng, stream};
use super::readers::{ReaderMsg, ReaderPos, ReaderSlot, spawn};
use crate::reader::{ReadEvent, ShardReader};
use crate::source::ShardStore;
use crate::{DataError, RawSample, SampleRef, SkipCounts};

/// Everything needed to continue a sequencer exactly where it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequencerState {
    /// The epoch being read.
    pub epoch: u64,
    /// Next sample of each reader slot.
    pub readers: Vec<ReaderPos>,
    /// Slots that have run out of shards.
    pub done: Vec<bool>,
    /// The slot the merge takes from next.
    pub next_reader: usize,
    /// The shuffle buffer, in buffer order.
    pub buffer: Vec<SampleRef>,
    /// Position of the shuffle generator (ChaCha8 word position).
    pub rng_word_pos: u128,
    /// Samples emitted so far in this epoch.
    pub emitted: u64,
    /// Skips the readers reported before this point.
    #[serde(default)]
    pub skips: SkipCounts,
}

impl SequencerState {
    /// The state at the start of `epoch` with `readers` slots.
    pub fn start(epoch: u64, readers: usize) -> Self {
        Self {
            epoch,
            readers: vec![ReaderPos::default(); readers],
            done: vec![false; readers],
            next_reader: 0,
            buffer: Vec::new(),
            rng_word_pos: 0,
            emitted: 0,
            skips: SkipCounts::default(),
        }
    }
}

/// Static settings of a sequencer.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Shuffle buffer size in samples; 0 or 1 keeps the merge order.
    pub shuffle_buffer: usize,
    /// Messages each reader thread may queue ahead.
    pub reader_queue: usize,
    /// A slot that finishes this many shards in a row without a sample stops the stream with
    /// [`DataError::NoSamples`]: with resampled shards, an all-broken spec would otherwise be
    /// drawn from forever (open_clip #1016).
    pub max_empty_shards: u64,
}

/// The merged, shuffled raw-sample stream of one epoch.
#[derive(Debug)]
pub struct Sequencer {
    format: Arc<dyn ShardReader>,
    store: Arc<dyn ShardStore>,
    slots: Vec<ReaderSlot>,
    next_reader: usize,
    buffer: Vec<RawSample>,
    capacity: usize,
    rng: ChaCha8Rng,
    emitted: u64,
    epoch: u64,
    skips: SkipCounts,
    /// Per slot: shards finished in a row without a sample.
    empty_run: Vec<u64>,
    max_empty_shards: u64,
    failed: bool,
}

impl Sequencer {
    /// Starts `epoch` from its beginning; fails only if a reader thread cannot be spawned.
    pub fn start(
        plan: EpochPlan,
        epoch: u64,
        format: Arc<dyn ShardReader>,
        store: Arc<dyn ShardStore>,
        config: &SequencerConfig,
    ) -> Result<Self, DataError> {
        let state = SequencerState::start(epoch, plan.readers());
        Self::spawn(plan, format, store, config, &state)
    }

    fn spawn(
        plan: EpochPlan,
        format: Arc<dyn ShardReader>,
        store: Arc<dyn ShardStore>,
        config: &SequencerConfig,
        state: &SequencerState,
    ) -> Result<Self, DataError> {
        let plan = Arc::new(plan);
        let slots = state
            .readers
            .iter()
            .zip(&state.done)
            .enumerate()
            .map(|(r, (pos, done))| {
                let mut slot = spawn(
                    plan.clone(),
                    r,
                    *pos,
                    format.clone(),
                    store.clone(),
                    config.reader_queue,
                )?;
                slot.done = *done;
                Ok(slot)
            })
            .collect::<Result<_, DataError>>()?;
        let mut rng = rng(config.seed, state.epoch, stream::SHUFFLE);
        rng.set_word_pos(state.rng_word_pos);
        Ok(Self {
            format,
            store,
            slots,
            next_reader: state.next_reader,
            buffer: Vec::new(),
            capacity: config.shuffle_buffer.max(1),
            rng,
            emitted: state.emitted,
            epoch: state.epoch,
            skips: state.skips.clone(),
            empty_run: vec![0; state.readers.len()],
            max_empty_shards: config.max_empty_shards.max(1),
            failed: false,
        })
    }

    /// Continues from `state`, which must have been taken with the same plan inputs and config.
    ///
    /// Fails when a buffered sample can no longer be read (its shard changed or vanished):
    /// continuing without it would silently break exactness.
    pub fn restore(
        plan: EpochPlan,
        format: Arc<dyn ShardReader>,
        store: Arc<dyn ShardStore>,
        config: &SequencerConfig,
        state: &SequencerState,
    ) -> Result<Self, DataError> {
        let mut seq = Self::spawn(plan, format, store, config, state)?;
        seq.buffer = reread(&*seq.format, &*seq.store, &state.buffer)?;
        Ok(seq)
    }

    /// The current state; restoring it continues with the very next sample this would emit.
    pub fn state(&self) -> SequencerState {
        SequencerState {
            epoch: self.epoch,
            readers: self.slots.iter().map(|s| s.pos).collect(),
            done: self.slots.iter().map(|s| s.done).collect(),
            next_reader: self.next_reader,
            buffer: self.buffer.iter().map(|s| s.at.clone()).collect(),
            rng_word_pos: self.rng.get_word_pos(),
            emitted: self.emitted,
            skips: self.skips.clone(),
        }
    }

    /// Skips counted by the readers so far in the epoch (samples dropped while reading, failed
    /// shards), including those before a restored state.
    pub fn skips(&self) -> &SkipCounts {
        &self.skips
    }

    /// Samples emitted so far in this epoch.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// One sample from the live slots in turn, or `None` when every slot is done.
    fn pull(&mut self) -> Result<Option<RawSample>, DataError> {
        let n = self.slots.len();
        for _ in 0..n {
            let r = self.next_reader;
            self.next_reader = (r + 1) % n;
            if !self.slots[r].done
                && let Some(sample) = self.pull_from(r)?
            {
                return Ok(Some(sample));
            }
        }
        Ok(None)
    }

    /// The next sample of slot `r`, recording its position; `None` marks the slot done.
    fn pull_from(&mut self, r: usize) -> Result<Option<RawSample>, DataError> {
        let slot = &mut self.slots[r];
        loop {
            match slot.rx.recv() {
                Ok(ReaderMsg::Event { slot_index, event }) => match event {
                    ReadEvent::Sample(sample) => {
                        slot.pos = ReaderPos {
                            slot_index,
                            index: sample.at.index + 1,
                        };
                        self.empty_run[r] = 0;
                        return Ok(Some(sample));
                    }
                    ReadEvent::Skipped { reason, detail, .. }
                    | ReadEvent::ShardFailed { reason, detail } => {
                        self.skips.add(reason);
                        crate::skip::log_skip(reason, self.skips.get(reason), &detail);
                    }
                },
                Ok(ReaderMsg::ShardEnd {
                    slot_index,
                    had_samples,
                }) => {
                    slot.pos = ReaderPos {
                        slot_index: slot_index + 1,
                        index: 0,
                    };
                    self.empty_run[r] = if had_samples {
                        0
                    } else {
                        self.empty_run[r] + 1
                    };
                    if self.empty_run[r] >= self.max_empty_shards {
                        return Err(DataError::NoSamples {
                            reason: format!("{} shards in a row gave no sample", self.empty_run[r]),
                            skipped: self.skips.clone(),
                        });
                    }
                }
                Err(_) => {
                    slot.done = true;
                    return Ok(None);
                }
            }
        }
    }
}

impl Iterator for Sequencer {
    type Item = Result<RawSample, DataError>;

    /// Fills the buffer to capacity, then emits a uniformly drawn buffered sample; at the end of
    /// the input, drains the buffer in random order. After an error, the stream ends.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.buffer.len() < self.capacity {
            match self.pull() {
                Ok(Some(sample)) => self.buffer.push(sample),
                Ok(None) => break,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = if self.capacity > 1 {
            self.rng.random_range(0..self.buffer.len())
        } else {
            0
        };
        self.emitted += 1;
        Some(Ok(self.buffer.swap_remove(i)))
    }
}

/// Reads the samples `refs` points at, in that order, reading each shard once.
/// Sample positions are stable, so `(shard, index)` names the same bytes on every read.
fn reread(
    format: &dyn ShardReader,
    store: &dyn ShardStore,
    refs: &[SampleRef],
) -> Result<Vec<RawSample>, DataError> {
    let mut by_shard: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in refs {
        by_shard.entry(&r.shard).or_default().push(r.index);
    }
    let mut found: BTreeMap<SampleRef, RawSample> = BTreeMap::new();
    for (shard, mut indices) in by_shard {
        indices.sort_unstable();
        let (first, last) = (indices[0], indices[indices.len() - 1]);
        for event in format.read(store, shard, first) {
            if let ReadEvent::Sample(sample) = event {
                let index = sample.at.index;
                if indices.binary_search(&index).is_ok() {
                    found.insert(sample.at.clone(), sample);
                }
                if index >= last {
                    break;
                }
            }
        }
    }
    // Resampled epochs can buffer the same sample twice (one shard drawn twice): clone, not take.
    refs.iter()
        .map(|r| {
            found
                .get(r)
                .cloned()
                .ok_or_else(|| DataError::ResumeSampleMissing {
                    shard: r.shard.to_string(),
                    index: r.index,
                })
        })
        .collect()
}
