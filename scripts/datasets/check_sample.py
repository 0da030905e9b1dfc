#!/usr/bin/env python3
"""Check datasets/sample/ (built by make_sample.py) with webdataset, the reference reader.

For every train and val shard: iterate it with `webdataset.WebDataset`, decode each image
with PIL (`decode("pilrgb")`, as OpenCLIP's loader does), and require

  - samples in the tar == "successes" in the shard's _stats.json == success rows in the MANIFEST
  - each sample has exactly jpg, txt and json; the image is RGB 64x64; the caption is non-empty
    and equals json["caption"]; json["key"] == the sample key; json["status"] == "success"
  - keys are 8 digits (5 shard digits + ceil(log10(500)) = 3 sample digits, see make_sample.py)
  - train and val share no source item, and failed rows are only in train.

Then it prints the tar layout of the first train sample (member names, PAX headers) and a
few captions. Exact command used for the committed sample (webdataset 1.0.2, Pillow 13.0.0;
it also passes under img2dataset's pinned webdataset 0.2.111):

    python3 -m venv /tmp/wds-venv
    /tmp/wds-venv/bin/pip install webdataset==1.0.2 pillow
    /tmp/wds-venv/bin/python scripts/datasets/check_sample.py
"""

from __future__ import annotations

import collections
import csv
import json
import pathlib
import sys
import tarfile

import webdataset as wds

SAMPLE = pathlib.Path(__file__).resolve().parent.parent.parent / "datasets/sample"
KEY_DIGITS = 8
IMAGE_SIZE = 64


def check_shard(tar: pathlib.Path) -> list[str]:
    """Iterates one shard with webdataset; returns the captions, in tar order."""
    captions = []
    dataset = wds.WebDataset(str(tar), shardshuffle=False).decode("pilrgb")
    for sample in dataset:
        key = sample["__key__"]
        members = sorted(k for k in sample if not k.startswith("__"))
        assert members == ["jpg", "json", "txt"], (tar, key, members)
        assert len(key) == KEY_DIGITS and key.isdigit(), (tar, key)
        image, caption, meta = sample["jpg"], sample["txt"], sample["json"]
        assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE), (tar, key)
        assert caption and caption == meta["caption"], (tar, key)
        assert meta["key"] == key and meta["status"] == "success", (tar, key)
        captions.append(caption)
    return captions


def print_layout(tar: pathlib.Path) -> None:
    with tarfile.open(tar) as t:
        first = t.getmembers()[:3]
    print(f"first sample of {tar.relative_to(SAMPLE)}:")
    for m in first:
        print(f"  {m.name:16} {m.size:5} bytes  mode {m.mode:o}  {m.uname}:{m.gname}  "
              f"pax_headers={m.pax_headers}")


def main() -> int:
    manifest = list(csv.DictReader((SAMPLE / "MANIFEST.csv").open()))
    successes = collections.Counter(
        r["shard"] for r in manifest if r["status"] == "success")
    all_captions = []
    for split in ("train", "val"):
        tars = sorted((SAMPLE / split).glob("*.tar"))
        assert tars, f"no shards in {SAMPLE / split}"
        total = 0
        for tar in tars:
            stats = json.loads(tar.with_name(f"{tar.stem}_stats.json").read_text())
            captions = check_shard(tar)
            shard = f"{split}/{tar.name}"
            assert len(captions) == stats["successes"] == successes[shard], (
                shard, len(captions), stats["successes"], successes[shard])
            print(f"{shard}: {len(captions)} samples, {stats['count']} rows "
                  f"({stats['failed_to_download']} failed to download, "
                  f"{stats['failed_to_resize']} failed to resize)")
            total += len(captions)
            all_captions += captions
        print(f"{split}: {total} samples in {len(tars)} shards")

    by_split = collections.defaultdict(set)
    for r in manifest:
        by_split[r["split"]].add((r["source_package"], r["source_path"]))
    assert not by_split["train"] & by_split["val"], "train and val share items"
    assert all(r["split"] == "train" for r in manifest if r["status"] != "success")

    print_layout(sorted((SAMPLE / "train").glob("*.tar"))[0])
    print("captions:")
    for caption in all_captions[:: max(1, len(all_captions) // 8)]:
        print(f"  {caption}")
    print(f"ok: webdataset {wds.__version__ if hasattr(wds, '__version__') else '?'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
