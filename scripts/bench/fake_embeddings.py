"""Writes a `duet embed --data` output directory for a large spec without running a model, for
the curation memory benchmark (scripts/bench/curate_memory.sh): shard i of the spec is a link
to template shard i % T, its saved rows (`.jsonl`, `.json`) are the template's, and its image
and text embeddings are seeded random unit vectors of the template's width.

    python3 scripts/bench/fake_embeddings.py TEMPLATE_EMBEDDINGS LINKS_DIR OUT_EMBEDDINGS SHARDS
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    template, links, out, shards = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    manifest = json.loads((template / "embed.json").read_text())
    sources = manifest["shards"]
    dim = manifest["embed_dim"]
    links.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(shards):
        t = i % len(sources)
        link = links / f"{i:05d}.tar"
        if not link.exists():
            os.symlink(os.path.abspath(sources[t]), link)
        names.append(str(link))
        rows = (template / f"{t:05d}.jsonl").read_text().count("\n")
        for kind in ("images", "texts"):
            x = rng.standard_normal((rows, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            np.save(out / f"{i:05d}.{kind}.npy", x)
        shutil.copy(template / f"{t:05d}.json", out / f"{i:05d}.json")
        shutil.copy(template / f"{t:05d}.jsonl", out / f"{i:05d}.jsonl")
    manifest["spec"] = f"{links}/{{00000..{shards - 1:05d}}}.tar"
    manifest["shards"] = names
    (out / "embed.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(manifest["spec"])


if __name__ == "__main__":
    main()
