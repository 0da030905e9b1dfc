//! Exact resume of the sequencer on an in-memory shard format: for several cut points, the
//! samples after restoring a (JSON round-tripped) state equal the uninterrupted run's.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;

use super::*;
use crate::reader::{ReadEvent, ShardReader};
use crate::source::ShardStore;
use crate::{DataError, RawSample, SampleRef, SkipReason};

/// No bytes needed: the test format makes samples from the URL.
#[derive(Debug)]
struct NoStore;

impl ShardStore for NoStore {
    fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, DataError> {
        Err(DataError::ResumeSampleMissing {
            shard: url.into(),
            index: 0,
        })
    }
    fn size(&self, _: &str) -> Result<u64, DataError> {
        Ok(0)
    }
    fn read_range(&self, _: &str, _: Range<u64>) -> Result<Vec<u8>, DataError> {
        Ok(Vec::new())
    }
}

/// Shard `sN` holds `N + 3` samples keyed `sN/i`; every 5th position is a duplicate-key skip;
/// shard `s4` fails after 2 samples.
#[derive(Debug)]
struct Synthetic;

impl ShardReader for Synthetic {
    fn read<'a>(
        &'a self,
        _: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
        let n: u64 = url[1..].parse::<u64>().unwrap_or(0) + 3;
        let shard: Arc<str> = url.into();
        let fail = url == "s4";
        Box::new((skip..n).map_while(move |index| {
            if fail && index == 2 {
                return Some(ReadEvent::ShardFailed {
                    reason: SkipReason::ShardTruncated,
                    detail: "cut".into(),
                });
            }
            if fail && index > 2 {
                return None;
            }
            if index % 5 == 4 {
                return Some(ReadEvent::Skipped {
                    reason: SkipReason::DuplicateKey,
                    key: None,
                    detail: String::new(),
                });
            }
            Some(ReadEvent::Sample(RawSample {
                at: SampleRef {
                    shard: shard.clone(),
                    index,
                },
                key: format!("{url}/{index}"),
                fields: BTreeMap::new(),
            }))
        }))
    }
}

fn shards() -> Vec<WeightedShard> {
    (0..9)
        .map(|i| WeightedShard {
            url: format!("s{i}").into(),
            weight: (i % 3 + 1) as f64,
        })
        .collect()
}

const CONFIG: SequencerConfig = SequencerConfig {
    seed: 42,
    shuffle_buffer: 7,
    reader_queue: 4,
    max_empty_shards: 100,
};

fn plan(sampling: Sampling, epoch: u64) -> EpochPlan {
    EpochPlan::new(&shards(), sampling, CONFIG.seed, epoch, 0, 1, 3)
}

fn start(sampling: Sampling, epoch: u64) -> Sequencer {
    Sequencer::start(
        plan(sampling, epoch),
        epoch,
        Arc::new(Synthetic),
        Arc::new(NoStore),
        &CONFIG,
    )
    .expect("starts")
}

fn keys(it: impl Iterator<Item = Result<RawSample, DataError>>) -> Vec<String> {
    it.map(|s| s.expect("no stream error").key).collect()
}

#[test]
fn exact_epoch_yields_every_good_sample_once_shuffled() {
    let got = keys(start(Sampling::Exact, 0));
    // Shard sN has N + 3 positions, every 5th (index 4, 9, ...) a skip; s4 stops at index 2.
    let mut want: Vec<String> = (0..9u64)
        .flat_map(|i| {
            let n = if i == 4 { 2 } else { i + 3 };
            (0..n)
                .filter(|j| j % 5 != 4)
                .map(move |j| format!("s{i}/{j}"))
        })
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want);
    assert_ne!(got, want, "the shuffle changed the order");
    // Deterministic: a second run is identical.
    assert_eq!(got, keys(start(Sampling::Exact, 0)));
    assert_ne!(
        got,
        keys(start(Sampling::Exact, 1)),
        "another epoch, another order"
    );
}

#[test]
fn ranks_and_readers_see_every_sample_once_per_exact_epoch() {
    // The 9 shards over every split a data-parallel run might use: the union of all ranks'
    // samples in an exact epoch is the single-rank epoch's, each sample exactly once.
    let mut want = keys(start(Sampling::Exact, 0));
    want.sort();
    for (world, readers) in [(1, 1), (2, 1), (2, 3), (3, 2), (4, 2), (9, 1), (9, 4)] {
        for epoch in [0, 5] {
            let mut seen: Vec<String> = (0..world)
                .flat_map(|rank| {
                    let plan = EpochPlan::new(
                        &shards(),
                        Sampling::Exact,
                        CONFIG.seed,
                        epoch,
                        rank,
                        world,
                        readers,
                    );
                    let sequencer = Sequencer::start(
                        plan,
                        epoch,
                        Arc::new(Synthetic),
                        Arc::new(NoStore),
                        &CONFIG,
                    )
                    .expect("starts");
                    keys(sequencer)
                })
                .collect();
            seen.sort();
            assert_eq!(
                seen, want,
                "{world} ranks x {readers} readers, epoch {epoch}"
            );
        }
    }
}

fn check_resume(sampling: Sampling, total: usize) {
    let full = keys(start(sampling, 3).take(total));
    for cut in [0, 1, 6, 7, 8, 20, total / 2, total - 1] {
        let mut first = start(sampling, 3);
        let head = keys(first.by_ref().take(cut));
        let state = first.state();
        drop(first);
        let json = serde_json::to_string(&state).expect("serialises");
        let state: SequencerState = serde_json::from_str(&json).expect("parses");
        let resumed = Sequencer::restore(
            plan(sampling, 3),
            Arc::new(Synthetic),
            Arc::new(NoStore),
            &CONFIG,
            &state,
        )
        .expect("restores");
        let tail = keys(resumed.take(total - cut));
        assert_eq!([head, tail].concat(), full, "{sampling:?} cut at {cut}");
    }
}

#[test]
fn exact_resume_at_many_cut_points() {
    let total = keys(start(Sampling::Exact, 3)).len();
    check_resume(Sampling::Exact, total);
}

#[test]
fn resampled_resume_at_many_cut_points() {
    check_resume(Sampling::Resampled, 200);
}

#[test]
fn skips_are_counted() {
    let mut seq = start(Sampling::Exact, 0);
    seq.by_ref().for_each(drop);
    assert_eq!(seq.skips().get(SkipReason::ShardTruncated), 1);
    // Positions 4 of s2..s8 except s4 (stopped at 2) and 9 of s7, s8: 6 + 2 = 8.
    assert_eq!(seq.skips().get(SkipReason::DuplicateKey), 8);
}
