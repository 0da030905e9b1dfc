#!/usr/bin/env bash
# The wgpu path against the CPU one: the same fine-tune (the HF test fixture, the bundled
# sample, 6 steps of 16) on `--device cpu`, on `--device wgpu`, and data-parallel on two wgpu
# ranks with 2 accumulated micro-batches each; the logged losses must agree to 1e-4 relative.
#
#   cargo build --release --features wgpu --bin duet
#   scripts/check_wgpu.sh target/release/duet
#
# Needs a Vulkan adapter. Without a GPU, Mesa's software one works (Debian: `apt-get install
# mesa-vulkan-drivers`): slow (about a minute per run) but a real Vulkan device.
set -euo pipefail
duet=${1:?usage: check_wgpu.sh DUET_BINARY (built with --features wgpu)}
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(finetune --from tests/fixtures/clip-tiny/hf --config configs/tiny.toml
  --set train.steps=6 --set schedule.warmup_steps=2 --set log.every_steps=1
  --set checkpoint.every_steps=3)
run() {
  local name=$1
  shift
  echo "== $name: duet ${common[*]} $*" >&2
  "$duet" "${common[@]}" --run-dir "$out/$name" "$@" >"$out/$name.log" 2>&1 || {
    tail -20 "$out/$name.log" >&2
    exit 1
  }
}
run cpu --device cpu --set train.batch_size=16
run wgpu --device wgpu --set train.batch_size=16
run wgpu2x2 --devices wgpu,wgpu --set train.batch_size=4 --set train.accum_freq=2
python3 - "$out" <<'PY'
import json, sys
def losses(name):
    rows = [json.loads(line) for line in open(f"{sys.argv[1]}/{name}/metrics.jsonl")]
    return [r["loss"] for r in rows if "loss" in r]
cpu = losses("cpu")
ok = True
for name in ("wgpu", "wgpu2x2"):
    other = losses(name)
    worst = max(abs(a - b) / abs(a) for a, b in zip(cpu, other))
    good = len(other) == len(cpu) and worst <= 1e-4
    ok &= good
    print(f"{name}: {' '.join(f'{x:.6f}' for x in other)}  worst rel diff to cpu {worst:.1e}"
          f"  {'ok' if good else 'MISMATCH'}")
print(f"cpu:     {' '.join(f'{x:.6f}' for x in cpu)}")
sys.exit(0 if ok else 1)
PY
