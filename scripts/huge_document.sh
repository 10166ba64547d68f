#!/usr/bin/env bash
# Peak RSS and throughput of `unravel extract` on one huge single-line document against a normal
# multi-document corpus of the same text (issue 22: "bounded memory on any corpus").
#
#   scripts/huge_document.sh                 # 100 MB inputs, --max-tokens 5000 and 200000
#   MB=20 ROUNDS=3 scripts/huge_document.sh  # smaller inputs, best of 3 runs
#
# Inputs, generated under $WORK (default /tmp/unravel-huge) from the real sentences of
# data/sentences.txt and data/corpus.jsonl repeated in a seeded random order:
#   huge.txt     one line of MB megabytes;
#   huge.jsonl   one line {"text": <the same MB megabytes>, "sentiment": "neutral"} (the label
#                after the text, the harder case: the line is scanned to its end for the label);
#   normal.jsonl the same text as documents of 20 sentences (~1.6 KB), one per line, same label.
# Each runs `extract` (release build, tiny GPT-2 fixture, ctx 64, the three resid_post hooks)
# under /usr/bin/time -v; printed: peak RSS, tokens/s as extract reports it (rows stored per
# second of the whole run, corpus hashing included) and wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/unravel-huge}
MB=${MB:-100}
ROUNDS=${ROUNDS:-1}
MAX_TOKENS=${MAX_TOKENS:-"5000 200000"}
BIN=target/release/unravel
[ -x "$BIN" ] || cargo build --release
mkdir -p "$WORK"

if [ ! -s "$WORK/normal-$MB.jsonl" ]; then
python3 - "$WORK" "$MB" <<'EOF'
import json, random, sys
work, mb = sys.argv[1], int(sys.argv[2])
sentences = [l.strip() for l in open("data/sentences.txt", encoding="utf-8") if l.strip()]
sentences += [json.loads(l)["text"] for l in open("data/corpus.jsonl", encoding="utf-8") if l.strip()]
rng = random.Random(0)
target, written, doc = mb * 1_000_000, 0, []
esc = lambda s: json.dumps(s, ensure_ascii=False)[1:-1]
with open(f"{work}/huge-{mb}.txt", "w", encoding="utf-8") as txt, \
     open(f"{work}/huge-{mb}.jsonl", "w", encoding="utf-8") as huge, \
     open(f"{work}/normal-{mb}.jsonl", "w", encoding="utf-8") as normal:
    huge.write('{"text": "')
    while written < target:
        s = sentences[rng.randrange(len(sentences))]
        part = s if written == 0 else " " + s
        txt.write(part)
        huge.write(esc(part))
        written += len(part.encode("utf-8"))
        doc.append(s)
        if len(doc) == 20:
            normal.write(json.dumps({"text": " ".join(doc), "sentiment": "neutral"}, ensure_ascii=False) + "\n")
            doc = []
    if doc:
        normal.write(json.dumps({"text": " ".join(doc), "sentiment": "neutral"}, ensure_ascii=False) + "\n")
    huge.write('", "sentiment": "neutral"}\n')
EOF
fi

# One extract run: prints "peak_rss_mb tokens_per_s wall_s".
run() {
    local corpus=$1 max=$2 label=$3 out="$WORK/out"
    rm -rf "$out"
    local args=(extract --model tests/fixtures/tiny-gpt2 --corpus "$corpus"
        --hooks 'blocks.*.hook_resid_post' --ctx 64 --max-tokens "$max" --device cpu --out "$out")
    [ "$label" = yes ] && args+=(--label-field sentiment)
    /usr/bin/time -v "$BIN" "${args[@]}" >"$WORK/log" 2>&1 || { cat "$WORK/log"; exit 1; }
    local rss tps wall
    rss=$(awk '/Maximum resident set size/ {printf "%.0f", $6 / 1024}' "$WORK/log")
    tps=$(grep -o '([0-9.]* tokens/s)' "$WORK/log" | tr -d '(' | awk '{print $1}')
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$WORK/log")
    echo "$rss $tps $wall"
}

echo "| input ($MB MB of text) | --max-tokens | peak RSS (MB) | tokens/s | wall (s) |"
echo "|---|---:|---:|---:|---:|"
for max in $MAX_TOKENS; do
    for input in "normal-$MB.jsonl:yes" "huge-$MB.txt:no" "huge-$MB.jsonl:yes"; do
        file=${input%%:*} label=${input##*:}
        best=""
        for _ in $(seq "$ROUNDS"); do
            r=$(run "$WORK/$file" "$max" "$label")
            # Keep the run with the highest throughput (and its RSS).
            if [ -z "$best" ] || awk -v a="$r" -v b="$best" 'BEGIN {split(a, x, " "); split(b, y, " "); exit !(x[2] > y[2])}'; then
                best=$r
            fi
        done
        read -r rss tps wall <<<"$best"
        echo "| $file | $max | $rss | $tps | $wall |"
    done
done
