//! Named model presets: the OpenCLIP model-config JSON files in the repository's
//! `configs/model/`, compiled in so a preset needs no file at run time. The SigLIP ones are
//! OpenCLIP 3.3's own files (`ViT-*-SigLIP*`: a timm trunk, see `openclip/siglip.rs`); a fresh
//! model of one trains with the sigmoid loss at ln 10 / -10 and needs its tokenizer files
//! (`model.tokenizer` in a train config).

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
    (
        "ViT-B-16-SigLIP",
        include_str!("../../../configs/model/ViT-B-16-SigLIP.json"),
    ),
    (
        "ViT-B-16-SigLIP-256",
        include_str!("../../../configs/model/ViT-B-16-SigLIP-256.json"),
    ),
    (
        "ViT-B-16-SigLIP-384",
        include_str!("../../../configs/model/ViT-B-16-SigLIP-384.json"),
    ),
    (
        "ViT-L-16-SigLIP-384",
        include_str!("../../../configs/model/ViT-L-16-SigLIP-384.json"),
    ),
    (
        "ViT-SO400M-14-SigLIP",
        include_str!("../../../configs/model/ViT-SO400M-14-SigLIP.json"),
    ),
    (
        "ViT-B-16-SigLIP2",
        include_str!("../../../configs/model/ViT-B-16-SigLIP2.json"),
    ),
    (
        "ViT-B-16-SigLIP2-256",
        include_str!("../../../configs/model/ViT-B-16-SigLIP2-256.json"),
    ),
    (
        "ViT-B-16-SigLIP2-384",
        include_str!("../../../configs/model/ViT-B-16-SigLIP2-384.json"),
    ),
    (
        "ViT-L-16-SigLIP2-384",
        include_str!("../../../configs/model/ViT-L-16-SigLIP2-384.json"),
    ),
    (
        "ViT-SO400M-14-SigLIP2",
        include_str!("../../../configs/model/ViT-SO400M-14-SigLIP2.json"),
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
    let value = serde_json::from_str::<serde_json::Value>(&json).unwrap_or_default();
    let model_type = value.get("model_type").and_then(serde_json::Value::as_str);
    match (value.get("vision_config").is_some(), model_type) {
        (true, Some("siglip")) => crate::hf::parse_siglip_config(&json, path, None, 1),
        (true, Some("siglip2")) => crate::hf::parse_siglip_config(&json, path, None, 2),
        (true, _) => crate::hf::parse_hf_config(&json, path, None),
        (false, _) => parse_openclip_config(&json, path),
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
    fn siglip_presets_are_openclips_timm_models() {
        use crate::{ImageResize, TextPool, VisionPool};
        let b16 = preset("ViT-B-16-SigLIP").expect("preset");
        // vit_base_patch16_siglip_224: 768 wide, 12 blocks of 12 heads, MLP 3072, exact GELU;
        // 224 / 16 = 14 -> 196 positions, no class token.
        let v = &b16.vision;
        assert_eq!((v.width, v.layers, v.heads, v.mlp_dim), (768, 12, 12, 3072));
        assert_eq!((v.num_positions(), v.activation), (196, Activation::Gelu));
        assert_eq!(
            (v.pool, v.resize, v.layer_norm_eps),
            (VisionPool::Map, ImageResize::Squash, 1e-6)
        );
        assert_eq!((b16.text.context_length, b16.text.vocab_size), (64, 32_000));
        assert_eq!(b16.text.pool, TextPool::Last);
        // SigLIP's training inits: logit_scale ln 10 = 2.3026, bias -10.
        assert!((b16.logit_scale_init - 10f64.ln()).abs() < 1e-12);
        assert_eq!(b16.logit_bias_init, Some(-10.0));
        // SigLIP 2: Gemma's 256,000 tokens, gelu_tanh text tower; SO400M's MLP int(1152 x
        // 3.7362) = 4304 in both towers.
        let so = preset("ViT-SO400M-14-SigLIP2").expect("preset");
        assert_eq!(
            (so.text.vocab_size, so.text.activation),
            (256_000, Activation::GeluTanh)
        );
        assert_eq!((so.vision.mlp_dim, so.text.mlp_dim), (4304, 4304));
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
