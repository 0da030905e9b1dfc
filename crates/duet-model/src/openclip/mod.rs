//! The OpenCLIP formats: model-config JSON and state-dict keys, for CLIP (`config.rs`,
//! `keys.rs`) and for SigLIP with a timm image trunk (`siglip.rs`).

mod config;
mod keys;
mod siglip;

pub use config::{parse_openclip_config, to_openclip_json};
pub use keys::{OPENCLIP_IGNORABLE, openclip_table};
pub use siglip::{TIMM_SIGLIP, TimmTrunk, openclip_siglip_table};
