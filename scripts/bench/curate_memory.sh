#!/usr/bin/env bash
# Issue 17: `duet curate`'s memory is bounded by its settings, not by the spec (results in
# BENCHMARKS.md, "Curation memory"). For each shard count K in SHARDS: a spec of K links to the
# bundled training shards (about 396 pairs each), its embeddings directory written directly by
# scripts/bench/fake_embeddings.py (the linked shards' real saved rows, seeded random unit
# embeddings), so that pass 1 has nothing to embed; then `duet curate` with every whole-spec
# filter under /usr/bin/time -v, for each binary in DUETS: peak RSS and wall time.
#
#   DUETS="new=path/to/duet old=path/to/older/duet" SHARDS="25 250 2525" \
#     bash scripts/bench/curate_memory.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/duet-curate-memory}
DUETS=${DUETS:-new=target/release/duet}
SHARDS=${SHARDS:-25 2525}
MODEL=${MODEL:-tests/fixtures/clip-tiny/hf}
FILTERS=${FILTERS:---top-fraction 0.01 --dedup-exact --dedup-near 0.9 --dedup-clusters 64}
# Given to the binaries that have the option (duet before 14e5065 held the whole spec).
BLOCK=${BLOCK:-16M}
rm -rf "$OUT"
mkdir -p "$OUT"
first=${DUETS%% *}
"${first#*=}" embed --model "$MODEL" --data "datasets/sample/train/{00000..00002}.tar" \
  --out "$OUT/template" > "$OUT/template.log" 2>&1

echo "binary shards pairs peak_rss_mib wall_s kept"
for k in $SHARDS; do
  for entry in $DUETS; do
    name=${entry%%=*}
    duet=${entry#*=}
    run="$OUT/$name-$k"
    spec=$(python3 scripts/bench/fake_embeddings.py "$OUT/template" "$OUT/links-$k" \
      "$run/embeddings" "$k")
    block=()
    if "$duet" curate --help | grep -q -- --block-memory; then
      block=(--block-memory "$BLOCK")
    fi
    # shellcheck disable=SC2086
    /usr/bin/time -v "$duet" curate --model "$MODEL" --data "$spec" --out "$run" $FILTERS \
      "${block[@]}" > "$run.log" 2>&1 || {
      tail -20 "$run.log" >&2
      exit 1
    }
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$run.log")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$run.log")
    python3 - "$run/curate.json" "$name" "$k" "$rss" "$wall" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
name, k, rss, wall = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
parts = [float(p) for p in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print(f"{name} {k} {report['pairs']} {rss / 1024:.0f} {seconds:.0f} {report['kept']}")
PY
    rm -rf "$run/embeddings" "$run/shards"
  done
done
