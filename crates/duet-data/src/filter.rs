//! Curation filters (issue 17), as pure decisions on a sample's caption, image size and CLIP
//! score, so `duet curate` and a training stream can share them:
//!
//! - [`BasicFilter`]: DataComp's basic filter — at least `min_words` whitespace-separated words
//!   and `min_chars` characters in the caption, its language not surely other than `languages`
//!   (`whatlang` at confidence above 0.9; DataComp keeps fastText's top guess `en`), the image's shorter side at least
//!   `min_side` px, the longer side at most `max_aspect` times the shorter. It needs nothing but
//!   the sample, so the training loader runs it on the fly too (`[data.filter]`).
//! - [`top_fraction`]: which samples a "keep the top `f` by CLIP score" filter keeps: the
//!   `round(f · n)` highest scores, ties broken by position (earlier first), so the kept set is
//!   exactly what sorting the saved scores by hand gives.
//! - [`Balancer`]: MetaCLIP's balancing — a sample whose caption matches metadata entries
//!   (case-insensitive substrings) is kept with probability `min(1, t / count(entry))` for each
//!   matched entry (kept if any draw passes; unmatched samples are dropped), each draw from a
//!   ChaCha8 stream keyed by the seed and the sample's ordinal, so the decision is a pure
//!   function of the sample and its position.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Why a filter dropped a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Fewer words than `min_words`.
    TooFewWords,
    /// Fewer characters than `min_chars`.
    TooShortCaption,
    /// The caption's detected language is not one of `languages`.
    WrongLanguage,
    /// The image's shorter side is under `min_side`.
    ImageTooSmall,
    /// The image is more elongated than `max_aspect`.
    ExtremeAspectRatio,
    /// The CLIP score is under the threshold.
    LowScore,
    /// Outside the top fraction by CLIP score.
    NotInTopFraction,
    /// MetaCLIP balancing drew it out (or it matched no entry).
    Balanced,
    /// Its image bytes equal an earlier sample's (SHA-256).
    ExactDuplicate,
    /// Its image embedding is within the near-duplicate threshold of an earlier sample's.
    NearDuplicate,
}

/// DataComp's basic filter; every bound optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicFilter {
    /// Fewest whitespace-separated words in the caption (DataComp: more than 2, so 3).
    pub min_words: Option<usize>,
    /// Fewest characters in the caption (DataComp: more than 5, so 6).
    pub min_chars: Option<usize>,
    /// Smallest shorter image side in pixels (DataComp: 200).
    pub min_side: Option<u32>,
    /// Largest ratio of the longer side to the shorter (DataComp: 3).
    pub max_aspect: Option<f64>,
    /// Caption languages kept, as ISO 639-3 codes (`"eng"`; DataComp: English only): a caption
    /// is dropped when `whatlang` 0.18 is sure (confidence above 0.9) it is in another one;
    /// one it cannot place (no letters, or unsure) is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
}

/// A `languages` entry `whatlang` does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown language code {code:?}: use ISO 639-3 codes as whatlang names them (eng, deu, fra, \
     spa, cmn, jpn, …)"
)]
pub struct UnknownLanguage {
    /// The code as given.
    pub code: String,
}

impl BasicFilter {
    /// DataComp's `basic` filter bounds (English by `whatlang`, where DataComp uses fastText).
    pub fn datacomp() -> Self {
        Self {
            min_words: Some(3),
            min_chars: Some(6),
            min_side: Some(200),
            max_aspect: Some(3.0),
            languages: Some(vec!["eng".into()]),
        }
    }

    /// Whether no bound is set (the filter keeps everything).
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the language codes.
    pub fn validate(&self) -> Result<(), UnknownLanguage> {
        for code in self.languages.iter().flatten() {
            if whatlang::Lang::from_code(code.as_str()).is_none() {
                return Err(UnknownLanguage { code: code.clone() });
            }
        }
        Ok(())
    }

    /// The first bound the sample breaks, if any: the caption's, then the image's.
    pub fn check(&self, caption: &str, width: u32, height: u32) -> Option<DropReason> {
        self.check_caption(caption)
            .or_else(|| self.check_size(width, height))
    }

    /// The first caption bound broken: words, characters, language.
    pub fn check_caption(&self, caption: &str) -> Option<DropReason> {
        if self
            .min_words
            .is_some_and(|n| caption.split_whitespace().count() < n)
        {
            return Some(DropReason::TooFewWords);
        }
        if self.min_chars.is_some_and(|n| caption.chars().count() < n) {
            return Some(DropReason::TooShortCaption);
        }
        if let Some(languages) = &self.languages {
            // Dropped only when whatlang is sure (its `is_reliable`: confidence above 0.9) of
            // another language: on short captions its best guess is often wrong (it placed 44
            // of the bundled val shard's 132 English captions elsewhere; sure, it flags 1 of the
            // 1,188 training captions, a French road-sign name).
            let other = whatlang::detect(caption).is_some_and(|info| {
                info.is_reliable() && !languages.iter().any(|code| code == info.lang().code())
            });
            if other {
                return Some(DropReason::WrongLanguage);
            }
        }
        None
    }

    /// The first image bound broken: shorter side, aspect ratio.
    pub fn check_size(&self, width: u32, height: u32) -> Option<DropReason> {
        let (short, long) = (width.min(height), width.max(height));
        if self.min_side.is_some_and(|side| short < side) {
            return Some(DropReason::ImageTooSmall);
        }
        if self
            .max_aspect
            .is_some_and(|ratio| short == 0 || f64::from(long) > ratio * f64::from(short))
        {
            return Some(DropReason::ExtremeAspectRatio);
        }
        None
    }
}

/// Which of `scores` a "top `fraction`" filter keeps: the `round(fraction · n)` highest, ties
/// to the earlier position; NaN scores rank last.
pub fn top_fraction(scores: &[f32], fraction: f64) -> Vec<bool> {
    let n = scores.len();
    let keep = ((fraction.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) => y.total_cmp(&x).then(a.cmp(&b)),
        }
    });
    let mut kept = vec![false; n];
    for &i in &order[..keep] {
        kept[i] = true;
    }
    kept
}

/// MetaCLIP balancing over a metadata list (see the module doc).
#[derive(Debug, Clone)]
pub struct Balancer {
    entries: Vec<String>,
    counts: Vec<u64>,
    threshold: u64,
    seed: u64,
}

impl Balancer {
    /// Counts each entry's matches over `captions` (the whole dataset: the first pass) and
    /// keeps each entry's samples with probability `min(1, threshold / count)`.
    pub fn new<S: AsRef<str>>(
        entries: &[String],
        captions: &[S],
        threshold: u64,
        seed: u64,
    ) -> Self {
        let mut balancer = Self::counting(entries, threshold, seed);
        for caption in captions {
            balancer.count(caption.as_ref());
        }
        balancer
    }

    /// A balancer whose counts are still to be taken, one [`Balancer::count`] per caption of
    /// the whole dataset (a streamed first pass), before any [`Balancer::keep`].
    pub fn counting(entries: &[String], threshold: u64, seed: u64) -> Self {
        let entries: Vec<String> = entries.iter().map(|e| e.to_lowercase()).collect();
        Self {
            counts: vec![0u64; entries.len()],
            entries,
            threshold,
            seed,
        }
    }

    /// Counts one caption's matches.
    pub fn count(&mut self, caption: &str) {
        for i in matches(&self.entries, caption) {
            self.counts[i] += 1;
        }
    }

    /// How many captions matched each entry, by entry.
    pub fn counts(&self) -> BTreeMap<&str, u64> {
        self.entries
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter().copied())
            .collect()
    }

    /// Whether the `ordinal`-th sample, with this caption, is kept.
    pub fn keep(&self, caption: &str, ordinal: u64) -> bool {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(ordinal);
        matches(&self.entries, caption).into_iter().any(|i| {
            let p = (self.threshold as f64 / self.counts[i].max(1) as f64).min(1.0);
            // One draw per matched entry, in entry order.
            rng.random::<f64>() < p
        })
    }
}

/// Indices of the entries (lower-case) that occur in `caption`, case-insensitively.
fn matches(entries: &[String], caption: &str) -> Vec<usize> {
    let text = caption.to_lowercase();
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty() && text.contains(e.as_str()))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_filter_drops_by_the_first_broken_bound() {
        let f = BasicFilter::datacomp();
        // 3 words, 11 chars, 300 x 200 (ratio 1.5): kept.
        assert_eq!(f.check("a red fox.", 300, 200), None);
        assert_eq!(f.check("red fox", 300, 200), Some(DropReason::TooFewWords));
        // 3 words but 5 characters.
        assert_eq!(
            f.check("a b c", 300, 200),
            Some(DropReason::TooShortCaption)
        );
        assert_eq!(
            f.check("a red fox", 300, 199),
            Some(DropReason::ImageTooSmall)
        );
        // 601 / 200 = 3.005 > 3; 600 / 200 = 3 is allowed.
        assert_eq!(
            f.check("a red fox", 601, 200),
            Some(DropReason::ExtremeAspectRatio)
        );
        assert_eq!(f.check("a red fox", 600, 200), None);
        assert_eq!(BasicFilter::default().check("", 1, 1), None);
    }

    #[test]
    fn language_filter_keeps_the_listed_languages() {
        let english = BasicFilter {
            languages: Some(vec!["eng".into()]),
            ..BasicFilter::default()
        };
        assert_eq!(
            english.check_caption("a photograph of a red fox sleeping in the snow"),
            None
        );
        assert_eq!(
            english.check_caption("ein Foto von einem roten Fuchs, der im Schnee schläft"),
            Some(DropReason::WrongLanguage)
        );
        assert_eq!(
            english.check_caption("una foto di una volpe rossa che dorme nella neve"),
            Some(DropReason::WrongLanguage)
        );
        // No letters, no language: nothing sure of another, kept.
        assert_eq!(english.check_caption("1234 5678"), None);
        let both = BasicFilter {
            languages: Some(vec!["eng".into(), "deu".into()]),
            ..BasicFilter::default()
        };
        assert_eq!(
            both.check_caption("ein Foto von einem roten Fuchs, der im Schnee schläft"),
            None
        );
        assert_eq!(both.validate(), Ok(()));
        let bad = BasicFilter {
            languages: Some(vec!["en".into()]),
            ..BasicFilter::default()
        };
        assert_eq!(bad.validate(), Err(UnknownLanguage { code: "en".into() }));
    }

    #[test]
    fn top_fraction_is_the_sorted_prefix_ties_to_earlier() {
        // Scores by position: 0.3, 0.9, 0.5, 0.9, NaN, 0.1. Sorted: 1 (0.9), 3 (0.9, later),
        // 2 (0.5), 0 (0.3), 5 (0.1), 4 (NaN). Half of 6 = 3 kept: positions 1, 3, 2.
        let scores = [0.3, 0.9, 0.5, 0.9, f32::NAN, 0.1];
        assert_eq!(
            top_fraction(&scores, 0.5),
            [false, true, true, true, false, false]
        );
        // round(0.25 * 6) = round(1.5) = 2: the two 0.9s.
        assert_eq!(
            top_fraction(&scores, 0.25),
            [false, true, false, true, false, false]
        );
        assert!(top_fraction(&scores, 0.0).iter().all(|k| !k));
        assert!(top_fraction(&scores, 1.0).iter().all(|k| *k));
    }

    #[test]
    fn balancing_keeps_rare_entries_and_samples_common_ones() {
        // "cat" matches 200 captions, "axolotl" 2; threshold 20: every axolotl is kept, a cat
        // with probability 20 / 200 = 0.1; a caption matching nothing is dropped.
        let entries = ["Cat".to_string(), "axolotl".to_string()];
        let mut captions: Vec<String> = (0..200).map(|i| format!("a cat, photo {i}")).collect();
        captions.push("an axolotl".into());
        captions.push("AXOLOTL in a tank".into());
        captions.push("a dog".into());
        let b = Balancer::new(&entries, &captions, 20, 7);
        assert_eq!(b.counts()["cat"], 200);
        assert_eq!(b.counts()["axolotl"], 2);
        let kept: Vec<bool> = captions
            .iter()
            .enumerate()
            .map(|(i, c)| b.keep(c, i as u64))
            .collect();
        assert!(kept[200] && kept[201] && !kept[202]);
        let cats = kept[..200].iter().filter(|k| **k).count();
        // Binomial(200, 0.1): mean 20, sd 4.2; the seeded draw is fixed, the bound is loose.
        assert!((8..=32).contains(&cats), "{cats} cats kept");
        // The same sample and position decide the same way (resume), another seed differently.
        assert_eq!(b.keep(&captions[5], 5), kept[5]);
        let other = Balancer::new(&entries, &captions, 20, 8);
        let differ = (0..200).any(|i| other.keep(&captions[i], i as u64) != kept[i]);
        assert!(differ);
    }
}
