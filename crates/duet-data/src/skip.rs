//! Why a sample or a shard was skipped, and the per-reason counters a run reports.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::filter::DropReason;

/// Every reason the loader drops data. The run goes on; the counts are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// A shard could not be opened (missing file, HTTP error, S3 error, failed `pipe:`).
    ShardUnreachable,
    /// A tar ended in the middle of a member, or a stream broke while reading.
    ShardTruncated,
    /// A shard is not a readable tar/parquet/CSV (bad header, bad footer, bad row group).
    ShardCorrupt,
    /// The sample has no image field.
    MissingImage,
    /// The sample has no caption field (or the JSON key is absent).
    MissingCaption,
    /// The caption is not valid UTF-8.
    CaptionNotUtf8,
    /// The image field is empty (0 bytes).
    EmptyImage,
    /// The image bytes are not a decodable JPEG/PNG/WebP (e.g. HTML saved as `.jpg`, truncated).
    UndecodableImage,
    /// The image header announces more pixels than the limit (decompression bombs).
    ImageTooLarge,
    /// A key seen again within a shard; the later sample is dropped.
    DuplicateKey,
    /// The tokenizer failed on the caption.
    UntokenizableCaption,
    /// `[data.filter]`: fewer caption words than `min_words`.
    FilteredTooFewWords,
    /// `[data.filter]`: fewer caption characters than `min_chars`.
    FilteredTooShortCaption,
    /// `[data.filter]`: the caption's language is not one of `languages`.
    FilteredWrongLanguage,
    /// `[data.filter]`: the image's shorter side is under `min_side`.
    FilteredImageTooSmall,
    /// `[data.filter]`: the image is more elongated than `max_aspect`.
    FilteredExtremeAspectRatio,
}

impl SkipReason {
    /// Stable snake_case name, as in `duet shards inspect --json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ShardUnreachable => "shard_unreachable",
            Self::ShardTruncated => "shard_truncated",
            Self::ShardCorrupt => "shard_corrupt",
            Self::MissingImage => "missing_image",
            Self::MissingCaption => "missing_caption",
            Self::CaptionNotUtf8 => "caption_not_utf8",
            Self::EmptyImage => "empty_image",
            Self::UndecodableImage => "undecodable_image",
            Self::ImageTooLarge => "image_too_large",
            Self::DuplicateKey => "duplicate_key",
            Self::UntokenizableCaption => "untokenizable_caption",
            Self::FilteredTooFewWords => "filtered_too_few_words",
            Self::FilteredTooShortCaption => "filtered_too_short_caption",
            Self::FilteredWrongLanguage => "filtered_wrong_language",
            Self::FilteredImageTooSmall => "filtered_image_too_small",
            Self::FilteredExtremeAspectRatio => "filtered_extreme_aspect_ratio",
        }
    }

    /// Whether `[data.filter]` dropped the sample (policy, not broken data).
    pub fn is_filtered(self) -> bool {
        matches!(
            self,
            Self::FilteredTooFewWords
                | Self::FilteredTooShortCaption
                | Self::FilteredWrongLanguage
                | Self::FilteredImageTooSmall
                | Self::FilteredExtremeAspectRatio
        )
    }

    /// The skip a [`crate::BasicFilter`] decision is counted as in a loader; `None` for the
    /// decisions that need the whole dataset (scores, balancing, duplicates).
    pub fn filtered(reason: DropReason) -> Option<Self> {
        Some(match reason {
            DropReason::TooFewWords => Self::FilteredTooFewWords,
            DropReason::TooShortCaption => Self::FilteredTooShortCaption,
            DropReason::WrongLanguage => Self::FilteredWrongLanguage,
            DropReason::ImageTooSmall => Self::FilteredImageTooSmall,
            DropReason::ExtremeAspectRatio => Self::FilteredExtremeAspectRatio,
            DropReason::LowScore
            | DropReason::NotInTopFraction
            | DropReason::Balanced
            | DropReason::ExactDuplicate
            | DropReason::NearDuplicate => return None,
        })
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts of skipped samples and shards by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipCounts(BTreeMap<SkipReason, u64>);

impl SkipCounts {
    /// Adds one occurrence of `reason`.
    pub fn add(&mut self, reason: SkipReason) {
        *self.0.entry(reason).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &SkipCounts) {
        for (reason, n) in &other.0 {
            *self.0.entry(*reason).or_default() += n;
        }
    }

    /// The count of one reason.
    pub fn get(&self, reason: SkipReason) -> u64 {
        self.0.get(&reason).copied().unwrap_or(0)
    }

    /// The total over all reasons.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `(reason name, count)` for every reason seen, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(r, n)| (r.name(), *n))
    }
}

/// Logs the `count`-th skip for `reason`, rate-limited: the first three of each reason, then
/// the 10th, 100th, 1000th, … so that a shard of broken images cannot flood the log.
pub(crate) fn log_skip(reason: SkipReason, count: u64, detail: &str) {
    // A filter's drops are the configured policy, not broken data: counted, not warned about.
    if reason.is_filtered() {
        tracing::debug!(%reason, count, "filtered: {detail}");
    } else if count <= 3 || is_power_of_ten(count) {
        tracing::warn!(%reason, count, "skipped: {detail}");
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

impl fmt::Display for SkipCounts {
    /// `shard_unreachable=2, undecodable_image=7`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (reason, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{reason}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_and_merge() {
        let mut a = SkipCounts::default();
        a.add(SkipReason::EmptyImage);
        a.add(SkipReason::EmptyImage);
        let mut b = SkipCounts::default();
        b.add(SkipReason::DuplicateKey);
        a.merge(&b);
        // 2 empty + 1 duplicate.
        assert_eq!(a.get(SkipReason::EmptyImage), 2);
        assert_eq!(a.total(), 3);
        let names: Vec<_> = a.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["empty_image", "duplicate_key"]);
        assert_eq!(a.to_string(), "empty_image=2, duplicate_key=1");
        assert_eq!(SkipCounts::default().to_string(), "none");
    }

    #[test]
    fn log_rate_limit_keeps_powers_of_ten() {
        let logged: Vec<u64> = (1..=1000)
            .filter(|n| *n <= 3 || is_power_of_ten(*n))
            .collect();
        assert_eq!(logged, [1, 2, 3, 10, 100, 1000]);
    }
}
