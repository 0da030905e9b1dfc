//! Model + data -> metrics: what `duet eval` and the trainer's evaluation both run.

use burn::tensor::Device;

use duet_model::{ClipConfig, ClipModel};

use crate::text::text_tokenizer;
use crate::{
    ClassData, EvalError, PairSource, RetrievalMetrics, ZeroShotMetrics, classifier,
    embed_labelled, embed_pairs, retrieval_metrics, zero_shot_metrics,
};

/// Queries scored at once: bounds a score block to `SCORE_CHUNK x candidates`.
pub const SCORE_CHUNK: usize = 1024;

/// Retrieval metrics of `model` (an inference model on `device`) on the pairs of `source`,
/// and the number of samples the loader skipped.
pub fn evaluate_retrieval(
    model: &ClipModel,
    clip: &ClipConfig,
    source: &PairSource,
    device: &Device,
) -> Result<(RetrievalMetrics, u64), EvalError> {
    let pairs = embed_pairs(model, clip, source, device)?;
    let metrics = retrieval_metrics(pairs.images, pairs.texts, SCORE_CHUNK)?;
    Ok((metrics, pairs.skipped))
}

/// Zero-shot metrics of `model` (an inference model on `device`) on `data`, classes prompted
/// with every template.
pub fn evaluate_zero_shot(
    model: &ClipModel,
    clip: &ClipConfig,
    data: &ClassData,
    classes: &[String],
    templates: &[String],
    batch_size: usize,
    device: &Device,
) -> Result<ZeroShotMetrics, EvalError> {
    let tokenizer = text_tokenizer(clip)?;
    let weights = classifier(model, &tokenizer, classes, templates, device)?;
    let images = embed_labelled(model, clip, data, batch_size, device)?;
    zero_shot_metrics(images.images, &images.labels, weights, classes, SCORE_CHUNK)
}
