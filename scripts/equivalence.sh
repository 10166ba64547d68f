#!/usr/bin/env bash
# Behaviour guard for refactors (issue 23): run one fixed set of commands with an OLD and a NEW
# unravel binary, each in its own folder, and show that everything they write is identical.
#
#   scripts/equivalence.sh OLD_BINARY NEW_BINARY [WORKDIR]
#   scripts/equivalence.sh /work/baseline/unravel-103900d target/release/unravel
#
# COMPARE_ONLY=1 skips the runs and compares WORKDIR/old and WORKDIR/new again (after a rule change).
# WORKDIR (default: a fresh mktemp -d) gets old/ and new/; each holds a copy of the committed
# fixtures (tests/fixtures/tiny-*, data/, configs/) so that every path the binaries record is the
# same relative path. Nothing needs the network (HF_HUB_OFFLINE=1).
#
# Commands (all on CPU, fixed seeds, tiny sizes): the demo (`unravel run configs/demo.toml`),
# trace (GPT-2, BERT, DistilBERT), extract (three models, f16/f32/bf16 stores, several shards),
# inspect --verify, synth (planted features twice, planted neurons), plant, train (april-2024,
# unit-norm, the plain engine, on real-model shards, with checkpoints and evaluations), eval (held
# out, all shards, spliced into GPT-2), verify (SAEs and an audit), audit (neurons and SAE features;
# real text with concepts.toml), analyze (activations and weights), toy pentagon.
# Each command's stdout, stderr and exit status are compared too (in _cmd/).
#
# Compare rules, per file (everything under runs/, out/ and _cmd/; a file only one side wrote
# counts as a difference):
#   *.json      parsed and compared value by value, after dropping the keys in DROP_KEYS below;
#   *.jsonl     line by line the same way;
#   text files  (.log .stdout .stderr .rc .html .csv .svg .toml .txt .md) line by line after the
#               substitutions in MASKS below;
#   traces      (out/trace/*.safetensors) tensor by tensor: name, dtype, shape, bytes, and the
#               metadata map (SAFETENSORS_AS_TENSORS below says why);
#   all others  byte for byte: parquet shards, safetensors (SAE weights, sparsity, truth),
#               checkpoints. Parquet writes nothing time-dependent: two runs of one binary give
#               byte-identical shards (measured), so no decoding is needed.
# Every rule below was found by running the same binary twice (OLD vs OLD) and is as narrow as
# the difference it covers: a key is dropped (at any depth) only in the files named with it.
#
# Measured run time (release binaries, a 2-core machine shared with other builds): 44 to 93 s in
# all, 22 to 46 s per binary by the machine's load, under 1 s to compare 313 files (baseline 103900d
# against itself, four runs); 57 s for the baseline against a release build of the same source.
#
# Output: one line per compared file, `same` or `DIFFERENT: <first difference>`, then a summary.
# Exit 0 only when everything is the same (and no command failed in OLD: a failing command would
# make the comparison vacuous, so it counts as a failure of the script).
set -uo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 OLD_BINARY NEW_BINARY [WORKDIR]" >&2
  exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
WORK=${3:-$(mktemp -d /tmp/unravel-equivalence.XXXXXX)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
for b in "$OLD" "$NEW"; do
  [ -x "$b" ] || { echo "error: $b is not an executable; pass two unravel binaries" >&2; exit 2; }
done
mkdir -p "$WORK"
WORK=$(realpath "$WORK")

export HF_HUB_OFFLINE=1
export HF_HOME="$WORK/hf-home-unused"

# One command of the fixed set: `step NAME unravel-args...`, run in the current folder with $BIN.
step() {
  local name=$1
  shift
  "$BIN" "$@" >"_cmd/$name.stdout" 2>"_cmd/$name.stderr"
  echo $? >"_cmd/$name.rc"
}

run_all() {
  BIN=$1
  local dir=$2
  rm -rf "$dir"
  mkdir -p "$dir/tests/fixtures" "$dir/_cmd" "$dir/out"
  cp -r "$REPO/tests/fixtures/tiny-gpt2" "$REPO/tests/fixtures/tiny-bert" \
    "$REPO/tests/fixtures/tiny-distilbert" "$dir/tests/fixtures/"
  cp -r "$REPO/data" "$REPO/configs" "$dir/"
  cd "$dir" || exit 2
  local start=$SECONDS

  # The demo: nine stages chained by `unravel run` into runs/demo.
  step demo run configs/demo.toml

  # trace: every architecture, logits and BOS on GPT-2.
  step trace-gpt2 trace --model tests/fixtures/tiny-gpt2 --file data/sentences.txt \
    --hooks 'blocks.*.hook_resid_post,blocks.1.mlp.hook_post' --prepend-bos --logits \
    --device cpu --out out/trace/gpt2.safetensors
  step trace-bert trace --model tests/fixtures/tiny-bert --text "The cat sat on the mat." \
    --text "A second, longer sentence about colours: red, green and blue." \
    --hooks 'blocks.*.hook_resid_post,hook_embed' --device cpu --out out/trace/bert.safetensors
  step trace-distil trace --model tests/fixtures/tiny-distilbert --file data/sentences.txt \
    --hooks 'blocks.*.mlp.hook_post' --batch 2 --device cpu --out out/trace/distil.safetensors

  # extract: several shards, a label column, three store dtypes.
  step extract-distil extract --model tests/fixtures/tiny-distilbert --corpus data/corpus.jsonl \
    --label-field sentiment --hooks 'blocks.*.mlp.hook_post,blocks.1.hook_resid_post' --ctx 32 \
    --shard-tokens 400 --device cpu --out out/extract-distil
  step extract-bert extract --model tests/fixtures/tiny-bert --corpus data/corpus.jsonl \
    --hooks 'blocks.*.hook_resid_post' --ctx 48 --store-dtype f32 --zstd-level 3 --batch 4 \
    --max-tokens 800 --device cpu --out out/extract-bert
  step extract-gpt2 extract --model tests/fixtures/tiny-gpt2 --corpus data/corpus.jsonl \
    --hooks 'blocks.1.hook_resid_post' --ctx 48 --no-bos --store-dtype bf16 --shard-tokens 512 \
    --device cpu --out out/extract-gpt2
  step inspect-distil inspect out/extract-distil --verify --rows 4

  # synth: planted features (two settings) and planted neurons.
  step synth-f synth --features 64 --dims 32 --density 0.05 --tokens 60000 --shard-tokens 16384 \
    --seed 3 --noise 0.01 --magnitude uniform --save-activations --out out/synth-f
  step synth-f2 synth --features 48 --dims 24 --density 0.1 --power-law 0.98 --clusters 6 \
    --group-size 2 --store-dtype f16 --tokens 20000 --seed 4 --out out/synth-f2
  step synth-n synth --neurons 32 --concepts 8 --tokens 40000 --seed 2 --overlap 0.2 \
    --out out/synth-n
  step plant plant --acts out/extract-gpt2 --features 8 --density 0.05 --seed 5 \
    --out out/plant-gpt2

  # train: both recipes, the plain engine, real-model shards, evaluations and checkpoints.
  step train-april train --acts out/synth-f --d-sae 128 --tokens 400000 --batch 1024 --seed 1 \
    --eval-every 200000 --log-every 20 --checkpoint-every 200000 --device cpu --out out/train-april
  step train-unit train --acts out/synth-f --recipe unit-norm --d-sae 128 --tokens 400000 \
    --batch 1024 --seed 1 --device cpu --out out/train-unit
  step train-plain train --acts out/synth-f2 --engine plain --d-sae 96 --tokens 60000 \
    --batch 512 --seed 2 --device cpu --out out/train-plain
  step train-n train --acts out/synth-n --expansion 4 --tokens 400000 --batch 1024 --seed 1 \
    --device cpu --out out/train-n
  step train-gpt2 train --acts out/plant-gpt2 --d-sae 64 --tokens 30000 --batch 256 \
    --eval-shards 0 --seed 1 --device cpu --out out/train-gpt2

  # eval: held-out shards, all shards, spliced into GPT-2 (CE / KL).
  step eval-april eval --sae out/train-april --acts out/synth-f --device cpu \
    --json out/eval/april.json
  step eval-unit eval --sae out/train-unit --acts out/synth-f --shards all --eval-tokens 20000 \
    --device cpu --json out/eval/unit.json
  step eval-gpt2 eval --sae out/train-gpt2 --acts out/extract-gpt2 --shards all \
    --model tests/fixtures/tiny-gpt2 --contexts 8 --device cpu --json out/eval/gpt2.json

  # audit: neurons and SAE features of planted neurons; real text with concepts.toml.
  step audit-n audit --acts out/synth-n --sae out/train-n --out out/audit-n
  step audit-distil audit --acts out/extract-distil --hook blocks.1.mlp.hook_post \
    --concepts configs/concepts.toml --label-column label.sentiment --min-support 3 \
    --score auroc --out out/audit-distil

  # verify: SAEs against planted features (one with thresholds), an audit against planted neurons.
  step verify-april verify --truth out/synth-f --sae out/train-april --json out/verify/april.json
  step verify-unit verify --truth out/synth-f --sae out/train-unit --min-mmcs 0.5 \
    --max-dead 0.9 --json out/verify/unit.json
  step verify-plant verify --truth out/plant-gpt2 --sae out/train-gpt2 --json out/verify/plant.json
  step verify-audit verify --truth out/synth-n --audit out/audit-n --min-precision 0.5 \
    --json out/verify/audit-n.json

  # analyze: activations (coloured PCA) and a model's weights.
  step analyze-distil analyze --acts out/extract-distil --color-by label.sentiment \
    --max-tokens 1000 --out out/analyze-distil
  step analyze-weights analyze --weights tests/fixtures/tiny-bert --out out/analyze-weights

  # toy: the pentagon, short.
  step toy-pentagon toy --experiment pentagon --steps 1000 --seed 0 --device cpu \
    --out out/toy-pentagon

  echo "  $(basename "$dir"): $((SECONDS - start)) s with $BIN" >&2
  cd "$WORK" || exit 2
}

if [ "${COMPARE_ONLY:-0}" != 1 ]; then
  echo "running the fixed commands in $WORK/old and $WORK/new ..." >&2
  run_all "$OLD" "$WORK/old"
  run_all "$NEW" "$WORK/new"
fi

python3 - "$WORK/old" "$WORK/new" <<'PY'
import fnmatch, json, os, re, sys

OLD, NEW = sys.argv[1], sys.argv[2]

# Keys dropped before comparing JSON, each only in the files its glob names (paths relative to
# the work folder). Every entry is a time measurement that differs between two runs of one binary.
DROP_KEYS = [
    ("runs/*/.stages/*.json", "seconds", "wall time of the stage"),
    ("runs/*/.stages/*.json", "finished", "unix time the stage finished"),
    ("runs/*/summary.json", "seconds", "wall time of each stage"),
    ("*/metrics.jsonl", "tokens_per_s", "training throughput"),
    ("out/toy-*/results.json", "seconds", "wall time of the toy experiment"),
    # The byte length of metrics.jsonl when the checkpoint was written (resume truncates the file
    # there): it follows the digits of each line's tokens_per_s, dropped above.
    ("*/checkpoints/step-*/trainer_state.json", "metrics_bytes", "length of metrics.jsonl"),
]

# Substitutions on text files before comparing, each only in the files its glob names. Each
# replaces a printed wall time or rate by a placeholder; nothing else is touched.
PRINTED = ["_cmd/*.stdout", "_cmd/*.stderr", "runs/*/logs/*.log"]
MASKS = [
    # synth, plant, train, extract, trace, audit, toy: "... 200000 tokens in 1.4s -> runs/demo/synth",
    # "trained 977 steps, 4001792 tokens in 10.1s (396431 tokens/s, fast-cpu)", "in 0.02s"
    *[(g, r"in [0-9]+\.[0-9]+s\b", "in <T>s") for g in PRINTED],
    *[(g, r"\([0-9]+ tokens/s", "(<R> tokens/s") for g in PRINTED],
    # extract: "busy time: forward 0.0s (13% of wall), tokenize+pack 0.0s (8%), write 0.1s (63%),
    # overlapped on separate threads; write CPU 0.0s (14% of wall)"
    *[(g, r"[0-9]+\.[0-9]+s \([0-9]+%", "<T>s (<P>%") for g in PRINTED],
    # analyze "1531 tokens of runs/demo/extract (0.1s); ...", eval "(synthetic, 20000 tokens,
    # 4 shards, 0.1s)" and "(8 contexts, 376 positions, 0.1s):", run "done (9.5s), skipped"
    *[(g, r"\b[0-9]+\.[0-9]+s\)", "<T>s)") for g in PRINTED],
    # index page: a stage's wall time in the table, "<td class=\"num\">0.8 s</td>"
    ("runs/*/index.html", r'<td class="num">[0-9.]+ s</td>', '<td class="num"><T> s</td>'),
]

# safetensors compared as tensors (name -> dtype, shape, bytes) plus the __metadata__ map, not as
# bytes: trace writes its JSON header from a hash map, so the order of the header's keys (and so
# the bytes) changes from run to run while every value stays the same.
SAFETENSORS_AS_TENSORS = ["out/trace/*.safetensors"]

TEXT = (".log", ".stdout", ".stderr", ".html", ".csv", ".svg", ".toml", ".txt", ".md", ".rc")
COMPARED_ROOTS = ("runs", "out", "_cmd")


def files(root):
    found = set()
    for top in COMPARED_ROOTS:
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                found.add(os.path.relpath(os.path.join(dirpath, n), root))
    return found


def matches(rel, glob):
    return fnmatch.fnmatchcase(rel, glob)


def drop(value, keys):
    if isinstance(value, dict):
        return {k: drop(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [drop(v, keys) for v in value]
    return value


def first_json_diff(a, b, path="$"):
    if type(a) is not type(b):
        return f"{path}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'NEW' if k not in a else 'OLD'}"
            d = first_json_diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_json_diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"


def load_json(path, keys):
    with open(path) as f:
        return drop(json.load(f), keys)


def safetensors(path):
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = {
        name: (t["dtype"], t["shape"], body[t["data_offsets"][0] : t["data_offsets"][1]])
        for name, t in header.items()
        if name != "__metadata__"
    }
    return header.get("__metadata__"), tensors


def compare_safetensors(a, b):
    (ma, ta), (mb, tb) = safetensors(a), safetensors(b)
    if ma != mb:
        return "__metadata__: " + first_json_diff(ma, mb)
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            return f"tensor {name}: only in {'NEW' if name not in ta else 'OLD'}"
        if ta[name] != tb[name]:
            return f"tensor {name}: dtype, shape or values differ"
    return None


def compare(rel):
    a, b = os.path.join(OLD, rel), os.path.join(NEW, rel)
    keys = {k for glob, k, _ in DROP_KEYS if matches(rel, glob)}
    if rel.endswith(".json"):
        try:
            return first_json_diff(load_json(a, keys), load_json(b, keys))
        except ValueError as e:
            return f"not JSON: {e}"
    if rel.endswith(".jsonl"):
        la, lb = open(a).read().splitlines(), open(b).read().splitlines()
        if len(la) != len(lb):
            return f"{len(la)} vs {len(lb)} lines"
        for i, (x, y) in enumerate(zip(la, lb)):
            d = first_json_diff(drop(json.loads(x), keys), drop(json.loads(y), keys))
            if d:
                return f"line {i + 1}: {d}"
        return None
    if rel.endswith(TEXT):
        masks = [(re.compile(p), r) for glob, p, r in MASKS if matches(rel, glob)]
        la = open(a, errors="replace").read().splitlines()
        lb = open(b, errors="replace").read().splitlines()
        for i in range(max(len(la), len(lb))):
            x = la[i] if i < len(la) else "<end of file>"
            y = lb[i] if i < len(lb) else "<end of file>"
            for p, r in masks:
                x, y = p.sub(r, x), p.sub(r, y)
            if x != y:
                return f"line {i + 1}: {x[:100]!r} vs {y[:100]!r}"
        return None
    if any(matches(rel, glob) for glob in SAFETENSORS_AS_TENSORS):
        return compare_safetensors(a, b)
    da, db = open(a, "rb").read(), open(b, "rb").read()
    if da == db:
        return None
    n = next((i for i, (x, y) in enumerate(zip(da, db)) if x != y), min(len(da), len(db)))
    return f"bytes differ at offset {n} (sizes {len(da)} vs {len(db)})"


old_files, new_files = files(OLD), files(NEW)
different = 0
for rel in sorted(old_files | new_files):
    if rel not in new_files:
        print(f"{rel}: DIFFERENT: only in OLD")
    elif rel not in old_files:
        print(f"{rel}: DIFFERENT: only in NEW")
    else:
        d = compare(rel)
        print(f"{rel}: {'same' if d is None else 'DIFFERENT: ' + d}")
        if d is None:
            continue
    different += 1

failed = []
for rel in sorted(old_files):
    if rel.startswith("_cmd/") and rel.endswith(".rc"):
        if open(os.path.join(OLD, rel)).read().strip() != "0":
            failed.append(rel[len("_cmd/"):-len(".rc")])
total = len(old_files | new_files)
print(f"summary: {total - different} same, {different} different of {total} files"
      + (f"; commands that failed with OLD (fix the script): {', '.join(failed)}" if failed else ""))
sys.exit(0 if different == 0 and not failed else 1)
PY
