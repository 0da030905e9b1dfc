//! The passes over the raw shards: exact-duplicate hashing and writing the kept samples.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use duet_data::{FieldSelector, LoaderSource, ReadEvent, image_extension, parse_spec};

use super::scratch::{Flags, Scratch};

/// Bytes of a bucket record: the pair's ordinal (u64 LE) and its image's SHA-256.
const RECORD: usize = 8 + 32;

/// Marks in `flags` the good pairs whose image bytes (SHA-256 of the selected image field)
/// equal an earlier good pair's, in spec order. `good(i)` gives shard `i`'s good samples'
/// positions in the shard, in spec order; ordinals count the good pairs of the whole spec.
///
/// Bounded memory: the hashes go to bucket files by their first bytes (as many buckets as
/// keep one bucket's records and hash set near `block_bytes`, at most 256), and each bucket is
/// then searched on its own; equal hashes share a bucket, so the decisions are the same as
/// one set over the spec.
pub(super) fn exact_duplicates(
    shards: &[String],
    good: &dyn Fn(usize) -> Result<Vec<u64>>,
    pairs: u64,
    block_bytes: u64,
    scratch: &Scratch,
    flags: &Flags,
) -> Result<()> {
    // A record in the bucket file, and its hash in the set (with the set's overhead), ~2 × 40.
    let buckets = (pairs.saturating_mul(2 * RECORD as u64))
        .div_ceil(block_bytes.max(1))
        .clamp(1, 256) as usize;
    let bucket_path = |b: usize| scratch.path(&format!("sha-{b:03}.bin"));
    let mut writers = (0..buckets)
        .map(|b| {
            let path = bucket_path(b);
            std::fs::File::create(&path)
                .map(BufWriter::new)
                .with_context(|| format!("creating {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let fields = FieldSelector::default();
    let mut base = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let positions = good(i)?;
        let ordinals: HashMap<u64, u64> = positions
            .iter()
            .enumerate()
            .map(|(j, &at)| (at, base + j as u64))
            .collect();
        base += positions.len() as u64;
        let source = LoaderSource::from_spec(&parse_spec(shard, None)?)?;
        for event in source.format.read(&*source.store, shard, 0) {
            let ReadEvent::Sample(raw) = event else {
                continue;
            };
            let Some(&ordinal) = ordinals.get(&raw.at.index) else {
                continue;
            };
            let Ok(selected) = fields.select(&raw) else {
                bail!("{shard}: sample {} changed since it was embedded", raw.key);
            };
            let digest = ring::digest::digest(&ring::digest::SHA256, selected.image);
            let hash = digest.as_ref();
            let b = usize::from(u16::from_le_bytes([hash[0], hash[1]])) % buckets;
            let mut record = [0u8; RECORD];
            record[..8].copy_from_slice(&ordinal.to_le_bytes());
            record[8..].copy_from_slice(hash);
            writers[b]
                .write_all(&record)
                .with_context(|| format!("writing {}", bucket_path(b).display()))?;
        }
    }
    for (b, mut writer) in writers.into_iter().enumerate() {
        writer
            .flush()
            .with_context(|| format!("writing {}", bucket_path(b).display()))?;
    }
    for b in 0..buckets {
        let path = bucket_path(b);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
        // Records are in spec order: the first of each hash is kept.
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for record in bytes.chunks_exact(RECORD) {
            if !seen.insert(&record[8..]) {
                let mut ordinal = [0u8; 8];
                ordinal.copy_from_slice(&record[..8]);
                flags.set(u64::from_le_bytes(ordinal))?;
            }
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Streams `shard` and writes its samples whose position is in `keep` to `target`.
pub(super) fn write_kept(shard: &str, keep: &HashSet<u64>, target: &Path) -> Result<()> {
    let spec = parse_spec(shard, None)?;
    let source = LoaderSource::from_spec(&spec)?;
    let fields = FieldSelector::default();
    let tmp = target.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut append = |name: String, bytes: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, &name, bytes)
            .with_context(|| format!("writing {}", tmp.display()))
    };
    for event in source.format.read(&*source.store, shard, 0) {
        let ReadEvent::Sample(raw) = event else {
            continue;
        };
        if !keep.contains(&raw.at.index) {
            continue;
        }
        // Kept samples were good when embedded: their fields select the same way again.
        let Ok(selected) = fields.select(&raw) else {
            bail!("{shard}: sample {} changed since it was embedded", raw.key);
        };
        let extension = image_extension(selected.image).unwrap_or("jpg");
        append(format!("{}.{extension}", raw.key), selected.image)?;
        append(format!("{}.txt", raw.key), selected.caption.as_bytes())?;
    }
    let writer = tar
        .into_inner()
        .with_context(|| format!("finishing {}", tmp.display()))?;
    writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("flushing {}: {}", tmp.display(), e.error()))?
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, target)
        .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))
}
