"""Check a duet-exported HF SigLIP or SigLIP 2 directory in transformers (issue 16, acceptance 4).

    cargo run --bin duet -- export --model tests/fixtures/siglip-tiny/hf --format hf --out /tmp/s
    python3 scripts/check_siglip_export.py /tmp/s
    cargo run --bin duet -- export --model tests/fixtures/siglip2-tiny/hf --format hf --out /tmp/s2
    python3 scripts/check_siglip_export.py /tmp/s2 --fixture siglip2-tiny

Loads the directory with transformers' Auto classes (`SiglipModel` or `Siglip2Model`, its image
processor and its tokenizer), feeds the fixture's `pixel_values` (patchified at the native 4x4
grid for SigLIP 2) and `input_ids` (tests/fixtures/<fixture>/reference-hf.safetensors), and
compares image_embeds, text_embeds, logits_per_image and the sigmoid loss with the reference:
rel = max|got - ref| / max|ref| per tensor, exit 1 above --rtol (default 1e-5). Also checks the
exported preprocessor config (no crop, mean/std 0.5) and that the exported tokenizer gives the
fixture's caption ids.
"""

import argparse
import sys
from pathlib import Path

import safetensors.torch
import torch
import transformers

REPO = Path(__file__).resolve().parent.parent
CAPTIONS = ["A photo of Chelsea the cat.", "café au lait, a rocket and a horse; in one caption!"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--fixture", default="siglip-tiny")
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args()
    ref = safetensors.torch.load_file(
        REPO / "tests" / "fixtures" / args.fixture / "reference-hf.safetensors")
    model = transformers.AutoModel.from_pretrained(args.dir).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(args.dir)
    version2 = isinstance(model, transformers.Siglip2Model)
    size = ({"max_num_patches": processor.max_num_patches} if version2 else processor.size)
    ok = list(processor.image_mean) == [0.5] * 3 and list(processor.image_std) == [0.5] * 3
    print(f"{type(model).__name__}, {type(processor).__name__}: {size}, "
          f"mean {processor.image_mean}, std {processor.image_std}  {'ok' if ok else 'WRONG'}")
    pixels = ref["pixel_values"]
    kwargs = {"pixel_values": pixels}
    if version2:
        b, c, h, w = pixels.shape
        p = model.config.vision_config.patch_size
        patches = pixels.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        patches = patches.reshape(b, (h // p) * (w // p), p * p * c)
        kwargs = {"pixel_values": patches,
                  "pixel_attention_mask": torch.ones(b, patches.shape[1], dtype=torch.long),
                  "spatial_shapes": torch.tensor([[h // p, w // p]] * b)}
    with torch.no_grad():
        out = model(input_ids=ref["input_ids"], return_loss=True, **kwargs)
    got = {
        "image_embeds": out.image_embeds,
        "text_embeds": out.text_embeds,
        "logits_per_image": out.logits_per_image,
        "loss_sigmoid": out.loss.reshape(1),
    }
    for key, value in got.items():
        rel = ((value - ref[key]).abs().max() / ref[key].abs().max()).item()
        good = rel <= args.rtol
        ok &= good
        print(f"{key}: rel {rel:.2e}  {'ok' if good else 'MISMATCH'}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.dir)
    ids = tokenizer(CAPTIONS, padding="max_length", max_length=ref["caption_ids"].shape[1],
                    truncation=True, return_tensors="pt")["input_ids"]
    good = torch.equal(ids, ref["caption_ids"])
    ok &= good
    print(f"tokenizer ({type(tokenizer).__name__}): caption ids {'ok' if good else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
