#!/usr/bin/env bash
# One-time set-up for `cargo build --features mpi` (multi-process training, README "Several
# machines"): the system's MPI, which rsmpi (the `mpi` crate) binds to, and libclang for its
# bindgen. Debian/Ubuntu packages; run as root (or with sudo). Safe to run again: it installs
# only what is missing.
#
#   scripts/setup_mpi.sh       # then: cargo build --release --features mpi
#
# Open MPI runs as root only when told: `mpirun --allow-run-as-root`, or
# OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; past the machine's core count,
# `--oversubscribe`.
set -euo pipefail
packages=(openmpi-bin libopenmpi-dev libclang-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup_mpi: ${packages[*]} already installed ($(mpirun --version | head -1))"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}"
echo "setup_mpi: installed ${missing[*]} ($(mpirun --version | head -1))"
