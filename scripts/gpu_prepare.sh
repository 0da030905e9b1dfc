#!/usr/bin/env bash
# Prepares gpu-carry/ (git-ignored) for scripts/gpu_check.sh on a GPU machine without network:
#   gpu-carry/duet.xz  a `duet` with `--features cuda,wgpu`, profile `gpu` (size-optimised,
#                      thin LTO, no debug info, stripped), packed with `xz --x86 -9e`;
#   gpu-carry/wheels/  open_clip_torch and the two dependencies the GPU image lacks (ftfy,
#                      wcwidth), for scripts/bench/step_time.py;
#   gpu-carry/debs/    Debian's Vulkan loader (libvulkan1), for the wgpu backend.
# What travels with one `run` call is at most 64 MiB including the tracked tree (about 50 MiB),
# so the packed binary (about 35 MB) is split into 12 MiB parts, each carried by its own call;
# carried files stay on the warm machine between calls. With parts 0..N:
#   run 1..N: carry ["gpu-carry/duet.xz.part-K"], command `true`   (K = 0 .. N-1)
#   run N+1:  carry ["gpu-carry/duet.xz.part-N", "gpu-carry/duet.xz.sha256",
#             "gpu-carry/wheels", "gpu-carry/debs"],
#             command `bash scripts/gpu_check.sh /tmp/gc 420; cp /tmp/gc/*.txt /tmp/gc/*.json $OUT/`
#
#   scripts/setup_cuda_llvm.sh      # once
#   scripts/gpu_prepare.sh          # CARGO_TARGET_DIR defaults to ~/.cache/duet-gpu-target
# Without nvcc the CUDA bindings are pinned to CUDA 13.0, the GPU machine's (CUDARC_CUDA_VERSION).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$HOME/.cache/duet-gpu-target}
mkdir -p gpu-carry/wheels gpu-carry/debs
if ! command -v nvcc >/dev/null; then
  export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
fi
CARGO_TARGET_DIR=$target cargo build --profile gpu --features cuda,wgpu --bin duet
binary=$target/gpu/duet
echo "duet (profile gpu, stripped): $(stat -c %s "$binary") bytes"
xz --x86 --lzma2=preset=9e -T1 -c "$binary" >gpu-carry/duet.xz
echo "gpu-carry/duet.xz: $(stat -c %s gpu-carry/duet.xz) bytes"
# A `run` call takes 64 MiB with the tracked tree (50 MiB): the binary goes in 12 MiB parts.
(cd gpu-carry && sha256sum duet.xz >duet.xz.sha256 && rm -f duet.xz.part-* &&
  split -b 12M -d -a 1 duet.xz duet.xz.part- && rm duet.xz)
ls -la gpu-carry

python3 -m pip download --quiet --no-deps --only-binary=:all: -d gpu-carry/wheels \
  open_clip_torch==3.3.0 ftfy wcwidth
(cd gpu-carry/debs && apt-get download libvulkan1)
du -sh gpu-carry/*
