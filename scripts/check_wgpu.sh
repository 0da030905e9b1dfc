#!/usr/bin/env bash
# The wgpu path against the CPU one: the same fine-tune (the HF test fixture, the bundled
# sample, 6 steps of 16) on `--device cpu`, on `--device wgpu`, and data-parallel on two wgpu
# ranks with 2 accumulated micro-batches each; the logged losses must agree to 1e-4 relative.
# Then f16 (`--precision f16`, WGSL's `f16`, dynamic loss scale) on wgpu against f16 on the
# CPU (1e-2 relative: two f16 implementations round differently) and against f32 (2e-2); a
# forced overflow (`train.loss_scale=1e38`) must log skipped steps with the scale halving;
# bf16, which WGSL lacks, must be refused before any work, naming `train.precision`; and an
# impossible batch must be refused before any work from the host memory its loader needs.
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
run cpu-f16 --device cpu --set train.batch_size=16 --precision f16
run wgpu-f16 --device wgpu --set train.batch_size=16 --precision f16
run wgpu-overflow --device wgpu --set train.batch_size=16 --precision f16 \
  --set train.steps=3 --set train.loss_scale=1e38
refused() { # name expected-text args...: must fail before any work, its error naming the text
  local name=$1 text=$2
  shift 2
  echo "== $name: must be refused" >&2
  if "$duet" "${common[@]}" --run-dir "$out/$name" "$@" >"$out/$name.log" 2>&1; then
    echo "$name was not refused" >&2
    exit 1
  fi
  grep -q "$text" "$out/$name.log" && [[ ! -e $out/$name ]] || {
    cat "$out/$name.log" >&2
    exit 1
  }
  echo "$name refused: $(grep -o "$text.*" "$out/$name.log" | head -1)"
}
refused wgpu-bf16 "train.precision" --device wgpu --precision bf16
# wgpu does not tell a GPU's memory; the loader's part, in host memory, is still checked:
# 9,999,999,999 of the fixture's 32×32 images, 3·32²·4 B each, are 111.8 TiB.
refused wgpu-batch "of host memory for the loader" --device wgpu \
  --set train.batch_size=9999999999
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
for name, ref, bound in (("wgpu-f16", "cpu-f16", 1e-2), ("wgpu-f16", "cpu", 2e-2)):
    a, b = losses(ref), losses(name)
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    good = len(a) == len(b) and worst <= bound
    ok &= good
    print(f"{name}: {' '.join(f'{x:.6f}' for x in b)}  worst rel diff to {ref} {worst:.1e}"
          f" (bound {bound:.0e})  {'ok' if good else 'MISMATCH'}")
rows = [json.loads(line) for line in open(f"{sys.argv[1]}/wgpu-overflow/metrics.jsonl")]
rows = [r for r in rows if "loss" in r]
scales = [r.get("loss_scale") for r in rows]
good = (all(r.get("skipped") for r in rows)
        and scales == [1e38 / 2 ** i for i in range(len(rows))]
        and [r.get("skipped_steps") for r in rows] == list(range(1, len(rows) + 1)))
ok &= good
print(f"wgpu-overflow: skipped {[r.get('skipped') for r in rows]}, loss_scale {scales}  "
      f"{'ok' if good else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY
