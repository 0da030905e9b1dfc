//! `ClipConfig`: the shape of a CLIP dual encoder, independent of any weight format.
//!
//! The field names follow OpenCLIP's model-config JSON where one exists; `openclip` and `hf`
//! translate their formats to and from this type.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// OpenAI's image normalisation mean, used by every OpenAI/LAION CLIP.
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI's image normalisation standard deviation.
#[allow(
    clippy::excessive_precision,
    reason = "the digits of open_clip constants.py, greppable; f32 drops the last"
)]
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// CLIP's `logit_scale` init: ln(1 / 0.07) (Radford et al. 2021, sec. 2.5).
pub const CLIP_LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778;
/// The `<|endoftext|>` id of the CLIP BPE vocabulary; the text tower pools at its first position.
pub const CLIP_EOT_ID: u32 = 49_407;

/// The MLP non-linearity of a transformer block.
///
/// OpenAI's weights were trained with QuickGELU; LAION's HF exports use exact GELU. Using the
/// wrong one silently costs accuracy (open_clip #771), so it is always explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)`.
    Gelu,
    /// `x * sigmoid(1.702 x)`.
    QuickGelu,
    /// The tanh approximation of GELU (`gelu_pytorch_tanh`, SigLIP's).
    GeluTanh,
}

/// How the image tower turns its sequence into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionPool {
    /// `ln_post` on the class token (CLIP).
    #[default]
    ClassToken,
    /// `ln_post` on every token, then attention pooling with a learned probe (SigLIP's MAP
    /// head: multi-head attention, LayerNorm, MLP).
    Map,
}

/// Where the text tower pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPool {
    /// The first end-of-text token of each row (CLIP).
    #[default]
    FirstEot,
    /// The last position (SigLIP: captions padded to the full length).
    Last,
}

fn yes() -> bool {
    true
}

/// How evaluation resizes an image to the tower's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageResize {
    /// Shortest side to the input size, then a centre crop (CLIP, OpenCLIP's default).
    #[default]
    Shortest,
    /// Both sides to the input size, no crop (SigLIP's `SiglipImageProcessor`).
    Squash,
}

/// What turns a caption into the text tower's id row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenizerSpec {
    /// The CLIP BPE bundled with duet: `[SOT] + content + [EOT]`, padded.
    #[default]
    ClipBpe,
    /// The model directory's own `tokenizer.json` (SigLIP's SentencePiece, SigLIP 2's Gemma),
    /// its special tokens added by the file's post-processor, truncated to the context length
    /// and padded to it with `pad_id`, as transformers' `padding="max_length"`.
    File(FileTokenizer),
}

/// A model's own tokenizer (see [`TokenizerSpec::File`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileTokenizer {
    /// The id that fills a row after the caption.
    pub pad_id: u32,
    /// Lower-case captions first (the tokenizer config's `do_lower_case`, where the file's own
    /// normaliser does not already).
    #[serde(default)]
    pub lowercase: bool,
    /// Pad on the left (the tokenizer config's `padding_side = "left"`).
    #[serde(default)]
    pub pad_left: bool,
    /// OpenCLIP's `tokenizer_kwargs.clean = "canonicalize"` before the file's own pipeline:
    /// `_` to space, ASCII punctuation removed, lower-cased, whitespace collapsed (big_vision's
    /// prompt canonicalisation, as OpenCLIP's SigLIP configs ask).
    #[serde(default)]
    pub canonicalize: bool,
    /// OpenCLIP's `text_cfg.hf_tokenizer_name` (where open_clip fetches the tokenizer from the
    /// hub; a `local-dir:` load reads the directory's files instead), written back on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_name: Option<String>,
    /// The tokenizer's files, read from the model directory and written into every model
    /// directory duet saves (checkpoints and exports), so the text side travels with the weights.
    #[serde(skip)]
    pub files: TokenizerFiles,
}

/// Names of the tokenizer files that travel with a model, `tokenizer.json` the one duet reads.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
];

/// Contents of the [`TOKENIZER_FILES`] a model directory holds, by file name.
#[derive(Clone, Default, PartialEq)]
pub struct TokenizerFiles(pub std::sync::Arc<std::collections::BTreeMap<String, Vec<u8>>>);

impl TokenizerFiles {
    /// The `tokenizer.json` bytes, if the model directory had one.
    pub fn tokenizer_json(&self) -> Option<&[u8]> {
        self.0.get(TOKENIZER_FILES[0]).map(Vec::as_slice)
    }
}

impl std::fmt::Debug for TokenizerFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and sizes: a Gemma tokenizer.json is 34 MB.
        f.debug_map()
            .entries(self.0.iter().map(|(name, bytes)| (name, bytes.len())))
            .finish()
    }
}

/// The image tower: a ViT with pre-norm blocks; CLIP's has a class token, pre-LN and post-LN on
/// the class token, SigLIP's patch bias, no class token, no pre-LN and a MAP head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Input side length in pixels (square images).
    pub image_size: usize,
    /// Patch side length; must divide `image_size`.
    pub patch_size: usize,
    /// Transformer width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads; must divide `width`.
    pub heads: usize,
    /// Hidden size of the MLP in each block.
    pub mlp_dim: usize,
    /// MLP non-linearity.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Per-channel normalisation mean the weights were trained with.
    pub image_mean: [f32; 3],
    /// Per-channel normalisation standard deviation.
    pub image_std: [f32; 3],
    /// A class token before the patches (CLIP); SigLIP has none.
    #[serde(default = "yes")]
    pub class_token: bool,
    /// The patch embedding has a bias (SigLIP).
    #[serde(default)]
    pub patch_bias: bool,
    /// A LayerNorm before the blocks (CLIP's `ln_pre`); SigLIP has none.
    #[serde(default = "yes")]
    pub ln_pre: bool,
    /// Pooling: the class token (CLIP) or the attention-pooling head (SigLIP).
    #[serde(default)]
    pub pool: VisionPool,
    /// A projection without bias to `embed_dim` (CLIP); SigLIP's pooled output is the
    /// embedding, so `embed_dim` is its width.
    #[serde(default = "yes")]
    pub proj: bool,
    /// How evaluation fits an image to `image_size` (training crops at random either way).
    #[serde(default)]
    pub resize: ImageResize,
    /// SigLIP 2: its checkpoints hold the patch embedding as a Linear over patches flattened
    /// (y, x, channel), which duet holds as the equivalent conv; import and export convert.
    #[serde(default)]
    pub linear_patches: bool,
    /// The timm trunk an OpenCLIP SigLIP model names (`vision_cfg.timm_model_name`), written back
    /// on export to OpenCLIP's layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timm_model: Option<String>,
}

/// The text tower: a causal transformer pooled at the first end-of-text token (CLIP), or a
/// bidirectional one pooled at the last position with a biased head (SigLIP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Tokens per caption (77 for CLIP).
    pub context_length: usize,
    /// Vocabulary size (49,408 for the CLIP BPE).
    pub vocab_size: usize,
    /// Transformer width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads; must divide `width`.
    pub heads: usize,
    /// Hidden size of the MLP in each block.
    pub mlp_dim: usize,
    /// MLP non-linearity.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The token the tower pools at (its first occurrence in each row).
    pub eot_token_id: u32,
    /// Each position attends only to itself and earlier ones (CLIP); SigLIP attends both ways.
    #[serde(default = "yes")]
    pub causal: bool,
    /// Where the tower pools.
    #[serde(default)]
    pub pool: TextPool,
    /// The projection has a bias (SigLIP's `head`).
    #[serde(default)]
    pub proj_bias: bool,
    /// What makes the id rows.
    #[serde(default)]
    pub tokenizer: TokenizerSpec,
}

/// A whole CLIP dual encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Size of the shared embedding space both projections map into.
    pub embed_dim: usize,
    /// The image tower.
    pub vision: VisionConfig,
    /// The text tower.
    pub text: TextConfig,
    /// Initial value of the learnable log temperature `logit_scale`.
    pub logit_scale_init: f64,
    /// Initial value of the learnable `logit_bias` (SigLIP: -10); `None` means the model has none.
    pub logit_bias_init: Option<f64>,
}

impl VisionConfig {
    /// Patches per side: `image_size / patch_size`.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patch tokens per image.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Tokens per image: one per patch, plus the class token if there is one.
    pub fn num_positions(&self) -> usize {
        self.num_patches() + usize::from(self.class_token)
    }
}

/// Parameters of one pre-norm block of `width` with an MLP of `mlp`: two LayerNorms (gain and
/// bias), q/k/v/out projections with bias, and the two MLP layers with bias.
fn block_params(width: usize, mlp: usize) -> usize {
    2 * 2 * width + 4 * (width * width + width) + (width * mlp + mlp) + (mlp * width + width)
}

impl ClipConfig {
    /// The number of float parameters of the model this config builds, counted from the
    /// shapes (the tests count a built model's).
    pub fn num_params(&self) -> usize {
        let (v, t) = (&self.vision, &self.text);
        let on = |flag: bool, n: usize| if flag { n } else { 0 };
        // The MAP head: probe, fused in_proj with bias, out_proj with bias, LayerNorm, MLP.
        let map = v.width
            + 3 * v.width * v.width
            + 3 * v.width
            + v.width * v.width
            + v.width
            + 2 * v.width
            + (v.width * v.mlp_dim + v.mlp_dim)
            + (v.mlp_dim * v.width + v.width);
        let vision = 3 * v.patch_size * v.patch_size * v.width // patch embedding
            + on(v.patch_bias, v.width)
            + on(v.class_token, v.width)
            + v.num_positions() * v.width
            + on(v.ln_pre, 2 * v.width)
            + v.layers * block_params(v.width, v.mlp_dim)
            + 2 * v.width // ln_post
            + on(v.pool == VisionPool::Map, map)
            + on(v.proj, v.width * self.embed_dim); // projection, no bias
        let text = t.vocab_size * t.width
            + t.context_length * t.width
            + t.layers * block_params(t.width, t.mlp_dim)
            + 2 * t.width // ln_final
            + t.width * self.embed_dim
            + on(t.proj_bias, self.embed_dim);
        vision + text + 1 + usize::from(self.logit_bias_init.is_some())
    }

    /// Refuses a model whose captions cannot be tokenized before any work: the bundled CLIP BPE
    /// for a text tower of another vocabulary (its ids run to 49,407 and it ends captions with
    /// `<|endoftext|>` 49,407), or a model of its own tokenizer whose directory held no
    /// `tokenizer.json`.
    pub fn check_tokenizer(&self) -> Result<(), ModelError> {
        let t = &self.text;
        match &t.tokenizer {
            TokenizerSpec::ClipBpe if t.vocab_size >= 49_408 && t.eot_token_id == CLIP_EOT_ID => {
                Ok(())
            }
            TokenizerSpec::ClipBpe => Err(ModelError::invalid(
                "text_cfg.vocab_size",
                format!(
                    "this text tower has {} tokens and ends captions with id {}: the bundled \
                     CLIP tokenizer (49,408 tokens, end 49,407) does not fit it",
                    t.vocab_size, t.eot_token_id
                ),
            )),
            TokenizerSpec::File(file) if file.files.tokenizer_json().is_none() => {
                Err(ModelError::invalid(
                    "tokenizer.json",
                    "this model tokenizes with its own tokenizer.json, and its directory has \
                     none; for a SigLIP (v1) directory holding spiece.model, write one with \
                     `python3 scripts/siglip_tokenizer.py DIR`",
                ))
            }
            TokenizerSpec::File(_) => Ok(()),
        }
    }

    /// Checks every constraint the model relies on; the error names the offending key.
    pub fn validate(&self) -> Result<(), ModelError> {
        let v = &self.vision;
        let t = &self.text;
        let positive = [
            ("embed_dim", self.embed_dim),
            ("vision_cfg.image_size", v.image_size),
            ("vision_cfg.patch_size", v.patch_size),
            ("vision_cfg.width", v.width),
            ("vision_cfg.layers", v.layers),
            ("vision_cfg.heads", v.heads),
            ("vision_cfg.mlp_dim", v.mlp_dim),
            ("text_cfg.context_length", t.context_length),
            ("text_cfg.vocab_size", t.vocab_size),
            ("text_cfg.width", t.width),
            ("text_cfg.layers", t.layers),
            ("text_cfg.heads", t.heads),
            ("text_cfg.mlp_dim", t.mlp_dim),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ModelError::invalid(key, "must be positive, got 0"));
            }
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(ModelError::invalid(
                "vision_cfg.image_size",
                format!(
                    "{} is not divisible by vision_cfg.patch_size {}",
                    v.image_size, v.patch_size
                ),
            ));
        }
        for (key, width, heads) in [
            ("vision_cfg.heads", v.width, v.heads),
            ("text_cfg.heads", t.width, t.heads),
        ] {
            if !width.is_multiple_of(heads) {
                return Err(ModelError::invalid(
                    key,
                    format!("{heads} does not divide the width {width}"),
                ));
            }
        }
        if !v.proj && v.width != self.embed_dim {
            return Err(ModelError::invalid(
                "embed_dim",
                format!(
                    "{} must be the vision width {} when the image tower has no projection",
                    self.embed_dim, v.width
                ),
            ));
        }
        if t.eot_token_id as usize >= t.vocab_size {
            return Err(ModelError::invalid(
                "text_cfg.eot_token_id",
                format!(
                    "{} is outside the vocabulary of {} tokens",
                    t.eot_token_id, t.vocab_size
                ),
            ));
        }
        if v.image_std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            return Err(ModelError::invalid(
                "vision_cfg.image_std",
                format!("{:?} must be positive and finite", v.image_std),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::presets::preset;

    #[test]
    fn grid_and_positions() {
        let cfg = preset("ViT-B-32").expect("bundled preset");
        // 224 / 32 = 7 patches per side, 7 * 7 + 1 class token = 50 positions.
        assert_eq!(cfg.vision.grid_size(), 7);
        assert_eq!(cfg.vision.num_positions(), 50);
    }

    #[test]
    fn parameter_counts_are_the_built_models() {
        use burn::module::{Module, ModuleVisitor, Param};
        use burn::tensor::{Device, Tensor};
        struct Count(usize);
        impl ModuleVisitor for Count {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0 += param.lazy_shape().num_elements();
            }
        }
        // ViT-B-32: OpenCLIP lists 151.28 M parameters for it (87.85 M image, 63.43 M text).
        for name in ["tiny", "ViT-B-32"] {
            let cfg = preset(name).expect("bundled preset");
            let mut count = Count(0);
            cfg.init(&Device::flex()).expect("model").visit(&mut count);
            assert_eq!(cfg.num_params(), count.0, "{name}");
        }
        let b32 = preset("ViT-B-32").expect("bundled preset").num_params();
        assert!((151_270_000..151_290_000).contains(&b32), "{b32}");
    }

    #[test]
    fn indivisible_image_size_names_both_keys() {
        let mut cfg = preset("tiny").expect("bundled preset");
        cfg.vision.image_size = 30;
        cfg.vision.patch_size = 8;
        let err = cfg.validate().expect_err("30 % 8 != 0").to_string();
        assert!(err.contains("vision_cfg.image_size"), "{err}");
        assert!(
            err.contains("30 is not divisible by vision_cfg.patch_size 8"),
            "{err}"
        );
    }

    #[test]
    fn heads_must_divide_width() {
        let mut cfg = preset("tiny").expect("bundled preset");
        cfg.text.heads = 5;
        let err = cfg.validate().expect_err("5 does not divide").to_string();
        assert!(err.contains("text_cfg.heads"), "{err}");
    }

    #[test]
    fn zero_layers_rejected() {
        let mut cfg = preset("tiny").expect("bundled preset");
        cfg.vision.layers = 0;
        let err = cfg.validate().expect_err("zero").to_string();
        assert!(err.contains("vision_cfg.layers"), "{err}");
    }
}
