//! The SigLIP architecture against transformers' `SiglipModel` and `Siglip2Model` on random-init
//! fixtures (`scripts/make_siglip_fixtures.py`, `scripts/make_siglip2_fixtures.py`; SigLIP 2 at
//! its native fixed resolution): hidden states, features and logits within 1e-4 relative, the
//! sigmoid loss within 1e-4, its gradients within 1e-3 (issue 16, acceptance 1).

mod common;

use burn::tensor::{Device, Tensor};
use common::{Reference, assert_close, siglip_fixtures, values};
use duet_loss::{ContrastiveBatch, siglip_loss};
use duet_model::{ModelFormat, load_model};

const REL: f32 = 1e-4;
const GRAD_REL: f32 = 1e-3;

/// The SigLIP (1) or SigLIP 2 (2) fixture directory.
fn fixture(version: u8) -> std::path::PathBuf {
    match version {
        2 => siglip_fixtures().with_file_name("siglip2-tiny"),
        _ => siglip_fixtures(),
    }
}

fn reference(version: u8) -> Reference {
    Reference::open_at(&fixture(version).join("reference-hf.safetensors"))
}

/// Asserts that two safetensors files hold the same tensor names, and for each the same shape,
/// dtype and bytes; returns how many tensors there are.
fn assert_same_tensors(original: &std::path::Path, exported: &std::path::Path) -> usize {
    let (original, exported) = (
        std::fs::read(original).expect("read"),
        std::fs::read(exported).expect("read"),
    );
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&original).expect("original"),
        safetensors::SafeTensors::deserialize(&exported).expect("exported"),
    );
    let mut names: Vec<String> = a.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let mut exported_names: Vec<String> = b.names().into_iter().map(str::to_owned).collect();
    exported_names.sort();
    assert_eq!(names, exported_names);
    for name in &names {
        let (x, y) = (a.tensor(name).expect("a"), b.tensor(name).expect("b"));
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert!(x.data() == y.data(), "{name}: bytes differ");
    }
    names.len()
}

/// A patch-embedding gradient from duet's conv layout `[d, c, p, p]` to SigLIP 2's Linear
/// `[d, p·p·c]` (patches flattened (y, x, channel)).
fn conv_to_linear(values: &[f32], d: usize, c: usize, p: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    for row in 0..d {
        for y in 0..p {
            for x in 0..p {
                for ch in 0..c {
                    out.push(values[((row * c + ch) * p + y) * p + x]);
                }
            }
        }
    }
    out
}

/// Compared relative to `max(|ref|, 1e-2 · max|ref|)`, as the CLIP parity tests.
fn close(what: &str, actual: &[f32], expected: &[f32], rel: f32) {
    let floor = 1e-2 * expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close(what, actual, expected, rel, floor);
}

#[test]
fn siglip_forward_matches_transformers() {
    forward_matches(1);
}

#[test]
fn siglip2_forward_matches_transformers() {
    forward_matches(2);
}

fn forward_matches(version: u8) {
    let device = Device::flex();
    let loaded = load_model(&fixture(version).join("hf"), &device).expect("fixture loads");
    assert_eq!(loaded.format, ModelFormat::HuggingFace);
    let (model, config) = (loaded.model, loaded.config);
    assert_eq!(config.embed_dim, 48);
    assert_eq!(config.vision.image_mean, [0.5; 3]);
    // SigLIP 2's 16 positions are a 4x4 grid of 8 px patches: 32 px, as SigLIP's fixture.
    assert_eq!(config.vision.image_size, 32);
    assert_eq!(config.vision.linear_patches, version == 2);
    let r = reference(version);
    let pixels = r.tensor::<4>("pixel_values", &device);
    let ids = r.ids(&device);

    // HF's vision last_hidden_state is after post_layernorm, on every token.
    let hidden = model
        .vision
        .ln_post
        .forward(model.vision.forward_hidden(pixels.clone()));
    close(
        "vision_last_hidden",
        &values(hidden),
        &r.f32("vision_last_hidden").1,
        REL,
    );
    let text_hidden = model.text.forward_hidden(ids.clone());
    close(
        "text_last_hidden",
        &values(text_hidden),
        &r.f32("text_last_hidden").1,
        REL,
    );

    let image = model.encode_image(pixels);
    let text = model.encode_text(ids);
    close(
        "image_features",
        &values(image.clone()),
        &r.f32("image_features").1,
        REL,
    );
    close(
        "text_features",
        &values(text.clone()),
        &r.f32("text_features").1,
        REL,
    );
    let logits = model.logits(image, text);
    close(
        "logits_per_image",
        &values(logits),
        &r.f32("logits_per_image").1,
        REL,
    );
}

#[test]
fn siglip_loss_and_gradients_match_transformers() {
    loss_and_gradients_match(1);
}

#[test]
fn siglip2_loss_and_gradients_match_transformers() {
    loss_and_gradients_match(2);
}

fn loss_and_gradients_match(version: u8) {
    let device = Device::flex().autodiff();
    let model = load_model(&fixture(version).join("hf"), &device)
        .expect("fixture loads")
        .model;
    let r = reference(version);
    let image = model.encode_image(r.tensor::<4>("pixel_values", &device));
    let text = model.encode_text(r.ids(&device));
    let bias = model
        .logit_bias
        .as_ref()
        .expect("SigLIP has a logit bias")
        .val();
    let loss = siglip_loss(
        ContrastiveBatch::new(image, text),
        model.logit_scale.val(),
        bias,
    )
    .expect("shapes");
    close(
        "loss_sigmoid",
        &values(loss.clone()),
        &r.f32("loss_sigmoid").1,
        REL,
    );
    let grads = loss.backward();
    let grad = |t: Tensor<2>| values(t.grad(&grads).expect("takes part"));
    let transposed = |t: Tensor<2>| {
        let g = t.grad(&grads).expect("takes part");
        values(g.transpose())
    };
    let v = &model.vision;
    let head = v.attn_pool.as_ref().expect("SigLIP pools with its head");
    let checks: Vec<(&str, Vec<f32>)> = vec![
        (
            "logit_scale",
            values(model.logit_scale.val().grad(&grads).expect("scale")),
        ),
        (
            "logit_bias",
            values(
                model
                    .logit_bias
                    .as_ref()
                    .expect("bias")
                    .val()
                    .grad(&grads)
                    .expect("bias"),
            ),
        ),
        ("vision_model.embeddings.patch_embedding.weight", {
            let g = values(v.patch_embed.weight.val().grad(&grads).expect("patch"));
            match version {
                2 => conv_to_linear(&g, 48, 3, 8),
                _ => g,
            }
        }),
        (
            "vision_model.embeddings.patch_embedding.bias",
            values(
                v.patch_embed
                    .bias
                    .as_ref()
                    .expect("bias")
                    .val()
                    .grad(&grads)
                    .expect("bias"),
            ),
        ),
        (
            "vision_model.embeddings.position_embedding.weight",
            grad(v.position_embedding.val()),
        ),
        (
            "vision_model.encoder.layers.1.mlp.fc2.weight",
            transposed(v.blocks[1].mlp.fc2.weight.val()),
        ),
        (
            "vision_model.post_layernorm.weight",
            values(v.ln_post.gamma.val().grad(&grads).expect("ln")),
        ),
        (
            "vision_model.head.probe",
            values(head.probe.val().grad(&grads).expect("probe")),
        ),
        (
            "vision_model.head.attention.out_proj.weight",
            transposed(head.attn.out.weight.val()),
        ),
        (
            "vision_model.head.layernorm.weight",
            values(head.ln.gamma.val().grad(&grads).expect("ln")),
        ),
        (
            "vision_model.head.mlp.fc1.weight",
            transposed(head.mlp.fc1.weight.val()),
        ),
        (
            "text_model.embeddings.position_embedding.weight",
            grad(model.text.position_embedding.val()),
        ),
        (
            "text_model.encoder.layers.0.self_attn.q_proj.weight",
            transposed(model.text.blocks[0].attn.q.weight.val()),
        ),
        (
            "text_model.final_layer_norm.bias",
            values(
                model
                    .text
                    .ln_final
                    .beta
                    .as_ref()
                    .expect("beta")
                    .val()
                    .grad(&grads)
                    .expect("ln"),
            ),
        ),
        (
            "text_model.head.weight",
            transposed(model.text.proj.weight.val()),
        ),
        (
            "text_model.head.bias",
            values(
                model
                    .text
                    .proj
                    .bias
                    .as_ref()
                    .expect("bias")
                    .val()
                    .grad(&grads)
                    .expect("bias"),
            ),
        ),
    ];
    for (key, actual) in checks {
        close(
            &format!("grad.{key}"),
            &actual,
            &r.f32(&format!("grad.{key}")).1,
            GRAD_REL,
        );
    }
    // The fused in_proj of the head: q, k, v weights stacked as torch's [3d, d] rows.
    let fused: Vec<f32> = [&head.attn.q, &head.attn.k, &head.attn.v]
        .iter()
        .flat_map(|l| transposed(l.weight.val()))
        .collect();
    close(
        "grad.vision_model.head.attention.in_proj_weight",
        &fused,
        &r.f32("grad.vision_model.head.attention.in_proj_weight").1,
        GRAD_REL,
    );
}

#[test]
fn siglip_parameter_count_and_a_fresh_init_match_the_fixture() {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += param.lazy_shape().num_elements();
        }
    }
    let device = Device::flex();
    let loaded = load_model(&siglip_fixtures().join("hf"), &device).expect("fixture loads");
    let mut count = Count(0);
    loaded.model.visit(&mut count);
    // transformers counts 88 tensors; their sizes sum to what ClipConfig::num_params says,
    // and a random init of the same config has the same parameters.
    assert_eq!(loaded.config.num_params(), count.0);
    let mut fresh = Count(0);
    loaded.config.init(&device).expect("init").visit(&mut fresh);
    assert_eq!(fresh.0, count.0);
    // SigLIP's training defaults: logit_scale ln 10, logit_bias -10.
    assert!((loaded.config.logit_scale_init - 10f64.ln()).abs() < 1e-12);
    assert_eq!(loaded.config.logit_bias_init, Some(-10.0));
}

#[test]
fn hf_to_duet_to_hf_gives_the_same_tensors_and_config() {
    round_trip(
        1,
        &["tokenizer.json", "tokenizer_config.json", "spiece.model"],
    );
}

#[test]
fn siglip2_hf_to_duet_to_hf_gives_the_same_tensors_and_config() {
    round_trip(2, &["tokenizer.json", "tokenizer_config.json"]);
}

fn round_trip(version: u8, tokenizer_files: &[&str]) {
    // Every tensor of the exported model.safetensors equals the fixture's byte for byte (the
    // head's q/k/v rows fused back into in_proj, the Linear weights transposed back, SigLIP 2's
    // patch Linear permuted back), and the exported directory reads back as the same config.
    let device = Device::flex();
    let loaded = load_model(&fixture(version).join("hf"), &device).expect("fixture loads");
    let dir = tempfile::tempdir().expect("tempdir");
    duet_model::save_hf(&loaded.model, &loaded.config, dir.path()).expect("exports");
    let tensors = assert_same_tensors(
        &fixture(version).join("hf/model.safetensors"),
        &dir.path().join("model.safetensors"),
    );
    assert_eq!(tensors, 88);
    let (config, format) = duet_model::read_config(dir.path()).expect("reads back");
    assert_eq!(format, ModelFormat::HuggingFace);
    // The config includes the tokenizer: pad id, casing and every tokenizer file's bytes.
    assert_eq!(config, loaded.config);
    // The tokenizer files travel with the weights, byte for byte.
    for name in tokenizer_files {
        let want = std::fs::read(fixture(version).join("hf").join(name)).expect("fixture");
        let got = std::fs::read(dir.path().join(name)).expect("exported");
        assert!(want == got, "{name} differs");
    }
}

#[test]
fn the_tokenizer_is_read_from_the_directory_and_kept_through_duets_layout() {
    use duet_model::TokenizerSpec;
    let device = Device::flex();
    let loaded = load_model(&siglip_fixtures().join("hf"), &device).expect("fixture loads");
    let TokenizerSpec::File(file) = &loaded.config.text.tokenizer else {
        panic!(
            "a SigLIP model reads its own tokenizer: {:?}",
            loaded.config.text.tokenizer
        );
    };
    // tokenizer_config.json: pad_token "</s>", id 1 in tokenizer.json; do_lower_case = true,
    // but the file's normaliser lower-cases already, so duet adds nothing; right padding.
    assert_eq!(
        (file.pad_id, file.lowercase, file.pad_left),
        (1, false, false)
    );
    loaded.config.check_tokenizer().expect("usable");

    // duet's own layout (checkpoints) keeps the settled spec and the files.
    let dir = tempfile::tempdir().expect("tempdir");
    duet_model::save_duet(&loaded.model, &loaded.config, dir.path()).expect("saves");
    let (config, format) = duet_model::read_config(dir.path()).expect("reads back");
    assert_eq!(format, ModelFormat::Duet);
    assert_eq!(config, loaded.config);

    // Without tokenizer.json the model still loads (export needs no tokenizer), but is refused
    // where captions are tokenized, with the way to make one.
    std::fs::remove_file(dir.path().join("tokenizer.json")).expect("remove");
    let (config, _) = duet_model::read_config(dir.path()).expect("reads");
    let err = config.check_tokenizer().expect_err("no tokenizer.json");
    assert!(
        err.to_string().contains("scripts/siglip_tokenizer.py"),
        "{err}"
    );
}

#[test]
fn siglip2_reads_its_gemma_style_tokenizer_and_refuses_naflex() {
    use duet_model::TokenizerSpec;
    let (config, _) = duet_model::read_config(&fixture(2).join("hf")).expect("reads");
    let TokenizerSpec::File(file) = &config.text.tokenizer else {
        panic!("SigLIP 2 reads its own tokenizer");
    };
    // tokenizer_config.json: pad_token "<pad>" = 0, Siglip2Tokenizer (lower-cases, already in
    // the file's normaliser; pads on the left, as its class says); captions end with <eos> = 1.
    assert_eq!(
        (file.pad_id, file.lowercase, file.pad_left),
        (0, false, true)
    );
    assert_eq!(config.text.eot_token_id, 1);

    // A preprocessor asking for another patch budget is NaFlex: refused, naming the file.
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture(2).join("hf")).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        r#"{"image_processor_type": "Siglip2ImageProcessor", "patch_size": 8,
            "max_num_patches": 64, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#,
    )
    .expect("write");
    let err = duet_model::read_config(dir.path()).expect_err("NaFlex");
    let message = err.to_string();
    assert!(
        message.contains("preprocessor_config.json") && message.contains("NaFlex"),
        "{message}"
    );
}

/// OpenCLIP's SigLIP (a timm trunk beside a `text.*` tower), against open_clip on the fixture of
/// `scripts/make_openclip_siglip_fixtures.py`: embeddings, logits and the sigmoid loss within
/// 1e-4, gradients within 1e-3, in OpenCLIP's own layouts (fused qkv / kv / in_proj rows,
/// `pos_embed` [1, n, d], Linear weights [out, in]).
#[test]
fn openclip_siglip_matches_open_clip() {
    let device = Device::flex().autodiff();
    let loaded = load_model(&siglip_fixtures().join("openclip"), &device).expect("fixture loads");
    assert_eq!(loaded.format, ModelFormat::OpenClip);
    let (model, config) = (loaded.model, loaded.config);
    assert_eq!(
        config.vision.timm_model.as_deref(),
        Some("vit_duettiny_patch8_siglip_32")
    );
    assert_eq!(config.vision.resize, duet_model::ImageResize::Squash);
    let r = Reference::open_at(&siglip_fixtures().join("reference-openclip.safetensors"));
    let image = model.encode_image(r.tensor::<4>("pixel_values", &device));
    let text = model.encode_text(r.ids(&device));
    let (image_n, text_n) = (
        duet_model::l2_normalize(image.clone()),
        duet_model::l2_normalize(text.clone()),
    );
    close(
        "image_embeds",
        &values(image_n),
        &r.f32("image_embeds").1,
        REL,
    );
    close("text_embeds", &values(text_n), &r.f32("text_embeds").1, REL);
    let logits = model.logits(image.clone(), text.clone());
    close(
        "logits_per_image",
        &values(logits),
        &r.f32("logits_per_image").1,
        REL,
    );
    let bias = model.logit_bias.as_ref().expect("bias").val();
    let loss = siglip_loss(
        ContrastiveBatch::new(image, text),
        model.logit_scale.val(),
        bias,
    )
    .expect("shapes");
    close(
        "loss_sigmoid",
        &values(loss.clone()),
        &r.f32("loss_sigmoid").1,
        REL,
    );
    let grads = loss.backward();
    let plain = |t: Tensor<2>| values(t.grad(&grads).expect("takes part"));
    let linear = |t: Tensor<2>| values(t.grad(&grads).expect("takes part").transpose());
    let (v, tx) = (&model.vision, &model.text);
    let head = v.attn_pool.as_ref().expect("head");
    let b1 = &v.blocks[1].attn;
    let t0 = &tx.blocks[0].attn;
    let fused = |parts: Vec<Vec<f32>>| parts.concat();
    let checks: Vec<(&str, Vec<f32>)> = vec![
        (
            "logit_scale",
            values(model.logit_scale.val().grad(&grads).expect("scale")),
        ),
        (
            "logit_bias",
            values(
                model
                    .logit_bias
                    .as_ref()
                    .expect("bias")
                    .val()
                    .grad(&grads)
                    .expect("bias"),
            ),
        ),
        (
            "visual.trunk.patch_embed.proj.weight",
            values(v.patch_embed.weight.val().grad(&grads).expect("patch")),
        ),
        ("visual.trunk.pos_embed", plain(v.position_embedding.val())),
        (
            "visual.trunk.blocks.1.attn.qkv.weight",
            fused(vec![
                linear(b1.q.weight.val()),
                linear(b1.k.weight.val()),
                linear(b1.v.weight.val()),
            ]),
        ),
        (
            "visual.trunk.blocks.0.mlp.fc2.weight",
            linear(v.blocks[0].mlp.fc2.weight.val()),
        ),
        (
            "visual.trunk.norm.weight",
            values(v.ln_post.gamma.val().grad(&grads).expect("ln")),
        ),
        (
            "visual.trunk.attn_pool.latent",
            values(head.probe.val().grad(&grads).expect("probe")),
        ),
        (
            "visual.trunk.attn_pool.q.weight",
            linear(head.attn.q.weight.val()),
        ),
        (
            "visual.trunk.attn_pool.kv.weight",
            fused(vec![
                linear(head.attn.k.weight.val()),
                linear(head.attn.v.weight.val()),
            ]),
        ),
        (
            "visual.trunk.attn_pool.kv.bias",
            fused(vec![
                values(
                    head.attn
                        .k
                        .bias
                        .as_ref()
                        .expect("b")
                        .val()
                        .grad(&grads)
                        .expect("k"),
                ),
                values(
                    head.attn
                        .v
                        .bias
                        .as_ref()
                        .expect("b")
                        .val()
                        .grad(&grads)
                        .expect("v"),
                ),
            ]),
        ),
        (
            "visual.trunk.attn_pool.mlp.fc1.weight",
            linear(head.mlp.fc1.weight.val()),
        ),
        (
            "text.positional_embedding",
            plain(tx.position_embedding.val()),
        ),
        (
            "text.transformer.resblocks.0.attn.in_proj_weight",
            fused(vec![
                linear(t0.q.weight.val()),
                linear(t0.k.weight.val()),
                linear(t0.v.weight.val()),
            ]),
        ),
        (
            "text.ln_final.bias",
            values(
                tx.ln_final
                    .beta
                    .as_ref()
                    .expect("beta")
                    .val()
                    .grad(&grads)
                    .expect("ln"),
            ),
        ),
        ("text.text_projection.weight", linear(tx.proj.weight.val())),
        (
            "text.text_projection.bias",
            values(
                tx.proj
                    .bias
                    .as_ref()
                    .expect("bias")
                    .val()
                    .grad(&grads)
                    .expect("bias"),
            ),
        ),
    ];
    for (key, actual) in checks {
        close(
            &format!("grad.{key}"),
            &actual,
            &r.f32(&format!("grad.{key}")).1,
            GRAD_REL,
        );
    }
}

#[test]
fn openclip_to_duet_to_openclip_gives_the_same_tensors_and_config() {
    let device = Device::flex();
    let dir = siglip_fixtures().join("openclip");
    let loaded = load_model(&dir, &device).expect("fixture loads");
    let out = tempfile::tempdir().expect("tempdir");
    duet_model::save_openclip(&loaded.model, &loaded.config, out.path()).expect("exports");
    let tensors = assert_same_tensors(
        &dir.join("open_clip_model.safetensors"),
        &out.path().join("open_clip_model.safetensors"),
    );
    // open_clip's state dict: 2 timm blocks and 2 text blocks of 12 tensors (6 weight/bias
    // pairs each) = 48; the trunk's patch (2), pos_embed (1), norm (2) and attention pool
    // (latent 1, q 2, kv 2, proj 2, norm 2, mlp 4) = 18; the text tower's embeddings (2),
    // ln_final (2) and projection (2) = 6; logit_scale and logit_bias = 2: 74.
    assert_eq!(tensors, 74);
    let (config, format) = duet_model::read_config(out.path()).expect("reads back");
    assert_eq!(format, ModelFormat::OpenClip);
    assert_eq!(config, loaded.config);
}

#[test]
fn siglip_exports_to_openclip_only_with_a_timm_trunk_of_its_shape() {
    // The HF fixture's image tower (width 48, 2 blocks) is no timm SigLIP trunk: refused, and
    // the message says what to do.
    let device = Device::flex();
    let loaded = load_model(&fixture(1).join("hf"), &device).expect("fixture loads");
    let out = tempfile::tempdir().expect("tempdir");
    let err = duet_model::save_openclip(&loaded.model, &loaded.config, out.path())
        .expect_err("no such trunk");
    assert!(err.to_string().contains("--format hf"), "{err}");
    // A tower of vit_base_patch16_siglip_224's shape (eps 1e-6) is named after it, with exact
    // GELU as timm's, and with HF SigLIP's tanh GELU too (timm's activation then runs it in
    // OpenCLIP, as OpenCLIP's own conversions of google/siglip-base-patch16-224 do).
    for activation in [
        duet_model::Activation::Gelu,
        duet_model::Activation::GeluTanh,
    ] {
        let mut base = loaded.config.clone();
        let v = &mut base.vision;
        (
            v.width,
            v.layers,
            v.heads,
            v.mlp_dim,
            v.patch_size,
            v.image_size,
        ) = (768, 12, 12, 3072, 16, 224);
        v.activation = activation;
        base.embed_dim = 768;
        let json = duet_model::openclip::to_openclip_json(&base).expect("a timm trunk fits");
        assert_eq!(
            json["model_cfg"]["vision_cfg"]["timm_model_name"], "vit_base_patch16_siglip_224",
            "{activation:?}"
        );
    }
}
