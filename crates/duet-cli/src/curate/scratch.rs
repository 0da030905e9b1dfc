//! The decision pass's per-pair columns, on disk in spec order (`OUT/decide/`), so that no
//! whole-spec column is held: `scores.f32` (each good pair's CLIP score, little-endian f32)
//! and one byte per pair for each duplicate filter (`exact.u8`, `near.u8`: 1 = duplicate).
//! Derived from the saved embeddings and the raw shards alone, so a rerun rebuilds them; the
//! directory is removed when the curation is done.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `OUT/decide/`.
#[derive(Debug)]
pub(super) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// An empty `dir` (what an interrupted run left there is removed).
    pub fn create(dir: PathBuf) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// A file of the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `scores.f32`, one score per [`ScoreWriter::push`].
    pub fn score_writer(&self) -> Result<ScoreWriter> {
        let path = self.path("scores.f32");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScoreWriter {
            out: BufWriter::new(file),
            path,
        })
    }

    /// Reads `scores.f32` back in order.
    pub fn scores(&self) -> Result<Column<4>> {
        Column::open(&self.path("scores.f32"))
    }

    /// Feeds every score of `scores.f32`, in order, to `f`.
    pub fn each_score(&self, f: &mut dyn FnMut(f32)) -> Result<()> {
        let mut column = self.scores()?;
        while let Some(bytes) = column.next_value()? {
            f(f32::from_le_bytes(bytes));
        }
        Ok(())
    }

    /// A flag column `name` of `pairs` bytes, all 0 (not duplicate).
    pub fn flags(&self, name: &str, pairs: u64) -> Result<Flags> {
        let path = self.path(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.set_len(pairs)
            .with_context(|| format!("sizing {}", path.display()))?;
        Ok(Flags { file, path })
    }

    /// Removes the directory.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))
    }
}

/// Appends scores to `scores.f32`.
pub(super) struct ScoreWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl ScoreWriter {
    pub fn push(&mut self, score: f32) -> Result<()> {
        self.out
            .write_all(&score.to_le_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn finish(mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A flag column being set, in any order.
pub(super) struct Flags {
    file: File,
    path: PathBuf,
}

impl Flags {
    /// Marks pair `ordinal` (spec order).
    pub fn set(&self, ordinal: u64) -> Result<()> {
        self.file
            .write_all_at(&[1], ordinal)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A column read back in order, `N` bytes per pair.
pub(super) struct Column<const N: usize> {
    input: BufReader<File>,
    path: PathBuf,
}

impl<const N: usize> Column<N> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            input: BufReader::new(file),
            path: path.to_owned(),
        })
    }

    /// The next pair's bytes, `None` at the end.
    pub fn next_value(&mut self) -> Result<Option<[u8; N]>> {
        let at_end = self
            .input
            .fill_buf()
            .with_context(|| format!("reading {}", self.path.display()))?
            .is_empty();
        if at_end {
            return Ok(None);
        }
        let mut bytes = [0u8; N];
        self.input
            .read_exact(&mut bytes)
            .with_context(|| format!("{}: cut inside a value", self.path.display()))?;
        Ok(Some(bytes))
    }

    /// The next pair's bytes, which must be there.
    pub fn next_pair(&mut self) -> Result<[u8; N]> {
        self.next_value()?
            .with_context(|| format!("{}: fewer values than pairs", self.path.display()))
    }
}
