"""Generate the tiny-SigLIP parity fixtures in tests/fixtures/siglip-tiny/ (issue 16).

Command (from the repository root; CPU only, a few seconds, no network; bitwise reproducible):

    python3 scripts/make_siglip_fixtures.py

Needs torch, transformers, safetensors, pillow (PyPI). The script prints the versions it ran
with and writes them to tests/fixtures/siglip-tiny/VERSIONS.txt.

One random-init `transformers.SiglipModel` (hf/, saved with save_pretrained):

    vision  image 32, patch 8 (16 patches, no class token), width 48, 2 layers, 4 heads of 12,
            MLP 192, gelu_pytorch_tanh, post-LayerNorm, attention-pooling head (probe, fused
            in_proj MultiheadAttention, LayerNorm, MLP)
    text    16 positions, vocab 1000, width 32, 2 layers, 2 heads of 16, MLP 128, no causal
            mask, pooled at the last position, head Linear(32 -> 48) with bias
    embed   48 (the vision width: SigLIP has no vision projection)

Every weight is redrawn after construction so a wrong mapping shows: matrices N(0, 1/fan_in),
embeddings and the probe N(0, 0.5^2), LayerNorm gains 1 + 0.1 N(0, 1), biases 0.1 N(0, 1),
raw logit_scale 2.3, logit_bias -3 (not -10, so the sigmoids are not saturated).

Inputs: four photos of datasets/photos (chelsea, coffee, horse, rocket) through
`SiglipImageProcessorPil` at 32 px (resize without crop, bicubic, rescale 1/255, mean = std = 0.5;
the PIL backend, named so: transformers 5 picks its torchvision backend when torchvision is
installed, which rounds some pixels one level differently),
`pixel_values`; four id rows of 16 (random ids in [3, 1000), one row of the full 16, the others
ended by the eos/pad id 1 and padded with it, as the SigLIP tokenizer pads to max_length).

reference-hf.safetensors, float32, eval mode:

    input_ids           i64 [4, 16]
    pixel_values        f32 [4, 3, 32, 32]
    vision_last_hidden  f32 [4, 16, 48]  after post_layernorm (vision_model last_hidden_state)
    text_last_hidden    f32 [4, 16, 32]  after final_layer_norm (text_model last_hidden_state)
    image_features      f32 [4, 48]      the pooled head output (get_image_features), not normalised
    text_features       f32 [4, 48]      the text head output (get_text_features), not normalised
    image_embeds        f32 [4, 48]      L2-normalised
    text_embeds         f32 [4, 48]
    logit_scale         f32 [1]          raw (2.3)
    logit_bias          f32 [1]          (-3)
    logits_per_image    f32 [4, 4]       exp(logit_scale) * image_embeds @ text_embeds.T + logit_bias
    loss_sigmoid        f32 [1]          SiglipModel(return_loss=True).loss: -sum_j logsigmoid(z_ij
                                         logits_ij) averaged over the 4 rows, z = 2 eye - 1
    grad.<hf key>       gradients of loss_sigmoid, HF keys and shapes, for the keys in GRAD_KEYS
    caption_ids         i64 [2, 16]      CAPTIONS through the fixture's SiglipTokenizer (hf/, made
                                         first by scripts/make_siglip_tokenizer_fixture.py),
                                         padding="max_length", max_length 16, truncation
    caption_text_embeds f32 [2, 48]      their L2-normalised text embeddings (text end to end)

The script then reloads the model with SiglipModel.from_pretrained and asserts the outputs
match.
"""

import pathlib
import platform

import numpy as np
import PIL
import safetensors
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "siglip-tiny"
PHOTOS = ["chelsea.png", "coffee.png", "horse.png", "rocket.jpg"]
CAPTIONS = ["A photo of Chelsea the cat.", "café au lait, a rocket and a horse; in one caption!"]
GRAD_KEYS = [
    "logit_scale",
    "logit_bias",
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.patch_embedding.bias",
    "vision_model.embeddings.position_embedding.weight",
    "vision_model.encoder.layers.1.mlp.fc2.weight",
    "vision_model.post_layernorm.weight",
    "vision_model.head.probe",
    "vision_model.head.attention.in_proj_weight",
    "vision_model.head.attention.in_proj_bias",
    "vision_model.head.attention.out_proj.weight",
    "vision_model.head.layernorm.weight",
    "vision_model.head.mlp.fc1.weight",
    "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.weight",
    "text_model.final_layer_norm.bias",
    "text_model.head.weight",
    "text_model.head.bias",
]


def config():
    return SiglipConfig(
        text_config=dict(
            vocab_size=1000,
            hidden_size=32,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            projection_size=48,
            pad_token_id=1,
            eos_token_id=1,
            bos_token_id=None,
        ),
        vision_config=dict(
            hidden_size=48,
            intermediate_size=192,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
    )


@torch.no_grad()
def randomize(model, generator):
    for name, p in model.named_parameters():
        if name == "logit_scale":
            p.fill_(2.3)
        elif name == "logit_bias":
            p.fill_(-3.0)
        elif "layer_norm" in name or "layernorm" in name:
            if name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=generator))
        elif "embedding.weight" in name and "patch" not in name or name.endswith("probe"):
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
        else:
            fan_in = p[0].numel() if p.dim() > 1 else p.shape[0]
            p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)


def inputs(generator):
    processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images = [Image.open(ROOT / "datasets" / "photos" / name).convert("RGB") for name in PHOTOS]
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].float()
    ids = torch.full((4, 16), 1, dtype=torch.long)
    for row, length in enumerate([16, 9, 5, 12]):
        ids[row, :length] = torch.randint(3, 1000, (length,), generator=generator)
        if length < 16:
            ids[row, length - 1] = 1  # eos, then padding with the same id
    return pixel_values, ids


def run(model, pixel_values, ids, vision_kwargs=None, grad_keys=GRAD_KEYS):
    """The reference tensors; `vision_kwargs` is what the image tower takes (SigLIP 2:
    patchified pixels with their grid), `pixel_values` by default."""
    vision_kwargs = vision_kwargs or dict(pixel_values=pixel_values)
    model.zero_grad()
    out = model(input_ids=ids, return_loss=True, **vision_kwargs)
    vision = model.vision_model(**vision_kwargs)
    text = model.text_model(input_ids=ids)
    out.loss.backward()
    params = dict(model.named_parameters())
    ref = {
        "input_ids": ids,
        "pixel_values": pixel_values,
        "vision_last_hidden": vision.last_hidden_state,
        "text_last_hidden": text.last_hidden_state,
        "image_features": vision.pooler_output,
        "text_features": text.pooler_output,
        "image_embeds": out.image_embeds,
        "text_embeds": out.text_embeds,
        "logit_scale": params["logit_scale"].detach().reshape(1),
        "logit_bias": params["logit_bias"].detach().reshape(1),
        "logits_per_image": out.logits_per_image,
        "loss_sigmoid": out.loss.reshape(1),
    }
    for key in grad_keys:
        ref[f"grad.{key}"] = params[key].grad
    return {k: v.detach().contiguous().clone() for k, v in ref.items()}


def caption_reference(model, tokenizer):
    """CAPTIONS through `tokenizer` (max_length 16) and their normalised text embeddings."""
    caption_ids = tokenizer(CAPTIONS, padding="max_length", max_length=16, truncation=True,
                            return_tensors="pt")["input_ids"]
    with torch.no_grad():
        features = model.get_text_features(input_ids=caption_ids)
        features = getattr(features, "pooler_output", features)
    return {
        "caption_ids": caption_ids.contiguous(),
        "caption_text_embeds": torch.nn.functional.normalize(features, dim=-1).contiguous(),
    }


def save_and_check(model, out, ref, reload, rerun, more_versions=None):
    """Saves `model` and `ref` under `out`, reloads the model with `reload(dir)` and asserts
    that `rerun(reloaded)` reproduces every tensor; writes VERSIONS.txt (`more_versions` after
    transformers')."""
    hf = out / "hf"
    model.save_pretrained(hf)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(hf)
    save_file(ref, out / "reference-hf.safetensors")
    check = rerun(reload(hf).eval())
    for key, value in check.items():
        assert torch.equal(value, ref[key]), key
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **(more_versions or {}),
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }
    (out / "VERSIONS.txt").write_text("".join(f"{k} {v}\n" for k, v in versions.items()))
    print(versions)
    print({k: tuple(v.shape) for k, v in ref.items()})


def main():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(16)
    model = SiglipModel(config()).eval()
    randomize(model, generator)
    pixel_values, ids = inputs(generator)
    ref = run(model, pixel_values, ids)
    # The loss by hand (big_vision's sigmoid loss), as duet computes it.
    logits = ref["logits_per_image"].T.double()
    z = 2 * torch.eye(4, dtype=torch.float64) - 1
    by_hand = -torch.nn.functional.logsigmoid(z * logits).sum(-1).mean()
    assert abs(by_hand.item() - ref["loss_sigmoid"].item()) < 1e-5, (by_hand, ref["loss_sigmoid"])

    ref.update(caption_reference(model, SiglipTokenizer.from_pretrained(OUT / "hf")))
    save_and_check(model, OUT, ref, SiglipModel.from_pretrained,
                   lambda again: run(again, pixel_values, ids))


if __name__ == "__main__":
    main()
