#!/usr/bin/env python3
"""Build crates/duet-data/tests/fixtures/siglip_preprocess_reference.safetensors (issue 16).

For every photo of datasets/photos/ (real photos from scikit-image's samples, with baseline,
progressive and CMYK JPEGs; see its README), the `pixel_values` transformers'
`SiglipImageProcessor` gives at SigLIP's 224 px (both sides resized to 224 without crop,
bicubic, rescale 1/255, mean = std = 0.5), as float32 [3, 224, 224] under the key
"<file>@224:siglip". transformers 5 has two backends: `SiglipImageProcessor` (torchvision, what
`AutoImageProcessor` gives where torchvision is installed) for every photo, and
`SiglipImageProcessorPil` (PIL) for four of them under "<file>@224:siglip-pil"; they differ by
one 8-bit level on some pixels. Images are opened as `Image.open(..).convert("RGB")`.
duet-data's tests/preprocess_parity.rs must match every value to 2e-2.

Command (repository root; Python 3.11.7, transformers 5.25.0, torch 2.15.0, torchvision
0.29.2, Pillow 13.0.0, safetensors 0.8.0):

    python3 scripts/make_siglip_preprocess_fixture.py
"""

from __future__ import annotations

import pathlib

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import SiglipImageProcessor, SiglipImageProcessorPil

REPO = pathlib.Path(__file__).resolve().parent.parent
PHOTOS = REPO / "datasets/photos"
OUT = REPO / "crates/duet-data/tests/fixtures/siglip_preprocess_reference.safetensors"
PIL_PHOTOS = ["chelsea.png", "chelsea_cmyk.jpg", "coffee_progressive.jpg", "rocket.jpg"]


def main() -> None:
    size = {"height": 224, "width": 224}
    processor = SiglipImageProcessor(size=size)
    pil = SiglipImageProcessorPil(size=size)
    ref = {}
    for photo in sorted(PHOTOS.iterdir()):
        if photo.suffix not in (".png", ".jpg"):
            continue
        image = Image.open(photo).convert("RGB")
        pixels = processor(images=image, return_tensors="pt")["pixel_values"][0]
        ref[f"{photo.name}@224:siglip"] = pixels.to(torch.float32).contiguous()
        if photo.name in PIL_PHOTOS:
            pixels = pil(images=image, return_tensors="pt")["pixel_values"][0]
            ref[f"{photo.name}@224:siglip-pil"] = pixels.to(torch.float32).contiguous()
    save_file(ref, OUT)
    print(f"wrote {len(ref)} tensors to {OUT}")


if __name__ == "__main__":
    main()
