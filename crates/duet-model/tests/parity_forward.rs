//! The forward pass of both fixture models equals transformers / OpenCLIP
//! (`tests/fixtures/clip-tiny`, made by `scripts/make_clip_fixtures.py`) to rel 1e-4 in f32.

mod common;

use burn::tensor::Device;
use common::{Reference, assert_close, fixtures, values};
use duet_model::{ModelFormat, l2_normalize, load_model};

/// Relative tolerance of the acceptance criteria; `FLOOR` keeps values near zero from dominating
/// a relative error (the activations here are O(1), see the fixture README).
const REL: f32 = 1e-4;
const FLOOR: f32 = 1e-2;
/// Hidden states are not part of the acceptance bound but are checked to localise a failure.
/// Their elements reach ~6 and f32 accumulation leaves ~2e-6 absolute error, so elements under
/// 0.1 are compared relative to 0.1 (a 1e-4 bound there still catches any wrong weight).
const FLOOR_HIDDEN: f32 = 1e-1;

fn check(dir: &str, reference: &str, format: ModelFormat) {
    let device = Device::flex();
    let loaded = load_model(&fixtures().join(dir), &device).expect("fixture loads");
    assert_eq!(loaded.format, format);
    let model = loaded.model;
    let r = Reference::open(reference);
    let pixels = r.tensor::<4>("pixel_values", &device);
    let ids = r.ids(&device);

    let vision_hidden = model.vision.forward_hidden(pixels.clone());
    assert_close(
        &format!("{dir} vision_last_hidden"),
        &values(vision_hidden),
        &r.f32("vision_last_hidden").1,
        REL,
        FLOOR_HIDDEN,
    );
    let text_hidden = model.text.forward_hidden(ids.clone());
    assert_close(
        &format!("{dir} text_last_hidden"),
        &values(text_hidden),
        &r.f32("text_last_hidden").1,
        REL,
        FLOOR_HIDDEN,
    );

    let image = model.encode_image(pixels);
    let text = model.encode_text(ids);
    assert_close(
        &format!("{dir} image_features"),
        &values(image.clone()),
        &r.f32("image_features").1,
        REL,
        FLOOR,
    );
    assert_close(
        &format!("{dir} text_features"),
        &values(text.clone()),
        &r.f32("text_features").1,
        REL,
        FLOOR,
    );
    assert_close(
        &format!("{dir} image_embeds"),
        &values(l2_normalize(image.clone())),
        &r.f32("image_embeds").1,
        REL,
        FLOOR,
    );
    assert_close(
        &format!("{dir} text_embeds"),
        &values(l2_normalize(text.clone())),
        &r.f32("text_embeds").1,
        REL,
        FLOOR,
    );
    assert_close(
        &format!("{dir} logit_scale"),
        &values(model.logit_scale.val()),
        &r.f32("logit_scale").1,
        REL,
        FLOOR,
    );
    let logits = model.logits(image, text);
    assert_close(
        &format!("{dir} logits_per_image"),
        &values(logits),
        &r.f32("logits_per_image").1,
        REL,
        FLOOR,
    );
}

#[test]
fn hf_fixture_matches_transformers() {
    check("hf", "reference-hf.safetensors", ModelFormat::HuggingFace);
}

#[test]
fn openclip_fixture_matches_open_clip() {
    check(
        "openclip",
        "reference-openclip.safetensors",
        ModelFormat::OpenClip,
    );
}
