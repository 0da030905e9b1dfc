#!/usr/bin/env python3
"""Build webdataset shards for the data-loader benchmark from the bundled sample set.

Reads datasets/sample/train/{00000..00002}.tar (img2dataset output: members <key>.jpg,
<key>.txt, <key>.json; 64x64 JPEGs, 1188 samples) and writes shards shaped like
img2dataset's default output (image_size=256, encode_quality=95):

  * every image is upscaled to 256x256 with PIL bicubic and re-encoded as JPEG quality 95
    (Pillow's default 4:2:0 subsampling; greyscale sources stay greyscale, as img2dataset
    leaves them);
  * members <key>.jpg, <key>.json, <key>.txt per sample, in that order (webdataset's
    TarWriter order), PAX tar with a float mtime header per member like img2dataset's tars;
  * 9-digit keys <shard:05d><index:04d> (img2dataset's scheme for 10000 samples per shard
    max), shard files 00000.tar, 00001.tar, ... with --per-shard samples each (last one short);
  * the .json keeps the source metadata with "key", "width" and "height" updated;
  * sizes.json ({"00000.tar": n, ...}) next to the shards, which OpenCLIP's
    get_dataset_size() reads when --train-num-samples is not given.

--repeat N writes the whole sample set N times over (new keys for every copy, identical
image bytes), e.g. 1x and 10x sets for a peak-RSS-stays-flat check. Output is
byte-for-byte deterministic (fixed mtime/uid/gid/mode, no user names).

Exact commands used (Python 3.11.7, Pillow 13.0.0), from the repository root:

    python3 scripts/bench/make_loader_shards.py --out /tmp/duet-bench/1x
    python3 scripts/bench/make_loader_shards.py --out /tmp/duet-bench/10x --repeat 10

The last line printed is the brace spec of the written shards, for loader_python.py --shards.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys
import tarfile

from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_SOURCES = [REPO / f"datasets/sample/train/{i:05d}.tar" for i in range(3)]

IMAGE_SIZE = 256
JPEG_QUALITY = 95
# Fixed float mtime: PAX tarfile then writes an "mtime=" extended header per member, as the
# img2dataset tars (written via webdataset's TarWriter with time.time()) have.
MTIME = 1795345221.25


def read_samples(paths: list[pathlib.Path]) -> list[dict[str, bytes]]:
    """Samples in shard order, each {"jpg": bytes, "txt": bytes, "json": bytes}."""
    samples = []
    for path in paths:
        current_key, current = None, None
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                if key != current_key:
                    if current is not None:
                        samples.append(current)
                    current_key, current = key, {}
                current[ext] = tar.extractfile(member).read()
        if current is not None:
            samples.append(current)
    kept = [s for s in samples if {"jpg", "txt", "json"} <= s.keys()]
    if len(kept) != len(samples):
        print(f"skipped {len(samples) - len(kept)} incomplete samples", file=sys.stderr)
    return kept


def reencode(jpg: bytes) -> bytes:
    with Image.open(io.BytesIO(jpg)) as im:
        im.load()
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        big = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
    ap.add_argument("--repeat", type=int, default=1, help="write the sample set N times (default 1)")
    ap.add_argument("--per-shard", type=int, default=500, help="samples per shard (default 500)")
    ap.add_argument("--src", type=pathlib.Path, nargs="+", default=DEFAULT_SOURCES,
                    help="source img2dataset tars (default: datasets/sample/train/0000{0,1,2}.tar)")
    args = ap.parse_args()
    if args.repeat < 1 or not 1 <= args.per_shard <= 10_000:
        ap.error("--repeat must be >= 1 and --per-shard in 1..10000 (4-digit sample index)")

    base = read_samples(args.src)
    images = [reencode(s["jpg"]) for s in base]
    metas = [json.loads(s["json"]) for s in base]

    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("*.tar"):
        stale.unlink()

    total = len(base) * args.repeat
    n_shards = (total + args.per_shard - 1) // args.per_shard
    sizes: dict[str, int] = {}
    for shard in range(n_shards):
        name = f"{shard:05d}.tar"
        first, last = shard * args.per_shard, min(total, (shard + 1) * args.per_shard)
        with tarfile.open(args.out / name, "w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(first, last):
                src = i % len(base)
                key = f"{shard:05d}{i - first:04d}"
                meta = dict(metas[src], key=key, width=IMAGE_SIZE, height=IMAGE_SIZE)
                add_member(tar, f"{key}.jpg", images[src])
                add_member(tar, f"{key}.json", json.dumps(meta, indent=4).encode())
                add_member(tar, f"{key}.txt", base[src]["txt"])
        sizes[name] = last - first

    (args.out / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    nbytes = sum((args.out / n).stat().st_size for n in sizes)
    print(f"wrote {total} samples ({len(base)} x {args.repeat}) in {n_shards} shards, "
          f"{nbytes / 2**20:.1f} MiB, to {args.out}", file=sys.stderr)
    print(f"{args.out}/{{00000..{n_shards - 1:05d}}}.tar")
    return 0


if __name__ == "__main__":
    sys.exit(main())
