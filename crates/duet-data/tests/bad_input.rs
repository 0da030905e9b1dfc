//! Every reader on the bad-input corpus (`tests/fixtures/bad/`, made by
//! `scripts/make_bad_corpus.py`): nothing panics, every reader-level problem is reported with the
//! reason `MANIFEST.json` gives, and every other sample arrives raw, in order, at its position.
//! Problems only decoding or field selection can see (`later` in the manifest) must arrive here
//! as ordinary samples.

mod bad_corpus;
mod common;

use std::collections::BTreeMap;

use duet_data::LocalStore;
use duet_data::reader::{ReadEvent, ShardFormat};

use bad_corpus::{format_of, manifest};

#[test]
fn every_reader_level_problem_is_reported_and_every_other_sample_arrives() {
    let dir = bad_corpus::dir();
    let manifest = manifest();
    assert_eq!(manifest.len(), 9);
    for (name, expected) in &manifest {
        let url = format!("{dir}/{name}");
        let format = format_of(name, &expected.format);
        assert_eq!(
            ShardFormat::detect(&url).map(|f| std::mem::discriminant(&f)),
            Some(std::mem::discriminant(&format)),
            "{name}: detect"
        );
        let reader = format.reader().expect("reader");
        let mut samples = Vec::new();
        let mut skipped = BTreeMap::new();
        let mut failed = None;
        for event in reader.read(&LocalStore, &url, 0) {
            assert!(
                failed.is_none(),
                "{name}: event after ShardFailed: {event:?}"
            );
            match event {
                ReadEvent::Sample(s) => {
                    if matches!(expected.format.as_str(), "csv" | "parquet") {
                        assert_eq!(s.key, s.at.index.to_string(), "{name}: row keys");
                    }
                    samples.push(s.key);
                }
                ReadEvent::Skipped {
                    reason,
                    key,
                    detail,
                } => {
                    assert!(!detail.is_empty());
                    skipped.insert(key.expect("skips name their key"), reason.name().to_owned());
                }
                ReadEvent::ShardFailed { reason, detail } => {
                    assert!(
                        detail.contains(name.trim_end_matches('/')),
                        "{name}: {detail}"
                    );
                    failed = Some(reason.name().to_owned());
                }
            }
        }
        assert_eq!(samples, expected.samples, "{name}: samples");
        assert_eq!(skipped, expected.skipped, "{name}: skipped");
        assert_eq!(failed, expected.shard_failed, "{name}: shard failure");
    }
}

#[test]
fn resuming_mid_shard_gives_the_tail() {
    let dir = bad_corpus::dir();
    // mixed.tar positions: 00000000..00000007 are 0..7, the duplicate 00000000 is 8, then 8 is 9.
    let events: Vec<_> = ShardFormat::Tar
        .reader()
        .expect("reader")
        .read(&LocalStore, &format!("{dir}/mixed.tar"), 7)
        .map(|e| match e {
            ReadEvent::Sample(s) => (s.key, s.at.index),
            ReadEvent::Skipped { reason, key, .. } => (format!("!{reason} {key:?}"), 0),
            ReadEvent::ShardFailed { reason, .. } => (format!("FAILED {reason}"), 0),
        })
        .collect();
    assert_eq!(
        events,
        [
            ("00000007".to_owned(), 7),
            ("!duplicate_key Some(\"00000000\")".to_owned(), 0),
            ("00000008".to_owned(), 9)
        ]
    );
    // hf.parquet has row groups of 3 rows: skipping 4 fetches only the second.
    let parquet = format!("{dir}/hf.parquet");
    let reader = ShardFormat::detect(&parquet)
        .expect("parquet")
        .reader()
        .expect("reader");
    let keys: Vec<_> = reader
        .read(&LocalStore, &parquet, 4)
        .map(|e| match e {
            ReadEvent::Sample(s) => s.key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["4", "5"]);
}
