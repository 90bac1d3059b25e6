#!/usr/bin/env bash
# Reproduces the bundled sam2_micro_cells model from scratch on fresh synthetic clips,
# in two stages as SAM 2 starts from SAM: (1) single frames with clicks, boxes and
# corrective clicks (the first 1000 steps of a 1700-step schedule), (2) 8-frame clips
# through the memory bank, from stage 1's weights. One CPU thread each; see
# model/sam2_micro_cells.md for times. --resume-able: rerun with --resume appended.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/micro_cells}
napari-sam2 train --init scratch --prompt-pe-scale 2 --tie-decoder-qk \
  --config model/micro_cells_stage1.json --stop-after 1000 --out "$out/stage1" --threads 1 --validate "${@:2}"
napari-sam2 train --init "$out/stage1/model.pt" \
  --config model/micro_cells_stage2.json --out "$out/stage2" --threads 1 --validate "${@:2}"
