//! Weight files that do not fit: every problem is reported with the key and the file, and
//! export -> import round-trips.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{assert_close, fixtures, values};
use duet_model::{
    ModelError, ModelFormat, load_model, read_config, save_duet, save_hf, save_openclip,
};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

/// Copies the HF fixture into `dir`, rewriting its weights with `edit` applied to the
/// `(key, shape, bytes)` list.
fn edited_hf_copy(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let src = fixtures().join("hf");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).expect("copy config");
    let bytes = std::fs::read(src.join("model.safetensors")).expect("fixture");
    let file = SafeTensors::deserialize(&bytes).expect("valid");
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, s, d)| {
            (
                k.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), d).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
}

fn load_err(dir: &Path) -> String {
    load_model(dir, &Device::flex())
        .expect_err("must not load")
        .to_string()
}

#[test]
fn missing_and_unexpected_keys_are_all_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    edited_hf_copy(dir.path(), |t| {
        t.retain(|(k, _, _)| {
            k != "visual_projection.weight" && k != "text_model.final_layer_norm.bias"
        });
        t.push(("extra.weight".into(), vec![2], vec![0; 8]));
    });
    let err = load_err(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("missing keys (2)"), "{err}");
    assert!(err.contains("visual_projection.weight"), "{err}");
    assert!(err.contains("text_model.final_layer_norm.bias"), "{err}");
    assert!(err.contains("unexpected keys (1)"), "{err}");
    assert!(err.contains("extra.weight"), "{err}");
}

#[test]
fn wrong_shape_names_source_and_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    edited_hf_copy(dir.path(), |t| {
        for (k, shape, data) in t.iter_mut() {
            if k == "vision_model.encoder.layers.1.mlp.fc1.bias" {
                // 192 -> 191 values: drop the last f32.
                *shape = vec![191];
                data.truncate(191 * 4);
            }
        }
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("vision_model.encoder.layers.1.mlp.fc1.bias [191] -> vision.blocks.1.mlp.fc1.bias expects [192]"),
        "{err}"
    );
}

#[test]
fn missing_directory_and_weight_file_are_named() {
    let err = load_err(Path::new("/nonexistent/duet-model"));
    assert!(err.contains("/nonexistent/duet-model"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fixtures().join("hf/config.json"),
        dir.path().join("config.json"),
    )
    .expect("copy");
    let err = load_err(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");

    let empty = tempfile::tempdir().expect("tempdir");
    let err = load_model(empty.path(), &Device::flex()).expect_err("no layout");
    assert!(matches!(err, ModelError::UnknownLayout { .. }), "{err}");
}

#[test]
fn truncated_weight_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    edited_hf_copy(dir.path(), |_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = load_err(dir.path());
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn indivisible_image_size_in_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    edited_hf_copy(dir.path(), |_| {});
    let config = std::fs::read_to_string(dir.path().join("config.json")).expect("read");
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"image_size\": 32", "\"image_size\": 30"),
    )
    .expect("write");
    let err = load_err(dir.path());
    assert!(
        err.contains("vision_cfg.image_size") && err.contains("30 is not divisible"),
        "{err}"
    );
}

/// OpenCLIP -> duet -> HF files -> duet gives the same embeddings; duet's own layout too.
#[test]
fn export_round_trips() {
    let device = Device::flex();
    let original = load_model(&fixtures().join("openclip"), &device).expect("fixture");
    let r = common::Reference::open("reference-openclip.safetensors");
    let pixels = r.tensor::<4>("pixel_values", &device);
    let ids = r.ids(&device);
    let want_image = values(original.model.encode_image(pixels.clone()));
    let want_text = values(original.model.encode_text(ids.clone()));

    let hf = tempfile::tempdir().expect("tempdir");
    save_hf(&original.model, &original.config, hf.path()).expect("export");
    let duet = tempfile::tempdir().expect("tempdir");
    save_duet(&original.model, &original.config, duet.path()).expect("save");
    let openclip = tempfile::tempdir().expect("tempdir");
    save_openclip(&original.model, &original.config, openclip.path()).expect("export");
    for (dir, format) in [
        (hf.path(), ModelFormat::HuggingFace),
        (duet.path(), ModelFormat::Duet),
        (openclip.path(), ModelFormat::OpenClip),
    ] {
        let (config, found) = read_config(dir).expect("config");
        assert_eq!(found, format);
        assert_eq!(config, original.config, "{format:?} config round trip");
        let back = load_model(dir, &device).expect("reload");
        // The same f32 values in the same order: the round trip is exact.
        assert_close(
            "image",
            &values(back.model.encode_image(pixels.clone())),
            &want_image,
            0.0,
            1.0,
        );
        assert_close(
            "text",
            &values(back.model.encode_text(ids.clone())),
            &want_text,
            0.0,
            1.0,
        );
    }
}
