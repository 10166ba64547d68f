#!/usr/bin/env bash
# Default settings × run length × data (issue 22, "defaults that work"): `unravel train` with no
# flag but --acts, --d-sae, --tokens and --out, then `unravel verify`.
#   cargo build --release && scripts/defaults_table.sh [WORKDIR] [ROW ...]
# Rows: qs-1M qs-10M qs-50M w768-1M w768-10M w768-50M (default: all). Data: the README quick start
# (synth --features 512 --dims 256 --density 0.1 --tokens 1000000, d_sae 1024) and a 768-d set
# (synth --features 3072 --dims 768 --density 0.01 --tokens 1000000 --store-dtype f16, d_sae 6144);
# runs longer than the dataset loop over it (epochs). Prints one markdown row per run.
set -euo pipefail
U="${UNRAVEL:-$(cd "$(dirname "$0")/.." && pwd)/target/release/unravel}"
W="${1:-/tmp/defaults-table}"
shift || true
mkdir -p "$W"
data() { # name -> folder (made once)
    local d="$W/$1"
    if [ ! -f "$d/__unravel__/manifest.json" ]; then
        case "$1" in
        qs) "$U" synth --features 512 --dims 256 --density 0.1 --tokens 1000000 --out "$d" >/dev/null ;;
        w768) "$U" synth --features 3072 --dims 768 --density 0.01 --tokens 1000000 --store-dtype f16 --out "$d" >/dev/null ;;
        esac
    fi
    echo "$d"
}
row() { # data d_sae tokens label
    local acts run
    acts="$(data "$1")"
    run="$W/$1-$3"
    local t0=$SECONDS
    [ -f "$run/eval.json" ] || "$U" train --acts "$acts" --d-sae "$2" --tokens "$3" --out "$run" >"$run.log" 2>&1 || true
    local secs=$((SECONDS - t0))
    "$U" verify --truth "$acts" --sae "$run" --min-mmcs 0.98 --min-recovered 0.95 >"$run.verify" 2>&1 && pass=PASS || pass=FAIL
    python3 - "$4" "$run" "$pass" "$secs" <<'PY'
import json, sys, tomllib
label, run, passed, secs = sys.argv[1:]
c = tomllib.load(open(f"{run}/config.toml", "rb"))
try:
    v = json.load(open(f"{run}/verify.json")); e = json.load(open(f"{run}/eval.json"))
    print(f"| {label} | {c['tokens']/1e6:.0f}M | {c['lr']:.2e} | {e['ev']:.3f} | {e['l0']:.1f} | {v['mmcs']:.4f} | {100*v['recovered']:.1f}% | {passed} | {secs} s |")
except FileNotFoundError:
    print(f"| {label} | {c['tokens']/1e6:.0f}M | {c['lr']:.2e} | (failed: see {run}.log) | | | | FAIL | {secs} s |")
PY
}
echo "| data | tokens | default lr | EV (held out) | L0 | MMCS | recovered | verify 0.98 / 0.95 | wall |"
echo "|---|---|---|---|---|---|---|---|---|"
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(qs-1M qs-10M qs-50M w768-1M w768-10M w768-50M)
for r in "${rows[@]}"; do
    case "$r" in
    qs-1M) row qs 1024 1000000 "quick start (512 in 256, p 0.1)" ;;
    qs-10M) row qs 1024 10000000 "quick start (512 in 256, p 0.1)" ;;
    qs-50M) row qs 1024 50000000 "quick start (512 in 256, p 0.1)" ;;
    w768-1M) row w768 6144 1000000 "768-d (3072 in 768, p 0.01)" ;;
    w768-10M) row w768 6144 10000000 "768-d (3072 in 768, p 0.01)" ;;
    w768-50M) row w768 6144 50000000 "768-d (3072 in 768, p 0.01)" ;;
    esac
done
