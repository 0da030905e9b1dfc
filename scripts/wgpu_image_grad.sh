#!/usr/bin/env bash
# The image tower's gradient on `--device wgpu` against the CPU's, from the same weights, at
# configs/tiny.toml's shapes (64×64 images, 8×8 patches, 65 tokens). It found (2026-12-07, Mesa
# lavapipe) wgpu's f32 image-tower gradient norm at 22.22 against the CPU's 6.12: one of
# burn-cubecl's convolution weight-gradient kernels misread the patch embedding's gradient, a
# slice of the class token's `cat` (see `batch_dense_grad` in crates/duet-model/src/vision.rs,
# which now routes around it, and crates/duet-model/tests/wgpu_gradients.rs).
#
#   scripts/wgpu_image_grad.sh DUET_BINARY   # built with --features wgpu
#
# It makes a 1-step CPU checkpoint of the tiny model, then fine-tunes it for one step with the
# text tower locked (only image-tower gradients) on cpu and on wgpu, and prints both gradient
# norms; it exits 1 when they differ by more than 1e-3 relative.
set -euo pipefail
duet=${1:?usage: wgpu_image_grad.sh DUET_BINARY (built with --features wgpu)}
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$duet" pretrain --config configs/tiny.toml --set train.steps=1 --set schedule.warmup_steps=0 \
  --set checkpoint.every_steps=1 --run-dir "$out/init" >"$out/init.log" 2>&1
for device in cpu wgpu; do
  "$duet" finetune --from "$out/init" --config configs/tiny.toml --lock-text \
    --set train.steps=2 --set schedule.warmup_steps=1 --set log.every_steps=1 \
    --set checkpoint.every_steps=100 --set train.batch_size=64 --device "$device" \
    --run-dir "$out/$device" >"$out/$device.log" 2>&1
done
python3 - "$out" <<'PY'
import json, sys
def first(device):
    rows = [json.loads(line) for line in open(f"{sys.argv[1]}/{device}/metrics.jsonl")]
    return next(r for r in rows if "loss" in r)
cpu, wgpu = first("cpu"), first("wgpu")
rel = abs(wgpu["grad_norm"] - cpu["grad_norm"]) / cpu["grad_norm"]
print(f"step 1 loss: cpu {cpu['loss']:.6f}, wgpu {wgpu['loss']:.6f}")
print(f"image-tower gradient norm: cpu {cpu['grad_norm']:.4f}, wgpu {wgpu['grad_norm']:.4f} "
      f"(rel diff {rel:.1e}) {'ok' if rel <= 1e-3 else 'MISMATCH'}")
sys.exit(0 if rel <= 1e-3 else 1)
PY
