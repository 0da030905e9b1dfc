"""Check a duet export of the OpenCLIP SigLIP fixture in open_clip (issue 16, acceptance 4).

    cargo run --bin duet -- export --model tests/fixtures/siglip-tiny/openclip --format openclip \
        --out /tmp/oc
    python3 scripts/check_openclip_siglip_export.py /tmp/oc

Registers the fixture's tiny timm trunk (scripts/make_openclip_siglip_fixtures.py), loads the
directory with `open_clip.create_model_and_transforms("local-dir:DIR")` and
`open_clip.get_tokenizer("local-dir:DIR")`, embeds the fixture's captions (through the exported
tokenizer) and pixel values, and compares with tests/fixtures/siglip-tiny/reference-openclip:
rel = max|got - ref| / max|ref|, exit 1 above --rtol (default 1e-5) or if the ids differ.
"""

import argparse
import pathlib
import sys

import open_clip
import safetensors.torch
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_openclip_siglip_fixtures as fixture  # noqa: E402  (registers the timm trunk)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args()
    ref = safetensors.torch.load_file(fixture.OUT.parent / "reference-openclip.safetensors")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{args.dir}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{args.dir}")
    ids = tokenizer(fixture.CAPTIONS)
    ok = torch.equal(ids, ref["input_ids"])
    print(f"tokenizer: ids {'ok' if ok else 'MISMATCH'}; preprocess {preprocess.transforms[0]}")
    with torch.no_grad():
        got = {"image_embeds": model.encode_image(ref["pixel_values"], normalize=True),
               "text_embeds": model.encode_text(ids, normalize=True)}
    for key, value in got.items():
        rel = ((value - ref[key]).abs().max() / ref[key].abs().max()).item()
        good = rel <= args.rtol
        ok &= good
        print(f"{key}: rel {rel:.2e}  {'ok' if good else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
