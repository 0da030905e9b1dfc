#!/usr/bin/env python3
"""Build crates/duet-data/tests/fixtures/preprocess_reference.safetensors from real photos.

Copies a few photos shipped in scikit-image's `skimage/data/` into datasets/photos/ (plus three
JPEGs Pillow re-encodes from them: baseline 4:2:0, progressive 4:2:0, CMYK), then stores
OpenCLIP's eval transform output for each:

    key "<file>@<size>"          open_clip.image_transform(size, is_train=False)
    key "<file>@32:squash"       the same with resize_mode="squash" (32 px only)

as float32 [3, size, size] tensors. Images are loaded as OpenCLIP's webdataset pipeline loads
them (`decode("pilrgb")`: PIL `Image.open(..).convert("RGB")` before the transform).
duet-data's tests/preprocess_parity.rs must match every value to 2e-2.

Exact command used for the committed fixture (Debian bookworm, Python 3.11.7, scikit-image
0.26.0, open-clip-torch 3.3.0, torch 2.15.0, torchvision 0.29.2, Pillow 13.0.0, numpy 2.4.6,
safetensors 0.8.0):

    pip install scikit-image open-clip-torch safetensors
    python3 scripts/make_preprocess_fixture.py
"""

from __future__ import annotations

import pathlib
import shutil
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
PHOTOS = REPO / "datasets/photos"
OUT = REPO / "crates/duet-data/tests/fixtures/preprocess_reference.safetensors"

# skimage/data files: RGB PNGs, a grey PNG, a baseline JPEG and an RGBA PNG (alpha dropped).
SKIMAGE_FILES = ["chelsea.png", "coffee.png", "camera.png", "rocket.jpg", "horse.png"]
# JPEG variants re-encoded by Pillow from the PNGs: web JPEGs are mostly 4:2:0 (chroma
# upsampling differs between decoders), some progressive, a few CMYK.
DERIVED_JPEGS = {
    "chelsea_420.jpg": ("chelsea.png", "RGB", {"quality": 85, "subsampling": "4:2:0"}),
    "coffee_progressive.jpg": (
        "coffee.png", "RGB", {"quality": 85, "subsampling": "4:2:0", "progressive": True}),
    "chelsea_cmyk.jpg": ("chelsea.png", "CMYK", {"quality": 90}),
}
SIZES = [224, 32]


def main() -> None:
    import numpy as np
    import open_clip
    import PIL
    import skimage
    import torch
    import torchvision
    from PIL import Image
    from safetensors.numpy import save_file

    data_dir = pathlib.Path(skimage.data.__file__).parent
    PHOTOS.mkdir(parents=True, exist_ok=True)
    for name in SKIMAGE_FILES:
        shutil.copyfile(data_dir / name, PHOTOS / name)
    for name, (source, mode, options) in DERIVED_JPEGS.items():
        # CMYK: Pillow writes an Adobe APP14 marker and inverted CMYK, as Photoshop does.
        Image.open(data_dir / source).convert(mode).save(PHOTOS / name, **options)

    tensors = {}
    for name in SKIMAGE_FILES + list(DERIVED_JPEGS):
        with Image.open(PHOTOS / name) as raw:
            raw.load()
            print(f"{name}: {raw.format} {raw.mode} {raw.size}", file=sys.stderr)
            image = raw.convert("RGB")
        for size in SIZES:
            # Squash only at the small size: it shares the resampler, and keeps the file small.
            modes = [("shortest", "")] + ([("squash", ":squash")] if size < 100 else [])
            for mode, suffix in modes:
                transform = open_clip.image_transform(size, is_train=False, resize_mode=mode)
                out = transform(image)
                assert out.dtype == torch.float32 and tuple(out.shape) == (3, size, size)
                tensors[f"{name}@{size}{suffix}"] = np.ascontiguousarray(out.numpy())

    metadata = {
        "command": "python3 scripts/make_preprocess_fixture.py",
        "transform": "open_clip.image_transform(size, is_train=False, resize_mode=...)",
        "load": "PIL Image.open(path).convert('RGB') (webdataset pilrgb)",
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT), metadata=metadata)
    OUT.chmod(0o644)
    print(f"wrote {len(tensors)} tensors to {OUT.relative_to(REPO)}", file=sys.stderr)
    for key, value in metadata.items():
        print(f"  {key}: {value}", file=sys.stderr)


if __name__ == "__main__":
    main()
