"""Generate the tiny OpenCLIP SigLIP fixture in tests/fixtures/siglip-tiny/openclip/ (issue 16).

Command (from the repository root, after scripts/make_siglip_fixtures.py; CPU only, a few
seconds, no network; bitwise reproducible):

    python3 scripts/make_openclip_siglip_fixtures.py

Needs torch, open_clip_torch, timm, transformers, tokenizers, safetensors, pillow (PyPI).

OpenCLIP holds SigLIP as a `CustomTextCLIP`: a timm ViT trunk (`visual.trunk.*`, fused `qkv`,
`pos_embed` [1, n, d], an `attn_pool` with its latent, `q` and fused `kv`) and a bidirectional
`TextTransformer` (`text.*`, fused `in_proj`, last-position pooling, a biased Linear
projection). timm has no SigLIP trunk this small, so the script registers one,
`vit_duettiny_patch8_siglip_32` (width 48, 2 blocks, 4 heads, MLP 192, 8 px patches, 32 px,
gelu_tanh, attention pooling, as timm's SigLIP ViTs), and writes its dimensions into
`vision_cfg` (`width`, `layers`, `head_width`, `mlp_ratio`, `patch_size`, `act_kwargs`: fields
OpenCLIP ignores for timm trunks, which duet reads for a trunk its table does not name). The
text tower: the SigLIP fixture's sizes, exact GELU (OpenCLIP's default), LayerNorm eps 1e-6.

The tokenizer is a T5-style `tokenizer.json` over the SigLIP fixture's SentencePiece
vocabulary (SentencePiece's own normalisation, "▁" pre-tokenizer, "</s>" appended; no
canonicalisation of its own), and the config asks OpenCLIP to canonicalise captions first
(`tokenizer_kwargs.clean = "canonicalize"`, as OpenCLIP's SigLIP configs do).
tokenizer_cases.jsonl holds open_clip's `HFTokenizer` ids for every bundled string at
context lengths 64 and 16, and whether open_clip's `basic_clean` (ftfy.fix_text and
html.unescape, which duet does not run) changes the string's canonical form.

Weights are redrawn as in scripts/make_siglip_fixtures.py. Written with open_clip's
`save_for_hf` (open_clip_config.json, open_clip_model.safetensors, the tokenizer files).
reference-openclip.safetensors, float32, eval mode: pixel_values [4, 3, 32, 32] (the four photos
through the model's own preprocess: squash to 32 px, bicubic, mean = std = 0.5), input_ids
[4, 16] (the four captions below through the model's tokenizer), image_embeds, text_embeds
(L2-normalised), logits_per_image, loss_sigmoid (open_clip's SigLipLoss), and grad.<key> for
GRAD_KEYS (gradients of that loss).
"""

import json
import pathlib
import platform
import sys

import numpy as np
import open_clip
import PIL
import safetensors
import timm
import torch
import transformers
from open_clip.loss import SigLipLoss
from open_clip.push_to_hf_hub import save_for_hf
from open_clip.tokenizer import HFTokenizer, basic_clean, canonicalize_text
from PIL import Image
from safetensors.torch import save_file
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from timm.models import register_model
from timm.models.vision_transformer import _create_vision_transformer
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_siglip_fixtures as v1  # noqa: E402
import siglip_tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "siglip-tiny" / "openclip"
CAPTIONS = ["A photo of Chelsea the cat.", "a cup of coffee_with milk!", "A horse",
            "a rocket launch, seen from the ground; at night"]
GRAD_KEYS = [
    "logit_scale",
    "logit_bias",
    "visual.trunk.patch_embed.proj.weight",
    "visual.trunk.pos_embed",
    "visual.trunk.blocks.1.attn.qkv.weight",
    "visual.trunk.blocks.0.mlp.fc2.weight",
    "visual.trunk.norm.weight",
    "visual.trunk.attn_pool.latent",
    "visual.trunk.attn_pool.q.weight",
    "visual.trunk.attn_pool.kv.weight",
    "visual.trunk.attn_pool.kv.bias",
    "visual.trunk.attn_pool.mlp.fc1.weight",
    "text.positional_embedding",
    "text.transformer.resblocks.0.attn.in_proj_weight",
    "text.ln_final.bias",
    "text.text_projection.weight",
    "text.text_projection.bias",
]
MODEL_CFG = {
    "embed_dim": 48,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {
        "image_size": 32,
        "timm_model_name": "vit_duettiny_patch8_siglip_32",
        "timm_model_pretrained": False,
        "timm_pool": "map",
        "timm_proj": "none",
        "width": 48,
        "layers": 2,
        "head_width": 12,
        "mlp_ratio": 4.0,
        "patch_size": 8,
        "act_kwargs": {"approximate": "tanh"},
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 1000,
        "width": 32,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
        "norm_kwargs": {"eps": 1e-6},
        "tokenizer_kwargs": {"clean": "canonicalize"},
        "hf_tokenizer_name": "duet/tiny-siglip",
    },
}


@register_model
def vit_duettiny_patch8_siglip_32(pretrained=False, **kwargs):
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, class_token=False,
                global_pool="map", act_layer="gelu_tanh")
    return _create_vision_transformer("vit_duettiny_patch8_siglip_32", pretrained=pretrained,
                                      **dict(args, **kwargs))


def t5_style_tokenizer(directory):
    """The SigLIP fixture's pieces as a T5-style fast tokenizer, saved into `directory`."""
    proto = sp_pb2.ModelProto()
    proto.ParseFromString((ROOT / "tests/fixtures/siglip-tiny/hf/spiece.model").read_bytes())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    tok = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)])
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>",
                                   unk_token="<unk>", model_max_length=64)
    fast.save_pretrained(directory)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    t5_style_tokenizer(OUT)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(16)
    open_clip.factory._MODEL_CONFIGS["duet-tiny-siglip"] = MODEL_CFG
    model, _, preprocess = open_clip.create_model_and_transforms(
        "duet-tiny-siglip", image_mean=(0.5,) * 3, image_std=(0.5,) * 3,
        image_resize_mode="squash", image_interpolation="bicubic")
    model.eval()
    v1.randomize(model, generator)
    tokenizer = HFTokenizer(str(OUT), context_length=16, clean="canonicalize")
    texts = siglip_tokenizer.bundled_strings()
    with open(OUT / "tokenizer_cases.jsonl", "w", encoding="utf-8") as f:
        rows = {n: HFTokenizer(str(OUT), context_length=n, clean="canonicalize")(texts).tolist()
                for n in (64, 16)}
        for i, text in enumerate(texts):
            # open_clip cleans with ftfy.fix_text and html.unescape (basic_clean) before
            # canonicalising; duet does not: flag the strings where that changes anything.
            cleans = canonicalize_text(basic_clean(text)) != canonicalize_text(text)
            f.write(json.dumps({"text": text, "ids64": rows[64][i], "ids16": rows[16][i],
                                "basic_clean_changes": cleans}, ensure_ascii=False) + "\n")

    images = [Image.open(ROOT / "datasets" / "photos" / n).convert("RGB") for n in v1.PHOTOS]
    pixel_values = torch.stack([preprocess(im) for im in images])
    ids = tokenizer(CAPTIONS)
    model.zero_grad()
    image = model.encode_image(pixel_values, normalize=True)
    text = model.encode_text(ids, normalize=True)
    loss = SigLipLoss()(image, text, model.logit_scale.exp(), model.logit_bias)
    loss.backward()
    logits = model.logit_scale.exp() * image @ text.T + model.logit_bias
    params = dict(model.named_parameters())
    ref = {
        "pixel_values": pixel_values,
        "input_ids": ids,
        "image_embeds": image,
        "text_embeds": text,
        "logits_per_image": logits,
        "loss_sigmoid": loss.reshape(1),
    }
    for key in GRAD_KEYS:
        ref[f"grad.{key}"] = params[key].grad
    ref = {k: v.detach().contiguous().clone() for k, v in ref.items()}
    save_for_hf(model, tokenizer, MODEL_CFG, str(OUT), safe_serialization=True)
    (OUT / "open_clip_model.safetensors").chmod(0o644)
    save_file(ref, OUT.parent / "reference-openclip.safetensors")
    print(sorted(k for k in model.state_dict()))
    print({k: tuple(v.shape) for k, v in ref.items()})
    versions = {"open_clip": open_clip.__version__, "timm": timm.__version__,
                "transformers": transformers.__version__, "torch": torch.__version__,
                "python": platform.python_version(), "safetensors": safetensors.__version__,
                "numpy": np.__version__, "pillow": PIL.__version__}
    (OUT / "VERSIONS.txt").write_text("".join(f"{k} {v}\n" for k, v in versions.items()))


if __name__ == "__main__":
    main()
