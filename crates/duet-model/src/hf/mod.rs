//! The Hugging Face `transformers.CLIPModel` and `SiglipModel` formats: `config.json` and
//! state-dict keys.

mod config;
mod keys;
mod siglip;

pub use config::{parse_hf_config, parse_hf_preprocessor, to_hf_config, to_hf_preprocessor};
pub use keys::{HF_IGNORABLE, hf_table};
pub use siglip::{
    SIGLIP_LOGIT_BIAS_INIT, SIGLIP_LOGIT_SCALE_INIT, SIGLIP_MEAN_STD, parse_siglip_config,
};
