//! The OpenCLIP formats: model-config JSON and state-dict keys.

mod config;
mod keys;

pub use config::{parse_openclip_config, to_openclip_json};
pub use keys::{OPENCLIP_IGNORABLE, openclip_table};
