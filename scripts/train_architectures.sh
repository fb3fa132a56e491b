#!/usr/bin/env bash
# Train every architecture (the tsae_ ones, their controls and the random and PCA references) on SmolLM2-135M-Instruct
# layer 6 and compare them: `sweep recipes/all_architectures.yaml` (1M tokens, 2 seeds; pass --tokens N for a
# quicker run). Extra arguments go to `sweep`. Output: sweeps/all_architectures/{table.md,table.csv,effects.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m tsae_evals sweep recipes/all_architectures.yaml "$@"
