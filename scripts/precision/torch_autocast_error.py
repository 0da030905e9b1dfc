"""How far torch's own autocast is from f32 on duet's parity fixture, measured exactly as
`crates/duet-model/tests/precision.rs` measures duet: embeddings, InfoNCE loss and gradients,
relative `||low - f32||_2 / ||f32||_2` for the whole gradient (every parameter as one vector) and
the worst parameter (each against at least 1e-2 of the largest parameter gradient's norm).

    python3 scripts/precision/torch_autocast_error.py [--dtype bf16|f16]

Needs torch, transformers, safetensors (PyPI); reads tests/fixtures/clip-tiny/hf and
reference-hf.safetensors. CPU autocast (`torch.autocast("cpu", dtype)`): linear, matmul and
attention in the low type, as duet's `train.precision`.
"""

import argparse
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import CLIPModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "clip-tiny"


def run(dtype):
    model = CLIPModel.from_pretrained(FIX / "hf", attn_implementation="sdpa").float()
    ref = load_file(FIX / "reference-hf.safetensors")
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        image = model.get_image_features(pixel_values=ref["pixel_values"])
        text = model.get_text_features(input_ids=ref["input_ids"])
    image = getattr(image, "pooler_output", image).float()
    text = getattr(text, "pooler_output", text).float()
    i, t = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = model.logit_scale.exp() * i @ t.T
    labels = torch.arange(len(logits))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    loss.backward()
    grads = [p.grad.detach().clone().flatten() for p in model.parameters() if p.grad is not None]
    return image.detach(), text.detach(), loss.detach().reshape(1), grads


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    args = parser.parse_args()
    low_type = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    ref = run(None)
    low = run(low_type)
    for name, a, b in zip(["image", "text", "loss"], low[:3], ref[:3]):
        print(f"torch autocast {args.dtype} {name}: rel {rel(a, b):.2e}")
    floor = 1e-2 * max(g.double().norm().item() for g in ref[3])
    worst = max(
        (a.double() - b.double()).norm().item() / max(b.double().norm().item(), floor)
        for a, b in zip(low[3], ref[3])
    )
    whole = rel(torch.cat(low[3]), torch.cat(ref[3]))
    print(f"torch autocast {args.dtype}: whole gradient rel {whole:.2e}; "
          f"worst of {len(ref[3])} parameters {worst:.2e}")


if __name__ == "__main__":
    main()
