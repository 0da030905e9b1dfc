#!/usr/bin/env bash
# The README's main job (configs/tiny.toml, 300 steps) in each precision, side by side: final
# training loss, held-out R@5 both ways, and the f16 loss scale's skipped steps, with each
# precision's gap to f32 (issue 15's bar: loss within 2 %, R@5 within 2 points).
#
#   bash scripts/precision/compare.sh [OUT_DIR] [PRECISIONS...]   # default: runs/precision f32 bf16 f16
#
# DUET_BIN=path runs that binary instead of building one; DUET_DEVICE=wgpu trains there (a
# binary built with --features wgpu; f32 must be among the precisions for the gaps).
# DUET_SEED=N sets `train.seed` (init, data order and every sample's augmentation), to see how
# far two seeds of one precision land apart next to the precisions' gaps.
#
# CPU (flex): bf16/f16 matrix products go through f32 there, so they are slower, not faster;
# this checks the numerics, not speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-runs/precision}"
shift || true
precisions=("$@")
[ ${#precisions[@]} -gt 0 ] || precisions=(f32 bf16 f16)
duet="${DUET_BIN:-}"
if [ -z "$duet" ]; then
  cargo build --release --quiet --bin duet
  duet="${CARGO_TARGET_DIR:-target}/release/duet"
fi
device="${DUET_DEVICE:-cpu}"
seed=()
[ -z "${DUET_SEED:-}" ] || seed=(--set "train.seed=$DUET_SEED")
for p in "${precisions[@]}"; do
  rm -rf "$out/$p"
  start=$(date +%s)
  "$duet" pretrain --config configs/tiny.toml --precision "$p" --device "$device" \
    "${seed[@]}" --run-dir "$out/$p" > "$out-$p.log" 2>&1
  echo "$p: $(( $(date +%s) - start )) s"
done
python3 - "$out" "${precisions[@]}" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
def last(p):
    rows = [json.loads(l) for l in open(f"{out}/{p}/metrics.jsonl")]
    train = [r for r in rows if "loss" in r]
    ev = [r for r in rows if "val/i2t_r5" in r][-1]
    return train[-1]["loss"], ev["val/i2t_r5"], ev["val/t2i_r5"], train[-1].get("skipped_steps")
base = last("f32") if "f32" in names else None
print(f"{'precision':10} {'final loss':>10} {'vs f32':>8} {'i2t R@5':>8} {'t2i R@5':>8} {'skipped':>8}")
for p in names:
    loss, i2t, t2i, skipped = last(p)
    gap = f"{100 * (loss - base[0]) / base[0]:+.2f}%" if base else "-"
    print(f"{p:10} {loss:10.4f} {gap:>8} {i2t:8.2f} {t2i:8.2f} {str(skipped if skipped is not None else '-'):>8}")
    if base and p != "f32":
        print(f"{'':10} R@5 gap to f32: i2t {i2t - base[1]:+.2f} points, t2i {t2i - base[2]:+.2f} points")
PY
