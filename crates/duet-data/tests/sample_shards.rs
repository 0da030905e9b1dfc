//! The tar reader on the bundled img2dataset shards (`datasets/sample/train/0000{0,1,2}.tar`):
//! every successful row arrives, in key order, with its `.jpg/.json/.txt` members.

mod common;

use std::fs::File;

use duet_data::reader::{ReadEvent, ShardReader, TarReader};
use parquet::file::reader::{FileReader, SerializedFileReader};

use common::workspace_path;
use duet_data::LocalStore;

/// `key` of every `status == "success"` row of img2dataset's parquet beside the shard.
fn success_keys(parquet: &str) -> Vec<String> {
    let file = File::open(parquet).expect("open parquet");
    let reader = SerializedFileReader::new(file).expect("parquet footer");
    let mut keys = Vec::new();
    for row in reader.get_row_iter(None).expect("rows") {
        let row = row.expect("row");
        let get = |name: &str| {
            let (_, field) = row
                .get_column_iter()
                .find(|(n, _)| n.as_str() == name)
                .expect(name);
            field.to_string().trim_matches('"').to_owned()
        };
        if get("status") == "success" {
            keys.push(get("key"));
        }
    }
    keys
}

#[test]
fn every_successful_row_arrives_with_its_members() {
    // successes from each `_stats.json`: 499, 498, 191 (README: 1,188 train samples).
    for (shard, successes) in [("00000", 499), ("00001", 498), ("00002", 191)] {
        let stats = workspace_path(&format!("datasets/sample/train/{shard}_stats.json"));
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(stats).expect("stats")).expect("json");
        assert_eq!(stats["successes"], successes, "{shard}");

        let url = workspace_path(&format!("datasets/sample/train/{shard}.tar"));
        let mut keys = Vec::new();
        for (i, event) in TarReader.read(&LocalStore, &url, 0).enumerate() {
            let ReadEvent::Sample(sample) = event else {
                panic!("{shard}: {event:?}")
            };
            assert_eq!(sample.at.index, i as u64);
            let fields: Vec<_> = sample.fields.keys().map(String::as_str).collect();
            assert_eq!(fields, ["jpg", "json", "txt"], "{shard} {}", sample.key);
            assert_eq!(
                &sample.fields["jpg"][..2],
                [0xff, 0xd8],
                "JPEG SOI in {}",
                sample.key
            );
            keys.push(sample.key);
        }
        assert_eq!(keys.len(), successes as usize, "{shard}");
        let parquet = workspace_path(&format!("datasets/sample/train/{shard}.parquet"));
        assert_eq!(keys, success_keys(&parquet), "{shard}");
    }
}

#[test]
fn first_sample_and_resume_on_a_real_shard() {
    let url = workspace_path("datasets/sample/train/00001.tar");
    let first: Vec<_> = TarReader.read(&LocalStore, &url, 0).take(1).collect();
    let [ReadEvent::Sample(first)] = first.as_slice() else {
        panic!("{first:?}")
    };
    // Shard 1 starts at key 00001000 (8-digit keys, 500 per shard).
    assert_eq!(first.key, "00001000");
    let json: serde_json::Value = serde_json::from_slice(&first.fields["json"]).expect("json");
    assert_eq!(json["key"], "00001000");
    assert_eq!(
        json["caption"].as_str().map(str::as_bytes),
        Some(first.fields["txt"].as_slice())
    );

    // Resuming at position 497 leaves the last sample: 498 samples, positions 0..497.
    let rest: Vec<_> = TarReader.read(&LocalStore, &url, 497).collect();
    let [ReadEvent::Sample(last)] = rest.as_slice() else {
        panic!("{rest:?}")
    };
    assert_eq!(last.at.index, 497);
    assert_eq!(last.key, "00001499");
}
