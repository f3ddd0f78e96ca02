#!/usr/bin/env bash
# The offline demo (see README): synthetic words -> a small CLIP4STR trained from a random CLIP -> held-out accuracy
# and a prediction grid in demo_output/. Extra arguments go to training/demo.py (try --help), e.g.
# `bash demo.sh --real-data DIR [DIR ...]` to train on real word crops too. Without ../shared (a fresh clone) the demo
# runs on synthetic words alone.
# On a fresh clone it first installs what it needs (the CPU build of torch if no torch is present, then this
# package with its training extras).
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c "import torch" 2>/dev/null; then
    python3 -m pip install --quiet torch==2.13.0
fi
if ! python3 -c "import modeling_clip4str, training.data, datasets, kornia, lmdb, matplotlib" 2>/dev/null; then
    python3 -m pip install --quiet -e ".[training]"
fi
exec python3 -m training.demo "$@"
