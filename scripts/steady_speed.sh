#!/usr/bin/env bash
# Steady-state training speed of `train --synth`, binaries side by side (issue 24 item 6).
#
# A run's first steps are not its steady state (λ is still moving, L0 is in the hundreds and the
# AMX screen falls back to the f32 GEMM), so this continues a finished run instead: it copies the
# run folder, extends its budget by 400k samples with the LR decay off, resumes it with each
# binary in turn (interleaved, REPEAT times, since this machine's speed drifts within minutes),
# and prints the mean tokens_per_s over the resumed steps from metrics.jsonl. Every binary
# trains the same steps on the same rows from the same checkpoint.
#
#   scripts/steady_speed.sh /tmp/anneal/gated_targetl0anneal_0.75-l025 old=/tmp/unravel-old new=target/release/unravel
#
# PAUSE_PID=<pid> stops that process (SIGSTOP) during each measurement and continues it after.
set -euo pipefail
run=$1
shift
repeat=${REPEAT:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"; [[ -n ${PAUSE_PID:-} ]] && kill -CONT "$PAUSE_PID" 2>/dev/null || true' EXIT
steps_done=$(cat "$run/checkpoints/latest" | sed 's/step-0*//')
tokens=$(grep '^tokens = ' "$run/config.toml" | sed 's/tokens = //')
batch=$(grep '^batch = ' "$run/config.toml" | sed 's/batch = //')
echo "| binary | samples/s (steady, from step $steps_done) | L0 |"
echo "|---|---|---|"
for ((i = 0; i < repeat; i++)); do
    for spec in "$@"; do
        name=${spec%%=*} bin=${spec#*=}
        rm -rf "$work/run" && cp -r "$run" "$work/run"
        rm -f "$work/run"/*.safetensors "$work/run"/verify* "$work/run"/eval.json
        sed -i "s/^tokens = .*/tokens = $((tokens + 400000))/; s/^lr_decay_frac = .*/lr_decay_frac = 0.0/; s/^eval_tokens = .*/eval_tokens = $batch/" \
            "$work/run/config.toml"
        [[ -n ${PAUSE_PID:-} ]] && kill -STOP "$PAUSE_PID"
        "$bin" train --resume "$work/run" >/dev/null 2>&1
        [[ -n ${PAUSE_PID:-} ]] && kill -CONT "$PAUSE_PID"
        python3 - "$work/run/metrics.jsonl" "$steps_done" "$name" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"train"' in l]
rows = [r for r in rows if r["step"] > int(sys.argv[2]) + 40]
rate = statistics.mean(r["tokens_per_s"] for r in rows)
print(f"| {sys.argv[3]} | {rate:,.0f} | {rows[-1]['l0']:.1f} |")
PY
    done
done
