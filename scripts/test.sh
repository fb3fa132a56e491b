#!/usr/bin/env bash
# Set up .venv if needed, then lint, type-check the pure-Python core and run every test (slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet tsae_evals tests custom_saes
.venv/bin/mypy
.venv/bin/python -m pytest --run-slow "$@"
