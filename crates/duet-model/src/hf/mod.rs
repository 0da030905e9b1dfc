//! The Hugging Face `transformers.CLIPModel` and `SiglipModel` formats: `config.json` and
//! state-dict keys.

/// `fn dN() -> usize { N }` for each `dN = N`: serde's defaults of the config fields.
macro_rules! defaults {
    ($($name:ident = $value:expr),* $(,)?) => { $(fn $name() -> usize { $value })* };
}

mod config;
mod keys;
mod siglip;
mod tokenizer;

pub use config::{parse_hf_config, parse_hf_preprocessor, to_hf_config, to_hf_preprocessor};
pub use keys::{HF_IGNORABLE, hf_table};
pub use siglip::{
    SIGLIP_LOGIT_BIAS_INIT, SIGLIP_LOGIT_SCALE_INIT, SIGLIP_MEAN_STD, parse_siglip_config,
};
pub use tokenizer::{read_hf_tokenizer, read_tokenizer_files, write_tokenizer_files};
