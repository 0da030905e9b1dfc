#!/usr/bin/env bash
# duet's training step next to OpenCLIP's (PyTorch eager, fp32) on the same machine, in one run,
# on a fixed synthetic batch (no loader, no disk): `duet bench step` and scripts/bench/step_time.py
# do the same work (both towers, InfoNCE, backward, global-norm clip, AdamW, clamp).
#
#   cargo build --release --bin duet
#   scripts/bench/step_time.sh target/release/duet            # CPU: duet on flex
#   scripts/bench/step_time.sh target/release/duet --device wgpu   # (a wgpu build) on a GPU
#
# Cases: `tiny` at its 64 px with configs/tiny.toml's batch of 64, and ViT-B-32 at 224 px with a
# CPU-sized batch of 16 (fewer steps: one takes seconds on a CPU). Prints a Markdown table for
# BENCHMARKS.md; the ratio is duet's median step time over PyTorch's (below 1: duet faster).
set -euo pipefail
duet=${1:?usage: step_time.sh DUET_BINARY [duet bench step flags…]}
shift
here="$(cd "$(dirname "$0")" && pwd)"
python=${PYTHON:-python3}
cases=(
  "tiny 64 20 3"
  "ViT-B-32 16 5 1"
)
echo "| model | px | batch | duet ms/step | PyTorch ms/step | ratio |"
echo "|---|---|---|---|---|---|"
for case in "${cases[@]}"; do
  read -r model batch steps warmup <<<"$case"
  common=(--model "$model" --batch-size "$batch" --steps "$steps" --warmup "$warmup" --json)
  d=$("$duet" bench step "${common[@]}" "$@")
  p=$("$python" "$here/step_time.py" "${common[@]}")
  "$python" - "$d" "$p" <<'PY'
import json, sys
d, p = (json.loads(a) for a in sys.argv[1:3])
print(f"| {d['model']} | {d['image_size']} | {d['batch_size']} | {d['median_ms']:.1f} | "
      f"{p['median_ms']:.1f} | {d['median_ms'] / p['median_ms']:.2f}x |")
PY
done
