"""Read `duet curate`'s shards with Python's `webdataset` and compare with the input (issue 17).

    cargo run --bin duet -- curate --model tests/fixtures/clip-tiny/hf \
        --data datasets/sample/val/00000.tar --out /tmp/cur --top-fraction 0.5
    python3 scripts/check_curated_webdataset.py /tmp/cur datasets/sample/val/00000.tar

Every sample `webdataset.WebDataset` yields from OUT/shards/*.tar must exist in the input shard
under the same key, with byte-identical image and caption members; prints the count, exits 1
on any difference. Needs `webdataset` (PyPI).
"""

import sys
import tarfile
from pathlib import Path

import webdataset as wds


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def main() -> int:
    out, source = Path(sys.argv[1]), sys.argv[2]
    original = members(source)
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    n, bad = 0, 0
    for sample in wds.WebDataset(shards, shardshuffle=False):
        key = sample["__key__"]
        for field, value in sample.items():
            if field.startswith("__"):
                continue
            if original.get(f"{key}.{field}") != value:
                bad += 1
                print(f"{key}.{field}: differs from {source}")
        n += 1
    print(f"{n} samples read by webdataset from {len(shards)} shard(s); {bad} differences")
    return 1 if bad or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
