//! The config's tests: parsing, fine-tune configs, and every shipped config.

use std::path::PathBuf;

use duet_data::Sampling;

use super::*;

mod parse {
    use super::*;

    const MINIMAL: &str = r#"
[model]
config = "tiny"
[data]
train = "datasets/sample/train/{00000..00002}.tar"
[train]
steps = 100
batch_size = 32
"#;

    fn parse(text: &str, overrides: &[&str]) -> Result<TrainConfig, TrainError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        TrainConfig::parse(text, "test.toml", &overrides)
    }

    fn error(text: &str, overrides: &[&str]) -> String {
        let err = parse(text, overrides).expect_err("invalid");
        let message = err.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        message
    }

    #[test]
    fn minimal_config_gets_openclip_defaults() {
        let c = parse(MINIMAL, &[]).expect("valid");
        assert_eq!(c.optimizer, OptimizerConfig::default());
        assert_eq!(c.optimizer.lr, 5e-4);
        assert_eq!((c.optimizer.beta2, c.optimizer.eps), (0.98, 1e-6));
        assert_eq!(c.train.seed, 0);
        assert_eq!(c.checkpoint.keep_last, 3);
        assert_eq!(c.data.sampling, Sampling::Exact);
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let message = error(&format!("{MINIMAL}batchsize = 3\n"), &[]);
        assert!(message.contains("train"), "{message}");
        assert!(message.contains("batchsize"), "{message}");
        let message = error(&format!("{MINIMAL}[optimiser]\nlr = 1\n"), &[]);
        assert!(message.contains("optimiser"), "{message}");
    }

    #[test]
    fn bad_type_names_the_key() {
        let message = error(MINIMAL, &["train.batch_size=\"many\""]);
        assert!(message.contains("train.batch_size"), "{message}");
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn batch_size_zero_is_rejected() {
        let message = error(MINIMAL, &["train.batch_size=0"]);
        assert!(message.contains("train.batch_size"), "{message}");
    }

    #[test]
    fn image_size_must_divide_by_the_patch() {
        // The tiny preset has 8 px patches: 30 is not a multiple.
        let message = error(MINIMAL, &["model.image_size=30"]);
        assert!(message.contains("model.image_size"), "{message}");
        assert!(message.contains("not divisible"), "{message}");
        parse(MINIMAL, &["model.image_size=32"]).expect("32 is fine");
    }

    #[test]
    fn overrides_set_nested_keys_and_take_toml_values() {
        let c = parse(
            MINIMAL,
            &[
                "train.steps=7",
                "optimizer.grad_clip_norm=1.5",
                "data.sampling=resampled",
            ],
        )
        .expect("valid");
        assert_eq!(c.train.steps, 7);
        assert_eq!(c.optimizer.grad_clip_norm, Some(1.5));
        assert_eq!(c.data.sampling, Sampling::Resampled);
        let message = error(MINIMAL, &["train"]);
        assert!(message.contains("section.key=value"), "{message}");
        let message = error(MINIMAL, &["data.train.x=1"]);
        assert!(message.contains("not a section"), "{message}");
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let message = error("[model\nconfig = 1", &[]);
        assert!(message.starts_with("test.toml"), "{message}");
    }

    #[test]
    fn data_filter_takes_the_basic_bounds_and_names_a_bad_one() {
        let text = format!(
            "{MINIMAL}[data.filter]\nmin_words = 3\nlanguages = [\"eng\"]\nmax_aspect = 3.0\n"
        );
        let c = parse(&text, &[]).expect("valid");
        assert_eq!(c.data.filter.min_words, Some(3));
        assert_eq!(c.data.filter.languages, Some(vec!["eng".to_string()]));
        assert_eq!(c.data.filter.min_side, None);
        let message = error(&text, &["data.filter.languages=[\"en\"]"]);
        assert!(message.contains("data.filter.languages"), "{message}");
        assert!(message.contains("\"en\""), "{message}");
        let message = error(&format!("{MINIMAL}[data.filter]\nmin_word = 3\n"), &[]);
        assert!(message.contains("min_word"), "{message}");
    }

    #[test]
    fn bad_shard_spec_names_data_train() {
        let message = error(MINIMAL, &["data.train=\"a/{0..2.tar\""]);
        assert!(message.starts_with("data.train"), "{message}");
    }

    #[test]
    fn a_fresh_model_takes_the_losses_inits() {
        // No [loss]: InfoNCE at ln(1/0.07) = 2.6593, no bias, as the tiny preset.
        let clip = parse(MINIMAL, &[])
            .expect("valid")
            .clip_config()
            .expect("model");
        assert!((clip.logit_scale_init - (1.0f64 / 0.07).ln()).abs() < 1e-12);
        assert_eq!(clip.logit_bias_init, None);
        // The sigmoid loss gives the CLIP preset SigLIP's inits: ln 10 = 2.3026 and -10
        // (OpenCLIP's --siglip), so the bias it trains exists.
        let text = format!("{MINIMAL}[loss]\nkind = \"sigmoid\"\n");
        let clip = parse(&text, &[])
            .expect("valid")
            .clip_config()
            .expect("model");
        assert!((clip.logit_scale_init - 10f64.ln()).abs() < 1e-12);
        assert_eq!(clip.logit_bias_init, Some(-10.0));
    }

    #[test]
    fn a_siglip_preset_takes_its_tokenizer_from_model_tokenizer() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let tokenizer = root.join("tests/fixtures/siglip-tiny/hf");
        let preset = MINIMAL.replace("config = \"tiny\"", "config = \"ViT-B-16-SigLIP\"");
        // No [loss]: the preset's family, sigmoid at ln 10 / -10.
        let set = format!("model.tokenizer=\"{}\"", tokenizer.display());
        let c = parse(&preset, &[&set]).expect("valid");
        assert_eq!(c.loss.init_logit_bias(), Some(-10.0));
        let clip = c.clip_config().expect("model");
        let duet_model::TokenizerSpec::File(file) = &clip.text.tokenizer else {
            panic!("SigLIP presets read their own tokenizer");
        };
        assert!(file.files.tokenizer_json().is_some());
        assert_eq!(file.pad_id, 1);
        // Without it the run is refused where tokenizing starts (check_tokenizer); a CLIP
        // preset refuses the key.
        let clip = parse(&preset, &[])
            .expect("valid")
            .clip_config()
            .expect("model");
        assert!(clip.check_tokenizer().is_err());
        let message = error(MINIMAL, &[&set]);
        assert!(message.starts_with("model.tokenizer"), "{message}");
    }

    #[test]
    fn unknown_preset_names_model_config() {
        let message = error(MINIMAL, &["model.config=\"ViT-Q-99\""]);
        assert!(message.contains("model.config"), "{message}");
    }
}

mod finetune {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip-tiny/hf")
    }

    fn tiny_toml() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")
    }

    fn set(overrides: &[&str]) -> Vec<String> {
        overrides.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finetune_replaces_the_model_and_defaults_to_a_small_lr() {
        // tiny.toml sets optimizer.lr = 1e-3, which wins over the fine-tune default.
        let c = TrainConfig::load_finetune(&tiny_toml(), &fixture(), &[]).expect("valid");
        assert_eq!(c.model.config, None);
        assert_eq!(c.model.from.as_deref(), Some(fixture().as_path()));
        assert_eq!(c.optimizer.lr, 1e-3);
        // Without an lr in the file, 1e-5; an override still wins.
        let text = std::fs::read_to_string(tiny_toml()).expect("tiny.toml");
        let dir = tempfile::tempdir().expect("tempdir");
        let no_lr = dir.path().join("no-lr.toml");
        std::fs::write(&no_lr, text.replace("lr = 1e-3\n", "")).expect("write");
        let c = TrainConfig::load_finetune(&no_lr, &fixture(), &[]).expect("valid");
        assert_eq!(c.optimizer.lr, FINETUNE_DEFAULT_LR);
        let c = TrainConfig::load_finetune(&no_lr, &fixture(), &set(&["optimizer.lr=3e-5"]))
            .expect("valid");
        assert_eq!(c.optimizer.lr, 3e-5);
        // The architecture is the weights': the HF fixture has a 32 px, 2-block image tower.
        let clip = c.clip_config().expect("config.json");
        assert_eq!((clip.vision.image_size, clip.vision.layers), (32, 2));
    }

    #[test]
    fn pretrained_weights_choose_the_loss_family() {
        let siglip =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/siglip-tiny/hf");
        // tiny.toml asks for InfoNCE: refused for SigLIP weights before any work, naming the key.
        let err = TrainConfig::load_finetune(&tiny_toml(), &siglip, &[]).expect_err("mismatch");
        assert!(err.to_string().starts_with("loss.kind"), "{err}");
        assert!(err.to_string().contains("sigmoid"), "{err}");
        // Without [loss], SigLIP weights train with the sigmoid loss at their own inits
        // (transformers' SigLIP: ln 10, -10); CLIP weights with InfoNCE.
        let text = std::fs::read_to_string(tiny_toml()).expect("tiny.toml");
        let dir = tempfile::tempdir().expect("tempdir");
        let no_loss = dir.path().join("no-loss.toml");
        std::fs::write(&no_loss, text.replace("[loss]\nkind = \"info_nce\"\n", "")).expect("write");
        let c = TrainConfig::load_finetune(&no_loss, &siglip, &[]).expect("valid");
        assert_eq!(
            c.loss,
            Loss::Sigmoid {
                init_logit_scale: 10f64.ln(),
                init_logit_bias: -10.0
            }
        );
        let c = TrainConfig::load_finetune(&no_loss, &fixture(), &[]).expect("valid");
        assert_eq!(c.loss.init_logit_bias(), None);
        // And SigLIP's loss on CLIP weights (no bias to train) is refused the other way.
        let err =
            TrainConfig::load_finetune(&tiny_toml(), &fixture(), &set(&["loss.kind=\"sigmoid\""]))
                .expect_err("mismatch");
        assert!(err.to_string().contains("info_nce"), "{err}");
    }

    #[test]
    fn model_needs_exactly_one_source() {
        let from = format!("model.from=\"{}\"", fixture().display());
        let err = TrainConfig::load(&tiny_toml(), &set(&[&from])).expect_err("both");
        assert!(
            err.to_string().starts_with("model.from: set either"),
            "{err}"
        );
        let missing = TrainConfig::load_finetune(&tiny_toml(), Path::new("/no/such/model"), &[])
            .expect_err("missing weights");
        assert!(missing.to_string().starts_with("model.from"), "{missing}");
        let err =
            TrainConfig::load_finetune(&tiny_toml(), &fixture(), &set(&["model.image_size=64"]))
                .expect_err("resize");
        assert!(err.to_string().starts_with("model.image_size"), "{err}");
    }

    #[test]
    fn lock_settings_are_checked_against_the_towers() {
        let err = TrainConfig::load_finetune(
            &tiny_toml(),
            &fixture(),
            &set(&["lock.image_unlocked_groups=1"]),
        )
        .expect_err("not locked");
        assert!(
            err.to_string().starts_with("lock.image_unlocked_groups"),
            "{err}"
        );
        // 2 blocks + embeddings + projection = 4 groups.
        let err = TrainConfig::load_finetune(
            &tiny_toml(),
            &fixture(),
            &set(&["lock.text=true", "lock.text_unlocked_layers=5"]),
        )
        .expect_err("too many");
        assert!(err.to_string().contains("4 groups"), "{err}");
        TrainConfig::load_finetune(
            &tiny_toml(),
            &fixture(),
            &set(&["lock.text=true", "lock.text_unlocked_layers=4"]),
        )
        .expect("all 4 unlocked is allowed");
    }
}

mod shipped {
    use super::*;

    /// Every train config in `configs/` parses and validates (model presets are tested in
    /// duet-model).
    #[test]
    fn every_shipped_train_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                TrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                checked += 1;
            }
        }
        assert!(checked >= 1, "no train config found in {}", dir.display());
    }
}
