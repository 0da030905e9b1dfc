//! One raw sample -> a model-ready sample, or the reason it is skipped: field selection, decode,
//! image transform, tokenization.
//!
//! Pure per sample: the only randomness (the train crop) comes from a generator keyed by
//! `(seed, epoch, ordinal)`, where the ordinal is the sample's position in the epoch's stream.
//! So the result does not depend on which thread processes the sample, on chunking, or on
//! whether the run was resumed; and a sample drawn twice in a resampled epoch gets two crops.

use rand_chacha::ChaCha8Rng;

use super::plan::{rng, stream};
use crate::normalize::Pixels;
use crate::transform::ImageTransform;
use crate::{
    BasicFilter, DataError, DecodeConfig, FieldSelector, RawSample, SampleRef, SkipReason,
    TextTokenizer, decode_rgb8,
};

/// ChaCha8 words reserved per sample: a RandomResizedCrop draws at most 10 x (2 f64) + 2 u32,
/// i.e. 42 words; 1024 leaves room for future augmentations without changing existing draws.
const WORDS_PER_SAMPLE: u128 = 1024;

/// A sample ready to batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Shard and position.
    pub at: SampleRef,
    /// The sample key.
    pub key: String,
    /// The caption as read.
    pub caption: String,
    /// The decoded image's width and height, before any transform.
    pub size: [u32; 2],
    /// The resampled image, normalised when the batch is assembled.
    pub image: Pixels,
    /// `context_length` token ids.
    pub tokens: Vec<u32>,
}

/// What processing one raw sample gives.
#[derive(Debug)]
pub(crate) enum Processed {
    /// Ready to batch.
    Good(Sample),
    /// Dropped, with the reason and a line for the log.
    Skipped(SkipReason, String),
}

/// Everything a sample needs on its way from bytes to tensors; shared by the decode threads.
#[derive(Debug)]
pub(crate) struct Processor {
    pub fields: FieldSelector,
    pub decode: DecodeConfig,
    pub transform: ImageTransform,
    pub tokenizer: TextTokenizer,
    pub filter: BasicFilter,
    pub seed: u64,
}

impl Processor {
    /// Processes the `ordinal`-th sample of `epoch`'s stream.
    pub fn process(&self, raw: RawSample, epoch: u64, ordinal: u64) -> Processed {
        let origin = || format!("{}#{} (key {})", raw.at.shard, raw.at.index, raw.key);
        let selected = match self.fields.select(&raw) {
            Ok(selected) => selected,
            Err(reason) => return Processed::Skipped(reason, origin()),
        };
        // The caption bounds before the decode they would waste.
        if let Some(skip) = self
            .filter
            .check_caption(&selected.caption)
            .and_then(SkipReason::filtered)
        {
            return Processed::Skipped(skip, origin());
        }
        let image = match decode_rgb8(selected.image, &raw.key, &self.decode) {
            Ok(image) => image,
            Err(error) => {
                let reason = match error {
                    DataError::TooManyPixels { .. } => SkipReason::ImageTooLarge,
                    _ => SkipReason::UndecodableImage,
                };
                return Processed::Skipped(reason, format!("{}: {error}", origin()));
            }
        };
        if let Some(skip) = self
            .filter
            .check_size(image.width(), image.height())
            .and_then(SkipReason::filtered)
        {
            return Processed::Skipped(skip, origin());
        }
        let mut augment = self.augment_rng(epoch, ordinal);
        let pixels = match self.transform.resample(&image, &mut augment) {
            Ok(pixels) => pixels,
            Err(error) => {
                return Processed::Skipped(
                    SkipReason::UndecodableImage,
                    format!("{}: {error}", origin()),
                );
            }
        };
        let tokens = match self.tokenizer.encode_batch(&[&selected.caption]) {
            Ok(mut rows) => rows.pop().unwrap_or_default(),
            Err(error) => {
                return Processed::Skipped(
                    SkipReason::UntokenizableCaption,
                    format!("{}: {error}", origin()),
                );
            }
        };
        Processed::Good(Sample {
            caption: selected.caption,
            size: [image.width(), image.height()],
            at: raw.at,
            key: raw.key,
            image: pixels,
            tokens,
        })
    }

    fn augment_rng(&self, epoch: u64, ordinal: u64) -> ChaCha8Rng {
        let mut augment = rng(self.seed, epoch, stream::AUGMENT);
        augment.set_word_pos(u128::from(ordinal) * WORDS_PER_SAMPLE);
        augment
    }
}
