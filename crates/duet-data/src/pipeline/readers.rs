//! Reader slots: one thread per slot streams its shards, in plan order, into a bounded channel.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::plan::EpochPlan;
use crate::DataError;
use crate::reader::{ReadEvent, ShardReader};
use crate::source::ShardStore;

/// Where a reader slot stands: the next sample to read is sample `index` of its
/// `slot_index`-th shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReaderPos {
    /// Which of the slot's shards (0-based, in plan order).
    pub slot_index: u64,
    /// Sample position within that shard.
    pub index: u64,
}

/// What a reader thread sends.
#[derive(Debug)]
pub(crate) enum ReaderMsg {
    /// An event of shard `slot_index`.
    Event { slot_index: u64, event: ReadEvent },
    /// Shard `slot_index` is finished (read to the end, or failed).
    ShardEnd {
        slot_index: u64,
        /// Whether the shard gave at least one sample (from where this read started).
        had_samples: bool,
    },
}

/// The receiving end of one reader slot.
#[derive(Debug)]
pub(crate) struct ReaderSlot {
    pub rx: Receiver<ReaderMsg>,
    pub pos: ReaderPos,
    pub done: bool,
    _thread: JoinHandle<()>,
}

/// Starts a thread reading `plan`'s shards for `reader` from `start`; at most `capacity` messages
/// wait in its channel, which bounds memory. The thread ends when its shards run out or the slot
/// is dropped.
pub(crate) fn spawn(
    plan: Arc<EpochPlan>,
    reader: usize,
    start: ReaderPos,
    format: Arc<dyn ShardReader>,
    store: Arc<dyn ShardStore>,
    capacity: usize,
) -> Result<ReaderSlot, DataError> {
    let (tx, rx) = sync_channel(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name(format!("duet-reader-{reader}"))
        .spawn(move || run(&plan, reader, start, &*format, &*store, &tx))
        .map_err(|source| DataError::Thread {
            what: "shard reader",
            source,
        })?;
    Ok(ReaderSlot {
        rx,
        pos: start,
        done: false,
        _thread: thread,
    })
}

fn run(
    plan: &EpochPlan,
    reader: usize,
    start: ReaderPos,
    format: &dyn ShardReader,
    store: &dyn ShardStore,
    tx: &SyncSender<ReaderMsg>,
) {
    let mut slot_index = start.slot_index;
    let mut skip = start.index;
    while let Some(url) = plan.shard(reader, slot_index) {
        let mut had_samples = false;
        for event in format.read(store, &url, skip) {
            had_samples |= matches!(event, ReadEvent::Sample(_));
            if tx.send(ReaderMsg::Event { slot_index, event }).is_err() {
                return;
            }
        }
        let end = ReaderMsg::ShardEnd {
            slot_index,
            had_samples,
        };
        if tx.send(end).is_err() {
            return;
        }
        slot_index += 1;
        skip = 0;
    }
}
