"""Generate the tiny SigLIP 2 parity fixtures in tests/fixtures/siglip2-tiny/ (issue 16).

Command (from the repository root; CPU only, a few seconds, no network; bitwise reproducible):

    python3 scripts/make_siglip2_fixtures.py

Needs torch, transformers, tokenizers, safetensors, pillow (PyPI). Versions are written to
tests/fixtures/siglip2-tiny/VERSIONS.txt.

One random-init `transformers.Siglip2Model` (hf/, saved with save_pretrained), the towers of the
SigLIP fixture (scripts/make_siglip_fixtures.py: widths 48/32, 2 layers each, vocab 1000, 16
text positions), with SigLIP 2's differences: the patch embedding is a Linear over flattened
8x8x3 patches (row-major patches, each flattened (y, x, channel), as
`Siglip2ImageProcessor.convert_image_to_patches`), and there are `num_patches = 16` learned
positions, a 4x4 grid that transformers resizes (bilinear, antialiased) to each image's patch
grid. duet runs SigLIP 2 at fixed resolution: the native grid, 4x4 patches of a 32 px square
image, where that resize is the identity; NaFlex's other grids are not run.

Text: a Gemma-style tokenizer (`Siglip2Tokenizer`: lower-casing, spaces as "▁", BPE with byte
fallback, "<eos>" appended, as google/siglip2-*'s) of 1,000 tokens trained on the bundled
captions, in hf/tokenizer.json with its tokenizer_config.json; tokenizer_cases.jsonl holds the
ids transformers' tokenizer loaded from hf/ gives for every bundled string with
truncation=True, padding="max_length", max_length 64 and 16 (its padding side included).

Inputs: the four photos of the SigLIP fixture through `SiglipImageProcessorPil` at 32 px
(squash, bicubic, mean = std = 0.5) as `pixel_values` [4, 3, 32, 32] (duet's input), patchified
for transformers with spatial_shapes (4, 4) and a full pixel_attention_mask; four id rows of 16
(random ids, ended by <eos> = 1 and padded with <pad> = 0).

reference-hf.safetensors, float32, eval mode: the keys of the SigLIP fixture (input_ids,
pixel_values, vision_last_hidden, text_last_hidden, image_features, text_features, image_embeds,
text_embeds, logit_scale, logit_bias, logits_per_image, loss_sigmoid, grad.<hf key> for
GRAD_KEYS), plus caption_ids / caption_text_embeds for two captions through hf/'s tokenizer.
"""

import json
import pathlib
import sys

import tokenizers
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (AutoTokenizer, Siglip2Config, Siglip2Model, Siglip2Tokenizer,
                          SiglipImageProcessorPil)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_siglip_fixtures as v1  # noqa: E402
import siglip_tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "siglip2-tiny"
GRAD_KEYS = [k for k in v1.GRAD_KEYS if "patch_embedding" not in k] + [
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.patch_embedding.bias",
]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def config():
    return Siglip2Config(
        text_config=dict(
            vocab_size=1000, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=16, projection_size=48,
            pad_token_id=0, eos_token_id=1, bos_token_id=2,
        ),
        vision_config=dict(
            hidden_size=48, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
            num_patches=16, patch_size=8,
        ),
    )


def train_tokenizer(texts):
    """A 1,000-token Gemma-style BPE (Siglip2Tokenizer's pipeline) on the captions."""
    tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=SPECIALS + byte_tokens, show_progress=False)
    tok.train_from_iterator([t for t in texts if t.strip()], trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def tokenizer_fixture():
    texts = siglip_tokenizer.bundled_strings()
    vocab, merges = train_tokenizer(texts)
    tok = Siglip2Tokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=True,
                           model_max_length=64)
    tok.save_pretrained(OUT / "hf")
    tok = AutoTokenizer.from_pretrained(OUT / "hf")
    rows = {n: tok(texts, truncation=True, max_length=n, padding="max_length")["input_ids"]
            for n in (64, 16)}
    with open(OUT / "tokenizer_cases.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text, "ids64": rows[64][i], "ids16": rows[16][i]},
                               ensure_ascii=False) + "\n")
    print(type(tok).__name__, "padding", tok.padding_side, "example", rows[16][0])
    return tok


def patchify(pixel_values, patch):
    """[b, c, h, w] -> [b, (h/p)(w/p), p*p*c], as Siglip2ImageProcessor.convert_image_to_patches."""
    b, c, h, w = pixel_values.shape
    x = pixel_values.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def inputs(generator):
    processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images = [Image.open(ROOT / "datasets" / "photos" / n).convert("RGB") for n in v1.PHOTOS]
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].float()
    ids = torch.zeros((4, 16), dtype=torch.long)
    for row, length in enumerate([16, 9, 5, 12]):
        ids[row, :length] = torch.randint(5, 1000, (length,), generator=generator)
        if length < 16:
            ids[row, length - 1] = 1  # <eos>, then <pad> = 0
    return pixel_values, ids


def vision_kwargs(pixel_values):
    """Siglip2Model's image input at the native 4x4 grid: patches, a full mask, the grid."""
    patches = patchify(pixel_values, 8)
    b = patches.shape[0]
    return dict(pixel_values=patches,
                pixel_attention_mask=torch.ones(b, patches.shape[1], dtype=torch.long),
                spatial_shapes=torch.tensor([[4, 4]] * b))


def run(model, pixel_values, ids):
    return v1.run(model, pixel_values, ids, vision_kwargs(pixel_values), GRAD_KEYS)


def main():
    (OUT / "hf").mkdir(parents=True, exist_ok=True)
    tok = tokenizer_fixture()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(16)
    model = Siglip2Model(config()).eval()
    v1.randomize(model, generator)
    pixel_values, ids = inputs(generator)
    ref = run(model, pixel_values, ids)
    ref.update(v1.caption_reference(model, tok))
    v1.save_and_check(model, OUT, ref, Siglip2Model.from_pretrained,
                      lambda again: run(again, pixel_values, ids),
                      {"tokenizers": tokenizers.__version__})


if __name__ == "__main__":
    main()
