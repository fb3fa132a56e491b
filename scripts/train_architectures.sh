#!/usr/bin/env bash
# Train every architecture (custom tsae_ ones and the baselines) on SmolLM2-135M-Instruct layer 6 and evaluate
# each with core and every temporal eval (plots included). Reuses the demo's ReLU SAE as the static start of the temporal LSTM SAE
# and as the width/L0 to match for the random baseline. TOKENS (default 150000) sets the training budget.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cache=${TSAE_EVALS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tsae_evals}
tokens=${TOKENS:-150000}
relu="$cache/saes/smollm2-l6-relu-demo"
train() {  # name, then train's own arguments
    local name=$1; shift
    if [ ! -f "$cache/saes/$name/cfg.json" ]; then
        .venv/bin/python -m tsae_evals train --layer 6 --out "$cache/saes/$name" "$@"
    fi
    saes+=("$cache/saes/$name")
}
saes=()
train smollm2-l6-relu-demo --arch relu --tokens 300000
train smollm2-l6-random --arch random --tokens 20000 --set match="$relu"
train smollm2-l6-pca --arch pca --tokens 20000
train smollm2-l6-topk --arch topk --tokens "$tokens"
for arch in tsae_temporal_consistency tsae_t_sae tsae_adaptive_variance tsae_temporal_context tsae_hierarchical; do
    train "smollm2-l6-$arch" --arch "$arch" --tokens "$tokens"
done
train smollm2-l6-tsae_temporal_lstm --arch tsae_temporal_lstm --tokens "$tokens" --set init_from="$relu"
sae_args=()
for sae in "${saes[@]}"; do sae_args+=(--sae "$sae"); done
.venv/bin/python -m tsae_evals run "${sae_args[@]}" --evals core,temporal --plots "$@"
