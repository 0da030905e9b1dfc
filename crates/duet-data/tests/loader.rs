//! The whole pipeline on real shards: img2dataset's tars in `datasets/sample/` and the bad-input
//! corpus. Every good sample arrives once, every bad one is counted under its reason, batches
//! after a restored cursor equal the uninterrupted run's bit for bit, and no data is an error,
//! never a hang.

mod bad_corpus;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bad_corpus::{Entry, format_of};
use common::workspace_path;
use duet_data::{
    AutoReader, Batch, DataError, EvalTransformConfig, ImageTransformConfig, Loader, LoaderConfig,
    LoaderCursor, LoaderSource, LocalStore, MemoryStore, Sampling, ShardReader, ShardStore,
    SkipReason, SlotLoader, TextTokenizer, TokenizerConfig, TrainTransformConfig, WeightedShard,
    owned_slots, parse_spec,
};

/// The bundled sample's training shards: 499 + 498 + 191 = 1,188 good samples
/// (`datasets/sample/train/*_stats.json`, `successes`).
const TRAIN_SAMPLES: usize = 1188;

fn train_spec() -> String {
    workspace_path("datasets/sample/train/{00000..00002}.tar")
}

fn source_with(
    spec: &str,
    format: Arc<dyn ShardReader>,
    store: Arc<dyn ShardStore>,
) -> LoaderSource {
    let spec = parse_spec(spec, None).expect("spec parses");
    LoaderSource {
        shards: WeightedShard::from_spec(&spec),
        format,
        store,
    }
}

fn source(spec: &str) -> LoaderSource {
    let parsed = parse_spec(spec, None).expect("spec parses");
    let format = AutoReader::for_urls(parsed.shards()).expect("known formats");
    source_with(spec, Arc::new(format), Arc::new(LocalStore))
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::bundled(TokenizerConfig::default()).expect("bundled tokenizer")
}

/// Small train batches: 24 px crops of the 64 px sample images keep the test fast.
fn train_config(batch_size: usize, sampling: Sampling) -> LoaderConfig {
    let transform = ImageTransformConfig::Train(TrainTransformConfig {
        image_size: 24,
        ..TrainTransformConfig::default()
    });
    LoaderConfig {
        sampling,
        shuffle_buffer: 64,
        readers: 2,
        decode_threads: 2,
        ..LoaderConfig::train(batch_size, 17, transform)
    }
}

fn eval_config(batch_size: usize) -> LoaderConfig {
    let transform = ImageTransformConfig::Eval(EvalTransformConfig {
        image_size: 16,
        ..EvalTransformConfig::default()
    });
    LoaderConfig::single_pass(batch_size, transform)
}

fn take(
    config: &LoaderConfig,
    source: LoaderSource,
    cursor: Option<&LoaderCursor>,
    n: usize,
) -> Vec<Batch> {
    Loader::start(config, source, tokenizer(), cursor)
        .expect("starts")
        .take(n)
        .map(|b| b.expect("a batch"))
        .collect()
}

/// Everything a consumer sees of a batch, for bitwise comparison.
fn content(b: &Batch) -> (Vec<u32>, Vec<u32>, Vec<String>, u64) {
    let bits = b.images.iter().map(|v| v.to_bits()).collect();
    (bits, b.tokens.clone(), b.keys.clone(), b.epoch)
}

#[test]
fn single_pass_yields_every_good_sample_once_in_shard_order() {
    let batches: Vec<Batch> =
        Loader::start(&eval_config(100), source(&train_spec()), tokenizer(), None)
            .expect("starts")
            .map(|b| b.expect("a batch"))
            .collect();
    // 1,188 = 11 full batches of 100 + a last one of 88, kept in a single pass.
    assert_eq!(batches.len(), 12);
    assert_eq!(batches[11].len(), 88);
    let keys: Vec<&String> = batches.iter().flat_map(|b| &b.keys).collect();
    assert_eq!(keys.len(), TRAIN_SAMPLES);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), TRAIN_SAMPLES);
    // One reader, no shuffle: shard 0's keys first, in tar order (img2dataset: 8-digit keys,
    // shard 1 starts at 00001000).
    assert_eq!(keys[0], "00000000");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "shard order kept");
    let last = batches.last().expect("batches");
    assert_eq!(last.cursor.skipped().total(), 0);
    assert_eq!(last.images.len(), 88 * 3 * 16 * 16);
    assert_eq!(last.tokens.len(), 88 * 77);
    // Token rows start with <|startoftext|> (49406).
    assert!(last.tokens.chunks(77).all(|row| row[0] == 49406));
}

fn check_resume(sampling: Sampling, batch_size: usize, total: usize, cuts: &[usize]) {
    check_resume_with(&train_config(batch_size, sampling), total, cuts);
}

fn check_resume_with(config: &LoaderConfig, total: usize, cuts: &[usize]) {
    let (config, sampling) = (config, config.sampling);
    let full = take(config, source(&train_spec()), None, total);
    assert_eq!(full.len(), total);
    for &cut in cuts {
        // The cursor of batch `cut - 1`, through JSON as a checkpoint stores it.
        let json = serde_json::to_string(&full[cut - 1].cursor).expect("serialises");
        let cursor: LoaderCursor = serde_json::from_str(&json).expect("parses");
        let resumed = take(config, source(&train_spec()), Some(&cursor), total - cut);
        assert_eq!(resumed.len(), total - cut, "{sampling:?} cut {cut}");
        for (i, (a, b)) in full[cut..].iter().zip(&resumed).enumerate() {
            assert!(
                content(a) == content(b),
                "{sampling:?} cut {cut}: batch {} differs",
                cut + i
            );
        }
    }
}

#[test]
fn exact_resume_is_bit_exact_at_many_cut_points_across_an_epoch_end() {
    // 1,188 samples in batches of 50: 23 batches per epoch (38 dropped), so 30 batches run into
    // epoch 1; cuts inside a chunk, at the epoch's last batch, and just after the boundary.
    let config = train_config(50, Sampling::Exact);
    let full = take(&config, source(&train_spec()), None, 30);
    assert_eq!(full[22].epoch, 0);
    assert_eq!(full[23].epoch, 1);
    check_resume(Sampling::Exact, 50, 30, &[1, 7, 22, 23, 24, 29]);
}

#[test]
fn resampled_resume_is_bit_exact() {
    check_resume(Sampling::Resampled, 40, 16, &[1, 5, 11, 15]);
}

#[test]
fn a_filtered_stream_keeps_exactly_the_passing_samples_and_resumes_exactly() {
    // The unfiltered single pass gives every caption; `min_words = 8` keeps the captions of at
    // least 8 whitespace-separated words, in the same order, and counts the rest as
    // `filtered_too_few_words`.
    let all = take(&eval_config(100), source(&train_spec()), None, usize::MAX);
    let want: Vec<&String> = all
        .iter()
        .flat_map(|b| b.keys.iter().zip(&b.captions))
        .filter(|(_, c)| c.split_whitespace().count() >= 8)
        .map(|(k, _)| k)
        .collect();
    let filter = duet_data::BasicFilter {
        min_words: Some(8),
        ..Default::default()
    };
    let config = LoaderConfig {
        filter: filter.clone(),
        ..eval_config(100)
    };
    let kept = take(&config, source(&train_spec()), None, usize::MAX);
    let got: Vec<&String> = kept.iter().flat_map(|b| &b.keys).collect();
    assert_eq!(got, want);
    // Neither none nor all: the bound really splits the sample.
    assert!(
        want.len() > 100 && want.len() < TRAIN_SAMPLES - 100,
        "{}",
        want.len()
    );
    let skipped = kept.last().expect("batches").cursor.skipped();
    assert_eq!(
        skipped.get(SkipReason::FilteredTooFewWords) as usize,
        TRAIN_SAMPLES - want.len()
    );
    // A shuffled, filtered training stream resumes bit for bit across an epoch end.
    let train = LoaderConfig {
        filter,
        ..train_config(30, Sampling::Exact)
    };
    let per_epoch = want.len() / 30;
    check_resume_with(&train, per_epoch + 3, &[1, per_epoch - 1, per_epoch + 1]);
    // A language code whatlang does not know is refused before any work, naming the key.
    let bad = LoaderConfig {
        filter: duet_data::BasicFilter {
            languages: Some(vec!["english".into()]),
            ..Default::default()
        },
        ..eval_config(10)
    };
    let Err(error) = Loader::start(&bad, source(&train_spec()), tokenizer(), None) else {
        panic!("an unknown language code was accepted");
    };
    let error = error.to_string();
    assert!(
        error.contains("filter.languages") && error.contains("english"),
        "{error}"
    );
}

#[test]
fn epochs_differ_and_each_exact_epoch_covers_each_sample_at_most_once() {
    let config = train_config(50, Sampling::Exact);
    let batches = take(&config, source(&train_spec()), None, 46);
    for epoch in [0, 1] {
        let keys: Vec<&String> = batches
            .iter()
            .filter(|b| b.epoch == epoch)
            .flat_map(|b| &b.keys)
            .collect();
        // 23 batches of 50; no sample twice.
        assert_eq!(keys.len(), 1150, "epoch {epoch}");
        assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 1150);
    }
    assert_ne!(batches[0].keys, batches[23].keys, "a new order each epoch");
}

#[test]
fn ranks_split_the_shards_without_overlap_or_loss() {
    // Exact, shuffled passes on 2 ranks with 2 readers each, 2 epochs, partial batches kept:
    // in each epoch the union over ranks is every sample, once.
    let mut seen: [Vec<String>; 2] = Default::default();
    for rank in 0..2 {
        let config = LoaderConfig {
            rank,
            world_size: 2,
            epochs: Some(2),
            drop_last: false,
            ..train_config(64, Sampling::Exact)
        };
        for batch in take(&config, source(&train_spec()), None, usize::MAX) {
            seen[batch.epoch as usize].extend(batch.keys);
        }
    }
    for (epoch, keys) in seen.iter().enumerate() {
        // 3 shards over 2 ranks: one rank reads 2 shards, the other 1; nothing lost or twice.
        assert_eq!(keys.len(), TRAIN_SAMPLES, "epoch {epoch}");
        assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), TRAIN_SAMPLES);
    }
}

#[test]
fn two_processes_of_two_readers_read_every_sample_once_per_slot_epoch() {
    // The trainer's layout: 2 data slots dealt to 2 processes (one SlotLoader each, slot 0 and
    // slot 1), 2 readers per slot, shuffled exact passes, partial batches kept, 2 epochs. Every
    // slot epoch covers its shards once, so in each epoch the union over processes is every
    // sample, once.
    let mut seen: [Vec<String>; 2] = Default::default();
    let config = LoaderConfig {
        epochs: Some(2),
        drop_last: false,
        ..train_config(32, Sampling::Exact)
    };
    for process in 0..2 {
        let owned = owned_slots(2, 2, process).expect("2 slots over 2 processes");
        assert_eq!(owned, process..process + 1);
        let loader = SlotLoader::start(&config, 2, owned, source(&train_spec()), tokenizer(), None)
            .expect("starts");
        for batch in loader {
            let batch = batch.expect("a batch");
            assert_eq!(batch.parts.len(), 1);
            for part in batch.parts {
                seen[part.epoch as usize].extend(part.keys);
            }
        }
    }
    for (epoch, keys) in seen.iter().enumerate() {
        assert_eq!(keys.len(), TRAIN_SAMPLES, "epoch {epoch}");
        assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), TRAIN_SAMPLES);
    }
    // 3 shards cannot feed 4 slots; 2 slots do not split over 3 processes.
    let err = SlotLoader::start(&config, 4, 0..1, source(&train_spec()), tokenizer(), None)
        .expect_err("4 slots, 3 shards");
    assert!(err.to_string().contains("only 3 shard(s)"), "{err}");
    let err = owned_slots(2, 3, 0).expect_err("2 over 3");
    assert!(
        err.to_string()
            .contains("do not split evenly over 3 process(es)"),
        "{err}"
    );
}

#[test]
fn a_batch_too_large_to_allocate_is_an_error_not_an_abort() {
    // 2^40 samples a batch: the pending samples alone would take terabytes; the loader says so
    // instead of the allocator aborting the process.
    let mut loader = Loader::start(
        &train_config(1 << 40, Sampling::Exact),
        source(&train_spec()),
        tokenizer(),
        None,
    )
    .expect("starts");
    match loader.next() {
        Some(Err(error @ DataError::OutOfMemory { .. })) => {
            assert!(
                error.to_string().contains("for a batch of 1099511627776"),
                "{error}"
            );
        }
        other => panic!(
            "expected OutOfMemory, got {:?}",
            other.map(|b| b.map(|b| b.len()))
        ),
    }
    assert!(loader.next().is_none(), "the stream ends after the error");
}

fn no_samples(config: &LoaderConfig, source: LoaderSource) -> String {
    let mut loader = Loader::start(config, source, tokenizer(), None).expect("starts");
    match loader.next() {
        Some(Err(error @ DataError::NoSamples { .. })) => {
            assert!(loader.next().is_none(), "the stream ends after the error");
            error.to_string()
        }
        other => panic!(
            "expected NoSamples, got {:?}",
            other.map(|b| b.map(|b| b.keys))
        ),
    }
}

#[test]
fn no_data_is_a_clear_error_never_a_hang() {
    // Unreachable shards, exact: the epoch ends with nothing.
    let missing = "/nonexistent/duet/{00000..00002}.tar";
    let message = no_samples(&train_config(8, Sampling::Exact), source(missing));
    assert!(message.contains("shard_unreachable=3"), "{message}");
    // Unreachable shards, resampled: drawn again and again until the empty-shard limit.
    let message = no_samples(&train_config(8, Sampling::Resampled), source(missing));
    assert!(message.contains("in a row gave no sample"), "{message}");
    // Fewer good samples than one batch, dropping partial batches.
    let message = no_samples(&train_config(2000, Sampling::Exact), source(&train_spec()));
    assert!(
        message.contains("1188 good samples, fewer than one batch of 2000"),
        "{message}"
    );
}

#[test]
fn resampled_shards_of_only_bad_samples_stop_with_an_error() {
    // A tar whose every image is HTML: readers yield samples, decoding skips each one.
    let store = MemoryStore::new();
    let mut tar = tar::Builder::new(Vec::new());
    for i in 0..10 {
        for (ext, body) in [("jpg", &b"<html>404</html>"[..]), ("txt", &b"a cat"[..])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("{i:09}.{ext}"), body)
                .expect("in memory");
        }
    }
    store.insert("mem/00000.tar", tar.into_inner().expect("in memory"));
    let config = LoaderConfig {
        max_skipped_in_a_row: 50,
        ..train_config(4, Sampling::Resampled)
    };
    let format = Arc::new(AutoReader::for_urls(["mem/00000.tar"]).expect("tar"));
    let message = no_samples(
        &config,
        source_with("mem/00000.tar", format, Arc::new(store)),
    );
    assert!(
        message.contains("50 samples in a row were skipped"),
        "{message}"
    );
    assert!(message.contains("undecodable_image=50"), "{message}");
}

#[test]
fn bad_input_corpus_through_the_whole_pipeline() {
    let dir = bad_corpus::dir();
    let manifest = bad_corpus::manifest();
    let mut reasons_seen = BTreeSet::new();
    for (name, expected) in &manifest {
        let url = format!("{dir}/{name}");
        let format: Arc<dyn ShardReader> =
            Arc::from(format_of(name, &expected.format).reader().expect("reader"));
        let source = source_with(&url, format, Arc::new(LocalStore));
        let mut loader = Loader::start(&eval_config(1), source, tokenizer(), None).expect("starts");
        let mut keys = Vec::new();
        for batch in loader.by_ref() {
            match batch {
                Ok(batch) => {
                    keys.extend(batch.keys.iter().cloned());
                }
                Err(DataError::NoSamples { skipped, reason }) => {
                    assert!(
                        expected.good.is_empty(),
                        "{name}: no samples ({reason}; {skipped}) but expected {:?}",
                        expected.good
                    );
                    check_counts(name, expected, &skipped, &mut reasons_seen);
                }
                Err(other) => panic!("{name}: {other}"),
            }
        }
        assert_eq!(keys, expected.good, "{name}: good samples, in order");
        // After the stream ends, the loader's totals cover the whole pass.
        check_counts(name, expected, &loader.skipped(), &mut reasons_seen);
    }
    // An unreachable shard in a mixed spec: counted, and the other shard's samples arrive.
    let spec = format!("{dir}/mixed.tar::{dir}/gone.tar");
    let batches = take(&eval_config(64), source(&spec), None, usize::MAX);
    let cursor = &batches.last().expect("a batch").cursor;
    assert_eq!(cursor.skipped().get(SkipReason::ShardUnreachable), 1);
    reasons_seen.insert("shard_unreachable".to_owned());
    // Every kind the loader promises to survive is in the corpus.
    for reason in [
        "shard_unreachable",
        "shard_truncated",
        "shard_corrupt",
        "missing_image",
        "missing_caption",
        "caption_not_utf8",
        "empty_image",
        "undecodable_image",
        "image_too_large",
        "duplicate_key",
    ] {
        assert!(reasons_seen.contains(reason), "no {reason} in the corpus");
    }
}

fn check_counts(
    name: &str,
    expected: &Entry,
    skipped: &duet_data::SkipCounts,
    seen: &mut BTreeSet<String>,
) {
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let reasons = expected
        .later
        .values()
        .map(|l| l.reason.clone())
        .chain(expected.skipped.values().cloned())
        .chain(expected.shard_failed.clone());
    for reason in reasons {
        *want.entry(reason).or_default() += 1;
    }
    let got: BTreeMap<String, u64> = skipped.iter().map(|(r, n)| (r.to_owned(), n)).collect();
    assert_eq!(got, want, "{name}: skip counts");
    seen.extend(want.into_keys());
}

#[test]
fn recycled_image_buffers_change_nothing() {
    // Handing buffers back (as a trainer does after upload) reuses them for later batches;
    // the batches must be the same as with fresh buffers.
    let config = train_config(50, Sampling::Exact);
    let fresh = take(&config, source(&train_spec()), None, 10);
    let mut loader =
        Loader::start(&config, source(&train_spec()), tokenizer(), None).expect("starts");
    let mut recycled = Vec::new();
    for _ in 0..10 {
        let batch = loader.next().expect("a batch").expect("no error");
        recycled.push(content(&batch));
        loader.recycle(batch.images);
    }
    let fresh: Vec<_> = fresh.iter().map(content).collect();
    assert!(fresh == recycled, "recycled buffers changed a batch");
}
