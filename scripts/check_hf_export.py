"""Check a HF-format CLIP directory against the tiny-CLIP reference embeddings.

    python3 scripts/check_hf_export.py DIR [--reference tests/fixtures/clip-tiny/reference-openclip.safetensors]

Loads transformers.CLIPModel.from_pretrained(DIR), feeds it the reference file's `pixel_values` and
`input_ids` (no attention mask, as the references were made) and compares `image_embeds`,
`text_embeds` and `logits_per_image` with the reference. Meant for the Rust side's OpenCLIP -> HF
export of tests/fixtures/clip-tiny/openclip: the OpenCLIP ids are padded with 0, which HF handles
as long as the config's text eos_token_id is 49407 (HF pools at the first eos_token_id).

Error measure per tensor: rel = max|got - ref| / max|ref|. Exits 1 if any rel exceeds --rtol
(default 1e-4). Made for transformers 5.23.0 (see tests/fixtures/clip-tiny/VERSIONS.txt).
"""

import argparse
import sys
from pathlib import Path

import safetensors.torch
import torch
import transformers

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = REPO / "tests" / "fixtures" / "clip-tiny" / "reference-openclip.safetensors"
COMPARED = ("image_embeds", "text_embeds", "logits_per_image")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="directory with config.json + model.safetensors")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="default: %(default)s")
    parser.add_argument("--rtol", type=float, default=1e-4)
    args = parser.parse_args()

    ref = safetensors.torch.load_file(str(args.reference))
    model, info = transformers.CLIPModel.from_pretrained(args.dir, output_loading_info=True)
    model = model.float().eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"FAIL: loading {args.dir}: {problems}")
        return 1
    eos = model.config.text_config.eos_token_id
    if eos != 49407:
        print(f"note: text_config.eos_token_id is {eos}, not 49407; HF pools differently")

    with torch.no_grad():
        out = model(input_ids=ref["input_ids"], pixel_values=ref["pixel_values"])

    ok = True
    for key in COMPARED:
        got, want = getattr(out, key).float(), ref[key]
        if got.shape != want.shape:
            print(f"FAIL {key}: shape {tuple(got.shape)} != reference {tuple(want.shape)}")
            ok = False
            continue
        abs_err = (got - want).abs().max().item()
        rel = abs_err / max(want.abs().max().item(), 1e-12)
        passed = rel <= args.rtol
        ok &= passed
        print(f"{'ok  ' if passed else 'FAIL'} {key:17s} max abs {abs_err:.3e}  rel {rel:.3e}")
    print(f"{'PASS' if ok else 'FAIL'}: {args.dir} vs {args.reference} (rtol {args.rtol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
