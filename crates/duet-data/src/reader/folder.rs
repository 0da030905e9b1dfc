//! A local directory of images with sidecar captions (`cats/a.jpg` + `cats/a.txt`).
//!
//! The whole directory is one shard, its URL the directory path. Images (`.jpg`, `.jpeg`,
//! `.png`, `.webp`, any case) are found recursively and read in byte order of their relative
//! paths, which fixes positions for a resume cursor. A sample's key is the relative path without
//! the extension (`cats/a`); its fields are the lowercased image extension (`jpg`) and
//! [`CAPTION_FIELD`] (`txt`), as an untarred webdataset shard would give,
//! so the default `FieldSelector` applies.
//!
//! A [`ShardStore`] cannot list a directory, so this reader works on the local file system
//! directly and ignores the store it is given. Symbolic links to files are followed, links to
//! directories are not (no cycles).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::reader::{CAPTION_FIELD, ReadEvent, ShardReader};
use crate::source::ShardStore;
use crate::{RawSample, SampleRef, SkipReason};

/// Image extensions the folder reader picks up (compared lowercased).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// Reads image folders with sidecar `.txt` captions. `skip` counts images; an image with no
/// caption (skipped as [`SkipReason::MissingCaption`]) still takes its position, and so does a
/// second image with the same key (`a.jpg` and `a.png`, skipped as [`SkipReason::DuplicateKey`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct FolderReader;

impl ShardReader for FolderReader {
    fn read<'a>(
        &'a self,
        _store: &'a dyn ShardStore,
        url: &'a str,
        skip: u64,
    ) -> Box<dyn Iterator<Item = ReadEvent> + Send + 'a> {
        let root = Path::new(url.trim_end_matches('/'));
        let mut images = Vec::new();
        if let Err(e) = list_images(root, Path::new(""), &mut images) {
            return Box::new(std::iter::once(ReadEvent::ShardFailed {
                reason: SkipReason::ShardUnreachable,
                detail: format!("{url}: cannot list: {e}"),
            }));
        }
        images.sort();
        let shard: Arc<str> = url.into();
        let root = root.to_path_buf();
        let mut keys = HashSet::new();
        let events = images
            .into_iter()
            .zip(0u64..)
            .filter_map(move |((key, ext), index)| {
                // Record every key, skipped ones included, so duplicates are found after a resume.
                let first = keys.insert(key.clone());
                if index < skip {
                    return None;
                }
                let skipped = |reason, detail: String| ReadEvent::Skipped {
                    reason,
                    key: Some(key.clone()),
                    detail: format!("{shard}: {detail}"),
                };
                if !first {
                    return Some(skipped(
                        SkipReason::DuplicateKey,
                        format!("{key}.{ext}: key seen before"),
                    ));
                }
                let image_path = root.join(format!("{key}.{ext}"));
                let image = match fs::read(&image_path) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        return Some(skipped(
                            SkipReason::MissingImage,
                            format!("{}: {e}", image_path.display()),
                        ));
                    }
                };
                let caption_path = root.join(format!("{key}.txt"));
                let caption = match fs::read(&caption_path) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        return Some(skipped(
                            SkipReason::MissingCaption,
                            format!("{}: {e}", caption_path.display()),
                        ));
                    }
                };
                let fields = [
                    (ext.to_lowercase(), image),
                    (CAPTION_FIELD.to_owned(), caption),
                ];
                Some(ReadEvent::Sample(RawSample {
                    at: SampleRef {
                        shard: Arc::clone(&shard),
                        index,
                    },
                    key,
                    fields: fields.into_iter().collect(),
                }))
            });
        Box::new(events)
    }
}

/// Appends `(key, extension)` for every image under `root/rel`, recursively.
fn list_images(root: &Path, rel: &Path, out: &mut Vec<(String, String)>) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel_path: PathBuf = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list_images(root, &rel_path, out)?;
            continue;
        }
        let Some(ext) = rel_path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !IMAGE_EXTENSIONS.contains(&ext.to_lowercase().as_str()) {
            continue;
        }
        // A dangling link or a link to a directory is not an image file.
        if !fs::metadata(root.join(&rel_path))?.is_file() {
            continue;
        }
        let Some(rel_str) = rel_path.to_str() else {
            continue;
        };
        let key = rel_str[..rel_str.len() - ext.len() - 1].replace(std::path::MAIN_SEPARATOR, "/");
        out.push((key, ext.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::testing::{MapStore, summary};

    /// `b/c.png`, `a.jpg` (+ caption), `b/d.JPG` (+ caption), `b/c.txt`, `e.jpg` without caption,
    /// `a.webp` (same key as `a.jpg`), `notes.md` (ignored).
    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: [(&str, &[u8]); 8] = [
            ("a.jpg", b"A"),
            ("a.txt", b"cap a"),
            ("a.webp", b"W"),
            ("b/c.png", b"C"),
            ("b/c.txt", b"cap c"),
            ("b/d.JPG", b"D"),
            ("b/d.txt", b"cap d"),
            ("e.jpg", b"E"),
        ];
        fs::create_dir(dir.path().join("b")).expect("mkdir");
        for (name, data) in files {
            fs::write(dir.path().join(name), data).expect("write");
        }
        fs::write(dir.path().join("notes.md"), b"#").expect("write");
        dir
    }

    #[test]
    fn sorted_recursive_with_sidecar_captions() {
        let dir = folder();
        let url = format!("{}/", dir.path().display());
        // Sorted relative paths: a.jpg, a.webp, b/c.png, b/d.JPG, e.jpg -> positions 0..4.
        assert_eq!(
            summary(&FolderReader, &MapStore::default(), &url, 0),
            ["a", "!duplicate_key a", "b/c", "b/d", "!missing_caption e"]
        );
        assert_eq!(
            summary(&FolderReader, &MapStore::default(), &url, 3),
            ["b/d", "!missing_caption e"]
        );
        let events: Vec<_> = FolderReader.read(&MapStore::default(), &url, 3).collect();
        let ReadEvent::Sample(d) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert_eq!(d.at.index, 3);
        assert_eq!(d.fields["jpg"], b"D");
        assert_eq!(d.fields[CAPTION_FIELD], b"cap d");
    }

    #[test]
    fn missing_folder_is_unreachable() {
        assert_eq!(
            summary(
                &FolderReader,
                &MapStore::default(),
                "/nonexistent/duet/folder",
                0
            ),
            ["FAILED shard_unreachable"]
        );
    }
}
