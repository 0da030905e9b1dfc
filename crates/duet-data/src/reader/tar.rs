//! Webdataset tars, as img2dataset writes them: consecutive members sharing a key form a sample.
//!
//! Grouping follows webdataset's `base_plus_ext` (tariterators.py, regex
//! `^((?:.*/|)[^.]+)[.]([^/]*)$`): the key is the member path up to the first `.` of its
//! basename, the field everything after it, lowercased (`d/000042.seg.PNG` -> key `d/000042`,
//! field `seg.png`). Members whose path does not split (no `.` in the basename) and webdataset's
//! `__meta__` members are ignored, as are directories, links and every other non-regular entry.
//! PAX (`././@PaxHeader`, which img2dataset writes before every member) and GNU long-name headers
//! are consumed by the `tar` crate.
//!
//! A field seen twice in a row starts a new group (OpenCLIP's `group_by_keys_nothrow`,
//! open_clip `src/training/data.py`; webdataset itself raises). A group whose key was already
//! seen in this shard is dropped as [`SkipReason::DuplicateKey`]; the first one wins.
//!
//! A stream that ends inside a member or header, or breaks, fails the shard with
//! [`SkipReason::ShardTruncated`]; a bad header (checksum, size field) with
//! [`SkipReason::ShardCorrupt`]. Either way the samples before the failure have been yielded;
//! the group being assembled at that moment is dropped (its other members may be lost).
//!
//! The `tar` crate's entry iterator borrows its archive, so the shard is read on a helper
//! thread that hands finished samples over a channel of [`CHANNEL_SAMPLES`] slots: memory stays
//! at a few samples, and dropping the iterator stops the thread at its next sample.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;

use tar::EntryType;

use crate::reader::{ReadEvent, ShardReader};
use crate::source::ShardStore;
use crate::{RawSample, SampleRef, SkipReason};

/// Samples that may wait between the reading thread and the consumer.
pub const CHANNEL_SAMPLES: usize = 2;

/// Reads webdataset tars. `skip` counts key groups (duplicates included); skipped groups'
/// member bytes are passed over, not kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct TarReader;

impl ShardReader for TarReader {
    fn read<'a>(
        &'a self,
        store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
        let stream = match store.open(url) {
            Ok(stream) => stream,
            Err(e) => {
                return Box::new(std::iter::once(ReadEvent::ShardFailed {
                    reason: SkipReason::ShardUnreachable,
                    detail: format!("{url}: {e}"),
                }));
            }
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_SAMPLES);
        let shard: Arc<str> = url.into();
        let spawned = std::thread::Builder::new()
            .name(format!("tar {url}"))
            .spawn(move || {
                // A failed send means the consumer dropped the iterator: stop reading.
                read_tar(stream, &shard, skip, &mut |event| match tx.send(event) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                });
            });
        match spawned {
            Ok(_) => Box::new(rx.into_iter()),
            Err(e) => Box::new(std::iter::once(ReadEvent::ShardFailed {
                reason: SkipReason::ShardUnreachable,
                detail: format!("{url}: cannot start the tar reading thread: {e}"),
            })),
        }
    }
}

/// Splits a member path into (key, field) as webdataset's `base_plus_ext` does; `None` for paths
/// its regex does not match.
pub fn base_plus_ext(path: &str) -> Option<(&str, &str)> {
    let slash = path.rfind('/').map_or(0, |i| i + 1);
    let name = &path[slash..];
    match name.find('.') {
        Some(0) => {
            // `[^.]+` may span `/`: `dir/.hidden` is key `dir/`, field `hidden`, when nothing
            // before the basename has a dot.
            let dir = &path[..slash];
            (!dir.is_empty() && !dir.contains('.')).then(|| (dir, &name[1..]))
        }
        Some(dot) => Some((&path[..slash + dot], &name[dot + 1..])),
        None => None,
    }
}

/// How the underlying stream ended, seen through [`Watched`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    Open,
    Eof,
    Broken,
}

/// Records whether the shard stream hit end-of-file or an error, which tells a truncated shard
/// from a corrupt one (the `tar` crate reports both as `io::ErrorKind::Other` text).
struct Watched<R> {
    inner: R,
    end: Rc<Cell<StreamEnd>>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.end.set(StreamEnd::Eof);
                Ok(0)
            }
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                self.end.set(StreamEnd::Broken);
                Err(e)
            }
            other => other,
        }
    }
}

/// The key group being assembled.
struct Group {
    key: String,
    position: u64,
    duplicate: bool,
    fields: BTreeMap<String, Vec<u8>>,
}

/// Reads the whole tar, handing events to `emit` until it breaks.
fn read_tar(
    stream: Box<dyn Read + Send>,
    shard: &Arc<str>,
    skip: u64,
    emit: &mut dyn FnMut(ReadEvent) -> ControlFlow<()>,
) {
    let end = Rc::new(Cell::new(StreamEnd::Open));
    let mut archive = tar::Archive::new(Watched {
        inner: stream,
        end: Rc::clone(&end),
    });
    let fail = |e: io::Error, during: &str| {
        let reason = match end.get() {
            StreamEnd::Open => SkipReason::ShardCorrupt,
            StreamEnd::Eof | StreamEnd::Broken => SkipReason::ShardTruncated,
        };
        ReadEvent::ShardFailed {
            reason,
            detail: format!("{shard}: {during}: {e}"),
        }
    };
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            let _ = emit(fail(e, "opening the tar"));
            return;
        }
    };
    let mut seen = HashSet::new();
    let mut next_position = 0u64;
    let mut group: Option<Group> = None;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let _ = emit(fail(e, &after(&group)));
                return;
            }
        };
        if !matches!(
            entry.header().entry_type(),
            EntryType::Regular | EntryType::Continuous
        ) {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if is_meta(&path) {
            continue;
        }
        let Some((key, field)) = base_plus_ext(&path) else {
            continue;
        };
        let field = field.to_lowercase();
        let starts_group = group
            .as_ref()
            .is_none_or(|g| g.key != key || g.fields.contains_key(&field));
        if starts_group {
            if let Some(done) = group.take()
                && finish(done, shard, skip, emit).is_break()
            {
                return;
            }
            let duplicate = !seen.insert(key.to_owned());
            group = Some(Group {
                key: key.to_owned(),
                position: next_position,
                duplicate,
                fields: BTreeMap::new(),
            });
            next_position += 1;
        }
        let Some(current) = group.as_mut() else {
            continue;
        };
        if current.position < skip || current.duplicate {
            // The tar crate passes over unread member bytes when it reads the next header.
            current.fields.insert(field, Vec::new());
            continue;
        }
        let size = entry.size();
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 26));
        if let Err(e) = entry.read_to_end(&mut data) {
            let _ = emit(fail(e, &format!("reading member {path}")));
            return;
        }
        if (data.len() as u64) < size {
            let _ = emit(ReadEvent::ShardFailed {
                reason: SkipReason::ShardTruncated,
                detail: format!(
                    "{shard}: member {path} ends after {} of {size} bytes",
                    data.len()
                ),
            });
            return;
        }
        current.fields.insert(field, data);
    }
    if end.get() == StreamEnd::Eof {
        // No end-of-archive block: the stream stopped at a member boundary.
        let _ = emit(ReadEvent::ShardFailed {
            reason: SkipReason::ShardTruncated,
            detail: format!("{shard}: no end-of-archive block, {}", after(&group)),
        });
        return;
    }
    if let Some(done) = group {
        let _ = finish(done, shard, skip, emit);
    }
}

/// Emits a finished group (nothing if it lies before `skip`).
fn finish(
    group: Group,
    shard: &Arc<str>,
    skip: u64,
    emit: &mut dyn FnMut(ReadEvent) -> ControlFlow<()>,
) -> ControlFlow<()> {
    if group.position < skip {
        return ControlFlow::Continue(());
    }
    if group.duplicate {
        return emit(ReadEvent::Skipped {
            reason: SkipReason::DuplicateKey,
            detail: format!(
                "{shard}: key {} appears again at sample {}",
                group.key, group.position
            ),
            key: Some(group.key),
        });
    }
    emit(ReadEvent::Sample(RawSample {
        at: SampleRef {
            shard: Arc::clone(shard),
            index: group.position,
        },
        key: group.key,
        fields: group.fields,
    }))
}

/// Where reading stopped, for failure details.
fn after(group: &Option<Group>) -> String {
    match group {
        Some(g) => format!(
            "while reading sample {} (key {}, dropped)",
            g.position, g.key
        ),
        None => "before the first sample".to_owned(),
    }
}

/// Webdataset's metadata members (`__key__`-style names), which it skips.
fn is_meta(path: &str) -> bool {
    // tariterators.py: `skip_meta=r"__[^/]*__($|/)"` matched at the start of the path.
    path.strip_prefix("__")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|first| first.len() >= 2 && first.ends_with("__"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::testing::{MapStore, samples, summary};

    /// A tar of `(path, bytes)` regular members, as `tar` (ustar, two zero blocks) writes it.
    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o444);
            header.set_entry_type(EntryType::Regular);
            builder
                .append_data(&mut header, path, *data)
                .expect("append");
        }
        builder.into_inner().expect("finish")
    }

    fn events(tar: &[u8], skip: u64) -> Vec<String> {
        let store = MapStore::with(&[("s.tar", tar)]);
        summary(&TarReader, &store, "s.tar", skip)
    }

    #[test]
    fn splits_paths_like_webdataset() {
        assert_eq!(base_plus_ext("000042.jpg"), Some(("000042", "jpg")));
        assert_eq!(
            base_plus_ext("d/000042.seg.png"),
            Some(("d/000042", "seg.png"))
        );
        assert_eq!(base_plus_ext("a.b/c.jpg"), Some(("a.b/c", "jpg")));
        assert_eq!(base_plus_ext("dir/.hidden"), Some(("dir/", "hidden")));
        assert_eq!(base_plus_ext(".hidden"), None);
        assert_eq!(base_plus_ext("a.b/.hidden"), None);
        assert_eq!(base_plus_ext("a/b.c/noext"), None);
        // `__[^/]*__($|/)` from the start: a whole first component `__…__`.
        assert!(is_meta("__meta__") && is_meta("__x__/y.jpg"));
        assert!(!is_meta("__index__.json") && !is_meta("__x.jpg") && !is_meta("d/__x__.jpg"));
    }

    #[test]
    fn groups_consecutive_members_and_lowercases_fields() {
        let tar = tar_of(&[
            ("a/1.jpg", b"J1"),
            ("a/1.TXT", b"t1"),
            ("a/1.seg.png", b"S"),
            ("a/2.jpg", b"J2"),
            ("noext", b"?"),
            ("__meta__/info.json", b"{}"),
        ]);
        let store = MapStore::with(&[("s.tar", &tar)]);
        let samples = samples(&TarReader, &store, "s.tar");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].key, "a/1");
        let fields: Vec<_> = samples[0].fields.keys().map(String::as_str).collect();
        assert_eq!(fields, ["jpg", "seg.png", "txt"]);
        assert_eq!(samples[0].fields["txt"], b"t1");
        assert_eq!((samples[1].key.as_str(), samples[1].at.index), ("a/2", 1));
        assert_eq!(&*samples[1].at.shard, "s.tar");
    }

    #[test]
    fn duplicates_are_skipped_and_keep_their_position() {
        // Groups: 0 = k1, 1 = k2, 2 = k1 again (dropped), 3 = k3, 4 = k3 again (repeated field).
        let tar = tar_of(&[
            ("k1.jpg", b"a"),
            ("k2.jpg", b"b"),
            ("k1.jpg", b"c"),
            ("k3.jpg", b"d"),
            ("k3.jpg", b"e"),
        ]);
        assert_eq!(
            events(&tar, 0),
            ["k1", "k2", "!duplicate_key k1", "k3", "!duplicate_key k3"]
        );
        // Resuming at position 3 still knows k1 and k2 (their members were passed over).
        assert_eq!(events(&tar, 3), ["k3", "!duplicate_key k3"]);
        assert_eq!(events(&tar, 5), Vec::<String>::new());
    }

    #[test]
    fn skip_counts_groups() {
        let tar = tar_of(&[
            ("0.jpg", b"a"),
            ("0.txt", b"a"),
            ("1.jpg", b"b"),
            ("2.jpg", b"c"),
        ]);
        assert_eq!(events(&tar, 1), ["1", "2"]);
        assert_eq!(events(&tar, 2), ["2"]);
    }

    #[test]
    fn truncation_and_corruption_fail_the_shard_after_the_good_samples() {
        let tar = tar_of(&[
            ("0.jpg", &[1; 700]),
            ("1.jpg", &[2; 700]),
            ("2.jpg", &[3; 700]),
        ]);
        // Each member: 512 header + 1024 data (700 padded) = 1536 bytes; member 2's data starts
        // at 3584. Cutting at 4000 ends inside it: samples 0 and 1 arrive, sample 2 is dropped.
        assert_eq!(
            events(&tar[..4000], 0),
            ["0", "1", "FAILED shard_truncated"]
        );
        // Cutting at a member boundary (no end blocks) is a truncation too; the open group 1 is
        // dropped since more of its members might have followed.
        assert_eq!(events(&tar[..3072], 0), ["0", "FAILED shard_truncated"]);
        // Cutting inside member 2's header (3072..3584): group 1 is still open, so dropped.
        assert_eq!(events(&tar[..3300], 0), ["0", "FAILED shard_truncated"]);
        let mut bad = tar.clone();
        bad[1536 + 148] ^= 0x01; // member 1's header checksum field: group 0 is still open
        assert_eq!(events(&bad, 0), ["FAILED shard_corrupt"]);
        let mut bad = tar.clone();
        bad[3072 + 148] ^= 0x01; // member 2's: group 0 is complete, group 1 open
        assert_eq!(events(&bad, 0), ["0", "FAILED shard_corrupt"]);
        assert_eq!(events(b"", 0), ["FAILED shard_truncated"]);
    }

    #[test]
    fn missing_shard_is_unreachable() {
        let store = MapStore::default();
        assert_eq!(
            summary(&TarReader, &store, "nope.tar", 0),
            ["FAILED shard_unreachable"]
        );
    }

    #[test]
    fn dropping_the_iterator_stops_the_thread() {
        let members: Vec<(String, Vec<u8>)> = (0..100)
            .map(|i| (format!("{i:03}.jpg"), vec![0u8; 10]))
            .collect();
        let refs: Vec<(&str, &[u8])> = members
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        let store = MapStore::with(&[("s.tar", &tar_of(&refs))]);
        let first: Vec<_> = TarReader.read(&store, "s.tar", 0).take(3).collect();
        assert_eq!(first.len(), 3); // and the reading thread ends on its next send
    }
}
