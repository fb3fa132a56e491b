#!/usr/bin/env bash
# The main job on the embedded default: set up, train (or reuse) a ReLU SAE on SmolLM2-135M-Instruct layer 6,
# then evaluate it with SAE-Bench's core eval and every temporal eval and print the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cache=${TSAE_EVALS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tsae_evals}
sae_dir="$cache/saes/smollm2-l6-relu-demo"
if [ ! -f "$sae_dir/cfg.json" ]; then
    .venv/bin/python -m tsae_evals train --arch relu --layer 6 --tokens 300000 --expansion 4 --out "$sae_dir"
fi
.venv/bin/python -m tsae_evals run --sae "$sae_dir" --evals core,temporal "$@"
