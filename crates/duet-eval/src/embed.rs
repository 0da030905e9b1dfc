//! Embeddings of the image–text pairs of a shard spec, read once in order with the eval
//! transform (resize the shortest side, centre crop: OpenCLIP's `preprocess_val`).

use burn::tensor::{Device, Tensor};
use duet_data::{
    FieldSelector, ImageTransformConfig, Loader, LoaderConfig, LoaderSource, TextTokenizer,
    parse_spec,
};
use duet_model::{ClipConfig, ClipModel, l2_normalize};

use crate::EvalError;
use crate::text::{eval_transform_config, text_tokenizer};

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

/// A single-pass, in-order loader over `spec` with `fields`, the eval transform of `clip` and
/// `tokenizer` (its [`text_tokenizer`], built once by callers that open many loaders); data
/// errors name `spec`.
pub fn eval_loader(
    spec: &str,
    fields: FieldSelector,
    batch_size: usize,
    clip: &ClipConfig,
    tokenizer: TextTokenizer,
) -> Result<Loader, EvalError> {
    let data = |source| EvalError::Data {
        spec: spec.to_owned(),
        source: Box::new(source),
    };
    let parsed = parse_spec(spec, None).map_err(data)?;
    let source = LoaderSource::from_spec(&parsed).map_err(data)?;
    let config = LoaderConfig {
        fields,
        ..LoaderConfig::single_pass(
            batch_size,
            ImageTransformConfig::Eval(eval_transform_config(clip)),
        )
    };
    Loader::start(&config, source, tokenizer, None).map_err(data)
}

/// Embeds every pair of `source` with `model` (an inference model, e.g. `model.valid()`) on
/// `device` (without autodiff).
pub fn embed_pairs(
    model: &ClipModel,
    clip: &ClipConfig,
    source: &PairSource,
    device: &Device,
) -> Result<PairEmbeddings, EvalError> {
    let mut loader = eval_loader(
        &source.spec,
        source.fields.clone(),
        source.batch_size,
        clip,
        text_tokenizer(clip)?,
    )?;
    let (mut images, mut texts, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for batch in loader.by_ref() {
        let batch = batch.map_err(|e| EvalError::Data {
            spec: source.spec.clone(),
            source: Box::new(e),
        })?;
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
