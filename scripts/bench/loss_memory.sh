#!/usr/bin/env bash
# Peak memory of one rank's contrastive loss (forward + backward) with the global logits matrix
# against the memory-linear loss (`train.local_loss`, OpenCLIP --local-loss --gather-with-grad),
# side by side in one run, each measurement in a process of its own (peak RSS does not go down).
#
#   cargo build --bin duet            # or --release; the loss is burn-flex, built -O3 either way
#   scripts/bench/loss_memory.sh target/debug/duet [WORLD] [EMBED_DIM]
#
# For each global batch B it prints the logits size and the RSS the loss added: global `B × B`
# against local `(B / WORLD) × B`, and their ratio. Markdown for BENCHMARKS.md.
set -euo pipefail
duet=${1:?usage: loss_memory.sh DUET_BINARY [WORLD] [EMBED_DIM]}
world=${2:-8}
embed=${3:-512}
echo "| loss | B | world | logits | global: RSS added | local: RSS added | global / local | global s | local s |"
echo "|---|---|---|---|---|---|---|---|---|"
for kind in info_nce sigmoid; do
  flag=()
  [ "$kind" = sigmoid ] && flag=(--sigmoid)
  for b in 2048 4096 8192 16384; do
    g=$("$duet" bench loss --global-batch "$b" --world "$world" --embed-dim "$embed" "${flag[@]}" --json)
    l=$("$duet" bench loss --global-batch "$b" --world "$world" --embed-dim "$embed" "${flag[@]}" --local-loss --json)
    python3 - "$kind" "$g" "$l" <<'PY'
import json, sys
kind, g, l = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {kind} | {g['global_batch']} | {g['world']} | {g['logits_mib']:.0f} MiB vs {l['logits_mib']:.0f} MiB"
      f" | {g['peak_added_mib']:.0f} MiB | {l['peak_added_mib']:.0f} MiB"
      f" | {g['peak_added_mib'] / max(l['peak_added_mib'], 1e-9):.1f}x | {g['seconds']:.2f} | {l['seconds']:.2f} |")
PY
  done
done
