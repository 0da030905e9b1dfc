#!/usr/bin/env bash
# Issue 17's demonstration that curation works on real data (results in BENCHMARKS.md):
#   1. split the bundled training pairs: shard 00000 (499 pairs) stays clean; shards 00001-00002
#      (689 pairs) get 30 % of their captions swapped between images
#      (scripts/datasets/make_noisy_captions.py, seed 0);
#   2. train the tiny config's model on the clean split only (the scorer);
#   3. `duet curate --top-fraction 0.7` the noisy shards with it, and count the mismatched pairs
#      removed and the good pairs kept;
#   4. train the tiny config on the noisy shards, on the curated ones and (the ceiling) on the
#      same shards before the swap, same steps, for each seed, and report held-out R@5 on the
#      132 val pairs (the mean of image->text and text->image) at the end of each run.
#
#   bash scripts/bench/curation_demo.sh [OUT]   (DUET=path/to/duet, SEEDS="0 1 2", FRACTION=0.7)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/duet-curation-demo}
DUET=${DUET:-target/release/duet}
SEEDS=${SEEDS:-0 1 2}
FRACTION=${FRACTION:-0.7}
rm -rf "$OUT"
mkdir -p "$OUT"

python3 scripts/datasets/make_noisy_captions.py --fraction 0.3 --seed 0 --out "$OUT/noisy" \
  datasets/sample/train/00001.tar datasets/sample/train/00002.tar

train() { # name spec seed
  "$DUET" pretrain --config configs/tiny.toml --set "data.train=\"$2\"" --set "train.seed=$3" \
    --run-dir "$OUT/runs/$1-seed$3" > "$OUT/runs-$1-seed$3.log" 2>&1
}
mkdir -p "$OUT/runs"
train scorer datasets/sample/train/00000.tar 0
"$DUET" curate --model "$OUT/runs/scorer-seed0" --data "$OUT/noisy/{00000..00001}.tar" \
  --out "$OUT/curated" --top-fraction "$FRACTION" > "$OUT/curate.log" 2>&1

for seed in $SEEDS; do
  train noisy "$OUT/noisy/{00000..00001}.tar" "$seed"
  train curated "$OUT/curated/shards/{00000..00001}.tar" "$seed"
  train clean "datasets/sample/train/{00001..00002}.tar" "$seed"
done

python3 - "$OUT" "$SEEDS" <<'PY'
import json, sys, tarfile
from pathlib import Path
out, seeds = Path(sys.argv[1]), sys.argv[2].split()
mismatched = set((out / "noisy/mismatched.txt").read_text().split())
kept = set()
for i in range(2):
    for m in tarfile.open(out / f"curated/shards/{i:05d}.tar").getmembers():
        kept.add(f"{i:05d}/{m.name.split('.')[0]}")
total = sum(1 for i in range(2) for m in tarfile.open(out / f"noisy/{i:05d}.tar").getmembers() if m.name.endswith(".txt"))
good = total - len(mismatched)
print(f"pairs {total}: {len(mismatched)} mismatched, {good} good")
print(f"curated keeps {len(kept)}: mismatched removed {len(mismatched - kept)}/{len(mismatched)} "
      f"({100 * len(mismatched - kept) / len(mismatched):.1f} %), good kept {len(kept - mismatched)}/{good} "
      f"({100 * len(kept - mismatched) / good:.1f} %)")
def r5(run):
    rows = [json.loads(l) for l in (out / "runs" / run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "val/i2t_r5" in r][-1]
    return last["step"], last["val/i2t_r5"], last["val/t2i_r5"]
print("held-out R@5 (val, 132 pairs) at the last step: i2t / t2i / mean")
for name in ["noisy", "curated", "clean"]:
    means = []
    for seed in seeds:
        step, a, b = r5(f"{name}-seed{seed}")
        means.append((a + b) / 2)
        print(f"  {name:8s} seed {seed}: step {step}  {a:5.1f} / {b:5.1f} / {(a + b) / 2:5.1f}")
    print(f"  {name:8s} mean over seeds: {sum(means) / len(means):5.1f}")
PY
