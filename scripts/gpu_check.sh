#!/usr/bin/env bash
# Issue 18: the first GPU run, all of it in one command (results go to BENCHMARKS.md).
#
#   scripts/gpu_check.sh OUT [BUDGET_S]
#
# Needs gpu-carry/ (scripts/gpu_prepare.sh makes it here, and `run`'s `carry` brings it):
# duet.xz.part-* with duet.xz.sha256 (a `duet` with `--features cuda,wgpu`, profile `gpu`,
# xz-packed and split to travel in several calls), wheels/
# (open_clip and its missing dependencies) and debs/ (the Vulkan loader). DUET=path overrides
# the binary (the dry run on a machine without a GPU uses the one it built).
#
# Parts, in order of value; each runs under `timeout`, its output in OUT/NAME.out and its
# device memory sampled by nvidia-smi every 200 ms into OUT/NAME.mem. A failing part is logged
# with its error and the next part runs; a part whose turn comes after BUDGET_S seconds
# (default 420: the check ends within 8 minutes) is skipped as out of time.
#   1. env: GPU, driver, CUDA, torch; libdevice.10.bc found and CUDA_PATH pointed at it; the
#      Vulkan loader unpacked and an NVIDIA ICD found (or written for the driver's library).
#   2. correctness: the parity fixture's fine-tune (6 steps of 16, as scripts/check_wgpu.sh)
#      on cpu, cuda and wgpu, f32; and bf16 on cpu and cuda (wgpu has no bf16: f16 there);
#      an impossible batch refused on cuda from the GPU's free memory.
#   3. speed: `duet bench step --model ViT-B-32 --batch-size 256` on cuda f32/bf16 and wgpu
#      f32/f16, each first with cubecl's caches empty (cold: kernel compilation and autotuning
#      fall in its warm-up steps) and later again (warm: the caches on disk); then
#      scripts/bench/step_time.py (open_clip, AdamW) fp32 with TF32, amp_bf16, fp32 without.
# cubecl keeps its caches under the working directory (target/environment/): the parts run in
# OUT/work, which links the repository's configs/, datasets/, tests/ and scripts/.
# OUT/results.json is made at the end by scripts/gpu_report.py (losses compared, ratios, MFU).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: gpu_check.sh OUT [BUDGET_S]}
budget=${2:-420}
mkdir -p "$out/work"
out=$(cd "$out" && pwd)
log="$out/log.txt"
start=$(date +%s)
say() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$log"; }

# The parts' JSON lines: name, command, exit status, seconds, and the tail of a failure.
record() { # name rc seconds command...
  python3 - "$out/parts.jsonl" "$@" <<'PY'
import json, sys
path, name, rc, seconds, *command = sys.argv[1:]
tail = ""
if rc != "0":
    try:
        tail = open(path.rsplit("/", 1)[0] + f"/{name}.out", errors="replace").read()[-1500:]
    except OSError:
        pass
with open(path, "a") as f:
    f.write(json.dumps({"name": name, "rc": int(rc) if rc.lstrip("-").isdigit() else rc,
                        "seconds": float(seconds), "command": " ".join(command),
                        "error_tail": tail}) + "\n")
PY
}

part() { # name limit_s command...
  local name=$1 limit=$2
  shift 2
  local now=$(($(date +%s) - start))
  if ((now + 15 > budget)); then
    say "$name: skipped, out of time"
    record "$name" skipped 0 "$@"
    return
  fi
  ((limit > budget - now)) && limit=$((budget - now))
  say "$name: $*"
  local sampler=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
      >"$out/$name.mem" 2>/dev/null &
    sampler=$!
  fi
  local t0 rc
  t0=$(date +%s.%N)
  (cd "$out/work" && timeout -k 5 "$limit" "$@") >"$out/$name.out" 2>&1
  rc=$?
  [[ -n $sampler ]] && kill "$sampler" 2>/dev/null
  local seconds
  seconds=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
  if ((rc == 0)); then
    say "$name: ok in ${seconds} s"
  else
    local why="exit $rc"
    ((rc == 124 || rc == 137)) && why="timed out after $limit s"
    # The error's own line (anyhow's `Error:`, a panic's message, Python's last line) first.
    local first
    first=$(grep -m1 -E '^Error|panicked at|^[A-Za-z]*Error:' "$out/$name.out" | cut -c1-300)
    say "$name: FAILED ($why) in ${seconds} s: ${first:-$(tail -c 300 "$out/$name.out" | tr '\n' ' ')}"
  fi
  record "$name" "$rc" "$seconds" "$@"
}

# --- 1. environment ---------------------------------------------------------------------
# anyhow's errors in one line; a panic still prints its backtrace.
export RUST_LIB_BACKTRACE=0 RUST_BACKTRACE=1
for d in configs datasets tests scripts; do ln -sfn "$repo/$d" "$out/work/$d"; done
duet=${DUET:-}
if [[ -z $duet ]]; then
  # The packed binary travels in parts, one `run` call each (see scripts/gpu_prepare.sh).
  parts=("$repo"/gpu-carry/duet.xz.part-*)
  if [[ -f ${parts[0]} ]]; then
    cat "${parts[@]}" >"$out/duet.xz"
    if (cd "$out" && sed 's/gpu-carry\///' "$repo/gpu-carry/duet.xz.sha256" | sha256sum -c --quiet -); then
      xz -dc "$out/duet.xz" >"$out/duet" && chmod +x "$out/duet" && duet="$out/duet"
    else
      say "gpu-carry/duet.xz.part-*: checksum mismatch (${#parts[@]} parts; all of them carried?)"
    fi
    rm -f "$out/duet.xz"
  else
    say "no gpu-carry/duet.xz.part-* and no DUET: run scripts/gpu_prepare.sh here first"
  fi
fi
duet=$(realpath "${duet:-/nonexistent}" 2>/dev/null || echo /nonexistent)
{
  echo "date: $(date -u +%FT%TZ)"
  echo "duet: $duet ($(stat -c %s "$duet" 2>/dev/null) bytes) $("$duet" --version 2>&1)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1
  nproc
} >"$out/env.txt" 2>&1
say "env: $(tr '\n' ' ' <"$out/env.txt")"

# cubecl's CUDA path reads $CUDA_PATH/nvvm/libdevice/libdevice.10.bc and nothing else when
# CUDA_PATH is set, else /usr/local/cuda, /opt/cuda, /usr/lib/cuda, /usr.
libdevice=""
for root in "${CUDA_PATH:-}" "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")" \
  /usr/local/cuda /opt/cuda /usr/lib/cuda /usr; do
  if [[ -n $root && -f $root/nvvm/libdevice/libdevice.10.bc ]]; then
    libdevice=$root/nvvm/libdevice/libdevice.10.bc
    export CUDA_PATH=$root
    break
  fi
done
if [[ -z $libdevice ]]; then
  # Wheels carry copies (nvidia-cuda-nvcc, Triton): point a CUDA_PATH tree at one.
  roots=(/usr /opt $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null))
  found=$(find "${roots[@]}" -name libdevice.10.bc -path '*nvvm*' 2>/dev/null | head -1)
  [[ -z $found ]] && found=$(find "${roots[@]}" -name 'libdevice*.bc' 2>/dev/null | head -1)
  if [[ -n $found ]]; then
    mkdir -p "$out/cuda/nvvm/libdevice"
    ln -sf "$found" "$out/cuda/nvvm/libdevice/libdevice.10.bc"
    libdevice=$found
    export CUDA_PATH=$out/cuda
  fi
fi
say "libdevice: ${libdevice:-NOT FOUND} (CUDA_PATH=${CUDA_PATH:-unset})"

# wgpu needs the Vulkan loader (libvulkan.so.1) and the NVIDIA driver's ICD.
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
  for deb in "$repo"/gpu-carry/debs/*.deb; do
    [[ -f $deb ]] && dpkg-deb -x "$deb" "$out/vulkan"
  done
  lib=$(find "$out/vulkan" -name 'libvulkan.so.1' 2>/dev/null | head -1)
  [[ -n $lib ]] && export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
fi
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/share/vulkan/icd.d/nvidia_icd*.json \
  /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1)
if [[ -z $icd ]]; then
  glx=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
  [[ -z $glx ]] && glx=$(find /usr /lib* -name 'libGLX_nvidia.so.0' 2>/dev/null | head -1)
  if [[ -n $glx ]]; then
    icd=$out/nvidia_icd.json
    printf '{"file_format_version": "1.0.1", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' \
      "$glx" >"$icd"
  fi
fi
[[ -n $icd ]] && export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
say "vulkan: loader $(ldconfig -p 2>/dev/null | grep -c libvulkan.so.1) system / LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}; icd ${icd:-NOT FOUND}"

# open_clip for step_time.py: the wheels installed into OUT/py, the machine's torch kept.
if ! python3 -c "import open_clip" 2>/dev/null && [[ -d $repo/gpu-carry/wheels ]]; then
  python3 -m pip install --quiet --no-index --no-deps --target "$out/py" "$repo"/gpu-carry/wheels/*.whl \
    >>"$log" 2>&1 || say "pip install of gpu-carry/wheels failed"
  export PYTHONPATH="$out/py:${PYTHONPATH:-}"
fi
python3 -c "import open_clip; print('open_clip', open_clip.__version__)" >>"$out/env.txt" 2>&1

# --- 2. correctness and 3. speed, most valuable first -------------------------------------
tune=(finetune --from tests/fixtures/clip-tiny/hf --config configs/tiny.toml
  --set train.steps=6 --set schedule.warmup_steps=2 --set log.every_steps=1
  --set checkpoint.every_steps=100 --set train.batch_size=16)
# The dry run without a GPU (README "GPU") shrinks the step: GPU_CHECK_MODEL=tiny GPU_CHECK_BATCH=8.
model=${GPU_CHECK_MODEL:-ViT-B-32}
batch=${GPU_CHECK_BATCH:-256}
bench=(bench step --model "$model" --batch-size "$batch" --warmup 3 --steps 10 --json)
torch=(python3 scripts/bench/step_time.py --model "$model" --batch-size "$batch" --warmup 3
  --steps 10 --device cuda --json)

part tune-cpu-f32 90 "$duet" "${tune[@]}" --run-dir "$out/runs/cpu-f32" --device cpu
part tune-cuda-f32 120 "$duet" "${tune[@]}" --run-dir "$out/runs/cuda-f32" --device cuda
# The memory refusal on CUDA: 400,000 samples of the tiny model need about 20 GB of host memory
# for the loader (fits the machine's 128 GiB) and a terabyte of activations on the GPU, so the
# refusal must come from the device part, reading the GPU's free memory (exit 1, no run dir).
part cuda-batch-refused 60 bash -c 'text=$("$@" 2>&1); rc=$?; echo "$text"; [[ $rc == 1 &&
  $text == *"on the first GPU of each process"* ]]' refuse "$duet" pretrain --config \
  configs/tiny.toml --device cuda --set train.batch_size=400000 --run-dir "$out/runs/refused"
part bench-cuda-f32-cold 150 "$duet" "${bench[@]}" --device cuda --precision f32
part torch-fp32-tf32 90 "${torch[@]}" --precision fp32 --tf32
part torch-amp_bf16 90 "${torch[@]}" --precision amp_bf16
part tune-cpu-bf16 90 "$duet" "${tune[@]}" --run-dir "$out/runs/cpu-bf16" --device cpu --precision bf16
part tune-cuda-bf16 120 "$duet" "${tune[@]}" --run-dir "$out/runs/cuda-bf16" --device cuda --precision bf16
part bench-cuda-bf16-cold 150 "$duet" "${bench[@]}" --device cuda --precision bf16
part tune-wgpu-f32 120 "$duet" "${tune[@]}" --run-dir "$out/runs/wgpu-f32" --device wgpu
# The image-tower gradient on wgpu against the CPU's at the tiny config's shapes
# (scripts/wgpu_image_grad.sh; wrong on lavapipe until vision.rs's batch_dense_grad routed
# around a burn-cubecl kernel): does a real GPU's Vulkan driver agree too?
part wgpu-image-grad 90 bash "$repo/scripts/wgpu_image_grad.sh" "$duet"
part bench-wgpu-f32-cold 150 "$duet" "${bench[@]}" --device wgpu --precision f32
part bench-cuda-f32-warm 90 "$duet" "${bench[@]}" --device cuda --precision f32
part bench-cuda-bf16-warm 90 "$duet" "${bench[@]}" --device cuda --precision bf16
part bench-wgpu-f16-cold 150 "$duet" "${bench[@]}" --device wgpu --precision f16
part bench-wgpu-f32-warm 90 "$duet" "${bench[@]}" --device wgpu --precision f32
part torch-fp32 90 "${torch[@]}" --precision fp32

python3 "$repo/scripts/gpu_report.py" "$out" >"$out/results.txt" 2>&1 ||
  say "gpu_report.py failed: $(tail -c 400 "$out/results.txt")"
cat "$out/results.txt" | tee -a "$log"
say "done"
