#!/usr/bin/env bash
# Loader throughput, side by side in one run: duet's Loader vs OpenCLIP's webdataset + PIL +
# PyTorch DataLoader pipeline, on the same 256 px JPEG shards, 224 px RandomResizedCrop batches
# of 256 with tokenized captions. Then peak RSS on a 1x and a 10x copy of the set.
#
#   bash scripts/bench/loader.sh            # results as JSON lines on stdout, a table at the end
#
# Needs python3 with torch, open_clip_torch, webdataset, pillow (pip); nothing else may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${DUET_BENCH_DIR:-/tmp/duet-bench}
EPOCHS=${EPOCHS:-3}

[ -d "$OUT/1x" ] || python3 scripts/bench/make_loader_shards.py --out "$OUT/1x" --repeat 1
[ -d "$OUT/10x" ] || python3 scripts/bench/make_loader_shards.py --out "$OUT/10x" --repeat 10
cargo build --release --quiet -p duet-data --example bench_loader
BIN=${CARGO_TARGET_DIR:-target}/release/examples/bench_loader

spec() {
  local n
  n=$(find "$1" -maxdepth 1 -name '*.tar' | wc -l)
  printf '%s/{00000..%05d}.tar' "$1" $((n - 1))
}
S1=$(spec "$OUT/1x")
S10=$(spec "$OUT/10x")

results=$(mktemp)
# Throughput on the 10x set (11,880 samples: per-worker partial batches matter little).
for w in 1 2; do
  python3 scripts/bench/loader_python.py --shards "$S10" --workers "$w" --epochs 1 | tee -a "$results"
  "$BIN" --spec "$S10" --threads "$w" --epochs 1 | tee -a "$results"
done
# Peak RSS, 1x vs 10x, 2 workers/threads.
for s in "$S1" "$S10"; do
  python3 scripts/bench/loader_python.py --shards "$s" --workers 2 --epochs "$EPOCHS" | tee -a "$results"
  "$BIN" --spec "$s" --threads 2 --epochs "$EPOCHS" | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'impl':8} {'workers':>7} {'samples':>8} {'samples/s':>10} {'peak RSS MiB':>13}")
for r in rows:
    w = r.get("workers", r.get("threads"))
    print(f"{r['impl']:8} {w:>7} {r['samples']:>8} {r['samples_per_sec']:>10.1f} {r['peak_rss_mib']:>13.1f}")
PY
