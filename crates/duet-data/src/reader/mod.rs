//! Shard formats: each turns one shard's bytes into [`RawSample`]s, in shard order.

use crate::source::ShardStore;
use crate::{RawSample, SkipReason};

/// One item a reader yields: a sample, or a problem it recovered from.
#[derive(Debug)]
pub enum ReadEvent {
    /// A sample, fields still raw.
    Sample(RawSample),
    /// A sample dropped while reading (e.g. a duplicate key); the shard goes on.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// The sample key, if known.
        key: Option<String>,
        /// Detail for the rate-limited log.
        detail: String,
    },
    /// The shard cannot be read further (unreachable, truncated, corrupt); this is the last event.
    ShardFailed {
        /// Why.
        reason: SkipReason,
        /// Detail for the log: the URL and the underlying error.
        detail: String,
    },
}

/// A shard format.
pub trait ShardReader: Send + Sync + std::fmt::Debug {
    /// Streams the samples of `url`, starting at sample position `skip` (positions count every
    /// sample the shard holds, good or bad, so a cursor can point into the shard). Never fails:
    /// problems are events.
    fn read<'a>(
        &'a self,
        store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a>;
}
