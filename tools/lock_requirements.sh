#!/usr/bin/env bash
# Write requirements-lock.txt (every package the tests ran with, but the CUDA runtime wheels) and
# requirements-lock-cuda13.txt (the CUDA 13 runtime wheels PyPI's torch 2.14.1 pulls) from the venv's `pip freeze`.
# .ci/install and environment.yml install with both as constraints (-c); environment-cuda12.yml with the first only
# (torch's cu128 wheel pins its own CUDA 12 runtime).  Run after changing a dependency, then run
# tests/test_install_script.py.          Usage: bash tools/lock_requirements.sh [PYTHON=.venv/bin/python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
CUDA='^(nvidia-(?!ml-py)|cuda-(bindings|pathfinder|toolkit)==)'
freeze=$("$PY" -m pip freeze --all --exclude-editable --disable-pip-version-check | grep -v -E '^(pip==|#|-e )')
head="# $("$PY" --version), torch $("$PY" -c 'import torch; print(torch.__version__)'); bash tools/lock_requirements.sh"
{ echo "$head"; grep -v -P "$CUDA" <<<"$freeze"; } > requirements-lock.txt.tmp
{ echo "$head (CUDA 13 runtime wheels)"; grep -P "$CUDA" <<<"$freeze"; } > requirements-lock-cuda13.txt.tmp
mv requirements-lock.txt.tmp requirements-lock.txt
mv requirements-lock-cuda13.txt.tmp requirements-lock-cuda13.txt
wc -l requirements-lock.txt requirements-lock-cuda13.txt
