#!/usr/bin/env bash
# Reproduces the bundled sam2_micro_cells model from scratch on fresh synthetic clips.
# One CPU thread (about 1.7 h on one core of a 2-core machine); --resume continues a
# stopped run step for step. The result is exported (float16) into the package with
# model/export_micro.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/micro_cells}
python -m napari_sam2.training --init scratch --data synthetic \
  --config model/micro_cells_train.json --prompt-pe-scale 2 --out "$out" --threads 1 --validate "${@:2}"
