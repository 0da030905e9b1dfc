//! bf16 and f16 compute (autocast-style casts, `duet_model::Precision`) against f32 on the
//! parity fixtures, relative `‖low − f32‖₂ / ‖f32‖₂`: embeddings and the InfoNCE loss within
//! 1e-2; the whole gradient (every parameter's, as one vector) and each parameter's own.
//! Parameters and gradients stay f32.
//!
//! f16 (11 bits of mantissa): the whole gradient within 1e-2 (1.8e-3 measured).
//! bf16 (8 bits, a rounding of 2^-9 ≈ 2e-3 at each cast, ~5 casts between the loss and the
//! first layers): torch's own autocast on this fixture is at 1.66e-2 whole and 3.5e-2 for its
//! worst parameter (`scripts/precision/torch_autocast_error.py`, torch 2.15 CPU), so 1e-2 is
//! out of reach for bf16 by any autocast; duet is held to below torch's error, 1.5e-2 whole
//! and 2.5e-2 per parameter (1.2-1.3e-2 and 2.0-2.3e-2 measured).

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Device, Gradients, Tensor};
use common::{Reference, fixtures, norm, rel, rel_floored, values};
use duet_loss::{ContrastiveBatch, info_nce_loss};
use duet_model::{ClipModel, Precision, load_model};

/// Embeddings and loss, both types; the whole gradient in f16.
const REL: f64 = 1e-2;
/// bf16's whole gradient, below torch autocast's 1.66e-2.
const REL_BF16_WHOLE: f64 = 1.5e-2;
/// Each parameter's gradient, below torch autocast's worst (3.5e-2 in bf16).
const REL_EACH: f64 = 2.5e-2;

/// Every parameter's gradient in module order, with its dtype.
struct Collect<'a> {
    grads: &'a Gradients,
    out: Vec<(DType, Vec<f32>)>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        assert_eq!(value.dtype(), DType::F32, "parameter stays f32");
        let grad = value.grad(self.grads).expect("every parameter takes part");
        self.out.push((grad.dtype(), values(grad)));
    }
}

struct Pass {
    image: Vec<f32>,
    text: Vec<f32>,
    loss: Vec<f32>,
    grads: Vec<(DType, Vec<f32>)>,
}

fn pass(dir: &str, reference: &str, precision: Precision) -> Pass {
    let device = Device::flex().autodiff();
    let model: ClipModel = load_model(&fixtures().join(dir), &device)
        .expect("fixture")
        .model
        .with_precision(precision);
    assert_eq!(model.precision(), precision);
    let r = Reference::open(reference);
    let image = model.encode_image(r.tensor::<4>("pixel_values", &device));
    let text = model.encode_text(r.ids(&device));
    assert_eq!(image.dtype(), DType::F32, "features are f32");
    let batch = ContrastiveBatch::new(image.clone(), text.clone());
    let loss = info_nce_loss(batch, model.logit_scale.val()).expect("shapes");
    let grads = loss.backward();
    let mut collect = Collect {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    Pass {
        image: values(image),
        text: values(text),
        loss: values(loss),
        grads: collect.out,
    }
}

fn check(dir: &str, reference: &str, precision: Precision) {
    let f32 = pass(dir, reference, Precision::F32);
    let low = pass(dir, reference, precision);
    let what = format!("{dir} {precision}");
    for (name, a, b) in [
        ("image", &low.image, &f32.image),
        ("text", &low.text, &f32.text),
        ("loss", &low.loss, &f32.loss),
    ] {
        let err = rel(a, b);
        println!("{what} {name}: rel {err:.2e}");
        assert!(err <= REL, "{what} {name}: rel {err:.2e} > {REL:e}");
        assert!(
            err > 0.0,
            "{what} {name}: no difference, so no cast happened"
        );
    }
    assert_eq!(low.grads.len(), f32.grads.len());
    // A gradient that is zero in exact arithmetic (the key bias's: softmax ignores a constant
    // added to every score of a row) is f32 noise; measure each against at least 1e-2 of the
    // largest gradient's norm.
    let floor = 1e-2 * f32.grads.iter().map(|(_, g)| norm(g)).fold(0.0, f64::max);
    let mut worst = 0.0f64;
    for (i, ((dtype, a), (_, b))) in low.grads.iter().zip(&f32.grads).enumerate() {
        assert_eq!(*dtype, DType::F32, "{what}: gradient {i} is f32");
        let err = rel_floored(a, b, floor);
        assert!(
            err <= REL_EACH,
            "{what}: gradient {i} rel {err:.2e} > {REL_EACH:e}"
        );
        worst = worst.max(err);
    }
    let all = |p: &Pass| -> Vec<f32> { p.grads.iter().flat_map(|(_, g)| g.clone()).collect() };
    let whole = rel(&all(&low), &all(&f32));
    println!(
        "{what}: whole gradient rel {whole:.2e}; worst of {} parameters {worst:.2e}",
        low.grads.len()
    );
    let bound = match precision {
        Precision::Bf16 => REL_BF16_WHOLE,
        _ => REL,
    };
    assert!(
        whole <= bound,
        "{what}: whole gradient rel {whole:.2e} > {bound:e}"
    );
    assert!(
        whole > 0.0,
        "{what}: the same gradient, so no cast happened"
    );
}

#[test]
fn bf16_is_f32_within_1e_2_on_the_hf_fixture() {
    check("hf", "reference-hf.safetensors", Precision::Bf16);
}

#[test]
fn f16_is_f32_within_1e_2_on_the_openclip_fixture() {
    // QuickGELU (OpenAI style) and f16.
    check("openclip", "reference-openclip.safetensors", Precision::F16);
}

#[test]
fn bf16_with_quick_gelu_and_f16_with_gelu() {
    check(
        "openclip",
        "reference-openclip.safetensors",
        Precision::Bf16,
    );
    check("hf", "reference-hf.safetensors", Precision::F16);
}

#[test]
fn precision_names_parse_with_openclip_aliases() {
    for (name, want) in [
        ("f32", Precision::F32),
        ("fp32", Precision::F32),
        ("bf16", Precision::Bf16),
        ("amp_bf16", Precision::Bf16),
        ("f16", Precision::F16),
        ("amp", Precision::F16),
    ] {
        assert_eq!(name.parse::<Precision>(), Ok(want));
    }
    let err = "fp8".parse::<Precision>().expect_err("no fp8");
    assert!(err.contains("\"fp8\"") && err.contains("bf16"), "{err}");
}
