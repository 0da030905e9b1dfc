#!/usr/bin/env bash
# Issue 15's levers on one ViT-B-32 training step, side by side in one run on the CPU: patch
# dropout 0.5 against 0.0, and bf16/f16 against f32 (time per step and peak RSS; each case in a
# process of its own, since peak RSS never goes down).
#
#   bash scripts/bench/levers.sh [DUET_BINARY] [BATCH] [STEPS]   # defaults: a release build, 16, 3
set -euo pipefail
cd "$(dirname "$0")/../.."
duet="${1:-}"
if [ -z "$duet" ]; then
  cargo build --release --quiet --bin duet
  duet="${CARGO_TARGET_DIR:-target}/release/duet"
fi
batch="${2:-16}"
steps="${3:-3}"
run() {
  "$duet" bench step --model ViT-B-32 --device cpu --batch-size "$batch" --steps "$steps" \
    --warmup 1 --json "$@"
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
  run --patch-dropout 0.0
  run --patch-dropout 0.5
  run --precision bf16
  run --precision f16
} >"$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
base = rows[0]
print("| case | batch | median s/step | vs f32, every patch | samples/s | peak RSS MiB |")
print("|---|---|---|---|---|---|")
for r in rows:
    case = f"{r['precision']}, patch dropout {r['patch_dropout']}"
    ratio = r["median_ms"] / base["median_ms"]
    print(f"| {case} | {r['batch_size']} | {r['median_ms'] / 1e3:.2f} | {ratio:.2f}x | "
          f"{r['samples_per_sec']:.2f} | {r['peak_rss_mib']:,.0f} |")
PY
