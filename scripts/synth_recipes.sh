#!/usr/bin/env bash
# Issue 24 item 5: recipes side by side on the SynthSAEBench-16k preset at one budget, each with
# λ steered to L0 25 and 20 (width 4096, batch 1024, lr 3e-4 as the published rows), then scored
# by `unravel verify --synth` on 100k held-out samples. Runs that already have a verify.json are
# skipped, so the script can be re-run after an interruption. Prints one table row per run.
#
#   scripts/synth_recipes.sh target/release/unravel /tmp/recipes 4000000 april-2024 gated
#
# A recipe may carry extra train flags after a colon, e.g. `april-2024:--lr=1e-3`; the name
# `fixed6` runs april-2024 at a fixed λ 6 with no steering (the issue's own measurement).
# TARGETS="20" runs only that target L0.
set -euo pipefail
bin=$1 out=$2 tokens=$3
shift 3
mkdir -p "$out"
for spec in "$@"; do
    recipe=${spec%%:*}
    extra=""
    [[ $spec == *:* ]] && extra=${spec#*:}
    targets=${TARGETS:-25 20}
    [[ $recipe == fixed6 ]] && targets="none"
    for l0 in $targets; do
        name=$(echo "$spec" | tr ':=' '__' | tr -d -- '-' )-l0$l0
        run=$out/$name
        [[ -f $run/verify.json ]] && continue
        rm -rf "$run"
        if [[ $recipe == fixed6 ]]; then
            steer=(--recipe april-2024 --l1-coefficient 6)
        else
            steer=(--recipe "$recipe" --l1-coefficient 6 --target-l0 "$l0")
        fi
        # shellcheck disable=SC2086
        "$bin" train --synth synth-sae-bench-16k --d-sae 4096 --tokens "$tokens" --batch 1024 \
            --lr 3e-4 "${steer[@]}" $extra --eval-tokens 100000 --out "$run" 2>&1 |
            tr '\r' '\n' | grep -E "^(trained|final)" || true
        "$bin" verify --synth synth-sae-bench-16k --sae "$run" >"$run/verify.txt" 2>&1 || true
    done
done
python3 - "$out" <<'PY'
import json, pathlib, sys
print("| run | L0 | F1 | MCC | uniqueness | EV | shrinkage |")
print("|---|---|---|---|---|---|---|")
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/verify.json")):
    v = json.load(open(f))
    s = v.get("synth", v)
    def g(*keys):
        for k in keys:
            for d in (s, v, v.get("samples", {}) or {}):
                if isinstance(d, dict) and k in d and isinstance(d[k], (int, float)):
                    return d[k]
        return float("nan")
    print(f"| {f.parent.name} | {g('l0'):.1f} | {g('f1'):.3f} | {g('mcc'):.3f} | "
          f"{g('uniqueness'):.3f} | {g('explained_variance', 'ev'):.3f} | {g('shrinkage'):.3f} |")
PY
