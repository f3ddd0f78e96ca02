#!/usr/bin/env bash
# The offline demo (see README): synthetic words -> a small CLIP4STR trained from a random CLIP -> held-out accuracy
# and a prediction grid in demo_output/. Extra arguments go to training/demo.py (try --help).
set -euo pipefail
cd "$(dirname "$0")"
exec python3 training/demo.py "$@"
