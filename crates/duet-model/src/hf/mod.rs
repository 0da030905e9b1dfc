//! The Hugging Face `transformers.CLIPModel` formats: `config.json` and state-dict keys.

mod config;
mod keys;

pub use config::{parse_hf_config, parse_hf_preprocessor, to_hf_config, to_hf_preprocessor};
pub use keys::{HF_IGNORABLE, hf_table};
