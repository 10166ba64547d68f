#!/usr/bin/env bash
# Alternates `unravel extract` builds (or environments) on the same corpus, round by round, and
# prints tokens/s, the writer's CPU time, peak RSS, minor page faults and CPU time of each run:
# an A/B on this noisy machine only means something when both sides run interleaved.
#
#   scripts/ab_extract.sh ROUNDS TOKENS SHARD_TOKENS NAME=BINARY[|ENV=VALUE ...] ...
#   scripts/ab_extract.sh 3 16384 65536 old=/tmp/unravel-old new=target/release/unravel
#   scripts/ab_extract.sh 1 16384 65536 "mi=target/release/unravel|MIMALLOC_ALLOW_THP=0"
#
# GPT-2 small with random weights, the 13 residual hooks, ctx 128, batch 8, f16, 2 threads (the
# settings of scripts/bench_extract.py), on bench_extract's synthetic corpus (400 documents, or
# DOCS=N: 1 200 hold 131 072 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1 tokens=$2 shard=$3
shift 3
work=$(mktemp -d /tmp/unravel-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -c "import sys; sys.path.insert(0, 'scripts'); import bench_extract as b; b.write_corpus('$work/corpus.jsonl', ${DOCS:-400})"
for r in $(seq "$rounds"); do
  for v in "$@"; do
    name=${v%%=*} rest=${v#*=}
    bin=${rest%%|*} envs=
    [[ $rest == *"|"* ]] && envs=${rest#*|}
    rm -rf "$work/out"
    out=$(env RAYON_NUM_THREADS=2 $envs /usr/bin/time -f "peak RSS %M kB, minor faults %R, user %U s, sys %S s" \
      "$bin" extract --model configs/models/gpt2.json --random-weights \
      --tokenizer tests/fixtures/tiny-gpt2/tokenizer.json --corpus "$work/corpus.jsonl" \
      --hooks 'blocks.0.hook_resid_pre,blocks.*.hook_resid_post' --ctx 128 --batch 8 \
      --max-tokens "$tokens" --store-dtype f16 --device cpu --shard-tokens "$shard" --out "$work/out" 2>&1)
    echo "round $r $name: $(grep -o '[0-9.]* tokens/s' <<<"$out" | tail -1), $(grep -o 'write CPU [^)]*)' <<<"$out"), $(grep -o 'peak RSS.*' <<<"$out")"
  done
done
