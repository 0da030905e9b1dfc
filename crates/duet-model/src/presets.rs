//! Named model presets: the OpenCLIP model-config JSON files in the repository's
//! `configs/model/`, compiled in so a preset needs no file at run time.

use std::path::Path;

use crate::openclip::parse_openclip_config;
use crate::{ClipConfig, ModelError};

/// `(name, OpenCLIP JSON)` of every preset, in `configs/model/`.
pub const PRESETS: &[(&str, &str)] = &[
    ("tiny", include_str!("../../../configs/model/tiny.json")),
    (
        "ViT-B-32",
        include_str!("../../../configs/model/ViT-B-32.json"),
    ),
    (
        "ViT-B-32-quickgelu",
        include_str!("../../../configs/model/ViT-B-32-quickgelu.json"),
    ),
    (
        "ViT-B-16",
        include_str!("../../../configs/model/ViT-B-16.json"),
    ),
    (
        "ViT-B-16-quickgelu",
        include_str!("../../../configs/model/ViT-B-16-quickgelu.json"),
    ),
    (
        "ViT-L-14",
        include_str!("../../../configs/model/ViT-L-14.json"),
    ),
    (
        "ViT-L-14-quickgelu",
        include_str!("../../../configs/model/ViT-L-14-quickgelu.json"),
    ),
];

/// The config of a named preset.
pub fn preset(name: &str) -> Result<ClipConfig, ModelError> {
    let (_, json) =
        PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ModelError::UnknownPreset {
                name: name.to_string(),
                known: PRESETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
    parse_openclip_config(json, Path::new(&format!("configs/model/{name}.json")))
}

/// A preset name, or a path to an OpenCLIP model-config JSON or an HF `config.json`.
pub fn config_from_name_or_path(spec: &str) -> Result<ClipConfig, ModelError> {
    let path = Path::new(spec);
    if !path.exists() {
        return preset(spec);
    }
    let json = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let is_hf = serde_json::from_str::<serde_json::Value>(&json)
        .map(|v| v.get("vision_config").is_some())
        .unwrap_or(false);
    if is_hf {
        crate::hf::parse_hf_config(&json, path, None)
    } else {
        parse_openclip_config(&json, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    #[test]
    fn every_preset_parses_and_validates() {
        for (name, _) in PRESETS {
            let cfg = preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let quick = name.ends_with("-quickgelu");
            assert_eq!(
                cfg.vision.activation == Activation::QuickGelu,
                quick,
                "{name}"
            );
        }
    }

    #[test]
    fn every_file_in_configs_model_is_a_preset() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/model");
        let entries = std::fs::read_dir(&dir).expect("configs/model exists");
        for entry in entries {
            let path = entry.expect("readable dir").path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            assert!(
                PRESETS.iter().any(|(n, _)| *n == stem),
                "{} is not listed in PRESETS",
                path.display()
            );
            config_from_name_or_path(&path.to_string_lossy()).expect("parses from its path");
        }
    }

    #[test]
    fn vit_l_14_shapes() {
        let cfg = preset("ViT-L-14").expect("preset");
        // 224 / 14 = 16 per side -> 257 positions; 1024 / 64 = 16 heads.
        assert_eq!(cfg.vision.num_positions(), 257);
        assert_eq!(cfg.vision.heads, 16);
        assert_eq!(cfg.embed_dim, 768);
    }

    #[test]
    fn unknown_preset_lists_known_ones() {
        let err = preset("ViT-X-99").expect_err("no such preset").to_string();
        assert!(
            err.contains("ViT-X-99") && err.contains("ViT-B-32"),
            "{err}"
        );
    }
}
