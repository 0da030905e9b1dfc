//! Losses (rel 1e-4) and gradients (rel 1e-3) of both fixture models equal the PyTorch
//! references (`scripts/make_clip_fixtures.py`). Gradients are of the InfoNCE loss.

mod common;

use burn::tensor::{Device, Tensor};
use common::{Reference, assert_close, fixtures, values};
use duet_loss::{ContrastiveBatch, info_nce_loss, siglip_loss};
use duet_model::{ClipModel, load_model};

/// Gradients are compared elementwise relative to `max(|ref|, 1e-2 · max|ref|)`: entries
/// a hundred times smaller than the largest would otherwise measure only f32 noise.
const GRAD_REL: f32 = 1e-3;
const LOSS_REL: f32 = 1e-4;

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

/// A `[d_in, d_out]` burn Linear weight gradient in PyTorch's `[d_out, d_in]` layout.
fn torch_layout(grad: Tensor<2>) -> Vec<f32> {
    let [rows, cols] = grad.dims();
    transpose(&values(grad), rows, cols)
}

fn check_grad(what: &str, actual: &[f32], r: &Reference, key: &str) {
    let (_, expected) = r.f32(&format!("grad.{key}"));
    let floor = 1e-2 * expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close(
        &format!("{what} grad.{key}"),
        actual,
        &expected,
        GRAD_REL,
        floor,
    );
}

struct Run {
    model: ClipModel,
    r: Reference,
    grads: burn::tensor::Gradients,
}

fn run(dir: &str, reference: &str) -> Run {
    let device = Device::flex().autodiff();
    let model = load_model(&fixtures().join(dir), &device)
        .expect("fixture")
        .model;
    let r = Reference::open(reference);
    let image = model.encode_image(r.tensor::<4>("pixel_values", &device));
    let text = model.encode_text(r.ids(&device));
    let scale = model.logit_scale.val();

    let bias = r.tensor::<1>("siglip_logit_bias", &device);
    let batch = ContrastiveBatch::new(image.clone(), text.clone());
    let siglip = siglip_loss(batch.clone(), scale.clone(), bias).expect("shapes");
    assert_close(
        &format!("{dir} loss_siglip"),
        &values(siglip),
        &r.f32("loss_siglip").1,
        LOSS_REL,
        1e-2,
    );

    let loss = info_nce_loss(batch, scale).expect("shapes");
    assert_close(
        &format!("{dir} loss_infonce"),
        &values(loss.clone()),
        &r.f32("loss_infonce").1,
        LOSS_REL,
        1e-2,
    );
    let grads = loss.backward();
    Run { model, r, grads }
}

fn grad<const D: usize>(t: Tensor<D>, grads: &burn::tensor::Gradients) -> Tensor<D> {
    t.grad(grads).expect("parameter takes part in the loss")
}

fn token_rows(run: &Run) {
    let g = grad(run.model.text.token_embedding.weight.val(), &run.grads);
    let (_, ids) = run.r.i64("grad_rows.token_ids");
    let [_, width] = g.dims();
    let all = values(g);
    let rows: Vec<f32> = ids
        .iter()
        .flat_map(|id| all[*id as usize * width..(*id as usize + 1) * width].to_vec())
        .collect();
    let (_, expected) = run.r.f32("grad_rows.token_embedding");
    let floor = 1e-2 * expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close(
        "grad_rows.token_embedding",
        &rows,
        &expected,
        GRAD_REL,
        floor,
    );
}

#[test]
fn hf_loss_and_gradients_match_transformers() {
    let run = run("hf", "reference-hf.safetensors");
    let (m, g, r) = (&run.model, &run.grads, &run.r);
    check_grad(
        "hf",
        &values(grad(m.logit_scale.val(), g)),
        r,
        "logit_scale",
    );
    check_grad(
        "hf",
        &torch_layout(grad(m.vision.blocks[1].mlp.fc2.weight.val(), g)),
        r,
        "vision_model.encoder.layers.1.mlp.fc2.weight",
    );
    check_grad(
        "hf",
        &torch_layout(grad(m.text.blocks[0].attn.q.weight.val(), g)),
        r,
        "text_model.encoder.layers.0.self_attn.q_proj.weight",
    );
    check_grad(
        "hf",
        &values(grad(m.vision.patch_embed.weight.val(), g)),
        r,
        "vision_model.embeddings.patch_embedding.weight",
    );
    check_grad(
        "hf",
        &torch_layout(grad(
            m.vision
                .proj
                .as_ref()
                .expect("CLIP projection")
                .weight
                .val(),
            g,
        )),
        r,
        "visual_projection.weight",
    );
    check_grad(
        "hf",
        &torch_layout(grad(m.text.proj.weight.val(), g)),
        r,
        "text_projection.weight",
    );
    check_grad(
        "hf",
        &values(grad(
            m.vision
                .class_embedding
                .as_ref()
                .expect("class token")
                .val(),
            g,
        )),
        r,
        "vision_model.embeddings.class_embedding",
    );
    check_grad(
        "hf",
        &values(grad(
            m.vision.ln_pre.as_ref().expect("ln_pre").gamma.val(),
            g,
        )),
        r,
        "vision_model.pre_layrnorm.weight",
    );
    token_rows(&run);
}

#[test]
fn openclip_loss_and_gradients_match_open_clip() {
    let run = run("openclip", "reference-openclip.safetensors");
    let (m, g, r) = (&run.model, &run.grads, &run.r);
    let attn = &m.text.blocks[0].attn;
    // in_proj_weight stacks q; k; v, each [d_out, d_in].
    let in_proj: Vec<f32> = [&attn.q, &attn.k, &attn.v]
        .iter()
        .flat_map(|l| torch_layout(grad(l.weight.val(), g)))
        .collect();
    check_grad(
        "openclip",
        &values(grad(m.logit_scale.val(), g)),
        r,
        "logit_scale",
    );
    check_grad(
        "openclip",
        &torch_layout(grad(m.vision.blocks[1].mlp.fc2.weight.val(), g)),
        r,
        "visual.transformer.resblocks.1.mlp.c_proj.weight",
    );
    check_grad(
        "openclip",
        &in_proj,
        r,
        "transformer.resblocks.0.attn.in_proj_weight",
    );
    check_grad(
        "openclip",
        &values(grad(m.vision.patch_embed.weight.val(), g)),
        r,
        "visual.conv1.weight",
    );
    // OpenCLIP's projections are used as `x @ P`, burn's layout: no transpose.
    check_grad(
        "openclip",
        &values(grad(
            m.vision
                .proj
                .as_ref()
                .expect("CLIP projection")
                .weight
                .val(),
            g,
        )),
        r,
        "visual.proj",
    );
    check_grad(
        "openclip",
        &values(grad(m.text.proj.weight.val(), g)),
        r,
        "text_projection",
    );
    check_grad(
        "openclip",
        &values(grad(
            m.vision
                .class_embedding
                .as_ref()
                .expect("class token")
                .val(),
            g,
        )),
        r,
        "visual.class_embedding",
    );
    check_grad(
        "openclip",
        &values(grad(
            m.vision.ln_pre.as_ref().expect("ln_pre").gamma.val(),
            g,
        )),
        r,
        "visual.ln_pre.weight",
    );
    token_rows(&run);
}
