//! Embedding files: `.jsonl`, `.npy`, `.safetensors`, chosen by the output's extension.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use npyz::WriterBuilder;
use serde::Serialize;

/// Whether an embedded input was an image or a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// An image file.
    Image,
    /// A caption.
    Text,
}

/// One input with its L2-normalised embedding.
#[derive(Debug, Serialize)]
pub struct Embedded {
    /// Image or text.
    pub kind: InputKind,
    /// The image path or the text itself.
    pub input: String,
    /// `[embed_dim]`, unit L2 norm.
    pub embedding: Vec<f32>,
}

/// The file formats `--out` supports, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line, in input order.
    JsonLines,
    /// A NumPy `float32` array `[n, embed_dim]` in input order.
    Npy,
    /// A safetensors file with `embeddings` `[n, embed_dim]` and the inputs in its metadata.
    Safetensors,
}

impl OutputFormat {
    /// The format for `path`'s extension, or an error listing the supported ones.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => Ok(Self::JsonLines),
            Some("npy") => Ok(Self::Npy),
            Some("safetensors") => Ok(Self::Safetensors),
            _ => bail!(
                "{}: unknown output format; use a .jsonl, .npy or .safetensors file name",
                path.display()
            ),
        }
    }
}

/// Writes `rows` to `path` (via a temporary file renamed into place, so a failed run leaves
/// no half-written output).
pub fn write(path: &Path, format: OutputFormat, rows: &[Embedded]) -> Result<()> {
    let bytes = match format {
        OutputFormat::JsonLines => {
            let mut out = Vec::new();
            for row in rows {
                serde_json::to_writer(&mut out, row)?;
                out.push(b'\n');
            }
            out
        }
        OutputFormat::Npy => {
            let dim = rows.first().map_or(0, |r| r.embedding.len());
            let mut out = std::io::Cursor::new(Vec::new());
            let mut writer = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&[rows.len() as u64, dim as u64])
                .writer(&mut out)
                .begin_nd()?;
            writer.extend(rows.iter().flat_map(|r| r.embedding.iter().copied()))?;
            writer.finish()?;
            out.into_inner()
        }
        OutputFormat::Safetensors => {
            let dim = rows.first().map_or(0, |r| r.embedding.len());
            let data: Vec<u8> = rows
                .iter()
                .flat_map(|r| r.embedding.iter().flat_map(|v| v.to_le_bytes()))
                .collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![rows.len(), dim],
                &data,
            )?;
            let inputs: Vec<_> = rows
                .iter()
                .map(|r| serde_json::json!({"kind": r.kind, "input": r.input}))
                .collect();
            let metadata = HashMap::from([("inputs".to_string(), serde_json::to_string(&inputs)?)]);
            safetensors::serialize([("embeddings", view)], Some(metadata))?
        }
    };
    let tmp = path.with_extension("partial");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
