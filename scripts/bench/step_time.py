#!/usr/bin/env python3
"""OpenCLIP's training step (PyTorch eager) timed on a fixed synthetic batch: the same
work as `duet bench step` — both towers, InfoNCE (open_clip.ClipLoss), backward, global-norm
clip 1.0, AdamW (betas 0.9/0.98, eps 1e-6, wd 0.2 without decay on gains, biases, embeddings
and logit_scale, as open_clip_train does), logit_scale clamped to ln 100.

    python3 scripts/bench/step_time.py --model tiny --batch-size 64 --json
    python3 scripts/bench/step_time.py --model ViT-B-32 --batch-size 256 --device cuda \
        --precision amp_bf16 --json

`--precision amp_bf16` is open_clip_train's: the forward and the loss under
`torch.autocast(dtype=torch.bfloat16)`, fp32 weights, gradients and AdamW state. On CUDA each
step is timed to `torch.cuda.synchronize()`, and the peak of `torch.cuda.max_memory_allocated`
is reported as `peak_device_bytes`.

Prints one line, or with --json one object with the keys `duet bench step --json` prints.
Run through scripts/bench/step_time.sh, which puts both side by side. torch 2.15.0 (CPU),
open-clip-torch 3.3.0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time

import torch

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


def synthetic_tokens(batch: int, context: int, length: int) -> torch.Tensor:
    """The rows `duet bench step` builds: <start>, words, <end>, zero padding."""
    ids = torch.zeros(batch, context, dtype=torch.long)
    for row in range(batch):
        ids[row, 0] = 49406
        for j in range(length - 2):
            ids[row, 1 + j] = (row * 7919 + j * 104_729) % 49_000 + 1
        ids[row, length - 1] = 49407
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="a config in configs/model/")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--caption-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=["fp32", "amp_bf16"], default="fp32")
    parser.add_argument("--tf32", action="store_true",
                        help="let CUDA fp32 matmuls and convolutions use TF32 (open_clip_train "
                             "--use-tf32)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        # open_clip_train leaves TF32 off unless asked (`--use-tf32`), and so does this.
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    import open_clip

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    config = REPO / "configs/model" / f"{args.model}.json"
    open_clip.add_model_config(config)
    extra = {"force_image_size": args.image_size} if args.image_size else {}
    model = open_clip.create_model(args.model, **extra).to(device)
    model.train()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    params = sum(p.numel() for p in model.parameters())

    # open_clip_train main.py: no weight decay on gains, biases, embeddings and logit_scale.
    def exclude(name: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name \
            or "logit_scale" in name

    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2}],
        lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()
    images = torch.randn(args.batch_size, 3, size, size).to(device)
    context = model.context_length
    tokens = synthetic_tokens(args.batch_size, context, args.caption_tokens).to(device)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=args.precision == "amp_bf16")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    times = []
    loss = float("nan")
    for i in range(args.warmup + args.steps):
        sync()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = model(images, tokens)
            if isinstance(out, dict):
                out = (out["image_features"], out["text_features"], out["logit_scale"])
            total = loss_fn(*out[:3])
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        loss = total.item()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - started)
    times.sort()
    median = times[len(times) // 2]
    mean = sum(times) / len(times)
    if args.json:
        print(json.dumps({
            "model": args.model, "image_size": size, "batch_size": args.batch_size,
            "devices": 1, "steps": args.steps, "params": params, "median_ms": median * 1e3,
            "mean_ms": mean * 1e3, "samples_per_sec": args.batch_size / median,
            "last_loss": loss, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(device), "precision": args.precision, "tf32": args.tf32 and cuda,
            "peak_device_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        }))
    else:
        print(f"{args.model} @ {size} px, batch {args.batch_size}, {params} parameters, "
              f"{args.precision} on {device}: median "
              f"{median * 1e3:.1f} ms per step (mean {mean * 1e3:.1f}), "
              f"{args.batch_size / median:.1f} samples/s over {args.steps} steps")


if __name__ == "__main__":
    main()
