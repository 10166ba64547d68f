#!/usr/bin/env bash
# Cost of the integrity check every read passes through (the sha256 of each shard, once per
# process) next to the wall time of `train` and `audit` on 1M tokens of 768-d activations.
#
#   cargo build --release && scripts/bench_integrity.sh [WORK_DIR]
#
# Prints the seconds of `inspect --verify` (every shard hashed, plus its footer read: an upper
# bound on what a command pays for the check) and of train / audit, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/unravel}
WORK=${1:-/tmp/unravel-integrity}
mkdir -p "$WORK"

secs() { # seconds a command takes, its output discarded
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

# 1M tokens, 768 dims, f16 (1.5 GB): planted features for train; 768 planted neurons (f32) for audit.
[ -f "$WORK/acts/__unravel__/manifest.json" ] || $BIN synth --features 3072 --dims 768 --density 0.01 \
    --tokens 1000000 --store-dtype f16 --out "$WORK/acts" >/dev/null
[ -f "$WORK/neurons/__unravel__/manifest.json" ] || $BIN synth --neurons 768 --tokens 1000000 \
    --out "$WORK/neurons" >/dev/null

hash_acts=$(secs $BIN inspect "$WORK/acts" --verify --rows 0)
hash_neurons=$(secs $BIN inspect "$WORK/neurons" --verify --rows 0)
rm -rf "$WORK/run" "$WORK/audit"
train=$(secs $BIN train --acts "$WORK/acts" --d-sae 6144 --tokens 1000000 --out "$WORK/run")
audit=$(secs $BIN audit --acts "$WORK/neurons" --out "$WORK/audit")
du -sh "$WORK/acts" "$WORK/neurons"
printf 'hash acts (f16)     %6.2f s   train 1M tokens %7.1f s   check = %4.1f%% of train\n' \
    "$hash_acts" "$train" "$(echo "100 * $hash_acts / $train" | bc -l)"
printf 'hash neurons (f32)  %6.2f s   audit 1M tokens %7.1f s   check = %4.1f%% of audit\n' \
    "$hash_neurons" "$audit" "$(echo "100 * $hash_neurons / $audit" | bc -l)"
