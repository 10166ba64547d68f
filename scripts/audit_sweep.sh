#!/usr/bin/env bash
# Precision / recall of `unravel audit` on planted polysemantic neurons as the data gets harder.
# Every row plants 10% distractors (the default); the last column audits the same data with the
# rank tests off (--min-auroc 0 --topk-alpha 0: the mean-only rule of audit.json version 1).
# Usage: scripts/audit_sweep.sh [OUT_DIR]   (release binary; ~2 min on 2 cores)
set -euo pipefail
U=${UNRAVEL:-target/release/unravel}
OUT=${1:-sweep-audit}
mkdir -p "$OUT"
echo "| setting | planted poly | precision | recall | concept P | concept R | class acc | distractors flagged | shuffled-label poly | mean-only rule: precision, distractors flagged |"
echo "|---|---|---|---|---|---|---|---|---|---|"
run() {
  name=$1; shift
  d="$OUT/$name"; rm -rf "$d"
  $U synth --neurons 256 --tokens 200000 --seed 11 "$@" --out "$d/acts" > /dev/null
  $U audit --acts "$d/acts" --cards 8 --out "$d/audit" > /dev/null 2>&1
  $U audit --acts "$d/acts" --cards 0 --shuffle-labels 1 --out "$d/control" > /dev/null 2>&1
  $U audit --acts "$d/acts" --cards 0 --min-auroc 0 --topk-alpha 0 --out "$d/mean-only" > /dev/null 2>&1
  $U verify --truth "$d/acts" --audit "$d/audit" > /dev/null
  $U verify --truth "$d/acts" --audit "$d/mean-only" > /dev/null
  python3 - "$d" "$name" <<'PY'
import json, sys
d, name = sys.argv[1], sys.argv[2]
v = json.load(open(f"{d}/audit/verify.json"))
m = json.load(open(f"{d}/mean-only/verify.json"))
c = json.load(open(f"{d}/control/audit.json"))["sides"][0]["summary"]["polysemantic"]
p, k = v["polysemantic"], v["concepts"]
x = f"{v['distractors_flagged']} of {v['distractors']}"
old = f"{m['polysemantic']['precision']:.3f}, {m['distractors_flagged']} of {m['distractors']}"
print(f"| {name} | {p['actual']} | {p['precision']:.3f} | {p['recall']:.3f} | {k['precision']:.3f} | {k['recall']:.3f} | {v['class_accuracy']:.3f} | {x} | {c} | {old} |")
PY
}
run "defaults (noise 0.05, miss 0.1, spurious 0.01)"
run "noise 0.3" --noise 0.3
run "miss 0.5" --miss 0.5
run "spurious 0.05" --spurious 0.05
run "k up to 6 concepts" --k-max 6
run "64 concepts at density 0.01" --concepts 64 --concept-density 0.01
run "overlap 0.3 (co-occurring concepts)" --overlap 0.3
run "overlap 0.8 (nearly nested)" --overlap 0.8
run "noise 1.0" --noise 1.0
run "rare concepts: density 0.0005 (100 tokens each)" --concept-density 0.0005
run "hard: noise 0.3, miss 0.4, spurious 0.05, overlap 0.3" --noise 0.3 --miss 0.4 --spurious 0.05 --overlap 0.3
