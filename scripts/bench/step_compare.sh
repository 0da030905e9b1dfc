#!/usr/bin/env bash
# Several duet builds' tiny-model training step, and PyTorch's, alternated in one run: the
# machine's speed drifts (a shared VM moved one build's median by up to 20 % between rounds),
# so builds are compared within a round, never across runs.
#
#   scripts/bench/step_compare.sh ROUNDS LABEL=COMMAND [LABEL=COMMAND …]
#   scripts/bench/step_compare.sh 3 before=/tmp/duet-before \
#       "before+malloc-env=env MALLOC_MMAP_THRESHOLD_=33554432 /tmp/duet-before" after=target/release/duet
#
# COMMAND is a duet binary, optionally behind `env VAR=value …`; each runs `bench step` with the
# flags below (override with BENCH_FLAGS). Prints the median ms per step of each build and of
# PyTorch (scripts/bench/step_time.py, same flags) per round, then each build's ratio to
# PyTorch per round as a Markdown table.
set -euo pipefail
rounds=${1:?usage: step_compare.sh ROUNDS LABEL=COMMAND …}
shift
[ $# -ge 1 ] || { echo "give at least one LABEL=COMMAND" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
python=${PYTHON:-python3}
read -r -a flags <<<"${BENCH_FLAGS:---model tiny --batch-size 64 --steps 20 --warmup 3}"
median() { "$python" -c 'import json,sys; print(json.loads(sys.stdin.read())["median_ms"])'; }
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
  for build in "$@"; do
    label=${build%%=*}
    read -r -a command <<<"${build#*=}"
    echo "$round $label $("${command[@]}" bench step "${flags[@]}" --json | median)" | tee -a "$results"
  done
  echo "$round pytorch $("$python" "$here/step_time.py" "${flags[@]}" --json 2>/dev/null | median)" \
    | tee -a "$results"
done
"$python" - "$results" "$@" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
labels = [b.split("=", 1)[0] for b in sys.argv[2:]] + ["pytorch"]
ms = {(r, l): float(v) for r, l, v in rows}
rounds = sorted({r for r, _, _ in rows}, key=int)
print("\n| build | " + " | ".join(f"round {r} ms" for r in rounds) + " | ratio to PyTorch per round |")
print("|---" * (len(rounds) + 2) + "|")
for l in labels:
    ratios = ", ".join(f"{ms[(r, l)] / ms[(r, 'pytorch')]:.2f}x" for r in rounds)
    print(f"| {l} | " + " | ".join(f"{ms[(r, l)]:.1f}" for r in rounds) + f" | {ratios} |")
PY
