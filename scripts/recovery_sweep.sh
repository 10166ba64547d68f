#!/usr/bin/env bash
# Recovery of planted features as density rises and as the dictionary shrinks (issue: synth/verify).
# The seed-tutorial setting: 512 features in 256 dims, Exponential(1) magnitudes, 1M tokens,
# april-2024 recipe with d_sae 1024, batch 4096, Adam lr 1e-3, λ 5 (the PyTorch reference's settings).
#   cargo build --release && scripts/recovery_sweep.sh [WORKDIR]
# Prints one markdown row per run: density, d_sae, MMCS, MCC, recovered, L0, EV.
set -euo pipefail
U="$(dirname "$0")/../target/release/unravel"
W="${1:-/tmp/recovery-sweep}"
mkdir -p "$W"
row() { # density d_sae
    local data="$W/p$1" run="$W/p$1-s$2"
    [ -f "$data/__unravel__/manifest.json" ] || "$U" synth --features 512 --dims 256 --density "$1" --tokens 1000000 --seed 7 --out "$data" >/dev/null
    [ -f "$run/eval.json" ] || "$U" train --acts "$data" --d-sae "$2" --tokens 1000000 --batch 4096 --lr 1e-3 \
        --l1-coefficient 5 --eval-tokens 65536 --out "$run" >/dev/null
    "$U" verify --truth "$data" --sae "$run" --json "$run/verify.json" >/dev/null
    python3 - "$1" "$2" "$run" <<'PY'
import json, sys
density, d_sae, run = sys.argv[1:]
v = json.load(open(f"{run}/verify.json")); e = json.load(open(f"{run}/eval.json"))
print(f"| {density} | {d_sae} | {v['mmcs']:.4f} | {v['mcc']:.4f} | {100*v['recovered']:.1f}% | {e['l0']:.1f} | {e['ev']:.3f} |")
PY
}
echo "| density | d_sae | MMCS | MCC | recovered (cos ≥ 0.9) | L0 | EV (held out) |"
echo "|---|---|---|---|---|---|---|"
for p in 0.02 0.1 0.2 0.4; do row "$p" 1024; done
for s in 512 384 256; do row 0.1 "$s"; done
