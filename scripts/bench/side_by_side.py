#!/usr/bin/env python3
"""duet and OpenCLIP trained side by side on the same shards, then each model scored by both
evaluators (duet's `duet eval` and OpenCLIP's own zero-shot and retrieval code).

Same for both trainers: the shards and their mixing weights (resampled, as OpenCLIP requires for
upsampling factors), the model config (configs/model/tiny.json at --image-size), batch size,
steps, AdamW (lr, betas 0.9/0.98, eps 1e-6, weight decay), warmup + cosine schedule, global
grad-norm clipping, fp32, and the seed. Not the same, by design of each tool: the shuffle and
augmentation random streams, and weight decay on the token/position embeddings (OpenCLIP decays
them, duet does not; see crates/duet-train/src/optim.rs).

Evaluations (every model x every evaluator):
  zero-shot  Fashion-MNIST t10k (10,000 images) from Debian's IDX files, --templates prompts
  retrieval  the held-out split of the real-caption shards (--val), image->text / text->image

    apt-get install dataset-fashion-mnist
    python3 scripts/datasets/make_fashion_mnist.py --out data/fashion-mnist
    /tmp/i2d-venv/bin/python scripts/datasets/make_sample.py --out data/real-captions \\
        --emoji-count 100000 --clipart-count 100000
    cargo build --release --bin duet
    python3 scripts/bench/side_by_side.py --duet target/release/duet --work /tmp/sbs \\
        --train 'data/fashion-mnist/{00000..00119}.tar::data/real-captions/train/{00000..00008}.tar' \\
        --upsampling '1::3' --val 'data/real-captions/val/00000.tar' --steps 2000 --warmup 100 \\
        --shuffle-buffer 5000 --seed 1        # BENCHMARKS.md: seeds 1 and 2

Writes WORK/results.json and prints a Markdown table for BENCHMARKS.md. Versions used: torch
2.15.0 (CPU), open-clip-torch 3.3.0, webdataset 0.2.86, Pillow 13.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
MODEL_CONFIG = REPO / "configs/model/tiny.json"
CLASSES = REPO / "datasets/fashion-mnist/classes.txt"
T10K = pathlib.Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def run(cmd: list[str], log: pathlib.Path | None = None) -> float:
    """Runs `cmd`, failing loudly; returns its wall time in seconds."""
    print("+", " ".join(cmd), flush=True)
    start = time.monotonic()
    if log is None:
        subprocess.run(cmd, check=True)
    else:
        with log.open("w") as out:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            sys.exit(f"{cmd[0]} failed ({result.returncode}); see {log}")
    return time.monotonic() - start


def duet_config(args: argparse.Namespace) -> str:
    return f"""# Written by scripts/bench/side_by_side.py
[model]
config = "{MODEL_CONFIG}"
image_size = {args.image_size}

[data]
train = "{args.train}"
upsampling = "{args.upsampling}"
sampling = "resampled"
shuffle_buffer = {args.shuffle_buffer}
readers = {args.workers}

[optimizer]
lr = {args.lr}
weight_decay = {args.wd}
grad_clip_norm = {args.grad_clip_norm}

[schedule]
kind = "cosine"
warmup_steps = {args.warmup}

[train]
steps = {args.steps}
batch_size = {args.batch_size}
seed = {args.seed}

[checkpoint]
every_steps = {args.steps}
keep_last = 1

[log]
every_steps = 10
"""


def train_duet(args: argparse.Namespace, work: pathlib.Path) -> tuple[pathlib.Path, float]:
    config = work / "duet.toml"
    config.write_text(duet_config(args))
    run_dir = work / "duet-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    seconds = run([args.duet, "pretrain", "--config", str(config), "--run-dir", str(run_dir)],
                  work / "duet-train.log")
    return run_dir, seconds


OPENCLIP_MAIN = (
    "import sys, open_clip; open_clip.add_model_config(sys.argv[1]); "
    "from open_clip_train.main import main; main(sys.argv[2:])"
)


def train_openclip(args: argparse.Namespace, work: pathlib.Path) -> tuple[pathlib.Path, float]:
    logs = work / "openclip-logs"
    shutil.rmtree(logs, ignore_errors=True)
    cmd = [
        sys.executable, "-c", OPENCLIP_MAIN, str(MODEL_CONFIG),
        "--model", MODEL_CONFIG.stem, "--force-image-size", str(args.image_size),
        "--train-data", args.train, "--train-data-upsampling-factors", args.upsampling,
        "--dataset-resampled", "--dataset-type", "webdataset",
        "--train-num-samples", str(args.steps * args.batch_size), "--epochs", "1",
        "--batch-size", str(args.batch_size), "--workers", str(args.workers),
        "--lr", str(args.lr), "--wd", str(args.wd), "--warmup", str(args.warmup),
        # OpenCLIP picks betas/eps by model name ("ViT" in it or not); "tiny" would get
        # (0.9, 0.999, 1e-8), so pass its ViT defaults, which duet uses.
        "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6",
        "--grad-clip-norm", str(args.grad_clip_norm), "--precision", "fp32",
        "--seed", str(args.seed), "--logs", str(logs), "--name", "run",
        "--save-frequency", "1", "--log-every-n-steps", "10",
    ]
    seconds = run(cmd, work / "openclip-train.log")
    return logs / "run/checkpoints/epoch_1.pt", seconds


def openclip_hub_dir(checkpoint: pathlib.Path, image_size: int, out: pathlib.Path) -> pathlib.Path:
    """OpenCLIP's training checkpoint as a hub directory (duet and open_clip both load it)."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    state = {k.removeprefix("module."): v.contiguous() for k, v in state.items()}
    model_cfg = json.loads(MODEL_CONFIG.read_text())
    model_cfg["vision_cfg"]["image_size"] = image_size
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic", "resize_mode": "shortest",
        },
    }, indent=2))
    return out


def duet_eval(args: argparse.Namespace, model: pathlib.Path) -> dict:
    def json_out(cmd: list[str]) -> dict:
        print("+", " ".join(cmd), flush=True)
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    zs = json_out([args.duet, "eval", "zero-shot", "--model", str(model), "--dataset",
                   str(args.t10k), "--classes", str(CLASSES), "--templates", args.templates,
                   "--json"])
    rt = json_out([args.duet, "eval", "retrieval", "--model", str(model), "--data", args.val,
                   "--json"])
    return {"top1": zs["top1"], "top5": zs["top5"], **{k: rt[k] for k in
            ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")}}


def read_idx(path: pathlib.Path, magic: int):
    data = gzip.decompress(path.read_bytes())
    assert struct.unpack(">I", data[:4])[0] == magic, path
    rank = magic & 0xFF
    dims = struct.unpack(f">{rank}I", data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def templates(name: str) -> list[str]:
    path = REPO / "crates/duet-eval/templates" / f"{name}.txt"
    if not path.is_file():
        path = pathlib.Path(name)
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def openclip_eval(args: argparse.Namespace, model_dir: pathlib.Path) -> dict:
    """OpenCLIP's own code on `model_dir`: build_zero_shot_classifier + zero_shot.accuracy on
    t10k, get_clip_metrics on the val shards (recalls as percentages)."""
    import torch
    import webdataset as wds
    from braceexpand import braceexpand
    from PIL import Image
    import open_clip
    from open_clip_train.train import get_clip_metrics

    def accuracy(output, target, topk):
        # open_clip_train 3.3 zero_shot.accuracy, line for line, but with `.item()`: its
        # `float(... .numpy())` of a 1-element array raises under numpy >= 2.4.
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum(0).item() for k in topk]

    name = f"local-dir:{model_dir}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    classes = [c.strip() for c in CLASSES.read_text().splitlines() if c.strip()]
    labels_path = pathlib.Path(str(args.t10k).replace("images-idx3", "labels-idx1"))
    (n, h, w), pixels = read_idx(args.t10k, 0x803)
    _, labels = read_idx(labels_path, 0x801)
    with torch.no_grad():
        classifier = open_clip.build_zero_shot_classifier(
            model, tokenizer, classes, templates(args.templates), device="cpu")
        top1 = top5 = 0.0
        for start in range(0, n, 500):
            batch = torch.stack([
                preprocess(Image.frombytes("L", (w, h), pixels[i * h * w:(i + 1) * h * w])
                           .convert("RGB"))
                for i in range(start, min(n, start + 500))])
            target = torch.tensor(list(labels[start:start + len(batch)]))
            logits = 100.0 * model.encode_image(batch, normalize=True) @ classifier
            a1, a5 = accuracy(logits, target, topk=(1, 5))
            top1, top5 = top1 + a1, top5 + a5
        images, texts = [], []
        urls = [url for part in args.val.split("::") for url in braceexpand(part)]
        for image, caption in wds.WebDataset(urls, shardshuffle=False).decode("pilrgb") \
                .to_tuple("jpg;png;jpeg;webp", "txt"):
            images.append(preprocess(image))
            texts.append(caption)
        image_features = torch.cat([model.encode_image(torch.stack(images[i:i + 256]),
                                                       normalize=True)
                                    for i in range(0, len(images), 256)])
        text_features = torch.cat([model.encode_text(tokenizer(texts[i:i + 256]), normalize=True)
                                   for i in range(0, len(texts), 256)])
        m = get_clip_metrics(image_features, text_features, model.logit_scale.exp())
    out = {"top1": 100 * top1 / n, "top5": 100 * top5 / n}
    for ours, theirs in (("i2t", "image_to_text"), ("t2i", "text_to_image")):
        for k in (1, 5, 10):
            out[f"{ours}_r{k}"] = 100 * float(m[f"{theirs}_R@{k}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duet", required=True, help="the duet binary")
    parser.add_argument("--work", type=pathlib.Path, required=True)
    parser.add_argument("--train", required=True, help="shard spec, OpenCLIP syntax")
    parser.add_argument("--upsampling", required=True, help="'::'-separated source weights")
    parser.add_argument("--val", required=True, help="held-out image-caption shards")
    parser.add_argument("--t10k", type=pathlib.Path, default=T10K)
    parser.add_argument("--templates", default="cifar")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--wd", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--grad-clip-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--skip-training", action="store_true",
                        help="evaluate the models a previous run left in --work")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    results: dict = {"settings": {k: str(v) for k, v in vars(args).items()},
                     "threads": os.cpu_count()}
    results_path = args.work / "results.json"
    if args.skip_training:
        previous = json.loads(results_path.read_text()) if results_path.is_file() else {}
        results["train_seconds"] = previous.get("train_seconds",
                                                {"duet": float("nan"), "openclip": float("nan")})
        duet_run = args.work / "duet-run"
        openclip_ckpt = args.work / "openclip-logs/run/checkpoints/epoch_1.pt"
    else:
        duet_run, duet_seconds = train_duet(args, args.work)
        openclip_ckpt, openclip_seconds = train_openclip(args, args.work)
        results["train_seconds"] = {"duet": duet_seconds, "openclip": openclip_seconds}
        results_path.write_text(json.dumps(results, indent=2))
    models = {
        "duet": args.work / "duet-openclip-layout",
        "openclip": openclip_hub_dir(openclip_ckpt, args.image_size,
                                     args.work / "openclip-hub"),
    }
    run([args.duet, "export", "--model", str(duet_run), "--format", "openclip", "--out",
         str(models["duet"])])
    results["eval"] = {
        trained: {"duet_evaluator": duet_eval(args, path),
                  "openclip_evaluator": openclip_eval(args, path)}
        for trained, path in models.items()
    }
    results_path.write_text(json.dumps(results, indent=2))

    print("\n| trained by | evaluator | train s | FMNIST top-1 | top-5 | i2t R@1 | i2t R@5 |"
          " t2i R@1 | t2i R@5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for trained, by in results["eval"].items():
        for evaluator, m in by.items():
            print(f"| {trained} | {evaluator.removesuffix('_evaluator')} | "
                  f"{results['train_seconds'][trained]:.0f} | {m['top1']:.2f} | {m['top5']:.2f} | "
                  f"{m['i2t_r1']:.2f} | {m['i2t_r5']:.2f} | {m['t2i_r1']:.2f} | "
                  f"{m['t2i_r5']:.2f} |")


if __name__ == "__main__":
    main()
