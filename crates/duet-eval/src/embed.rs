//! Embeddings of the image–text pairs of a shard spec, read once in order with the eval
//! transform (resize the shortest side, centre crop: OpenCLIP's `preprocess_val`).

use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use duet_data::{
    AutoReader, ClipTokenizer, EvalTransformConfig, FieldSelector, ImageTransformConfig, Loader,
    LoaderConfig, LoaderSource, Normalize, PadToken, ResizeMode, Stores, TokenizerConfig,
    WeightedShard, parse_spec,
};
use duet_model::{ClipConfig, ClipModel, l2_normalize};

use crate::EvalError;

/// Where evaluation pairs come from.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSource {
    /// A shard spec (`datasets/sample/val/00000.tar`, brace ranges, `::` lists).
    pub spec: String,
    /// Which fields hold the image and the caption.
    pub fields: FieldSelector,
    /// Pairs per forward pass.
    pub batch_size: usize,
}

/// L2-normalised embeddings of every good pair, in spec order.
#[derive(Debug, Clone)]
pub struct PairEmbeddings {
    /// `[n, e]`.
    pub images: Tensor<2>,
    /// `[n, e]`.
    pub texts: Tensor<2>,
    /// The sample keys, in row order.
    pub keys: Vec<String>,
    /// Samples the loader skipped (undecodable images, missing captions, …).
    pub skipped: u64,
}

/// Embeds every pair of `source` with `model` (an inference model, e.g. `model.valid()`) on
/// `device` (without autodiff).
pub fn embed_pairs(
    model: &ClipModel,
    clip: &ClipConfig,
    source: &PairSource,
    device: &Device,
) -> Result<PairEmbeddings, EvalError> {
    let data = |source_error| EvalError::Data {
        spec: source.spec.clone(),
        source: Box::new(source_error),
    };
    let spec = parse_spec(&source.spec, None).map_err(data)?;
    let loader_source = LoaderSource {
        shards: WeightedShard::from_spec(&spec),
        format: Arc::new(AutoReader::for_urls(spec.shards()).map_err(data)?),
        store: Arc::new(Stores::from_env().map_err(data)?),
    };
    let tokenizer = ClipTokenizer::bundled(TokenizerConfig {
        context_length: clip.text.context_length,
        pad: PadToken::Zero,
    })
    .map_err(data)?;
    let transform = ImageTransformConfig::Eval(EvalTransformConfig {
        image_size: clip.vision.image_size as u32,
        resize: ResizeMode::Shortest,
        normalize: Normalize {
            mean: clip.vision.image_mean,
            std: clip.vision.image_std,
        },
    });
    let config = LoaderConfig {
        fields: source.fields.clone(),
        ..LoaderConfig::single_pass(source.batch_size, transform)
    };
    let mut loader = Loader::start(&config, loader_source, tokenizer, None).map_err(data)?;
    let (mut images, mut texts, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for batch in loader.by_ref() {
        let batch = batch.map_err(data)?;
        images.push(l2_normalize(
            model.encode_image(batch.images_tensor(device)),
        ));
        texts.push(l2_normalize(model.encode_text(batch.tokens_tensor(device))));
        keys.extend(batch.keys);
    }
    if keys.is_empty() {
        return Err(EvalError::Empty {
            what: source.spec.clone(),
        });
    }
    Ok(PairEmbeddings {
        images: Tensor::cat(images, 0),
        texts: Tensor::cat(texts, 0),
        keys,
        skipped: loader.skipped().total(),
    })
}
