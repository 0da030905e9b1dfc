//! Data slots: the global batch as a fixed number of independent streams, dealt out to ranks.
//!
//! A run's data is `slots` streams, each a [`Loader`] of its own: slot `s` reads the shards an
//! [`EpochPlan`] gives rank `s` of `slots` (exact epochs: positions `s, s + slots, …` of the
//! epoch's shard permutation), shuffles through its own buffer with its own seed, and has its
//! own [`LoaderCursor`]. Every step takes `global_batch / slots` samples from each slot, and the
//! global batch is the slots' batches in slot order.
//!
//! Process `p` of `world` owns the contiguous slots `p · slots / world .. (p + 1) · slots /
//! world` and reads only their shards. So the global batch, its order and every slot's cursor
//! are the same whatever the number of processes that divides `slots`: one process, two or
//! eight see the same batches, and a run checkpointed on one count resumes exactly on another
//! (elastic resume).

use std::ops::Range;

use super::loader::{Batch, Loader, LoaderConfig, LoaderCursor, LoaderSource};
use super::plan::Sampling;
use crate::{DataError, TextTokenizer};

/// The slots process `rank` of `world` owns: `rank · slots / world .. (rank + 1) · slots /
/// world`. Fails unless `world` divides `slots`.
pub fn owned_slots(slots: usize, world: usize, rank: usize) -> Result<Range<usize>, DataError> {
    if slots == 0 || world == 0 || rank >= world {
        return Err(DataError::Slots {
            reason: format!("{slots} slot(s) cannot be owned by rank {rank} of {world}"),
        });
    }
    if !slots.is_multiple_of(world) {
        return Err(DataError::Slots {
            reason: format!(
                "{slots} slot(s) do not split evenly over {world} process(es); a run's slot \
                 count is fixed, so run it on a process count that divides {slots}"
            ),
        });
    }
    let per = slots / world;
    Ok(rank * per..(rank + 1) * per)
}

/// The loaders of the data slots one process owns; an iterator of [`SlotBatch`]es.
#[derive(Debug)]
pub struct SlotLoader {
    owned: Range<usize>,
    loaders: Vec<Loader>,
}

/// One step's batches of the slots a process owns, in slot order.
#[derive(Debug)]
pub struct SlotBatch {
    /// The first slot's index among all slots.
    pub first_slot: usize,
    /// One batch per owned slot, in slot order.
    pub parts: Vec<Batch>,
}

impl SlotBatch {
    /// Samples in all parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Batch::len).sum()
    }

    /// Whether no part holds a sample (never for batches a [`SlotLoader`] yields).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SlotLoader {
    /// Starts the loaders of slots `owned` of `slots`, each with `config` (whose `batch_size`
    /// is the per-slot batch; its `rank` and `world_size` are replaced by the slot's), the
    /// decode threads shared out between them. With `cursors` (one per owned slot, in order),
    /// each slot continues exactly after the batch its cursor came from.
    ///
    /// Fails before any work when the slots do not fit: more slots than shards in an exact
    /// epoch, or a cursor count other than the owned slot count.
    pub fn start(
        config: &LoaderConfig,
        slots: usize,
        owned: Range<usize>,
        source: LoaderSource,
        tokenizer: TextTokenizer,
        cursors: Option<&[LoaderCursor]>,
    ) -> Result<Self, DataError> {
        if owned.is_empty() || owned.end > slots {
            return Err(DataError::Slots {
                reason: format!("slots {owned:?} are not a part of 0..{slots}"),
            });
        }
        if config.sampling != Sampling::Resampled && source.shards.len() < slots {
            return Err(DataError::Slots {
                reason: format!(
                    "each of the {slots} data slots reads its own shards, and the spec has only \
                     {} shard(s); use at most {} slots, or more (smaller) shards",
                    source.shards.len(),
                    source.shards.len()
                ),
            });
        }
        if let Some(cursors) = cursors
            && cursors.len() != owned.len()
        {
            return Err(DataError::Slots {
                reason: format!(
                    "{} cursor(s) given for the {} slots {owned:?}",
                    cursors.len(),
                    owned.len()
                ),
            });
        }
        let decode_threads = (config.decode_threads / owned.len()).max(1);
        let loaders = owned
            .clone()
            .enumerate()
            .map(|(i, slot)| {
                let slot_config = LoaderConfig {
                    rank: slot,
                    world_size: slots,
                    decode_threads,
                    ..config.clone()
                };
                Loader::start(
                    &slot_config,
                    source.clone(),
                    tokenizer.clone(),
                    cursors.map(|c| &c[i]),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { owned, loaders })
    }

    /// The slots this loader reads.
    pub fn owned(&self) -> Range<usize> {
        self.owned.clone()
    }

    /// Hands a part's image buffer back to its slot's loader for reuse (see
    /// [`Loader::recycle`]); `part` counts from the first owned slot.
    pub fn recycle(&self, part: usize, images: Vec<f32>) {
        if let Some(loader) = self.loaders.get(part) {
            loader.recycle(images);
        }
    }
}

impl Iterator for SlotLoader {
    type Item = Result<SlotBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut parts = Vec::with_capacity(self.loaders.len());
        for loader in &mut self.loaders {
            match loader.next()? {
                Ok(batch) => parts.push(batch),
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok(SlotBatch {
            first_slot: self.owned.start,
            parts,
        }))
    }
}
