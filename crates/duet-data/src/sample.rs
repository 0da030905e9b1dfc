//! A sample as a shard holds it: a key and its named fields, still raw bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::SkipReason;

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
    /// img2dataset's webdataset layout (`.jpg/.jpeg/.png/.webp` image, `.txt` caption), and
    /// the table and folder readers' field names ([`IMAGE_FIELD`](crate::reader::IMAGE_FIELD),
    /// [`CAPTION_FIELD`](crate::reader::CAPTION_FIELD)).
    fn default() -> Self {
        Self {
            image: ["jpg", "jpeg", "png", "webp", "image"]
                .map(String::from)
                .to_vec(),
            text: TextField::Field { name: "txt".into() },
        }
    }
}

/// The image bytes and the caption of one sample, as a [`FieldSelector`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected<'a> {
    /// The image field's bytes (not yet checked to be an image).
    pub image: &'a [u8],
    /// The caption, valid UTF-8.
    pub caption: String,
}

impl FieldSelector {
    /// Picks the image and the caption out of `sample`, or says why it cannot.
    pub fn select<'a>(&self, sample: &'a RawSample) -> Result<Selected<'a>, SkipReason> {
        let image = self
            .image
            .iter()
            .find_map(|name| sample.fields.get(name))
            .ok_or(SkipReason::MissingImage)?;
        if image.is_empty() {
            return Err(SkipReason::EmptyImage);
        }
        let caption = match &self.text {
            TextField::Field { name } => {
                let bytes = sample.fields.get(name).ok_or(SkipReason::MissingCaption)?;
                String::from_utf8(bytes.clone()).map_err(|_| SkipReason::CaptionNotUtf8)?
            }
            TextField::Json { field, key } => {
                let bytes = sample.fields.get(field).ok_or(SkipReason::MissingCaption)?;
                // serde_json rejects invalid UTF-8 inside strings, so a JSON that does not
                // parse for that reason is a caption-encoding problem, not a missing caption.
                let text = std::str::from_utf8(bytes).map_err(|_| SkipReason::CaptionNotUtf8)?;
                let value: serde_json::Value =
                    serde_json::from_str(text).map_err(|_| SkipReason::MissingCaption)?;
                match value.get(key) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => return Err(SkipReason::MissingCaption),
                }
            }
        };
        Ok(Selected { image, caption })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(fields: &[(&str, &[u8])]) -> RawSample {
        RawSample {
            at: SampleRef {
                shard: "00000.tar".into(),
                index: 3,
            },
            key: "000000003".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn first_present_image_field_wins() {
        let s = sample(&[("png", b"P"), ("webp", b"W"), ("txt", b"a cat")]);
        let got = FieldSelector::default().select(&s).expect("selects");
        assert_eq!(got.image, b"P"); // order jpg, jpeg, png, webp: png comes first
        assert_eq!(got.caption, "a cat");
    }

    #[test]
    fn each_problem_has_its_reason() {
        let sel = FieldSelector::default();
        let reason = |fields: &[(&str, &[u8])]| sel.select(&sample(fields)).err();
        assert_eq!(reason(&[("txt", b"x")]), Some(SkipReason::MissingImage));
        assert_eq!(
            reason(&[("jpg", b""), ("txt", b"x")]),
            Some(SkipReason::EmptyImage)
        );
        assert_eq!(reason(&[("jpg", b"J")]), Some(SkipReason::MissingCaption));
        assert_eq!(
            reason(&[("jpg", b"J"), ("txt", b"caf\xe9")]),
            Some(SkipReason::CaptionNotUtf8)
        );
    }

    #[test]
    fn caption_from_a_json_key() {
        let sel = FieldSelector {
            text: TextField::Json {
                field: "json".into(),
                key: "caption".into(),
            },
            ..FieldSelector::default()
        };
        let ok = sample(&[
            ("jpg", b"J"),
            ("json", br#"{"caption": "a dog", "width": 3}"#),
        ]);
        assert_eq!(sel.select(&ok).expect("selects").caption, "a dog");
        let no_key = sample(&[("jpg", b"J"), ("json", br#"{"width": 3}"#)]);
        assert_eq!(sel.select(&no_key).err(), Some(SkipReason::MissingCaption));
        let not_string = sample(&[("jpg", b"J"), ("json", br#"{"caption": null}"#)]);
        assert_eq!(
            sel.select(&not_string).err(),
            Some(SkipReason::MissingCaption)
        );
    }
}
