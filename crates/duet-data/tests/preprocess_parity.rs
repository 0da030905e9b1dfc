//! Decode + eval transform of real photos matches OpenCLIP (PIL bicubic) to 2e-2 per value.
//!
//! Photos: `datasets/photos/` (scikit-image samples, see its README), including baseline and
//! progressive 4:2:0 JPEGs and a CMYK JPEG; JPEGs are decoded by libjpeg-turbo's decoder as in
//! PIL, so their pixels equal PIL's before the transform. Reference:
//! `tests/fixtures/preprocess_reference.safetensors`, made by
//! `scripts/make_preprocess_fixture.py`; keys are `<file>@<size>` (shortest-side resize + center
//! crop) and `<file>@<size>:squash`. SigLIP's (issue 16): transformers' `SiglipImageProcessor`
//! in `tests/fixtures/siglip_preprocess_reference.safetensors`, made by
//! `scripts/make_siglip_preprocess_fixture.py`, keys `<file>@<size>:siglip` (both sides to the
//! size, no crop, mean = std = 0.5; its torchvision backend) and `:siglip-pil` (its PIL one).

use std::path::PathBuf;

use duet_data::{DecodeConfig, EvalTransformConfig, Normalize, ResizeMode, decode_rgb8};
use safetensors::{Dtype, SafeTensors};

/// The acceptance bound. One 8-bit level is 1 / 255 / std = 0.0142..0.0150 after normalisation,
/// so this allows a single level of rounding difference and nothing more.
const TOLERANCE: f32 = 2e-2;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// SigLIP's normalisation: mean = std = 0.5 per channel.
const SIGLIP: Normalize = Normalize {
    mean: [0.5; 3],
    std: [0.5; 3],
};

/// `"chelsea.png@32:squash"` -> (`"chelsea.png"`, 32, Squash, OpenAI's statistics);
/// `":siglip"` is Squash with SigLIP's.
fn parse_key(key: &str) -> (&str, u32, ResizeMode, Normalize) {
    let (file, spec) = key.rsplit_once('@').expect("key has @");
    let openai = Normalize::default();
    let (size, mode, normalize) = match spec.split_once(':') {
        Some((size, "squash")) => (size, ResizeMode::Squash, openai),
        Some((size, "siglip" | "siglip-pil")) => (size, ResizeMode::Squash, SIGLIP),
        None => (spec, ResizeMode::Shortest, openai),
        Some((_, other)) => panic!("unknown resize mode {other:?} in {key}"),
    };
    (
        file,
        size.parse().expect("size is an integer"),
        mode,
        normalize,
    )
}

/// Runs decode + transform for every reference key; prints one line per key and returns the
/// keys whose max abs diff exceeds `tolerance`.
fn check(fixture: &str, tolerance: f32) -> (usize, Vec<String>) {
    let fixture = repo_path(&format!("crates/duet-data/tests/fixtures/{fixture}"));
    let bytes = std::fs::read(&fixture).expect("fixture is committed");
    let reference = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut keys = reference.names();
    keys.sort();

    let mut checked = 0;
    let mut failures = Vec::new();
    for key in keys {
        let (file, size, resize, normalize) = parse_key(key);
        let view = reference.tensor(key).expect("listed tensor exists");
        assert_eq!(view.dtype(), Dtype::F32, "{key}");
        assert_eq!(view.shape(), [3, size as usize, size as usize], "{key}");
        let expected: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();

        let photo = repo_path(&format!("datasets/photos/{file}"));
        let encoded = std::fs::read(&photo).expect("photo is committed");
        let image = decode_rgb8(&encoded, file, &DecodeConfig::default()).expect("decodes");
        let config = EvalTransformConfig {
            image_size: size,
            resize,
            normalize,
        };
        let actual = config
            .init()
            .expect("valid")
            .apply(&image)
            .expect("applies");
        assert_eq!(actual.len(), expected.len(), "{key}");

        let diffs: Vec<f32> = actual
            .iter()
            .zip(&expected)
            .map(|(a, e)| (a - e).abs())
            .collect();
        let max = diffs.iter().copied().fold(0.0_f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        // 1e-3 is far below one level: this counts real level differences, not float noise.
        let differing = diffs.iter().filter(|d| **d > 1e-3).count();
        println!(
            "{key:<34} max abs diff {max:.5}  mean {mean:.6}  values differing {differing:>6} of {}",
            diffs.len()
        );
        checked += 1;
        if max > tolerance {
            failures.push(format!("{key}: {max:.5}"));
        }
    }
    (checked, failures)
}

#[test]
fn eval_transform_matches_open_clip_on_real_photos() {
    println!("preprocess parity vs OpenCLIP (bound {TOLERANCE}):");
    let (checked, failures) = check("preprocess_reference.safetensors", TOLERANCE);
    // 8 photos x (224, 32, 32:squash).
    assert_eq!(checked, 24, "reference tensors checked");
    assert!(failures.is_empty(), "over {TOLERANCE}: {failures:?}");
}

#[test]
fn squash_transform_matches_siglip_image_processor_on_real_photos() {
    println!("preprocess parity vs SiglipImageProcessor (bound {TOLERANCE}):");
    let (checked, failures) = check("siglip_preprocess_reference.safetensors", TOLERANCE);
    // 8 photos at 224 from the torchvision backend, 4 from the PIL one.
    assert_eq!(checked, 12, "reference tensors checked");
    assert!(failures.is_empty(), "over {TOLERANCE}: {failures:?}");
}
