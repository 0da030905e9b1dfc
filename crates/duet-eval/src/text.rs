//! The tokenizer and image preprocessing a model was trained with, from its config.

use duet_data::{
    EvalTransformConfig, Normalize, OwnRows, ResizeMode, TextTokenizer, TokenizerConfig,
};
use duet_model::{ClipConfig, FileTokenizer, ImageResize, TokenizerSpec};

use crate::EvalError;

/// The tokenizer `clip`'s text tower reads: the bundled CLIP BPE (zero padding, as OpenCLIP) or
/// the model directory's own `tokenizer.json` with its pad id and casing. Refused, naming
/// the cause, when the model's captions cannot be tokenized.
pub fn text_tokenizer(clip: &ClipConfig) -> Result<TextTokenizer, EvalError> {
    let input = |message: String| EvalError::Input {
        origin: "model".into(),
        message,
    };
    clip.check_tokenizer().map_err(|e| input(e.to_string()))?;
    let context_length = clip.text.context_length;
    let tokenizer = match &clip.text.tokenizer {
        TokenizerSpec::ClipBpe => TextTokenizer::bundled(TokenizerConfig {
            context_length,
            ..TokenizerConfig::default()
        }),
        TokenizerSpec::File(file) => {
            // `check_tokenizer` refused a spec without the file.
            let bytes = file.files.tokenizer_json().unwrap_or_default();
            TextTokenizer::from_model_json(
                bytes,
                "the model's tokenizer.json",
                own_rows(context_length, file),
            )
        }
    };
    let tokenizer = tokenizer.map_err(|e| input(e.to_string()))?;
    // An id past the embedding table would panic in the forward pass.
    let ids = tokenizer.vocab_size();
    if ids > clip.text.vocab_size {
        return Err(input(format!(
            "the tokenizer has {ids} ids, the text tower's embedding only {}: they belong to \
             different models",
            clip.text.vocab_size
        )));
    }
    Ok(tokenizer)
}

/// How a model's own tokenizer shapes its rows of `context_length` ids.
pub fn own_rows(context_length: usize, file: &FileTokenizer) -> OwnRows {
    OwnRows {
        context_length,
        pad_id: file.pad_id,
        lowercase: file.lowercase,
        pad_left: file.pad_left,
        canonicalize: file.canonicalize,
    }
}

/// The model's evaluation preprocessing: OpenCLIP's `preprocess_val` (shortest side to the
/// input size, bicubic, centre crop) for CLIP, `SiglipImageProcessor`'s (both sides to the input
/// size, bicubic, no crop) for SigLIP, then the model's mean and std.
pub fn eval_transform_config(clip: &ClipConfig) -> EvalTransformConfig {
    EvalTransformConfig {
        image_size: clip.vision.image_size as u32,
        resize: match clip.vision.resize {
            ImageResize::Shortest => ResizeMode::Shortest,
            ImageResize::Squash => ResizeMode::Squash,
        },
        normalize: Normalize {
            mean: clip.vision.image_mean,
            std: clip.vision.image_std,
        },
    }
}
