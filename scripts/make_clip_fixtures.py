"""Generate the tiny-CLIP parity fixtures in tests/fixtures/clip-tiny/.

Command (from the repository root; CPU only, about 10 s, no network; bitwise reproducible):

    python3 scripts/make_clip_fixtures.py

Made with: Python 3.11.7, torch 2.15.0+cu132, transformers 5.23.0, open_clip 3.3.0 (open-clip-torch),
safetensors 0.8.0, tokenizers 0.23.3, numpy 2.4.6, pillow 13.0.0, scikit-image 0.26.0. The script
prints the versions it ran with and writes them to tests/fixtures/clip-tiny/VERSIONS.txt.

Two random-init CLIP models of the same shape, one per weight format:

    vision  image 32, patch 8 (16 patches + class token = 17 tokens), width 48, 2 layers,
            4 heads of 12, MLP 192
    text    context 77, vocab 49408, width 32, 2 layers, 2 heads of 16, MLP 128
    embed   24

  hf/        transformers.CLIPModel, exact GELU ("gelu"), saved with save_pretrained
             (config.json + model.safetensors).
  openclip/  open_clip.model.CLIP with quick_gelu=True (QuickGELU, x * sigmoid(1.702 x)),
             open_clip_config.json written by open_clip's own save_config_for_hf, weights
             open_clip_model.safetensors = model.state_dict().

Every weight is redrawn after construction (`randomize`) so that a wrong key mapping, a
transposed matrix, a swapped LayerNorm or a wrong activation changes the outputs visibly:
matrices N(0, 1/fan_in), embeddings N(0, 0.5^2), LayerNorm gains 1 + 0.1 N(0, 1), every bias
0.1 N(0, 1), raw logit_scale 2.3 (not the ln(1/0.07) = 2.6592 init).

Inputs, shared by both models: four skimage photos (chelsea, astronaut, coffee, rocket)
through OpenCLIP's eval transform at 32 px (shortest side -> 32, PIL bicubic, centre crop,
OpenAI mean/std), stored as `pixel_values`; four captions tokenised with the committed CLIP
BPE (tokenizer.json) to 77 ids. HF ids pad with 49407 (<|endoftext|>), OpenCLIP ids pad with 0;
otherwise the ids are identical, and equal open_clip.tokenize (asserted). The long caption is
truncated to <|startoftext|> + 75 tokens + <|endoftext|> by both. No attention mask is passed to
either text tower: both use the causal mask only, and both pool at the first 49407.

Reference files (reference-hf.safetensors, reference-openclip.safetensors), float32, eval mode:

    input_ids            i64 [4, 77]
    pixel_values         f32 [4, 3, 32, 32]
    vision_last_hidden   f32 [4, 17, 48]  output of the last vision block, BEFORE the post
                         LayerNorm (HF vision_model(...).last_hidden_state; OpenCLIP the output
                         of model.visual.transformer, i.e. the input of visual.ln_post). The
                         pre-LayerNorm (pre_layrnorm / ln_pre) has been applied before block 0.
    text_last_hidden     f32 [4, 77, 32]  all 77 positions AFTER the final LayerNorm (HF
                         text_model(...).last_hidden_state; OpenCLIP the output of ln_final).
    image_features       f32 [4, 24]      projected, not normalised
    text_features        f32 [4, 24]      projected, not normalised
    image_embeds         f32 [4, 24]      L2-normalised image_features
    text_embeds          f32 [4, 24]      L2-normalised text_features
    logit_scale          f32 [1]          the raw parameter (2.3); the scale used is exp of it
    logits_per_image     f32 [4, 4]       exp(logit_scale) * image_embeds @ text_embeds.T
    loss_infonce         f32 [1]          (CE(logits_per_image, arange) + CE(logits_per_image.T,
                                          arange)) / 2 (equals open_clip.loss.ClipLoss, asserted)
    loss_siglip          f32 [1]          open_clip.loss.SigLipLoss()(image_embeds, text_embeds,
                                          logit_scale=exp(logit_scale), logit_bias=-10.0), i.e.
                                          -sum(logsigmoid(z_ij * (exp(2.3) * cos_ij - 10))) / 4
                                          with z = +1 on the diagonal and -1 off it
    siglip_logit_bias    f32 [1]          -10.0
    grad.<source key>    gradients of loss_infonce (only) with the source format's key and shape
    grad_rows.token_embedding  f32 [n, 32]  rows of the token-embedding gradient for the ids in
    grad_rows.token_ids        i64 [n]      the sorted unique ids of input_ids (the pad id
                                            included); every other row of the [49408, 32]
                                            gradient is exactly zero (asserted)

Gradient keys: HF logit_scale, vision_model.encoder.layers.1.mlp.fc2.weight,
text_model.encoder.layers.0.self_attn.q_proj.weight, vision_model.embeddings.patch_embedding.weight,
visual_projection.weight, text_projection.weight, vision_model.embeddings.class_embedding,
vision_model.pre_layrnorm.weight. OpenCLIP logit_scale, visual.transformer.resblocks.1.mlp.c_proj.weight,
transformer.resblocks.0.attn.in_proj_weight (q, k, v stacked, whole), visual.conv1.weight,
visual.proj, text_projection, visual.class_embedding, visual.ln_pre.weight. grad.logit_scale is
0-dim, like the parameter.

The script then reloads both models from the written files (CLIPModel.from_pretrained and
open_clip.create_model("local-dir:...")), recomputes everything and asserts it matches.
"""

import argparse
import math
import platform
import sys
from pathlib import Path

import numpy as np
import open_clip
import PIL
import safetensors
import safetensors.torch
import tokenizers
import torch
import torch.nn.functional as F
import transformers
from open_clip.push_to_hf_hub import save_config_for_hf
from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_JSON = Path("/work/shared/assets/clip-bpe/tokenizer.json")
OUT = REPO / "tests" / "fixtures" / "clip-tiny"

SOT, EOT = 49406, 49407
LOGIT_SCALE = 2.3
SIGLIP_LOGIT_BIAS = -10.0

IMAGES = ["chelsea", "astronaut", "coffee", "rocket"]
CAPTIONS = [
    "a photo of a cat",
    # More than 75 BPE tokens, so truncation decides which ids survive.
    "An astronaut in a white spacesuit poses in front of the American flag during a NASA "
    "mission; the photograph, taken inside a brightly lit training facility, shows her smiling "
    "at the camera while holding a helmet under one arm, with patches, zippers, hoses and "
    "buttons visible on the suit, and a large model of the space shuttle in the background. "
    "A second sentence like this one pushes the caption past the limit of seventy-seven tokens.",
    "café au lait ☕",
    "Chelsea the cat, a rocket, and a cup of coffee!",
]

VISION = dict(image_size=32, patch_size=8, width=48, layers=2, head_width=12, mlp_ratio=4.0)
TEXT = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)
EMBED_DIM = 24


def versions() -> dict:
    import skimage

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "open_clip": open_clip.__version__,
        "safetensors": safetensors.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-image": skimage.__version__,
    }


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def hf_config() -> transformers.CLIPConfig:
    return transformers.CLIPConfig(
        text_config=dict(
            hidden_size=TEXT["width"],
            intermediate_size=128,
            num_attention_heads=TEXT["heads"],
            num_hidden_layers=TEXT["layers"],
            max_position_embeddings=TEXT["context_length"],
            vocab_size=TEXT["vocab_size"],
            hidden_act="gelu",
            bos_token_id=SOT,
            eos_token_id=EOT,
            pad_token_id=EOT,
            projection_dim=EMBED_DIM,  # unused by CLIPModel; kept equal to the top level as in real exports
        ),
        vision_config=dict(
            hidden_size=VISION["width"],
            intermediate_size=192,
            num_attention_heads=VISION["width"] // VISION["head_width"],
            num_hidden_layers=VISION["layers"],
            image_size=VISION["image_size"],
            patch_size=VISION["patch_size"],
            hidden_act="gelu",
            projection_dim=EMBED_DIM,
        ),
        projection_dim=EMBED_DIM,
        logit_scale_init_value=math.log(1 / 0.07),
    )


def openclip_model_cfg() -> dict:
    return {"embed_dim": EMBED_DIM, "quick_gelu": True, "vision_cfg": dict(VISION), "text_cfg": dict(TEXT)}


def openclip_preprocess_cfg() -> dict:
    # The defaults OpenCLIP's factory attaches to a model (OpenAI mean/std, bicubic, shortest).
    pp = PreprocessCfg(size=VISION["image_size"])
    return {k: getattr(pp, k) for k in ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")}


# Bare nn.Parameters (not owned by a Linear/Conv/Embedding/LayerNorm), by their last name part.
EMBEDDING_PARAMS = {"class_embedding", "positional_embedding"}
PROJECTION_PARAMS = {"proj", "text_projection"}  # OpenCLIP stores [in, out], used as x @ proj


@torch.no_grad()
def randomize(model: nn.Module) -> None:
    """Redraw every parameter so that each one visibly shapes the outputs (see module doc)."""
    done = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(module, nn.LayerNorm):
                p.copy_(1 + 0.1 * torch.randn_like(p) if pname == "weight" else 0.1 * torch.randn_like(p))
            elif pname == "logit_scale":
                p.fill_(LOGIT_SCALE)
            elif pname.endswith("bias"):  # Linear, Conv, MultiheadAttention.in_proj_bias
                p.copy_(0.1 * torch.randn_like(p))
            elif isinstance(module, nn.Embedding) or pname in EMBEDDING_PARAMS:
                p.copy_(0.5 * torch.randn_like(p))
            elif pname in PROJECTION_PARAMS:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[0]))
            elif p.dim() >= 2:  # Linear / Conv / in_proj weights: [out, fan_in...]
                p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel()))
            else:
                raise AssertionError(f"no init rule for {full} {tuple(p.shape)}")
            done.add(full)
    missing = {n for n, _ in model.named_parameters()} - done
    assert not missing, missing


def build_hf() -> transformers.CLIPModel:
    model = transformers.CLIPModel(hf_config())
    randomize(model)
    return model.eval()


def build_openclip() -> open_clip.model.CLIP:
    cfg = openclip_model_cfg()
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"], quick_gelu=True
    )
    set_model_preprocess_cfg(model, openclip_preprocess_cfg())
    randomize(model)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def make_pixel_values() -> torch.Tensor:
    from skimage import data

    transform = open_clip.image_transform(VISION["image_size"], is_train=False)
    images = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in IMAGES]
    return torch.stack([transform(im) for im in images]).float().contiguous()


def make_input_ids() -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (hf_ids padded with 49407, openclip_ids padded with 0), both [4, 77] int64."""
    tok = transformers.CLIPTokenizerFast(
        tokenizer_file=str(TOKENIZER_JSON),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    enc = tok(CAPTIONS, padding="max_length", max_length=TEXT["context_length"], truncation=True, return_tensors="pt")
    hf_ids = enc["input_ids"].long()
    oc_ids = hf_ids.masked_fill(enc["attention_mask"] == 0, 0)

    # HF and OpenCLIP agree on every id except the pad value, including the truncated caption
    # (OpenCLIP keeps <|endoftext|> as the last of 77) and the non-ASCII one.
    assert torch.equal(oc_ids, open_clip.tokenize(CAPTIONS, context_length=TEXT["context_length"]))
    assert (hf_ids[:, 0] == SOT).all()
    assert int(enc["attention_mask"][1].sum()) == TEXT["context_length"], "long caption must be truncated"
    assert hf_ids[1, -1] == EOT
    for row in hf_ids:
        assert (row == EOT).any()
    return hf_ids, oc_ids


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------

HF_GRAD_KEYS = [
    "logit_scale",
    "vision_model.encoder.layers.1.mlp.fc2.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.weight",
    "vision_model.embeddings.patch_embedding.weight",
    "visual_projection.weight",
    "text_projection.weight",
    "vision_model.embeddings.class_embedding",
    "vision_model.pre_layrnorm.weight",
]
HF_TOKEN_EMBEDDING = "text_model.embeddings.token_embedding.weight"

OPENCLIP_GRAD_KEYS = [
    "logit_scale",
    "visual.transformer.resblocks.1.mlp.c_proj.weight",
    "transformer.resblocks.0.attn.in_proj_weight",
    "visual.conv1.weight",
    "visual.proj",
    "text_projection",
    "visual.class_embedding",
    "visual.ln_pre.weight",
]
OPENCLIP_TOKEN_EMBEDDING = "token_embedding.weight"


def infonce(logits_per_image: torch.Tensor) -> torch.Tensor:
    labels = torch.arange(logits_per_image.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2


def heads_and_losses(out: dict, logit_scale: nn.Parameter) -> torch.Tensor:
    """Fills embeds, logits and both losses into `out`; returns the InfoNCE loss (with graph)."""
    out["image_embeds"] = out["image_features"] / out["image_features"].norm(dim=-1, keepdim=True)
    out["text_embeds"] = out["text_features"] / out["text_features"].norm(dim=-1, keepdim=True)
    scale = logit_scale.exp()
    out["logits_per_image"] = scale * out["image_embeds"] @ out["text_embeds"].T
    loss = infonce(out["logits_per_image"])
    out["loss_infonce"] = loss.reshape(1)
    out["logit_scale"] = logit_scale.reshape(1)
    with torch.no_grad():
        bias = torch.tensor(SIGLIP_LOGIT_BIAS)
        out["loss_siglip"] = open_clip.loss.SigLipLoss()(out["image_embeds"], out["text_embeds"], scale, bias).reshape(1)
        out["siglip_logit_bias"] = bias.reshape(1)
        # Written out independently of open_clip, so the documented formula is the stored one.
        z = 2 * torch.eye(4) - 1
        manual = -F.logsigmoid(z * out["logits_per_image"] + z * bias).sum() / 4
        assert torch.allclose(manual, out["loss_siglip"][0], rtol=1e-6), (manual, out["loss_siglip"])
    return loss


def collect_grads(model: nn.Module, out: dict, keys: list, token_key: str, input_ids: torch.Tensor) -> None:
    params = dict(model.named_parameters())
    for k in keys:
        out[f"grad.{k}"] = params[k].grad
    full = params[token_key].grad
    ids = torch.unique(input_ids)  # sorted
    rest = torch.ones(full.shape[0], dtype=torch.bool)
    rest[ids] = False
    assert (full[rest] == 0).all(), "token-embedding gradient outside the used ids"
    out["grad_rows.token_embedding"] = full[ids]
    out["grad_rows.token_ids"] = ids


def finalize(out: dict) -> dict:
    res = {}
    for k, v in out.items():
        v = v.detach()
        res[k] = (v.long() if k in ("input_ids", "grad_rows.token_ids") else v.float()).contiguous()
    return res


def hf_reference(model: transformers.CLIPModel, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> dict:
    model.zero_grad(set_to_none=True)
    vision = model.vision_model(pixel_values=pixel_values)
    text = model.text_model(input_ids=input_ids)  # no attention_mask: causal mask only
    out = {
        "input_ids": input_ids,
        "pixel_values": pixel_values,
        "vision_last_hidden": vision.last_hidden_state,
        "text_last_hidden": text.last_hidden_state,
        "image_features": model.visual_projection(vision.pooler_output),
        "text_features": model.text_projection(text.pooler_output),
    }
    loss = heads_and_losses(out, model.logit_scale)
    loss.backward()
    collect_grads(model, out, HF_GRAD_KEYS, HF_TOKEN_EMBEDDING, input_ids)

    # The library's own forward and loss agree with the pieces above.
    with torch.no_grad():
        lib = model(input_ids=input_ids, pixel_values=pixel_values, return_loss=True)
    close(lib.image_embeds, out["image_embeds"], "hf forward image_embeds")
    close(lib.text_embeds, out["text_embeds"], "hf forward text_embeds")
    close(lib.logits_per_image, out["logits_per_image"], "hf forward logits_per_image")
    close(lib.loss, loss, "hf clip_loss")
    return finalize(out)


def openclip_reference(model: open_clip.model.CLIP, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> dict:
    model.zero_grad(set_to_none=True)
    seen = {}
    hooks = [
        # visual.transformer's output is the input of visual.ln_post (pool_type 'tok',
        # final_ln_after_pool False: ln_post runs over all tokens, then token 0 is taken).
        model.visual.transformer.register_forward_hook(lambda m, i, o: seen.__setitem__("vision", o)),
        model.ln_final.register_forward_hook(lambda m, i, o: seen.__setitem__("text", o)),
    ]
    try:
        image_features = model.encode_image(pixel_values)
        text_features = model.encode_text(input_ids)
    finally:
        for h in hooks:
            h.remove()
    out = {
        "input_ids": input_ids,
        "pixel_values": pixel_values,
        "vision_last_hidden": seen["vision"],
        "text_last_hidden": seen["text"],
        "image_features": image_features,
        "text_features": text_features,
    }
    loss = heads_and_losses(out, model.logit_scale)
    clip_loss = open_clip.loss.ClipLoss()(out["image_embeds"], out["text_embeds"], model.logit_scale.exp())
    close(clip_loss, loss, "open_clip ClipLoss vs formula")
    loss.backward()
    collect_grads(model, out, OPENCLIP_GRAD_KEYS, OPENCLIP_TOKEN_EMBEDDING, input_ids)

    with torch.no_grad():
        logits, _ = model.get_logits(pixel_values, input_ids)
    close(logits, out["logits_per_image"], "open_clip get_logits")
    return finalize(out)


def close(got: torch.Tensor, want: torch.Tensor, what: str, rtol: float = 1e-5) -> None:
    got, want = got.detach().float(), want.detach().float()
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = (got - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-12)
    assert err <= rtol * scale, f"{what}: max abs err {err:.3e}, max |ref| {scale:.3e}"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def save_hf(model: transformers.CLIPModel, path: Path) -> None:
    # transformers 5 always writes safetensors (the safe_serialization argument is gone).
    model.save_pretrained(path)


def save_openclip(model: open_clip.model.CLIP, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(tensors, str(path / "open_clip_model.safetensors"))
    save_config_for_hf(model, path / "open_clip_config.json", model_config=openclip_model_cfg())


def check_refs(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), (what, got.keys() ^ want.keys())
    for k in want:
        if want[k].dtype == torch.int64:
            assert torch.equal(got[k], want[k]), (what, k)
        else:
            close(got[k], want[k], f"{what} {k}")


def summarize(name: str, ref: dict) -> None:
    print(f"{name}: loss_infonce {ref['loss_infonce'].item():.6f}  loss_siglip {ref['loss_siglip'].item():.6f}")
    for k in ("vision_last_hidden", "text_last_hidden", "image_features", "text_features", "logits_per_image"):
        print(f"  {k:20s} std {ref[k].std().item():.4f}  max|x| {ref[k].abs().max().item():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output directory (default: %(default)s)")
    args = parser.parse_args()
    out: Path = args.out

    vers = versions()
    for k, v in vers.items():
        print(f"{k} {v}")
    torch.manual_seed(0)
    torch.set_num_threads(1)  # single-threaded CPU kernels: reruns are bitwise identical

    pixel_values = make_pixel_values()
    hf_ids, oc_ids = make_input_ids()

    # Each model draws from the one seeded stream, HF first: the order is part of the recipe.
    hf_model = build_hf()
    oc_model = build_openclip()

    hf_ref = hf_reference(hf_model, hf_ids, pixel_values)
    oc_ref = openclip_reference(oc_model, oc_ids, pixel_values)
    summarize("hf", hf_ref)
    summarize("openclip", oc_ref)

    out.mkdir(parents=True, exist_ok=True)
    save_hf(hf_model, out / "hf")
    save_openclip(oc_model, out / "openclip")
    meta = {"script": "scripts/make_clip_fixtures.py"}
    safetensors.torch.save_file(hf_ref, str(out / "reference-hf.safetensors"), metadata=meta)
    safetensors.torch.save_file(oc_ref, str(out / "reference-openclip.safetensors"), metadata=meta)
    with open(out / "VERSIONS.txt", "w") as f:
        f.write("# versions that produced these fixtures (python3 scripts/make_clip_fixtures.py)\n")
        for k, v in vers.items():
            f.write(f"{k} {v}\n")

    # Reload from the written files only, recompute, compare.
    hf_loaded, info = transformers.CLIPModel.from_pretrained(out / "hf", output_loading_info=True)
    assert not any(info.values()), info
    check_refs(hf_reference(hf_loaded.eval(), hf_ids, pixel_values), hf_ref, "hf reload")

    oc_loaded, _, oc_preprocess = open_clip.create_model_and_transforms(f"local-dir:{out / 'openclip'}")
    assert isinstance(oc_loaded.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    check_refs(openclip_reference(oc_loaded.eval(), oc_ids, pixel_values), oc_ref, "openclip reload")
    from skimage import data

    close(oc_preprocess(Image.fromarray(data.chelsea())), pixel_values[0], "openclip preprocess from config", 0)

    on_disk = safetensors.torch.load_file(str(out / "reference-hf.safetensors"))
    check_refs(on_disk, hf_ref, "hf reference file")
    print(f"ok: wrote and verified {out}")


if __name__ == "__main__":
    sys.exit(main())
