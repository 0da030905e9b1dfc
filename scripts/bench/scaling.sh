#!/usr/bin/env bash
# Samples/s of the README's tiny pretraining on 1 process, on 2 MPI processes (`mpirun -np 2`),
# and on one process with `--devices cpu,cpu`, at the same global batch and data slots, in one
# run; with the bytes each rank hands to collectives per step and the seconds it spends in them
# (metrics.jsonl's comm_bytes_per_step, comm_seconds_per_step).
#
#   scripts/setup_mpi.sh && cargo build --bin duet --features mpi
#   scripts/bench/scaling.sh target/debug/duet [STEPS] [GLOBAL_BATCH]
#
# Prints a Markdown table for BENCHMARKS.md. The mean of samples_per_sec over the logged rows
# after the first (which carries start-up and the initial weights' broadcast).
set -euo pipefail
duet=$(realpath "${1:?usage: scaling.sh DUET_BINARY [STEPS] [GLOBAL_BATCH]}")
steps=${2:-60}
global=${3:-64}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--config configs/tiny.toml --set "train.steps=$steps" --set data.slots=2
  --set log.every_steps=5 --set eval.retrieval=[] --set checkpoint.every_steps=100000)
half=$((global / 2))
run() {
  local name=$1
  shift
  local started
  started=$(date +%s.%N)
  "$@" --run-dir "$work/$name" >/dev/null 2>"$work/$name.log" || { cat "$work/$name.log"; exit 1; }
  python3 - "$name" "$work/$name/metrics.jsonl" "$started" "$(date +%s.%N)" <<'PY'
import json, sys
name, path, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rows = [json.loads(l) for l in open(path) if '"loss"' in l][1:]
sps = sum(r["samples_per_sec"] for r in rows) / len(rows)
b = sum(r.get("comm_bytes_per_step", 0) for r in rows) / len(rows)
s = sum(r.get("comm_seconds_per_step", 0) for r in rows) / len(rows)
comm = f"{b / 2**20:.1f} MiB | {s * 1e3:.1f} ms" if b else "- | -"
print(f"| {name} | {sps:.1f} | {comm} | {t1 - t0:.1f} s |")
PY
}
echo "| run (global batch $global, $steps steps) | samples/s | collective payload per step per rank | time in collectives per step | wall clock |"
echo "|---|---|---|---|---|"
run "1 process" "$duet" pretrain "${common[@]}" --set "train.batch_size=$global"
run "2 processes (mpirun -np 2)" mpirun -np 2 "$duet" pretrain "${common[@]}" --set "train.batch_size=$half"
run "1 process, --devices cpu,cpu" "$duet" pretrain "${common[@]}" --set "train.batch_size=$half" --devices cpu,cpu
