//! The passes over the raw shards: exact-duplicate hashing and writing the kept samples.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use duet_data::{FieldSelector, LoaderSource, ReadEvent, image_extension, parse_spec};

/// The good samples (`good`: `(shard, position)`) whose image bytes equal an earlier good
/// sample's, in spec order; SHA-256 over the selected image field's bytes.
pub(super) fn exact_duplicates(
    shards: &[String],
    good: &HashSet<(usize, u64)>,
) -> Result<HashSet<(usize, u64)>> {
    let fields = FieldSelector::default();
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut duplicates = HashSet::new();
    for (i, shard) in shards.iter().enumerate() {
        let source = LoaderSource::from_spec(&parse_spec(shard, None)?)?;
        for event in source.format.read(&*source.store, shard, 0) {
            let ReadEvent::Sample(raw) = event else {
                continue;
            };
            let at = (i, raw.at.index);
            if !good.contains(&at) {
                continue;
            }
            let Ok(selected) = fields.select(&raw) else {
                bail!("{shard}: sample {} changed since it was embedded", raw.key);
            };
            let digest = ring::digest::digest(&ring::digest::SHA256, selected.image);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(digest.as_ref());
            if !seen.insert(hash) {
                duplicates.insert(at);
            }
        }
    }
    Ok(duplicates)
}

/// Streams `shard` and writes its samples whose `(i, position)` is in `keep` to `target`.
pub(super) fn write_kept(
    shard: &str,
    i: usize,
    keep: &HashSet<(usize, u64)>,
    target: &Path,
) -> Result<()> {
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
        if !keep.contains(&(i, raw.at.index)) {
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
