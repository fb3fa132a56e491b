#!/usr/bin/env bash
# GPU check on a machine that has Python, torch, transformers and numpy 2 but no package registry.
#
#   bash scripts/device_check.sh prepare [DIR]   here, with a registry: fill DIR (default .device_wheels, ignored
#                                                by git, under 64 MiB) with the wheels the GPU machine lacks, the
#                                                config and tokenizer of a SmolLM2-shaped model, and a text corpus
#   bash scripts/device_check.sh run [DIR] [STEP...]   there, from the repository root: a venv with
#                                                --system-site-packages holding those wheels, a random-weight
#                                                SmolLM2-shaped model, then the steps (default: all of them)
#
# Steps: tests (the fast suite with the GPU visible, on cpu; then the model-backed tests of the temporal evals with
# --device cuda), train (relu and tsae_t_sae on the random model), run (core and the temporal group on cuda, the
# temporal group on cpu too, metrics compared), bench (benchmarks/temporal_evals.py at 128 windows per batch),
# bench-streaming (the streaming evals alone, with per-stage times and a profile), bench-baseline (the same on the
# package copy in .bench_old). BENCH_SAE overrides the benchmark's SAE (default: the one step train made); TRAIN_ARCHS
# the architectures step train trains (default: relu tsae_t_sae).
# Work files go to $WORK (default /tmp/device_check); each step's log is appended to $WORK/steps.log and, when
# $OUT is set (the device tool's folder that comes back), to $OUT/steps.log. A step that fails or outlives
# $STEP_TIMEOUT seconds (default 300) is reported and the next one runs.
set -uo pipefail

ACTION=${1:-run}
DIR=${2:-.device_wheels}
WORK=${WORK:-/tmp/device_check}
DEVICE=${DEVICE:-cuda}

prepare() {
    local py=.venv/bin/python
    mkdir -p "$DIR/model"
    # Versions: the ones the project's lock verifies; --no-deps, so every package the machine lacks is named.
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$DIR" \
        sae-lens==6.54.12 sae-bench==0.6.0 transformer-lens==3.9.0 datasets==3.6.0 dill==0.3.8 \
        multiprocess==0.70.16 pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 \
        typing-inspection==0.4.5 better-abc==0.0.3 simple-parsing==0.1.9 docstring_parser==0.18.0 \
        wandb==0.31.0 cwevals==0.0.1b1 platformdirs==4.14.7 googleapis-common-protos==1.76.0 \
        opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2 \
        opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2 \
        opentelemetry-semantic-conventions==0.66b2 opentelemetry-exporter-http-transport==0.66b2 \
        opentelemetry-exporter-otlp-common==0.66b2 || return 1
    "$py" - "$DIR" <<'EOF' || return 1
import importlib.util, shutil, sys
from pathlib import Path

import pandas as pd

from tsae_evals.models import smollm2_hf_dir

target = Path(sys.argv[1])
source = smollm2_hf_dir()  # converts the embedded GGUF on first use
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(source / name, target / "model" / name)
data = Path(next(iter(importlib.util.find_spec("sae_probes").submodule_search_locations))) / "data" / "cleaned_data"
texts = pd.read_csv(data / "100_news_fake.csv.zst", compression="zstd")["prompt"].dropna().astype(str)
texts = [t[:1500] for t in texts if len(t) >= 1200][:2500]  # two 128-token windows each, at most
(target / "corpus.txt").write_text("\n\n".join(t.replace("\n\n", "\n") for t in texts), encoding="utf-8")
print(f"{len(texts)} documents")
EOF
    du -sh "$DIR"
}

step() {  # step NAME COMMAND...: run with a log, report the outcome, never stop the script
    local name=$1
    shift
    local started=$SECONDS
    if [ "$(type -t "$1")" = function ]; then "$@"; else timeout "${STEP_TIMEOUT:-300}" "$@"; fi >"$WORK/$name.log" 2>&1
    local code=$?
    {
        echo "== $name: exit $code after $((SECONDS - started)) s"
        tail -n "${TAIL:-25}" "$WORK/$name.log"
    } | tee -a "$WORK/steps.log" ${OUT:+"$OUT/steps.log"}
    return 0
}

setup_venv() {
    local venv=/tmp/tsae-device-venv
    python3 -m venv --system-site-packages --without-pip "$venv" || return 1
    # A venv made from another venv (the image's python3 is one) sees the base interpreter's packages, not that
    # venv's torch: add them.
    if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
            >"$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/parent.pth"
    fi
    python3 -m pip --python "$venv/bin/python" install -q --no-index --no-deps --no-compile "$DIR"/*.whl || return 1
    PY="$venv/bin/python"
    export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
    "$PY" - "$DIR/model" "$MODEL" <<'EOF' || return 1
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

source, target = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)
config = AutoConfig.from_pretrained(source)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # random weights of SmolLM2's shape
model.save_pretrained(target)
AutoTokenizer.from_pretrained(source).save_pretrained(target)
print(f"random {config.num_hidden_layers}-layer model, {sum(p.numel() for p in model.parameters())} parameters")
EOF
    "$PY" -c "import torch, transformers, sae_lens, sae_bench, transformer_lens, datasets; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, \
'sae_lens', sae_lens.__version__, 'datasets', datasets.__version__)"
}

compare() {  # the temporal metrics of the cpu and cuda runs of each SAE, worst relative difference per eval
    "$PY" - "$WORK/results-cpu" "$WORK/results-$DEVICE" <<'EOF'
import json, math, sys
from pathlib import Path

def flat(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}

cpu_root, gpu_root = Path(sys.argv[1]), Path(sys.argv[2])
worst_all = 0.0
for cpu_file in sorted(cpu_root.rglob("*.json")):
    gpu_file = gpu_root / cpu_file.relative_to(cpu_root)
    a = flat(json.loads(cpu_file.read_text())["eval_result_metrics"])
    b = flat(json.loads(gpu_file.read_text())["eval_result_metrics"])
    worst, where = 0.0, ""
    for key, value in a.items():
        other = b.get(key)
        if not isinstance(value, (int, float)) or not isinstance(other, (int, float)):
            continue
        if math.isnan(value) and math.isnan(other):
            continue
        difference = abs(value - other) / max(abs(value), 1e-3)
        if difference > worst:
            worst, where = difference, key
    worst_all = max(worst_all, worst)
    print(f"{cpu_file.relative_to(cpu_root)}: worst relative difference {worst:.2e} ({where})")
print(f"cpu vs {sys.argv[2].rsplit('-', 1)[-1]}: worst {worst_all:.2e} ({'agree' if worst_all <= 5e-5 else 'DIFFER'} at 5e-5)")
EOF
}

run_steps() {
    mkdir -p "$WORK"
    MODEL=/tmp/smollm2-random
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    step setup setup_venv
    [ -n "${PY:-}" ] || { echo "setup failed"; return 1; }
    local steps=("${@:-tests train run bench}")
    for name in ${steps[*]}; do
        case $name in
        tests)
            step tests "$PY" -m pytest -q -p no:cacheprovider
            step tests-device "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" tests/unit/test_temporal_stability.py \
                tests/unit/test_feature_lifetimes.py tests/unit/test_context_switch.py \
                tests/unit/test_causal_interventions.py
            ;;
        train)
            for arch in ${TRAIN_ARCHS:-relu tsae_t_sae}; do
                step "train-$arch" "$PY" -m tsae_evals train --arch "$arch" --layer 6 --tokens 200000 \
                    --model "$MODEL" --dataset "$DIR/corpus.txt" --device "$DEVICE" --no-checkpoints \
                    --out "$WORK/saes/$arch"
            done
            ;;
        run)
            local saes
            saes=$(ls -d "$WORK"/saes/* | paste -sd,)
            step "run-$DEVICE" "$PY" -m tsae_evals run --sae "$saes" --evals core,temporal --model "$MODEL" \
                --dataset "$DIR/corpus.txt" --device "$DEVICE" --n-windows 64 --batch-size 16 \
                --results-dir "$WORK/results-$DEVICE" --allow-degenerate
            step run-cpu "$PY" -m tsae_evals run --sae "$saes" --evals temporal --model "$MODEL" \
                --dataset "$DIR/corpus.txt" --device cpu --n-windows 64 --batch-size 16 \
                --results-dir "$WORK/results-cpu" --allow-degenerate
            step compare compare
            ;;
        bench)
            step bench "$PY" benchmarks/temporal_evals.py --device "$DEVICE" --batch-size 128 --windows 512 \
                --model "$MODEL" --dataset "$DIR/corpus.txt" --sae "${BENCH_SAE:-$WORK/saes/relu}"
            ;;
        many)
            step many "$PY" benchmarks/many_saes.py --device "$DEVICE" --windows 512 --model "$MODEL" \
                --dataset "$DIR/corpus.txt"
            ;;
        bench-streaming | bench-baseline)
            # The streaming evals only, with per-stage times and a profile (no context_switch, no memory runs).
            # bench-baseline runs it on the code in .bench_old (an ignored copy of the package to compare with,
            # carried to the machine).
            local path=$PYTHONPATH
            [ "$name" = bench-baseline ] && path=$PWD/.bench_old
            step "$name" env PYTHONPATH="$path" "$PY" benchmarks/temporal_evals.py --device "$DEVICE" --batch-size 128 \
                --windows 512 --model "$MODEL" --dataset "$DIR/corpus.txt" --sae "${BENCH_SAE:-$WORK/saes/relu}" \
                --streaming-only --profile
            ;;
        *) echo "unknown step $name" ;;
        esac
    done
}

case $ACTION in
prepare) prepare ;;
run) shift $(($# < 2 ? $# : 2)); run_steps "$@" ;;
*) echo "usage: $0 prepare|run [DIR] [STEP...]" >&2; exit 2 ;;
esac
