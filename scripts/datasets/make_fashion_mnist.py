#!/usr/bin/env python3
"""Fashion-MNIST as image-caption shards, for contrastive training with zero-shot evaluation.

    apt-get install dataset-fashion-mnist          # 0.0~git20200523.55506a9-1, MIT (Zalando)
    python3 scripts/datasets/make_fashion_mnist.py --out data/fashion-mnist   # Pillow 13

Reads /usr/share/datasets/fashion-mnist/train-{images-idx3,labels-idx1}-ubyte.gz (60,000 28x28
grey images) and writes webdataset tars as img2dataset names them:
`{00000..00119}.tar` of 500 samples (`--per-shard`), 9-digit keys, members `KEY.png` (the 28x28 image, grey
PNG), `KEY.txt` (a caption), `KEY.cls` (the label 0-9) and `KEY.json` (label, class, source
index), plus `{shard}_stats.json` with img2dataset's counts.

Captions are class names in templates, one picked per image by a seeded RNG. The templates are
deliberately not the ones zero-shot evaluation uses (`--templates cifar` / `openai_imagenet`),
so zero-shot accuracy measures transfer from caption to prompt, not memorised strings:
"a product photo of a pullover.", "pullover, greyscale, 28 by 28 pixels", … Class names are
the dataset's (datasets/fashion-mnist/classes.txt), lower-cased.

The t10k split is not converted: `duet eval zero-shot` reads its IDX files directly.
"""

import argparse
import gzip
import io
import json
import pathlib
import random
import struct
import tarfile

from PIL import Image

SOURCE = pathlib.Path("/usr/share/datasets/fashion-mnist")
# datasets/fashion-mnist/classes.txt, lower-cased (CLIP's tokenizer lower-cases anyway).
CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle boot"]
TEMPLATES = [
    "a product photo of a {}.",
    "a {} on a black background.",
    "{}, greyscale, 28 by 28 pixels",
    "a small picture of a {}.",
    "catalogue image: {}",
    "an item of clothing: a {}.",
    "a low resolution image of a {}.",
    "a {}.",
]
SEED = 0


def read_idx(path: pathlib.Path, magic: int) -> tuple[list[int], bytes]:
    data = gzip.decompress(path.read_bytes())
    found, = struct.unpack(">I", data[:4])
    assert found == magic, f"{path}: magic {found:#x}"
    rank = magic & 0xFF
    dims = list(struct.unpack(f">{rank}I", data[4:4 + 4 * rank]))
    return dims, data[4 + 4 * rank:]


def add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=pathlib.Path, default=SOURCE)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    # Small shards keep resampled mixing smooth: a resampled loader reads a drawn shard whole,
    # so with 10,000-sample shards a 20-minute run sees only ~15 Fashion-MNIST draws and its
    # mix of sources varies by tens of percent between runs.
    parser.add_argument("--per-shard", type=int, default=500)
    args = parser.parse_args()

    (n, h, w), pixels = read_idx(args.source / "train-images-idx3-ubyte.gz", 0x803)
    (n_labels,), labels = read_idx(args.source / "train-labels-idx1-ubyte.gz", 0x801)
    assert n == n_labels
    n = min(n, args.limit or n)
    rng = random.Random(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    for shard in range((n + args.per_shard - 1) // args.per_shard):
        start, end = shard * args.per_shard, min(n, (shard + 1) * args.per_shard)
        with tarfile.open(args.out / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, end):
                key = f"{i:09d}"
                label = labels[i]
                image = Image.frombytes("L", (w, h), pixels[i * h * w:(i + 1) * h * w])
                png = io.BytesIO()
                image.save(png, format="PNG")
                caption = rng.choice(TEMPLATES).format(CLASSES[label])
                meta = {"key": key, "label": label, "class": CLASSES[label], "index": i,
                        "caption": caption, "status": "success"}
                add(tar, f"{key}.png", png.getvalue())
                add(tar, f"{key}.txt", caption.encode())
                add(tar, f"{key}.cls", str(label).encode())
                add(tar, f"{key}.json", json.dumps(meta).encode())
        stats = {"count": end - start, "successes": end - start, "failed_to_download": 0,
                 "failed_to_resize": 0, "status_dict": {"success": end - start}}
        (args.out / f"{shard:05d}_stats.json").write_text(json.dumps(stats, indent=4))
        print(f"{shard:05d}.tar: {end - start} samples")


if __name__ == "__main__":
    main()
