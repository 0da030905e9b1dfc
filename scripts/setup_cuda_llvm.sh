#!/usr/bin/env bash
# One-time set-up for `cargo build --features cuda`.
#
# burn 0.22.1's CUDA backend (cubecl-cuda 0.11) always builds cubecl-llvm with the NVPTX target,
# whose build script would download LLVM 23 into
#   ${XDG_DATA_HOME:-~/.local/share}/tracel/tracel-llvm-23.1.0-4/
# and skips the download when `.tracel-llvm-installed` is there (tracel-llvm-bundler 23.1.0-4,
# build.rs). It links whatever that tree's `llvm-config --link-static --libs` reports, and its
# nvptx code needs LLVMInitializeNVPTX* (cubecl-llvm src/nvptx/codegen.rs).
#
# The same LLVM 23.1.1 is on PyPI as two wheels: `mlc-llvm-static` (the host targets only) and
# `mlc-llvm-static-extra-targets` (NVPTX, AMDGPU, …: libLLVMNVPTX{CodeGen,Desc,Info}.a). Both
# unpacked into that directory make its `llvm-config --targets-built` list NVPTX. Only PyPI is
# needed; no fork of burn or cubecl. The build then also needs python3 on PATH (the wheels'
# llvm-config is a Python script) and Debian's libzstd-dev is not needed (the wheel ships zstd).
#
# At run time on the GPU machine, cubecl's LLVM path wants CUDA's libdevice.10.bc, looked up
# under $CUDA_PATH, /usr/local/cuda, /opt/cuda (cubecl-llvm src/nvptx/libdevice.rs).
#
#   scripts/setup_cuda_llvm.sh            # then: cargo build --release --features cuda
set -euo pipefail
version=23.1.1.post0
dest="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" \
  "mlc-llvm-static==$version" "mlc-llvm-static-extra-targets==$version"
mkdir -p "$work/unpacked"
for wheel in "$work"/mlc_llvm_static-*.whl "$work"/mlc_llvm_static_extra_targets-*.whl; do
  (cd "$work/unpacked" && "$python" -m zipfile -e "$wheel" .)
done
rm -rf "$dest"
mkdir -p "$dest"
cp -a "$work/unpacked/mlc_llvm_static/static/." "$dest/"
chmod +x "$dest/bin/llvm-config"
if ! "$dest/bin/llvm-config" --targets-built | tr ' ' '\n' | grep -qx NVPTX; then
  echo "setup_cuda_llvm: $dest/bin/llvm-config does not list NVPTX" >&2
  exit 1
fi
touch "$dest/.tracel-llvm-installed"
echo "LLVM $("$dest/bin/llvm-config" --version) with NVPTX in $dest"
