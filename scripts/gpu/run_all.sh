#!/usr/bin/env bash
# Issue 27 in one command: unravel's CUDA path measured against PyTorch on the same GPU.
#
#   OUT=/path/to/out bash scripts/gpu/run_all.sh                       # on the GPU machine (repo root)
#   DEVICE=cpu TINY=1 UNRAVEL=/tmp/unravel PY=/tmp/venv/bin/python OUT=/tmp/gpu-dry \
#       bash scripts/gpu/run_all.sh                                    # dry run on a CPU machine
#
# Writes $OUT/results.json (rewritten after every stage, so a cut-off run still leaves the stages
# done so far) and $OUT/log.txt (every stage's output), and nothing else there: the device tool brings
# back at most 8 files. Per-stage files and big ones (shards, models, runs) stay in $WORK.
#
# Stages (each a function below, run as its own `timeout`-guarded process; a failure or timeout is
# recorded with its error and the next stage runs):
#   env              device, driver, CUDA, torch, TF32 state, ldd of the binary
#   trace            `unravel trace` on tests/fixtures (3 models x f32/f16/bf16) vs the HF references
#   gpt2_parity      a GPT-2-small-sized random model: our trace vs transformers on the same device
#   train_parity     a short `train --engine plain` on $DEVICE vs on the CPU: final weights
#   resume           UNRAVEL_CRASH_AFTER_STEP abort, and a real kill -9, then --resume: bit identity
#   extract_gpt2     `unravel extract` GPT-2 small (random weights), all residual hooks, f16 shards,
#                    vs transformers output_hidden_states (forward / +copy to host / +pyarrow parquet)
#   sae              768 -> 24576 SAE, batch 4096, april-2024, from the GPT-2 shards: ours vs PyTorch
#                    f32 / tf32 / bf16 (data on the GPU) and f32 (data in host memory); loss curves
#   profile          PyTorch: GEMM peak, one step in phases (CUDA events), torch.profiler top kernels;
#                    ours: ncu (or nsys) kernel summary of a short run, when installed
#   extract_distilbert  the extraction comparison for DistilBERT-base
#
# Environment: DEVICE (cuda | cpu), TINY=1 (tiny sizes), UNRAVEL (binary, default .gpu-bin/unravel),
# PY (python with torch, transformers, pyarrow, safetensors; default python3), OUT (required),
# WORK (scratch, default /tmp/unravel-gpu-work), BUDGET_S (whole-script budget, default 450),
# STAGES (space-separated subset, default all, in the order above).
set -uo pipefail   # no -e: a failing command is recorded by its stage, never aborts the run

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

configure() {
    DEVICE=${DEVICE:-cuda}
    TINY=${TINY:-0}
    PY=${PY:-python3}
    UNRAVEL=${UNRAVEL:-.gpu-bin/unravel}
    case "$UNRAVEL" in /*) ;; *) UNRAVEL="$ROOT/$UNRAVEL" ;; esac
    OUT=${OUT:?set OUT to the output folder}
    WORK=${WORK:-/tmp/unravel-gpu-work}
    BUDGET_S=${BUDGET_S:-450}
    RESULTS="$OUT/results.json"
    STATE="$WORK/state"   # stages/NAME.json (each stage's result) and logs/NAME.log
    export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    TOK_GPT2=tests/fixtures/tiny-gpt2/tokenizer.json          # vocab 512: ids valid in any GPT-2
    TOK_BERT=tests/fixtures/tiny-distilbert/tokenizer.json    # vocab 512: ids valid in DistilBERT
    RESID_HOOKS='blocks.0.hook_resid_pre,blocks.*.hook_resid_post'  # = output_hidden_states
    if [ "$TINY" = 1 ]; then
        GPT2_CFG=tests/fixtures/tiny-gpt2/config.json; DISTIL_CFG=tests/fixtures/tiny-distilbert/config.json
        CTX=32; EXTRACT_BATCH=16; GPT2_TOKENS=16384; DISTIL_TOKENS=8192; SHARD_TOKENS=2048
        EXTRACT_DTYPE=${EXTRACT_DTYPE:-bf16}
        SAE_HOOK=blocks.1.hook_resid_post; SAE_D=256; SAE_BATCH=256; SAE_STEPS=40; SAE_EVAL=2048
        PROFILE_ARGS="--d-in 32 --d-sae 256 --batch 256 --square 256 --reps 3"
        SYN_DIMS=64; SYN_FEATURES=128; SYN_DSAE=256; SYN_BATCH=256; PARITY_STEPS=32
        RESUME_STEPS=400; RESUME_CKPT_STEPS=40; CRASH_STEP=150
    else
        GPT2_CFG=configs/models/gpt2.json; DISTIL_CFG=configs/models/distilbert-base-uncased.json
        CTX=128; EXTRACT_BATCH=${EXTRACT_BATCH:-256}; GPT2_TOKENS=${GPT2_TOKENS:-262144}
        DISTIL_TOKENS=${DISTIL_TOKENS:-262144}; SHARD_TOKENS=65536
        EXTRACT_DTYPE=${EXTRACT_DTYPE:-bf16}   # configs/gpt2-small-cuda.toml's compute dtype
        SAE_HOOK=blocks.6.hook_resid_post; SAE_D=24576; SAE_BATCH=4096; SAE_STEPS=${SAE_STEPS:-300}
        SAE_EVAL=65536
        PROFILE_ARGS="--d-in 768 --d-sae 24576 --batch 4096 --square 8192 --reps 10"
        SYN_DIMS=128; SYN_FEATURES=512; SYN_DSAE=1024; SYN_BATCH=1024; PARITY_STEPS=64
        RESUME_STEPS=600; RESUME_CKPT_STEPS=60; CRASH_STEP=250
    fi
    TORCH_SAE_MODES=${TORCH_SAE_MODES:-"f32:gpu tf32:gpu bf16:gpu f32:host"}
    SAE_ENGINE=${SAE_ENGINE:-plain}
}

log() { echo "[$(date +%H:%M:%S)] $*"; }
helper() { "$PY" "$HERE/$1" "${@:2}"; }   # `helper compare.py SUBCOMMAND ...`

# `measure NAME TIMEOUT CMD...`: run CMD with peak RSS / GPU memory sampled; JSON in $W/NAME.json.
measure() {
    local name=$1 t=$2; shift 2
    helper compare.py measure --timeout "$t" --log "$W/$name.log" --json "$W/$name.json" -- "$@" >/dev/null
    local rc; rc=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['rc'])" "$W/$name.json" 2>/dev/null || echo 1)
    log "$name: rc $rc"; tail -n 3 "$W/$name.log"
    return "$rc"
}

# `fragment <<EOF ... EOF`: the stage's JSON result ($FRAG), printed by a short Python snippet on stdin.
fragment() { "$PY" - > "$FRAG.tmp" && mv "$FRAG.tmp" "$FRAG"; }

# ---------------------------------------------------------------------------------------------
jstr() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }   # a JSON string

stage_env() {
    {
        echo "{"
        echo "\"device_requested\": \"$DEVICE\", \"tiny\": $TINY, \"unravel\": \"$UNRAVEL\","
        echo "\"unravel_version\": $(jstr "$("$UNRAVEL" --version 2>&1)"),"
        echo "\"ldd_not_found\": $(jstr "$(ldd "$UNRAVEL" 2>&1 | grep -i 'not found')"),"
        echo "\"ld_library_path\": \"${LD_LIBRARY_PATH:-}\","
        echo "\"nvidia_smi\": $(jstr "$(command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 | head -3 || echo absent)"),"
        echo "\"cuda_version\": $(jstr "$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*')"),"
        echo "\"nvcc\": $(jstr "$(command -v nvcc > /dev/null && nvcc --version 2>&1 | tail -2 | head -1 || echo absent)"),"
        # candle 0.11 keeps f32 GEMMs in full f32 (no TF32) unless set_gemm_reduced_precision_f32 is called
        echo "\"candle_tf32_enabled_in_src\": $(grep -rqs set_gemm_reduced_precision_f32 src && echo true || echo false),"
        echo "\"nsys\": \"$(command -v nsys || true)\", \"ncu\": \"$(command -v ncu || true)\","
        echo "\"cpus\": $(nproc), \"work_disk_free\": \"$(df -h "$WORK" | awk 'NR==2 {print $4}')\","
        echo "\"git_head\": \"$(git rev-parse HEAD 2>/dev/null || echo unknown)\","
        echo "\"python\": \"$($PY -c 'import sys; print(sys.version.split()[0])')\","
        echo "\"torch\": $($PY -c "import sys, json; sys.path.insert(0, '$HERE'); import common; print(json.dumps(common.torch_info()))"),"
        echo "\"transformers\": \"$($PY -c 'import transformers; print(transformers.__version__)' 2>&1 | tail -1)\","
        echo "\"pyarrow\": \"$($PY -c 'import pyarrow; print(pyarrow.__version__)' 2>&1 | tail -1)\""
        echo "}"
    } > "$FRAG"
    cat "$FRAG"
    helper compare.py meta --results "$RESULTS" --set "$(cat "$FRAG")"
    "$UNRAVEL" --version   # the stage fails here if the binary cannot start (missing driver / libs)
}

# Every hook of the three tiny fixtures in three dtypes against the committed HF references.
stage_trace() {
    helper compare.py trace-fixtures --unravel "$UNRAVEL" --device "$DEVICE" --dtypes f32,f16,bf16 \
        --work "$W" --json "$FRAG" | tail -n 20
}

# One random GPT-2(-small) saved as an HF folder, traced by us and run by transformers on $DEVICE.
stage_gpt2_parity() {
    helper compare.py gpt2-parity --unravel "$UNRAVEL" --device "$DEVICE" --config "$GPT2_CFG" \
        --dtypes f32,bf16 --work "$W" --json "$FRAG" | tail -n 30
    rm -rf "$W/gpt2-random"
}

synth_data() {   # a small planted-feature dataset shared by train_parity and resume
    [ -f "$WORK/syn/__unravel__/manifest.json" ] && return 0
    rm -rf "$WORK/syn"
    "$UNRAVEL" synth --features "$SYN_FEATURES" --dims "$SYN_DIMS" --density 0.05 --tokens 131072 \
        --shard-tokens 32768 --out "$WORK/syn" | tail -n 2
}

train_args() {   # `train_args STEPS`: the flags shared by every short run (seed fixed, tiny eval)
    echo --acts "$WORK/syn" --d-sae "$SYN_DSAE" --batch "$SYN_BATCH" --tokens $(( $1 * SYN_BATCH )) \
        --engine plain --seed 7 --eval-tokens 4096 --scale-tokens 8192 --log-every 5
}

# Same short run on $DEVICE and on the CPU (both --engine plain): how far apart the final weights are.
stage_train_parity() {
    synth_data || return 1
    rm -rf "$W/cpu" "$W/dev"
    measure train-cpu 40 "$UNRAVEL" train $(train_args $PARITY_STEPS) --device cpu --out "$W/cpu"
    measure train-dev 40 "$UNRAVEL" train $(train_args $PARITY_STEPS) --device "$DEVICE" --out "$W/dev"
    helper compare.py weights "$W/dev/sae_weights.safetensors" "$W/cpu/sae_weights.safetensors" \
        --json "$W/weights.json" > /dev/null
    W="$W" fragment <<'EOF'
import json, os
W = os.environ["W"]
w = json.load(open(f"{W}/weights.json"))
scale = max((t.get("max_abs", 0.0) for t in w["tensors"].values()), default=0.0)
tol = 1e-3  # stated tolerance: max |cuda - cpu| <= 1e-3 x (1 + max|w|) after the run
res = {"steps": int(os.environ["PARITY_STEPS"]), "max_abs_diff": w["max_abs_diff"], "max_abs_weight": scale,
       "bit_identical": w["bit_identical"], "tolerance": f"{tol} x (1 + max|w|)",
       "pass": w["max_abs_diff"] <= tol * (1 + scale),
       "per_tensor": {k: v.get("max_abs_diff") for k, v in w["tensors"].items()},
       "runs": {n: {k: v for k, v in json.load(open(f"{W}/train-{n}.json")).items() if k != "output_tail"}
                for n in ("cpu", "dev")}}
res["checks_failed"] = [] if res["pass"] else ["weights"]
print(json.dumps(res, indent=1))
EOF
    cat "$FRAG"
}

# Exact resume on $DEVICE: two uninterrupted runs (is the device deterministic at all?), a run aborted
# by UNRAVEL_CRASH_AFTER_STEP (std::process::abort, as kill -9) and resumed, and a real kill -9
# shortly after the first checkpoint, resumed.
stage_resume() {
    synth_data || return 1
    local args; args="$(train_args $RESUME_STEPS) --checkpoint-every $(( RESUME_CKPT_STEPS * SYN_BATCH )) --device $DEVICE"
    rm -rf "$W"/run-*
    measure full-a 40 "$UNRAVEL" train $args --out "$W/run-a"
    measure full-b 40 "$UNRAVEL" train $args --out "$W/run-b"
    UNRAVEL_CRASH_AFTER_STEP=$CRASH_STEP timeout 40 "$UNRAVEL" train $args --out "$W/run-crash" \
        > "$W/crash.log" 2>&1
    echo "crash run exit: $? (134 = abort as intended)" | tee "$W/crash.rc"
    measure crash-resume 40 "$UNRAVEL" train --resume "$W/run-crash"
    # A real kill -9: wait for the first checkpoint, then a little more, then SIGKILL.
    "$UNRAVEL" train $args --out "$W/run-kill" > "$W/kill.log" 2>&1 &
    local pid=$! waited=0
    while kill -0 "$pid" 2>/dev/null && [ ! -e "$W/run-kill/checkpoints/latest" ] && [ $waited -lt 1200 ]; do
        sleep 0.05; waited=$((waited + 1))
    done
    sleep 0.3
    local killed=no
    if kill -9 "$pid" 2>/dev/null; then killed=yes; fi
    wait "$pid" 2>/dev/null
    echo "kill -9 sent: $killed; checkpoint at kill: $(cat "$W/run-kill/checkpoints/latest" 2>/dev/null)" | tee "$W/kill.txt"
    measure kill-resume 40 "$UNRAVEL" train --resume "$W/run-kill"
    for pair in "run-a run-b determinism" "run-a run-crash crash_resume" "run-a run-kill kill9_resume"; do
        set -- $pair
        helper compare.py runs --ref "$W/$1" --other "$W/$2" --json "$W/cmp-$3.json" > /dev/null
    done
    W="$W" fragment <<'EOF'
import json, os
W = os.environ["W"]
res = {"steps": int(os.environ["RESUME_STEPS"]), "crash_after_step": int(os.environ["CRASH_STEP"]),
       "crash_exit": open(f"{W}/crash.rc").read().strip(), "kill": open(f"{W}/kill.txt").read().strip()}
for n in ("determinism", "crash_resume", "kill9_resume"):
    try:
        res[n] = json.load(open(f"{W}/cmp-{n}.json"))
    except Exception as e:
        res[n] = {"error": repr(e)}
res["runs"] = {}
for n in ("full-a", "full-b", "crash-resume", "kill-resume"):
    try:
        r = json.load(open(f"{W}/{n}.json"))
        res["runs"][n] = {k: r[k] for k in ("rc", "wall_s", "gpu_mem_peak_mib")}
    except Exception as e:
        res["runs"][n] = {"error": repr(e)}
res["checks_failed"] = [n for n in ("determinism", "crash_resume", "kill9_resume")
                        if not res[n].get("bit_identical")]
if "sent: no" in res["kill"]:
    res["kill_note"] = "the run ended before kill -9 landed: that check compares two complete runs"
print(json.dumps(res, indent=1))
EOF
    cat "$FRAG"
}

make_corpus() {   # `make_corpus PATH TOKENS`: jsonl of word salad from data/, enough for TOKENS tokens
    [ -f "$1" ] && return 0
    $PY - "$1" "$2" <<'EOF'
import json, random, sys
path, tokens = sys.argv[1], int(sys.argv[2])
random.seed(0)
words = [w for l in open("data/corpus.jsonl") for w in json.loads(l)["text"].split()]
words += [w for l in open("data/sentences.txt") for w in l.split()]
with open(path, "w") as fh:   # ~1.3 words per token is plenty with the 512-entry tokenizers
    for _ in range(tokens // 300 + 1):
        fh.write(json.dumps({"text": " ".join(random.choices(words, k=400))}) + "\n")
EOF
}

# `extract_compare NAME CONFIG TOKENIZER TOKENS`: ours, then transformers on the same contexts.
extract_compare() {
    local name=$1 cfg=$2 tok=$3 tokens=$4 acts="$WORK/acts-$1"
    make_corpus "$WORK/corpus.jsonl" $(( tokens > GPT2_TOKENS ? tokens : GPT2_TOKENS ))
    rm -rf "$acts"
    measure ours 70 "$UNRAVEL" extract --model "$cfg" --random-weights --tokenizer "$tok" \
        --device "$DEVICE" --dtype "$EXTRACT_DTYPE" --corpus "$WORK/corpus.jsonl" --hooks "$RESID_HOOKS" \
        --ctx "$CTX" --max-tokens "$tokens" --batch "$EXTRACT_BATCH" --store-dtype f16 \
        --shard-tokens "$SHARD_TOKENS" --out "$acts"
    helper compare.py extract-log "$W/ours.log" --json "$W/ours-summary.json" > /dev/null
    du -sb "$acts" | cut -f1 > "$W/ours-bytes"
    measure torch 100 "$PY" "$HERE/torch_extract.py" --acts "$acts" --config "$cfg" --device "$DEVICE" \
        --dtype "$EXTRACT_DTYPE" --batch "$EXTRACT_BATCH" --shard-tokens "$SHARD_TOKENS" \
        --work "$WORK/hf-$name" --json "$W/torch-result.json"
    rm -rf "$WORK/hf-$name"
    W="$W" NAME="$name" CFG="$cfg" fragment <<'EOF'
import json, os
W = os.environ["W"]
def load(p, default=None):
    try:
        return json.load(open(p))
    except Exception as e:
        return default if default is not None else {"error": repr(e)}
ours_run, torch_run = load(f"{W}/ours.json"), load(f"{W}/torch.json")
ours = {**load(f"{W}/ours-summary.json"), **{k: ours_run.get(k) for k in
        ("rc", "wall_s", "gpu_mem_peak_mib", "gpu_mem_peak_over_baseline_mib", "peak_rss_mb")}}
ours["bytes_on_disk"] = int(open(f"{W}/ours-bytes").read() or 0)
t = load(f"{W}/torch-result.json")
t["process"] = {k: torch_run.get(k) for k in ("rc", "wall_s", "gpu_mem_peak_mib", "gpu_mem_peak_over_baseline_mib")}
res = {"model": os.environ["NAME"], "config": os.environ["CFG"], "ctx": int(os.environ["CTX"]),
       "batch": int(os.environ["EXTRACT_BATCH"]), "dtype": os.environ["EXTRACT_DTYPE"],
       "hooks": os.environ["RESID_HOOKS"], "ours": ours, "transformers": t, "ratios": {}}
for v, r in t.get("variants", {}).items():
    if ours.get("rows_per_s") and r.get("rows_per_s"):
        res["ratios"][f"ours_over_transformers_{v}"] = ours["rows_per_s"] / r["rows_per_s"]
res["checks_failed"] = [n for n, r in (("ours", ours), ("transformers", t["process"])) if r.get("rc") != 0]
print(json.dumps(res, indent=1))
EOF
    head -n 40 "$FRAG"
}

stage_extract_gpt2() {
    extract_compare gpt2 "$GPT2_CFG" "$TOK_GPT2" "$GPT2_TOKENS"
}

stage_extract_distilbert() {
    extract_compare distilbert "$DISTIL_CFG" "$TOK_BERT" "$DISTIL_TOKENS"
    rm -rf "$WORK/acts-distilbert"
}

# SAE training: one init for both sides (ours via --from), our run first (PyTorch reads its resolved
# config, scaling factor and training shards), then each PyTorch mode as its own process.
stage_sae() {
    local acts="$WORK/acts-gpt2"
    [ -f "$acts/__unravel__/manifest.json" ] || { echo "no GPT-2 shards: stage extract_gpt2 failed"; return 1; }
    helper torch_sae.py init --acts "$acts" --hook "$SAE_HOOK" --d-sae "$SAE_D" --out "$W/init" || return 1
    rm -rf "$W/ours"
    # 100 s at most: if our steps are slow, metrics.jsonl still has the rate and PyTorch gets its turn.
    measure ours 100 "$UNRAVEL" train --acts "$acts" --hook "$SAE_HOOK" --d-sae "$SAE_D" --batch "$SAE_BATCH" \
        --tokens $(( SAE_STEPS * SAE_BATCH )) --from "$W/init" --device "$DEVICE" --engine "$SAE_ENGINE" \
        --eval-tokens "$SAE_EVAL" --log-every 10 --out "$W/ours"
    for m in $TORCH_SAE_MODES; do
        local mode=${m%%:*} data=${m##*:}
        measure "torch-$mode-$data" 40 "$PY" "$HERE/torch_sae.py" train --acts "$acts" --hook "$SAE_HOOK" \
            --run "$W/ours" --init "$W/init" --mode "$mode" --data "$data" --device "$DEVICE" \
            --json "$W/torch-$mode-$data-result.json"
    done
    W="$W" fragment <<'EOF'
import json, os, re, statistics, sys
sys.path.insert(0, os.environ["HERE"])
import common
W = os.environ["W"]
def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        return {"error": repr(e)}
run = load(f"{W}/ours.json")
m = common.read_metrics(f"{W}/ours")
rates = [x["tokens_per_s"] for x in m[1:] if x.get("tokens_per_s")]   # first window holds start-up
batch = int(os.environ["SAE_BATCH"])
ours = {k: run.get(k) for k in ("rc", "wall_s", "gpu_mem_peak_mib", "gpu_mem_peak_over_baseline_mib", "peak_rss_mb")}
ours.update(windows=len(m), steps_logged=m[-1]["step"] if m else 0,
            median_window_tokens_per_s=statistics.median(rates) if rates else None)
if ours["median_window_tokens_per_s"]:
    ours["steps_per_s"] = ours["median_window_tokens_per_s"] / batch
g = re.search(r"trained (\d+) steps, (\d+) tokens in ([\d.]+)s \(([\d.]+) tokens/s, ([^)]*)\)", run.get("output_tail", ""))
if g:
    ours.update(trained_steps=int(g[1]), train_seconds=float(g[3]), reported_tokens_per_s=float(g[4]), engine=g[5])
ours["final_window"] = {k: m[-1].get(k) for k in ("loss", "mse", "l1", "l0", "dense_frac")} if m else None
res = {"d_in": None, "d_sae": int(os.environ["SAE_D"]), "batch": batch, "steps": int(os.environ["SAE_STEPS"]),
       "hook": os.environ["SAE_HOOK"], "ours": ours, "pytorch": {}, "ratios": {}}
for md in os.environ["TORCH_SAE_MODES"].split():
    mode, data = md.split(":")
    r, p = load(f"{W}/torch-{mode}-{data}-result.json"), load(f"{W}/torch-{mode}-{data}.json")
    r["process"] = {k: p.get(k) for k in ("rc", "wall_s", "gpu_mem_peak_mib", "gpu_mem_peak_over_baseline_mib")}
    res["pytorch"][md] = r
    res["d_in"] = res["d_in"] or r.get("d_in")
    if ours.get("median_window_tokens_per_s") and r.get("steady_tokens_per_s"):
        res["ratios"][f"ours_over_torch_{mode}_{data}_tokens_per_s"] = ours["median_window_tokens_per_s"] / r["steady_tokens_per_s"]
    if ours.get("gpu_mem_peak_over_baseline_mib") and r["process"].get("gpu_mem_peak_over_baseline_mib"):
        res["ratios"][f"ours_over_torch_{mode}_{data}_gpu_mem"] = ours["gpu_mem_peak_over_baseline_mib"] / r["process"]["gpu_mem_peak_over_baseline_mib"]
res["checks_failed"] = (["ours"] if ours.get("rc") != 0 else []) + \
    [f"torch {md}" for md, r in res["pytorch"].items() if r["process"].get("rc") != 0]
print(json.dumps(res, indent=1))
EOF
    $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({'ours': r['ours'], 'ratios': r['ratios']}, indent=1))" "$FRAG"
}

# Where the time goes: PyTorch by CUDA events and torch.profiler; ours by ncu (the GPU image has
# Nsight Compute; nsys is not on its PATH) over 150 kernel launches in the middle of a short run.
stage_profile() {
    measure torch-profile 120 "$PY" "$HERE/torch_sae.py" profile --device "$DEVICE" $PROFILE_ARGS --json "$W/torch-profile-result.json"
    local acts="$WORK/acts-gpt2" tool=none
    local ours=("$UNRAVEL" train --acts "$acts" --hook "$SAE_HOOK" --d-sae "$SAE_D" --batch "$SAE_BATCH"
                --tokens $(( 40 * SAE_BATCH )) --device "$DEVICE" --engine "$SAE_ENGINE" --eval-tokens "$SAE_BATCH"
                --scale-tokens "$SAE_BATCH" --log-every 5 --out "$W/ours-prof")
    echo '{"note": "not profiled"}' > "$W/ours-kernels.json"
    if [ ! -f "$acts/__unravel__/manifest.json" ]; then
        echo "no GPT-2 shards: our side is not profiled"
    elif [ "$DEVICE" = cuda ] && command -v ncu > /dev/null; then
        tool=ncu   # SpeedOfLight only (duration, SM and memory throughput), at the real clocks
        timeout 100 ncu --clock-control none --section SpeedOfLight --launch-skip 400 --launch-count 150 \
            --csv "${ours[@]}" > "$W/ours-ncu.csv" 2> "$W/ncu.log"
        echo "ncu exit $?"; tail -n 5 "$W/ncu.log"
        helper compare.py ncu "$W/ours-ncu.csv" --json "$W/ours-kernels.json" > /dev/null
    elif [ "$DEVICE" = cuda ] && command -v nsys > /dev/null; then
        tool=nsys
        timeout 100 nsys profile --force-overwrite true --trace cuda -o "$W/ours-nsys" "${ours[@]}" > "$W/nsys.log" 2>&1
        timeout 60 nsys stats --report cuda_gpu_kern_sum --format csv --output "$W/ours" "$W/ours-nsys.nsys-rep" >> "$W/nsys.log" 2>&1
        W="$W" "$PY" -c 'import glob, json, os; w = os.environ["W"]; f = glob.glob(w + "/ours_cuda_gpu_kern_sum*.csv"); print(json.dumps({"nsys_kern_sum": open(f[0]).read().splitlines()[:25] if f else open(w + "/nsys.log").read()[-3000:]}))' > "$W/ours-kernels.json"
    else
        echo "no ncu or nsys here (or DEVICE=$DEVICE): our side is timed by the sae stage only"
        measure ours-prof 60 "${ours[@]}"   # still runs the profiled command line once
    fi
    W="$W" TOOL="$tool" fragment <<'EOF'
import json, os
W = os.environ["W"]
try:
    res = json.load(open(f"{W}/torch-profile-result.json"))
except Exception as e:
    res = {"error": repr(e)}
res["ours_profiler"] = os.environ["TOOL"]
try:
    res["ours_kernels"] = json.load(open(f"{W}/ours-kernels.json"))
except Exception as e:
    res["ours_kernels"] = {"error": repr(e)}
print(json.dumps(res, indent=1))
EOF
    "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); [print(k, v) for k, v in r.items() if k in ('gemm_floor_ms', 'encoder_gemm_fraction_of_square_peak', 'ours_profiler')]" "$FRAG"
}

# ---------------------------------------------------------------------------------------------
run_one_stage() {   # inside the timeout-guarded child: $1 = stage name
    W="$WORK/$1"; FRAG="$STATE/stages/$1.json"
    export W FRAG HERE PY DEVICE TINY CTX EXTRACT_BATCH EXTRACT_DTYPE RESID_HOOKS SAE_D SAE_BATCH SAE_STEPS \
        SAE_HOOK TORCH_SAE_MODES PARITY_STEPS RESUME_STEPS CRASH_STEP
    rm -rf "$W"; mkdir -p "$W"
    ulimit -c 0   # the crash test aborts on purpose: no core files
    "stage_$1"
}

main() {
    # Inputs shared between stages are rebuilt every run (a leftover from a TINY run must not be reused).
    rm -rf "$STATE" "$WORK/syn" "$WORK/corpus.jsonl"
    mkdir -p "$OUT" "$STATE/stages" "$STATE/logs"
    # The CUDA build's libraries (cudart, cuBLAS, cuRAND) come from the Python env's nvidia wheels.
    local nvlib
    nvlib=$($PY -c 'import nvidia, os; print(next((os.path.join(p, "cu13", "lib") for p in nvidia.__path__ if os.path.isdir(os.path.join(p, "cu13", "lib"))), ""))' 2>/dev/null)
    [ -n "$nvlib" ] && export LD_LIBRARY_PATH="$nvlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local start; start=$(date +%s)
    local deadline=$(( start + BUDGET_S ))
    local stages=${STAGES:-"env trace gpt2_parity train_parity resume extract_gpt2 sae profile extract_distilbert"}
    declare -A limit=([env]=30 [trace]=60 [gpt2_parity]=90 [train_parity]=60 [resume]=120
                      [extract_gpt2]=180 [sae]=200 [profile]=120 [extract_distilbert]=180)
    helper compare.py meta --results "$RESULTS" --set "$($PY -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
        started "$(date -u +%FT%TZ)" device "$DEVICE" tiny "$TINY" budget_s "$BUDGET_S" stages "$stages" \
        unravel "$UNRAVEL" ld_library_path "${LD_LIBRARY_PATH:-}")"
    for s in $stages; do
        local now left t rc t0
        now=$(date +%s); left=$(( deadline - now - 5 ))
        t=${limit[$s]:-120}; (( t > left )) && t=$left
        if (( t < 10 )); then
            log "skip $s: budget spent"
            helper compare.py record --results "$RESULTS" --stage "$s" --rc 0 --skipped "budget of ${BUDGET_S}s spent"
            continue
        fi
        log "=== $s (timeout ${t}s, $(( deadline - now ))s of budget left)" | tee -a "$OUT/log.txt"
        t0=$(date +%s.%N)
        rm -f "$STATE/stages/$s.json"
        timeout -k 10 "$t" bash "$0" __stage "$s" > "$STATE/logs/$s.log" 2>&1
        rc=$?
        tail -c 300000 "$STATE/logs/$s.log" >> "$OUT/log.txt"   # bounded: files back are <= 16 MiB
        local secs; secs=$($PY -c "import time,sys; print(round(time.time() - float(sys.argv[1]), 1))" "$t0")
        log "=== $s: rc $rc in ${secs}s" | tee -a "$OUT/log.txt"
        helper compare.py record --results "$RESULTS" --stage "$s" --rc "$rc" --seconds "$secs" --timeout "$t" \
            --fragment "$STATE/stages/$s.json" --log "$STATE/logs/$s.log" \
            || echo "could not record stage $s" >> "$OUT/log.txt"
    done
    helper compare.py meta --results "$RESULTS" --set "{\"finished\": \"$(date -u +%FT%TZ)\", \"total_s\": $(( $(date +%s) - start ))}"
    log "done in $(( $(date +%s) - start ))s: $RESULTS"
    $PY -c "import json,sys; r=json.load(open(sys.argv[1])); [print(f'{k:20s} {v[\"status\"]:22s} {v.get(\"seconds\")}s') for k, v in r['stages'].items()]" "$RESULTS" | tee -a "$OUT/log.txt"
}

configure
if [ "${1:-}" = __stage ]; then
    run_one_stage "$2"
else
    main
fi
