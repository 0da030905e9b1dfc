//! A sample as a shard holds it: a key and its named fields, still raw bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Where a sample sits: its shard and its position among the shard's samples (0-based, bad
/// samples included), which is what a resume cursor and an error message need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SampleRef {
    /// The shard URL as given in the spec after expansion (`data/00042.tar`, `s3://b/x.tar`).
    pub shard: Arc<str>,
    /// Position within the shard.
    pub index: u64,
}

/// One sample before decoding: the webdataset grouping of tar members by key, a parquet or CSV
/// row, or an image file with its sidecar caption.
///
/// `fields` are named by member extension for tar (`jpg`, `txt`, `json`) and by column name for
/// parquet/CSV; [`FieldSelector`] picks the image and caption out of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSample {
    /// Shard and position.
    pub at: SampleRef,
    /// The sample key (`000000042`), or the row number for formats without keys.
    pub key: String,
    /// Field name -> bytes.
    pub fields: BTreeMap<String, Vec<u8>>,
}

/// Which caption a sample carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TextField {
    /// A field holding the caption as UTF-8 text (`txt`, or a `caption` column).
    Field {
        /// The field name.
        name: String,
    },
    /// A string member of a JSON field (`json` member, key `caption`).
    Json {
        /// The field holding JSON.
        field: String,
        /// The key in the JSON object.
        key: String,
    },
}

/// How to find the image and the caption among a [`RawSample`]'s fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSelector {
    /// Candidate image fields, first present wins (`jpg`, `jpeg`, `png`, `webp`).
    pub image: Vec<String>,
    /// The caption.
    pub text: TextField,
}

impl Default for FieldSelector {
    /// img2dataset's webdataset layout: `.jpg/.jpeg/.png/.webp` image, `.txt` caption.
    fn default() -> Self {
        Self {
            image: ["jpg", "jpeg", "png", "webp"].map(String::from).to_vec(),
            text: TextField::Field { name: "txt".into() },
        }
    }
}
