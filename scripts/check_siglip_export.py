"""Check a duet-exported HF SigLIP directory in transformers (issue 16, acceptance 4).

    cargo run --bin duet -- export --model tests/fixtures/siglip-tiny/hf --format hf --out /tmp/s
    python3 scripts/check_siglip_export.py /tmp/s

Loads transformers.SiglipModel.from_pretrained(DIR) and its SiglipImageProcessor config, feeds the
fixture's `pixel_values` and `input_ids` (tests/fixtures/siglip-tiny/reference-hf.safetensors),
and compares image_embeds, text_embeds, logits_per_image and the sigmoid loss with the reference:
rel = max|got - ref| / max|ref| per tensor, exit 1 above --rtol (default 1e-5). Also checks the
exported preprocessor config is SigLIP's (resize to the square size, no crop, mean/std 0.5).
"""

import argparse
import sys
from pathlib import Path

import safetensors.torch
import torch
import transformers

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "fixtures" / "siglip-tiny" / "reference-hf.safetensors"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args()
    ref = safetensors.torch.load_file(REFERENCE)
    model = transformers.SiglipModel.from_pretrained(args.dir).eval()
    processor = transformers.SiglipImageProcessor.from_pretrained(args.dir)
    ok = processor.size == {"height": 32, "width": 32} and list(processor.image_mean) == [0.5] * 3
    print(f"preprocessor: size {processor.size}, mean {processor.image_mean}, "
          f"std {processor.image_std}  {'ok' if ok else 'WRONG'}")
    with torch.no_grad():
        out = model(input_ids=ref["input_ids"], pixel_values=ref["pixel_values"], return_loss=True)
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
