#!/usr/bin/env bash
# Reproduces the sam2_micro_cells candidate from scratch on fresh synthetic clips, in
# stages as SAM 2 starts from SAM: (1) single frames with clicks, boxes and corrective
# clicks (the first 1000 steps of a 1700-step schedule); (2) 8-frame clips through the
# memory bank from stage 1's weights, memory attention started local; (3) more clips,
# frames tracked without a prompt now taking the single-mask output; (4) more clips at a
# lower rate, up to 4 cells a clip. One CPU thread each, about 95 min in all; see
# docs/training.md for times and scores. --resume-able: rerun with --resume appended.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/micro_cells}
napari-sam2 train --init scratch --prompt-pe-scale 2 --tie-decoder-qk \
  --config model/micro_cells_stage1.json --stop-after 1000 --out "$out/stage1" --threads 1 --validate "${@:2}"
napari-sam2 train --init "$out/stage1/model.pt" --memory-locality-init 1.0 \
  --config model/micro_cells_stage2.json --out "$out/stage2" --threads 1 --validate "${@:2}"
napari-sam2 train --init "$out/stage2/model.pt" --tracking-mask single \
  --config model/micro_cells_stage3.json --out "$out/stage3" --threads 1 --validate "${@:2}"
napari-sam2 train --init "$out/stage3/model.pt" \
  --config model/micro_cells_stage4.json --out "$out/stage4" --threads 1 "${@:2}"
python model/export_micro.py "$out/stage4/model.pt"
