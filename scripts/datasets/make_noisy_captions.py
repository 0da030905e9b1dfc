#!/usr/bin/env python3
"""Copies img2dataset shards with a fraction of the captions swapped between images (issue 17's
curation demonstration): the mismatched pairs a curation filter should find.

    python3 scripts/datasets/make_noisy_captions.py --fraction 0.3 --seed 0 --out OUT \
        datasets/sample/train/00001.tar datasets/sample/train/00002.tar

Writes OUT/00000.tar, OUT/00001.tar, ... (one per input, members in the same order; images and
every other member byte for byte, the `.txt` caption and the `.json` "caption" replaced for the
chosen samples) and OUT/mismatched.txt, the keys whose caption now belongs to another image.

The chosen samples (round(fraction * n), drawn with Python's `random.Random(seed)`) take the
caption of the next chosen sample in a shuffled cycle, so each gets another image's caption;
a sample whose new caption happens to equal its own text is not counted as mismatched.
Python's standard library only.
"""

import argparse
import io
import json
import random
import tarfile
from pathlib import Path


def samples(path):
    """(key, caption) of every sample with an image and a .txt caption, in member order."""
    captions = {}
    order = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.rpartition(".")
            if ext == "txt":
                captions[key] = tar.extractfile(member).read().decode("utf-8")
                order.append(key)
    return [(key, captions[key]) for key in order]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    every = [(i, key, caption) for i, shard in enumerate(args.shards) for key, caption in samples(shard)]
    keys = [(i, key) for i, key, _ in every]
    if len(set(keys)) != len(keys):
        raise SystemExit("the shards repeat a key; the replaced captions would be ambiguous")
    rng = random.Random(args.seed)
    chosen = rng.sample(range(len(every)), round(args.fraction * len(every)))
    rng.shuffle(chosen)
    new = {}
    for a, b in zip(chosen, chosen[1:] + chosen[:1]):
        new[keys[a]] = every[b][2]
    original = {(i, key): caption for i, key, caption in every}
    mismatched = sorted(k for k, caption in new.items() if caption != original[k])

    args.out.mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(args.shards):
        with tarfile.open(shard) as src, tarfile.open(args.out / f"{i:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as dst:
            for member in src.getmembers():
                data = src.extractfile(member).read()
                key, _, ext = member.name.rpartition(".")
                if (i, key) in new and ext == "txt":
                    data = new[(i, key)].encode("utf-8")
                elif (i, key) in new and ext == "json":
                    meta = json.loads(data)
                    meta["caption"] = new[(i, key)]
                    data = json.dumps(meta, indent=4).encode("utf-8")
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                info.mode = member.mode
                info.mtime = member.mtime
                dst.addfile(info, io.BytesIO(data))
    (args.out / "mismatched.txt").write_text("".join(f"{i:05d}/{key}\n" for i, key in mismatched))
    print(f"{len(every)} pairs, {len(chosen)} captions moved, {len(mismatched)} now mismatched -> {args.out}")


if __name__ == "__main__":
    main()
