"""duet embed --data against open_clip inference of the same model on the same shards (issue 17).

    python3 scripts/bench/embed_data.py [--duet target/release/duet] [--model ViT-B-32]

Makes a random-init OpenCLIP hub directory of `--model` (`open_clip_config.json` +
`open_clip_model.safetensors`: the same weights for both), then, one after the other on the same shards (datasets/sample/train, 1,188
pairs of 64 px images, resized to the model's 224 px):

  - duet: `duet embed --model DIR --data SPEC --out TMP --batch-size B` (decoding in parallel on
    every core, as it runs), wall time of the whole command, model load included;
  - open_clip: tarfile + PIL decode + open_clip's preprocess, `encode_image`/`encode_text`
    under `torch.inference_mode()` in batches of B, torch on every core, model load included.

Prints samples/s for each and their ratio, and the largest difference between the two runs'
embeddings (same samples, same order).
"""

import argparse
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import open_clip
import torch
import safetensors.torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARDS = [ROOT / f"datasets/sample/train/{i:05}.tar" for i in range(3)]


def open_clip_run(model_dir, batch):
    start = time.perf_counter()
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    images, texts = [], []
    samples = []
    for shard in SHARDS:
        groups = {}
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                key, ext = member.name.rsplit(".", 1)
                groups.setdefault(key, {})[ext] = tar.extractfile(member).read()
        for key, fields in groups.items():
            image = fields.get("jpg") or fields.get("png") or fields.get("webp")
            if image is None or "txt" not in fields:
                continue
            samples.append((Image.open(io.BytesIO(image)), fields["txt"].decode("utf-8")))
    with torch.inference_mode():
        for i in range(0, len(samples), batch):
            chunk = samples[i:i + batch]
            pixels = torch.stack([preprocess(im.convert("RGB")) for im, _ in chunk])
            ids = tokenizer([caption for _, caption in chunk])
            images.append(model.encode_image(pixels, normalize=True))
            texts.append(model.encode_text(ids, normalize=True))
    seconds = time.perf_counter() - start
    return len(samples), seconds, torch.cat(images).numpy(), torch.cat(texts).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duet", default=str(ROOT / "target/release/duet"))
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = pathlib.Path(tmp) / "model"
        model = open_clip.create_model(args.model)
        model_dir.mkdir()
        safetensors.torch.save_file(model.state_dict(), model_dir / "open_clip_model.safetensors")
        config = {"model_cfg": open_clip.get_model_config(args.model),
                  "preprocess_cfg": model.visual.preprocess_cfg}
        (model_dir / "open_clip_config.json").write_text(json.dumps(config))
        out = pathlib.Path(tmp) / "emb"
        spec = str(ROOT / "datasets/sample/train/{00000..00002}.tar")
        start = time.perf_counter()
        subprocess.run([args.duet, "embed", "--model", str(model_dir), "--data", spec, "--out",
                        str(out), "--batch-size", str(args.batch)], check=True,
                       stderr=subprocess.DEVNULL)
        duet_seconds = time.perf_counter() - start
        duet_images = np.concatenate([np.load(out / f"{i:05}.images.npy") for i in range(3)])
        duet_texts = np.concatenate([np.load(out / f"{i:05}.texts.npy") for i in range(3)])
        n, oc_seconds, oc_images, oc_texts = open_clip_run(model_dir, args.batch)
    assert len(duet_images) == n, (len(duet_images), n)
    result = {
        "model": args.model, "samples": n, "batch": args.batch, "cores": os.cpu_count(),
        "duet_samples_per_s": round(n / duet_seconds, 1),
        "open_clip_samples_per_s": round(n / oc_seconds, 1),
        "duet_over_open_clip": round(oc_seconds / duet_seconds, 2),
        "max_abs_diff_images": float(np.abs(duet_images - oc_images).max()),
        "max_abs_diff_texts": float(np.abs(duet_texts - oc_texts).max()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
